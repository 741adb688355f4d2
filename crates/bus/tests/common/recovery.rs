//! Recovery scenarios, run against each bus (`tests/recovery.rs` on the
//! in-process bus, `tests/redis.rs` on a real Redis).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use enchufe::bus::{self, Bus, Cursor, History, NodeId, Recovery, Stamp};

use super::{config, maybe_next, next, settle, Node};

/// A cluster configuration keeping `max_messages` per room for `max_age`.
pub fn with_history(max_messages: usize, max_age: Duration) -> bus::Config {
    let mut config = config();
    config.history = Some(History::new(max_messages, max_age));
    config
}

/// Sends `text` to "sala" from `node`'s cluster (except its client 0, the
/// sender), stamped: `STAMP text`.
pub fn say(node: &Node, text: &str) -> Stamp {
    node.cluster
        .to_room_with("sala", node.clients.first().map(|c| c.1), |stamp| {
            format!("{stamp} {text}")
        })
        .unwrap()
}

/// A member's view: the cursor it keeps and what it received.
#[derive(Default)]
pub struct Member {
    pub cursor: Cursor,
    pub got: Vec<(Stamp, String)>,
}

impl Member {
    /// Reads one stamped message from `node`'s client `i`.
    pub async fn read(&mut self, node: &Node, i: usize) -> (Stamp, String) {
        let line = next(node.client(i)).await;
        let (stamp, text) = line.split_once(' ').expect("STAMP text");
        let stamp: Stamp = stamp.parse().expect("a stamp");
        self.cursor.saw(stamp);
        self.got.push((stamp, text.to_owned()));
        (stamp, text.to_owned())
    }

    /// No message twice, and each server's in its order.
    pub fn check_order(&self) {
        let mut last: HashMap<NodeId, u64> = HashMap::new();
        for (stamp, text) in &self.got {
            let before = last.insert(stamp.node, stamp.seq).unwrap_or(0);
            assert!(stamp.seq > before, "{text}: {stamp} after seq {before}");
        }
    }
}

/// Three servers; a member on b reads a's and c's messages, drops, misses
/// some from both while away (and live messages keep coming while it is
/// recovered), reconnects to c: it gets every one it missed once, in each
/// sender's order, then live ones.
pub async fn a_member_that_reconnects_elsewhere_gets_what_it_missed(bus: [Arc<dyn Bus>; 3]) {
    let [on_a, on_b, on_c] = bus;
    let config = || with_history(1_000, Duration::from_secs(60));
    let a = Node::start(on_a, config(), 1).await;
    let mut b = Node::start(on_b, config(), 0).await;
    let mut c = Node::start(on_c, config(), 1).await;
    settle(&[&a, &b, &c]).await;
    say(&a, "before it joined");
    super::eventually("b heard it", || b.cluster.stats().received >= 1).await;
    let m = b.add_client().await;
    b.cluster.join("sala", b.id(m)).unwrap();
    // The start: what b heard so far counts as seen.
    let mut member = Member {
        cursor: b.cluster.cursor("sala"),
        ..Member::default()
    };
    for n in 0..5 {
        say(&a, &format!("a{n}"));
        say(&c, &format!("c{n}"));
    }
    for _ in 0..10 {
        member.read(&b, m).await;
    }
    member.check_order();

    // Away: its connection drops, the others go on.
    b.client(m).close().await.unwrap();
    super::eventually("b saw the member go", || {
        b.cluster.members("sala").is_empty()
    })
    .await;
    for n in 0..5 {
        say(&a, &format!("away-a{n}"));
        say(&c, &format!("away-c{n}"));
    }

    // Back, on c, while a keeps talking.
    let back = c.add_client().await;
    let talk = async {
        for n in 0..20 {
            say(&a, &format!("live-a{n}"));
            tokio::task::yield_now().await;
        }
    };
    let (recovered, ()) = tokio::join!(c.cluster.recover("sala", c.id(back), &member.cursor), talk);
    let recovered = recovered.unwrap();
    assert!(!recovered.is_incomplete(), "{recovered:?}");
    assert!(recovered.replayed() >= 10, "{recovered:?}");
    let mut rest = Member {
        cursor: member.cursor.clone(),
        got: member.got.clone(),
    };
    // Every message it missed, then every live one: 30 in all, once each.
    let mut texts = Vec::new();
    for _ in 0..30 {
        texts.push(rest.read(&c, back).await.1);
    }
    rest.check_order();
    for n in 0..5 {
        assert!(texts.contains(&format!("away-a{n}")), "{texts:?}");
        assert!(texts.contains(&format!("away-c{n}")), "{texts:?}");
    }
    for n in 0..20 {
        assert!(texts.contains(&format!("live-a{n}")), "{texts:?}");
    }
    assert_eq!(
        maybe_next(c.client(back), Duration::from_millis(200)).await,
        None
    );
    // And it is a member again.
    assert!(c
        .cluster
        .members("sala")
        .contains(&c.cluster.member(c.id(back))));
}

/// A member away for more than the history keeps is told so, and gets the
/// newest messages that are still kept, in order.
/// `keep` is the fewest the history must still hold (`config` decides).
pub async fn a_member_away_too_long_is_told(
    bus: [Arc<dyn Bus>; 2],
    config: bus::Config,
    keep: usize,
    send: usize,
) {
    let [on_a, on_b] = bus;
    let config = || config.clone();
    let a = Node::start(on_a, config(), 1).await;
    let mut b = Node::start(on_b, config(), 0).await;
    settle(&[&a, &b]).await;
    let cursor = b.cluster.cursor("sala");
    say(&a, "seen");
    let mut member = Member {
        cursor,
        ..Member::default()
    };
    let m = b.add_client().await;
    b.cluster.join("sala", b.id(m)).unwrap();
    say(&a, "seen too");
    member.read(&b, m).await;
    b.client(m).close().await.unwrap();
    super::eventually("b saw the member go", || {
        b.cluster.members("sala").is_empty()
    })
    .await;
    let mut sent = Vec::new();
    for n in 0..send {
        sent.push(format!("away{n}"));
        say(&a, &format!("away{n}"));
    }
    let back = b.add_client().await;
    // a's messages reach the history before b's recovery reads it only if
    // they were published: wait until b heard the last one.
    super::eventually("b heard everything", || {
        b.cluster.stats().received >= send as u64 + 2
    })
    .await;
    let recovered = b
        .cluster
        .recover("sala", b.id(back), &member.cursor)
        .await
        .unwrap();
    let Recovery::Incomplete { replayed } = recovered else {
        panic!("told nothing missing: {recovered:?}");
    };
    assert!(replayed >= keep && replayed < send, "{recovered:?}");
    let mut texts = Vec::new();
    for _ in 0..replayed {
        texts.push(member.read(&b, back).await.1);
    }
    member.check_order();
    assert_eq!(texts, sent[send - replayed..], "the newest kept, in order");
    assert_eq!(
        maybe_next(b.client(back), Duration::from_millis(200)).await,
        None
    );
}
