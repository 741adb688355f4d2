//! Broadcasts, rooms and presence across servers on the in-process bus.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{config, eventually, maybe_next, next, settle, Node, WAIT};
use enchufe::bus::{Bus, Error, MemoryBus, Subscription};
use futures::future::BoxFuture;

const QUIET: Duration = Duration::from_millis(200);

async fn three(bus: Arc<dyn Bus>, clients: usize) -> (Node, Node, Node) {
    let a = Node::start(bus.clone(), config(), clients).await;
    let b = Node::start(bus.clone(), config(), clients).await;
    let c = Node::start(bus, config(), clients).await;
    settle(&[&a, &b, &c]).await;
    (a, b, c)
}

#[tokio::test]
async fn a_room_message_reaches_every_server_once_in_order() {
    tokio::time::timeout(WAIT * 3, async {
        let (a, b, mut c) = three(Arc::new(MemoryBus::new()), 2).await;
        for node in [&a, &b, &c] {
            for i in 0..2 {
                node.cluster.join("sala", node.id(i)).unwrap();
            }
        }
        // Not in the room: gets broadcasts only.
        let outsider = c.add_client().await;

        for n in 0..20 {
            let local = a
                .cluster
                .to_room_except("sala", a.id(0), format!("m{n}"))
                .unwrap();
            assert_eq!(local, 1, "the sender's neighbour on a");
        }
        a.cluster.broadcast("end").unwrap();
        for (node, client) in [(&a, 1), (&b, 0), (&b, 1), (&c, 0), (&c, 1)] {
            for n in 0..20 {
                assert_eq!(next(node.client(client)).await, format!("m{n}"));
            }
            // Nothing twice: the next message is the broadcast after them.
            assert_eq!(next(node.client(client)).await, "end");
        }
        assert_eq!(
            next(a.client(0)).await,
            "end",
            "the sender only gets the broadcast"
        );
        assert_eq!(next(c.client(outsider)).await, "end");
        assert_eq!(maybe_next(c.client(outsider), QUIET).await, None);
        assert_eq!(maybe_next(a.client(0), QUIET).await, None);
        assert!(a.cluster.stats().published >= 21);
        assert!(b.cluster.stats().received >= 21);
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn broadcast_except_skips_only_the_sender() {
    tokio::time::timeout(WAIT * 3, async {
        let (a, b, c) = three(Arc::new(MemoryBus::new()), 2).await;
        assert_eq!(b.cluster.broadcast_except(b.id(1), "hola").unwrap(), 1);
        for (node, client) in [(&a, 0), (&a, 1), (&b, 0), (&c, 0), (&c, 1)] {
            assert_eq!(next(node.client(client)).await, "hola");
        }
        assert_eq!(maybe_next(b.client(1), QUIET).await, None);
        for node in [&a, &b, &c] {
            for i in 0..2 {
                assert_eq!(maybe_next(node.client(i), QUIET / 4).await, None, "once");
            }
        }
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn presence_lists_members_everywhere_and_forgets_a_crashed_server() {
    tokio::time::timeout(WAIT * 3, async {
        let (a, b, c) = three(Arc::new(MemoryBus::new()), 1).await;
        for node in [&a, &b, &c] {
            node.cluster.join("sala", node.id(0)).unwrap();
        }
        let everyone = {
            let mut all = vec![
                a.cluster.member(a.id(0)),
                b.cluster.member(b.id(0)),
                c.cluster.member(c.id(0)),
            ];
            all.sort();
            all
        };
        b.cluster.join("solo-b", b.id(0)).unwrap();
        eventually("everyone sees the three members", || {
            [&a, &b, &c]
                .iter()
                .all(|n| n.cluster.members("sala") == everyone)
        })
        .await;
        eventually("everyone sees b's own room", || {
            [&a, &b, &c]
                .iter()
                .all(|n| n.cluster.rooms() == ["sala", "solo-b"])
        })
        .await;

        // c crashes: its cluster stops without saying goodbye.
        let gone = c.cluster.member(c.id(0));
        drop(c);
        eventually("c's member leaves presence within the TTL", || {
            !a.cluster.members("sala").contains(&gone) && !b.cluster.members("sala").contains(&gone)
        })
        .await;
        assert_eq!(a.cluster.members("sala").len(), 2);

        // b leaves on purpose: gone at once (no TTL wait needed, but
        // bounded the same way).
        let left = b.cluster.member(b.id(0));
        b.cluster.clone().detach().await;
        eventually("b's member leaves presence", || {
            !a.cluster.members("sala").contains(&left)
        })
        .await;
        assert!(b.cluster.broadcast("late").unwrap_err().is_closed());
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn detach_publishes_what_is_queued_first() {
    tokio::time::timeout(WAIT, async {
        let bus = Arc::new(MemoryBus::new());
        let a = Node::start(bus.clone(), config(), 0).await;
        let b = Node::start(bus, config(), 1).await;
        settle(&[&a, &b]).await;
        // Queued, not yet published (this runtime has one thread, and the
        // publisher has not run since).
        for n in 0..10 {
            a.cluster.broadcast(format!("m{n}")).unwrap();
        }
        a.cluster.clone().detach().await;
        for n in 0..10 {
            assert_eq!(next(b.client(0)).await, format!("m{n}"));
        }
        eventually("a said goodbye", || b.cluster.nodes().len() == 1).await;
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_closed_connection_leaves_its_rooms() {
    tokio::time::timeout(WAIT, async {
        let a = Node::start(Arc::new(MemoryBus::new()), config(), 2).await;
        a.cluster.join("sala", a.id(0)).unwrap();
        a.cluster.join("sala", a.id(1)).unwrap();
        a.client(1).close().await.unwrap();
        eventually("the server saw the close", || {
            a.server.connection_count() == 1
        })
        .await;
        assert_eq!(a.cluster.members("sala"), vec![a.cluster.member(a.id(0))]);
        assert!(a.cluster.leave("sala", a.id(0)));
        assert!(!a.cluster.leave("sala", a.id(0)));
        assert!(a.cluster.members("sala").is_empty());
        let long = "x".repeat(256);
        assert!(a.cluster.join(&long, a.id(0)).unwrap_err().is_too_large());
    })
    .await
    .expect("not hung");
}

/// A bus whose publishes never finish (a stuck Redis) or always fail (a
/// Redis that is down).
#[derive(Debug)]
struct BrokenBus {
    stuck: bool,
    inner: MemoryBus,
    attempts: AtomicUsize,
}

impl Bus for BrokenBus {
    fn publish(&self, _: &str, _: Bytes) -> BoxFuture<'_, enchufe::bus::Result<usize>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.stuck {
            Box::pin(futures::future::pending())
        } else {
            Box::pin(async { Err(Error::Unavailable("down".into())) })
        }
    }

    fn subscribe(&self, channels: &[&str], max: usize) -> enchufe::bus::Result<Subscription> {
        self.inner.subscribe(channels, max)
    }
}

#[tokio::test]
async fn a_stuck_bus_never_blocks_local_delivery_and_its_queue_is_bounded() {
    tokio::time::timeout(WAIT, async {
        let bus = Arc::new(BrokenBus {
            stuck: true,
            inner: MemoryBus::new(),
            attempts: AtomicUsize::new(0),
        });
        let mut config = config();
        config.max_outgoing_bytes = 10_000;
        let a = Node::start(bus.clone(), config, 1).await;
        let payload = "x".repeat(1_000);
        for _ in 0..100 {
            assert_eq!(a.cluster.broadcast(payload.as_str()).unwrap(), 1);
        }
        for _ in 0..100 {
            assert_eq!(next(a.client(0)).await.len(), 1_000);
        }
        let stats = a.cluster.stats();
        // 100 envelopes of about 1 KB in a 10 KB queue (one more is in the
        // stuck publish): most are dropped, and counted.
        assert!(stats.outgoing_dropped >= 85, "{stats:?}");
        assert_eq!(stats.published, 0);
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_failing_bus_is_counted_and_local_delivery_goes_on() {
    tokio::time::timeout(WAIT, async {
        let bus = Arc::new(BrokenBus {
            stuck: false,
            inner: MemoryBus::new(),
            attempts: AtomicUsize::new(0),
        });
        let a = Node::start(bus.clone(), config(), 1).await;
        a.cluster.join("sala", a.id(0)).unwrap();
        for n in 0..5 {
            assert_eq!(a.cluster.to_room("sala", format!("m{n}")).unwrap(), 1);
        }
        for n in 0..5 {
            assert_eq!(next(a.client(0)).await, format!("m{n}"));
        }
        eventually("the failed publishes are counted", || {
            a.cluster.stats().publish_failures >= 5
        })
        .await;
        let err = bus.publish("x", Bytes::new()).await.unwrap_err();
        assert!(err.is_unavailable());
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_slow_subscription_drops_and_counts_past_its_byte_limit() {
    let bus = MemoryBus::new();
    let mut sub = bus.subscribe(&["c"], 100).unwrap();
    for _ in 0..10 {
        bus.publish("c", Bytes::from(vec![0; 30])).await.unwrap();
    }
    // 31 bytes each (channel name + payload): three fit in 100.
    assert_eq!(sub.dropped(), 7);
    assert_eq!(sub.queued_bytes(), 93);
    for _ in 0..3 {
        assert_eq!(sub.recv().await.unwrap().payload.len(), 30);
    }
}
