//! Recovery on the in-process bus: a member that reconnects gets the room
//! messages it missed, once and in order, or is told it missed some.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::recovery::{self, say, with_history, Member};
use common::{config, eventually, maybe_next, settle, Node, WAIT};
use enchufe::bus::{Bus, Cursor, History, MemoryBus, Recovery, Subscription};
use futures::future::BoxFuture;
use tokio::sync::watch;

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

/// A server's bus on which a room message's live copy comes late: it is
/// in the history at once, but published only while `open` says so (what
/// a subscription slower than a history read looks like to the others).
#[derive(Debug)]
struct LateLive {
    bus: MemoryBus,
    open: watch::Receiver<bool>,
    /// Room messages in the history so far.
    appended: Arc<AtomicUsize>,
}

impl LateLive {
    /// The bus, the gate and the count of room messages appended.
    fn on(bus: &MemoryBus) -> (Arc<dyn Bus>, watch::Sender<bool>, Arc<AtomicUsize>) {
        let (gate, open) = watch::channel(true);
        let appended = Arc::new(AtomicUsize::new(0));
        let late = LateLive {
            bus: bus.clone(),
            open,
            appended: appended.clone(),
        };
        (Arc::new(late), gate, appended)
    }
}

impl Bus for LateLive {
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, enchufe::bus::Result<usize>> {
        self.bus.publish(channel, payload)
    }

    fn append(
        &self,
        log: &str,
        payload: Bytes,
        keep: History,
    ) -> BoxFuture<'_, enchufe::bus::Result<()>> {
        self.bus.append(log, payload, keep)
    }

    fn publish_logged(
        &self,
        channel: &str,
        log: &str,
        payload: Bytes,
        keep: History,
    ) -> BoxFuture<'_, enchufe::bus::Result<usize>> {
        let (channel, log) = (channel.to_owned(), log.to_owned());
        let mut open = self.open.clone();
        Box::pin(async move {
            self.bus.append(&log, payload.clone(), keep).await?;
            self.appended.fetch_add(1, Ordering::SeqCst);
            let _ = open.wait_for(|open| *open).await;
            self.bus.publish(&channel, payload).await
        })
    }

    fn history(&self, log: &str, keep: History) -> BoxFuture<'_, enchufe::bus::Result<Vec<Bytes>>> {
        self.bus.history(log, keep)
    }

    fn subscribe(&self, channels: &[&str], max_bytes: usize) -> enchufe::bus::Result<Subscription> {
        self.bus.subscribe(channels, max_bytes)
    }
}

/// A message replayed to a member from the history, whose live copy
/// reaches the server only after the recovery, is not delivered again.
#[tokio::test]
async fn a_live_copy_that_comes_after_its_replay_is_not_delivered_again() {
    tokio::time::timeout(WAIT, async {
        let bus = MemoryBus::new();
        let (on_a, gate, appended) = LateLive::on(&bus);
        let config = || with_history(100, WAIT);
        let a = Node::start(on_a, config(), 1).await;
        let mut c = Node::start(Arc::new(bus), config(), 0).await;
        settle(&[&a, &c]).await;
        say(&a, "heard");
        eventually("c heard it", || c.cluster.stats().received >= 1).await;
        let mut member = Member {
            cursor: c.cluster.cursor("sala"),
            ..Member::default()
        };
        gate.send_replace(false);
        say(&a, "late");
        eventually("in the history", || appended.load(Ordering::SeqCst) == 2).await;

        let back = c.add_client().await;
        let recovered = c.cluster.recover("sala", c.id(back), &member.cursor).await;
        assert_eq!(recovered.unwrap(), Recovery::Complete { replayed: 1 });
        assert_eq!(member.read(&c, back).await.1, "late");
        // Again while the live copy is on its way: nothing to replay, and
        // not refused as a recovery still running.
        let again = c.cluster.recover("sala", c.id(back), &member.cursor).await;
        assert_eq!(again.unwrap(), Recovery::Complete { replayed: 0 });

        gate.send_replace(true);
        eventually("c heard it live", || c.cluster.stats().received >= 2).await;
        say(&a, "next");
        assert_eq!(member.read(&c, back).await.1, "next");
        member.check_order();
        assert_eq!(
            maybe_next(c.client(back), Duration::from_millis(100)).await,
            None
        );
    })
    .await
    .expect("not hung");
}

/// A member that got a message on one server (from a replay) and
/// reconnects to another that has not heard it live yet does not get it
/// again there: a live message at or before its cursor is skipped.
#[tokio::test]
async fn a_member_ahead_of_the_server_it_reconnects_to_gets_nothing_twice() {
    tokio::time::timeout(WAIT, async {
        let bus = MemoryBus::new();
        let (on_a, gate, appended) = LateLive::on(&bus);
        let config = || with_history(100, WAIT);
        let a = Node::start(on_a, config(), 1).await;
        let mut b = Node::start(Arc::new(bus.clone()), config(), 0).await;
        let mut c = Node::start(Arc::new(bus), config(), 0).await;
        settle(&[&a, &b, &c]).await;
        say(&a, "heard");
        eventually("b and c heard it", || {
            b.cluster.stats().received >= 1 && c.cluster.stats().received >= 1
        })
        .await;
        let mut member = Member {
            cursor: b.cluster.cursor("sala"),
            ..Member::default()
        };
        gate.send_replace(false);
        say(&a, "late");
        eventually("in the history", || appended.load(Ordering::SeqCst) == 2).await;

        // On b, from the history.
        let on_b = b.add_client().await;
        let recovered = b.cluster.recover("sala", b.id(on_b), &member.cursor).await;
        assert_eq!(recovered.unwrap(), Recovery::Complete { replayed: 1 });
        assert_eq!(member.read(&b, on_b).await.1, "late");
        b.client(on_b).close().await.unwrap();

        // Then on c, which has not heard it yet.
        let on_c = c.add_client().await;
        let recovered = c.cluster.recover("sala", c.id(on_c), &member.cursor).await;
        assert_eq!(recovered.unwrap(), Recovery::Complete { replayed: 0 });
        gate.send_replace(true);
        eventually("c heard it live", || c.cluster.stats().received >= 2).await;
        say(&a, "next");
        assert_eq!(member.read(&c, on_c).await.1, "next");
        member.check_order();
        assert_eq!(
            maybe_next(c.client(on_c), Duration::from_millis(100)).await,
            None
        );
    })
    .await
    .expect("not hung");
}
