//! Recovery on the in-process bus: a member that reconnects gets the room
//! messages it missed, once and in order, or is told it missed some.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::recovery::{self, say, with_history, Member};
use common::{config, maybe_next, settle, Node, WAIT};
use enchufe::bus::{Bus, Cursor, MemoryBus, Recovery};

fn buses<const N: usize>() -> [Arc<dyn Bus>; N] {
    let bus = MemoryBus::new();
    std::array::from_fn(|_| Arc::new(bus.clone()) as Arc<dyn Bus>)
}

#[tokio::test]
async fn a_member_that_reconnects_elsewhere_gets_what_it_missed() {
    tokio::time::timeout(
        WAIT * 3,
        recovery::a_member_that_reconnects_elsewhere_gets_what_it_missed(buses()),
    )
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_member_away_for_more_messages_than_kept_is_told() {
    tokio::time::timeout(
        WAIT * 3,
        recovery::a_member_away_too_long_is_told(
            buses(),
            with_history(5, Duration::from_secs(60)),
            5,
            12,
        ),
    )
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_member_whose_missed_messages_weigh_more_than_a_read_is_told() {
    let mut config = with_history(1_000, Duration::from_secs(60));
    // About eight of the envelopes below.
    config.history.as_mut().unwrap().max_read_bytes = 600;
    tokio::time::timeout(
        WAIT * 3,
        recovery::a_member_away_too_long_is_told(buses(), config, 1, 30),
    )
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_member_away_for_longer_than_kept_is_told() {
    tokio::time::timeout(WAIT * 2, async {
        let [on_a, on_b] = buses();
        let keep = Duration::from_millis(300);
        let a = Node::start(on_a, with_history(1_000, keep), 1).await;
        let mut b = Node::start(on_b, with_history(1_000, keep), 1).await;
        settle(&[&a, &b]).await;
        b.cluster.join("sala", b.id(0)).unwrap();
        let mut member = Member {
            cursor: b.cluster.cursor("sala"),
            ..Member::default()
        };
        say(&a, "seen");
        member.read(&b, 0).await;
        say(&a, "old");
        // Older than the history keeps by the time the member is back.
        tokio::time::sleep(keep * 2).await;
        say(&a, "new");
        let back = b.add_client().await;
        common::eventually("b heard both", || b.cluster.stats().received >= 3).await;
        let recovered = b.cluster.recover("sala", b.id(back), &member.cursor).await;
        assert_eq!(recovered.unwrap(), Recovery::Incomplete { replayed: 1 });
        assert_eq!(member.read(&b, back).await.1, "new");
        assert_eq!(
            maybe_next(b.client(back), Duration::from_millis(100)).await,
            None
        );
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn recovery_needs_a_history_and_skips_what_the_member_saw() {
    tokio::time::timeout(WAIT, async {
        let [on_a] = buses();
        let a = Node::start(on_a.clone(), config(), 1).await;
        let err = a
            .cluster
            .recover("sala", a.id(0), &Cursor::new())
            .await
            .unwrap_err();
        assert!(matches!(err, enchufe::bus::Error::NoHistory), "{err:?}");

        // Up to date: nothing replayed, complete; the member is in the room.
        let mut b = Node::start(on_a, with_history(10, WAIT), 1).await;
        b.cluster.join("sala", b.id(0)).unwrap();
        let mut member = Member::default();
        for n in 0..3 {
            b.cluster
                .to_room_with("sala", None, |stamp| format!("{stamp} m{n}"))
                .unwrap();
            member.read(&b, 0).await;
        }
        let again = b.add_client().await;
        let recovered = b.cluster.recover("sala", b.id(again), &member.cursor).await;
        assert_eq!(recovered.unwrap(), Recovery::Complete { replayed: 0 });
        let recovered = b.cluster.recover("sala", b.id(again), &Cursor::new()).await;
        assert_eq!(
            recovered.unwrap(),
            Recovery::Complete { replayed: 3 },
            "from the start"
        );
    })
    .await
    .expect("not hung");
}

/// A bus that keeps no history: only publish and subscribe.
#[derive(Debug)]
struct NoHistoryBus(MemoryBus);

impl Bus for NoHistoryBus {
    fn publish(
        &self,
        channel: &str,
        payload: bytes::Bytes,
    ) -> futures::future::BoxFuture<'_, enchufe::bus::Result<usize>> {
        self.0.publish(channel, payload)
    }

    fn subscribe(
        &self,
        channels: &[&str],
        max_bytes: usize,
    ) -> enchufe::bus::Result<enchufe::bus::Subscription> {
        self.0.subscribe(channels, max_bytes)
    }
}

#[tokio::test]
async fn on_a_bus_without_history_room_messages_still_go_and_recovery_says_why_not() {
    tokio::time::timeout(WAIT, async {
        let bus = MemoryBus::new();
        let plain = || -> Arc<dyn Bus> { Arc::new(NoHistoryBus(bus.clone())) };
        let config = || with_history(10, WAIT);
        let a = Node::start(plain(), config(), 1).await;
        let mut b = Node::start(plain(), config(), 1).await;
        settle(&[&a, &b]).await;
        b.cluster.join("sala", b.id(0)).unwrap();
        let mut member = Member::default();
        say(&a, "hola");
        assert_eq!(member.read(&b, 0).await.1, "hola");
        assert_eq!(a.cluster.stats().publish_failures, 0);
        let back = b.add_client().await;
        let err = b
            .cluster
            .recover("sala", b.id(back), &member.cursor)
            .await
            .unwrap_err();
        assert!(matches!(err, enchufe::bus::Error::NoHistory), "{err:?}");
    })
    .await
    .expect("not hung");
}
