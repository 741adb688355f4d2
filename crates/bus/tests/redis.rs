//! The bus on a real `redis-server` (installed by `scripts/setup`), which
//! each test starts on a free loopback port and kills at the end.
//! `ENCHUFE_SKIP_REDIS=1` skips them (and says so) where it cannot be
//! installed.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{config, eventually, maybe_next, next, settle, Node, WAIT};
use enchufe::bus::{Bus, History, RedisBus, RedisConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// A `redis-server` of the test's own, with nothing saved to disk.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// `None` when the tests are to be skipped.
    async fn start() -> Option<Redis> {
        if std::env::var_os("ENCHUFE_SKIP_REDIS").is_some_and(|v| v == "1") {
            eprintln!("*** SKIPPED: redis test (ENCHUFE_SKIP_REDIS=1)");
            return None;
        }
        // A free port: bound and released (a race with another process is
        // possible but unlikely, and would fail the test, not hang it).
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis { port, child: None };
        redis.up().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and waits until it accepts.
    async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/setup installs it; ENCHUFE_SKIP_REDIS=1 skips)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually_async("redis-server accepts", || TcpStream::connect(addr.clone())).await;
    }

    /// Kills the server (its clients see their connections reset).
    async fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

async fn eventually_async<F, T, E>(what: &str, mut attempt: impl FnMut() -> F)
where
    F: std::future::Future<Output = Result<T, E>>,
{
    tokio::time::timeout(WAIT, async {
        while attempt().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {WAIT:?}: {what}"));
}

fn bus(redis: &Redis) -> (RedisBus, Arc<dyn Bus>) {
    let mut config = RedisConfig::default();
    config.min_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    let bus = RedisBus::open(&redis.url(), config).unwrap();
    (bus.clone(), Arc::new(bus))
}

#[tokio::test]
async fn publish_and_subscribe_and_a_typed_error_when_redis_is_down() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 2, async {
        let (bus, _) = bus(&redis);
        let mut sub = bus.subscribe(&["news"], 1 << 20).unwrap();
        // Pub/sub keeps nothing: publish until the subscription is live.
        let got = tokio::time::timeout(WAIT, async {
            loop {
                bus.publish("news", Bytes::from_static(b"hola"))
                    .await
                    .unwrap();
                if let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_millis(50), sub.recv()).await
                {
                    return message;
                }
            }
        })
        .await
        .expect("the subscription goes live");
        assert_eq!(got.channel, "news");
        assert_eq!(got.payload, "hola");
        assert!(bus.stats().connected);

        redis.down().await;
        let err = loop {
            // The first publish may still find the old connection open.
            if let Err(err) = bus.publish("news", Bytes::from_static(b"x")).await {
                break err;
            }
        };
        assert!(err.is_unavailable(), "{err:?}");
        assert!(bus.stats().publish_failures >= 1);
        assert!(!bus.stats().connected);
        bus.close().await;
        assert_eq!(sub.recv().await, None, "closing ends the subscription");
        assert!(bus
            .publish("news", Bytes::new())
            .await
            .unwrap_err()
            .is_closed());
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn three_servers_on_redis_deliver_each_message_once_and_survive_a_restart() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 4, async {
        let (bus_a, on_a) = bus(&redis);
        let (bus_b, on_b) = bus(&redis);
        let (bus_c, on_c) = bus(&redis);
        let a = Node::start(on_a, config(), 2).await;
        let b = Node::start(on_b, config(), 1).await;
        let c = Node::start(on_c, config(), 1).await;
        settle(&[&a, &b, &c]).await;
        for node in [&a, &b, &c] {
            for i in 0..node.clients.len() {
                node.cluster.join("sala", node.id(i)).unwrap();
            }
        }

        // From a member on a: reaches b and c exactly once, in order.
        for n in 0..20 {
            a.cluster
                .to_room_except("sala", a.id(0), format!("m{n}"))
                .unwrap();
        }
        a.cluster.to_room("sala", "end").unwrap();
        for (node, client) in [(&a, 1), (&b, 0), (&c, 0)] {
            for n in 0..20 {
                assert_eq!(next(node.client(client)).await, format!("m{n}"));
            }
            assert_eq!(next(node.client(client)).await, "end", "nothing twice");
        }
        assert_eq!(next(a.client(0)).await, "end");
        for (node, client) in [(&a, 0), (&a, 1), (&b, 0), (&c, 0)] {
            assert_eq!(
                maybe_next(node.client(client), Duration::from_millis(100)).await,
                None
            );
        }

        // Redis goes away: local delivery goes on, the failures are counted.
        redis.down().await;
        eventually_async("a's publishes fail", || {
            let bus = bus_a.clone();
            async move {
                match bus.publish("probe", Bytes::new()).await {
                    Ok(_) => Err(()),
                    Err(_) => Ok(()),
                }
            }
        })
        .await;
        let failures = a.cluster.stats().publish_failures;
        assert_eq!(a.cluster.to_room("sala", "local").unwrap(), 2);
        assert_eq!(next(a.client(0)).await, "local");
        assert_eq!(next(a.client(1)).await, "local");
        eventually("the lost publication is counted", || {
            a.cluster.stats().publish_failures > failures
        })
        .await;

        // Redis is back (same port): the buses reconnect and subscribe
        // again, and delivery resumes. What was published while a server's
        // subscription was still down is lost (pub/sub), so send until one
        // arrives, then check that everything after it arrives in order.
        redis.up().await;
        let mut n = 0;
        tokio::time::timeout(WAIT, async {
            loop {
                c.cluster.to_room("sala", format!("again{n}")).unwrap();
                n += 1;
                if let Some(got) = maybe_next(b.client(0), Duration::from_millis(100)).await {
                    assert!(got.starts_with("again"), "{got}");
                    break;
                }
            }
        })
        .await
        .expect("delivery resumes after the restart");
        assert!(bus_c.stats().connected);
        eventually("every subscription came back", || {
            [&bus_a, &bus_b, &bus_c]
                .iter()
                .all(|bus| bus.stats().resubscribes >= 1)
        })
        .await;
        c.cluster.to_room("sala", "after").unwrap();
        for (node, client) in [(&a, 0), (&a, 1), (&b, 0)] {
            loop {
                let got = next(node.client(client)).await;
                if got == "after" {
                    break;
                }
                assert!(got.starts_with("again"), "{got}");
            }
        }
        let stats = b.cluster.stats();
        assert!(stats.received >= 22, "{stats:?}");
        redis.down().await;
    })
    .await
    .expect("not hung");
}

/// A TCP relay to Redis whose open connections can be black-holed: they
/// stay open and carry nothing, as after a network cut that no FIN or RST
/// announced. New connections are relayed as before.
struct Relay {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut watch = watch.clone();
                watch.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = watch.changed() => {
                            // Black-holed: hold both ends open, relay nothing.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Relay { addr, cut }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn black_hole(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn a_silently_dead_subscription_is_noticed_and_replaced() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 2, async {
        let relay = Relay::start(redis.port).await;
        let mut config = RedisConfig::default();
        config.keepalive = Duration::from_millis(100);
        config.command_timeout = Duration::from_millis(300);
        config.min_backoff = Duration::from_millis(20);
        config.max_backoff = Duration::from_millis(200);
        let cut_off = RedisBus::open(&relay.url(), config).unwrap();
        let (direct, _) = bus(&redis);
        let mut sub = cut_off.subscribe(&["news"], 1 << 20).unwrap();

        // Publishes directly until the subscription (through the relay)
        // hears one.
        async fn until_heard(direct: &RedisBus, sub: &mut enchufe::bus::Subscription) {
            loop {
                direct
                    .publish("news", Bytes::from_static(b"hola"))
                    .await
                    .unwrap();
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(50), sub.recv()).await
                {
                    return;
                }
            }
        }
        tokio::time::timeout(WAIT, until_heard(&direct, &mut sub))
            .await
            .expect("the subscription goes live");
        while tokio::time::timeout(Duration::from_millis(50), sub.recv())
            .await
            .is_ok()
        {}

        relay.black_hole();
        tokio::time::timeout(WAIT, until_heard(&direct, &mut sub))
            .await
            .expect("the dead subscription is noticed and replaced");
        assert!(cut_off.stats().resubscribes >= 1);
        cut_off.close().await;
        redis.down().await;
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn append_alone_keeps_a_history_on_redis() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT, async {
        let (bus, _) = bus(&redis);
        let keep = History::new(1_000, Duration::from_secs(60));
        for entry in ["a", "b", "c"] {
            bus.append("log", entry.into(), keep).await.unwrap();
        }
        assert_eq!(bus.history("log", keep).await.unwrap(), ["a", "b", "c"]);
        assert_eq!(bus.stats().published, 0, "an append publishes nothing");
        bus.close().await;
    })
    .await
    .expect("not hung");
    redis.down().await;
}

fn buses<const N: usize>(redis: &Redis) -> [Arc<dyn Bus>; N] {
    std::array::from_fn(|_| bus(redis).1)
}

#[tokio::test]
async fn recovery_on_redis_gets_a_member_what_it_missed_on_another_server() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(
        WAIT * 3,
        common::recovery::a_member_that_reconnects_elsewhere_gets_what_it_missed(buses(&redis)),
    )
    .await
    .expect("not hung");
    redis.down().await;
}

#[tokio::test]
async fn recovery_on_redis_tells_a_member_away_too_long() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    // MAXLEN ~ trims whole stream nodes (100 entries by default): 250
    // messages over a history of 5 leave between 5 and about 150.
    tokio::time::timeout(
        WAIT * 3,
        common::recovery::a_member_away_too_long_is_told(
            buses(&redis),
            common::recovery::with_history(5, Duration::from_secs(60)),
            5,
            250,
        ),
    )
    .await
    .expect("not hung");
    redis.down().await;
}

#[tokio::test]
async fn recovery_on_redis_reads_no_more_than_its_byte_limit() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let mut config = common::recovery::with_history(1_000, Duration::from_secs(60));
    // About eight envelopes, over several pages of XREVRANGE.
    config.history.as_mut().unwrap().max_read_bytes = 600;
    tokio::time::timeout(
        WAIT * 3,
        common::recovery::a_member_away_too_long_is_told(buses(&redis), config, 1, 100),
    )
    .await
    .expect("not hung");
    redis.down().await;
}

/// What every client of `nodes` has received, until quiet for 300 ms.
async fn drain_all(nodes: &[&Node]) -> Vec<Vec<Vec<String>>> {
    let mut all = Vec::new();
    for node in nodes {
        let mut per_node = Vec::new();
        for i in 0..node.clients.len() {
            let mut got = Vec::new();
            while let Some(line) = maybe_next(node.client(i), Duration::from_millis(300)).await {
                got.push(line);
            }
            per_node.push(got);
        }
        all.push(per_node);
    }
    all
}

/// Each node sends `name-phase-n` for n in 0..count to "sala", awaiting the
/// bus's answer; returns (text, sender index, reached everywhere?).
async fn send_round(nodes: &[&Node], phase: &str, count: usize) -> Vec<(String, usize, bool)> {
    let mut outcomes = Vec::new();
    for n in 0..count {
        let sends = nodes.iter().enumerate().map(|(i, node)| {
            let text = format!("{i}-{phase}-{n}");
            async move {
                let sent = node
                    .cluster
                    .to_room_confirmed("sala", None, text.as_str())
                    .await;
                let everywhere = match &sent {
                    Ok(sent) => {
                        assert_eq!(sent.local, node.clients.len(), "local delivery, always");
                        sent.everywhere()
                    }
                    Err(e) => {
                        assert!(
                            e.is_unavailable() || matches!(e, enchufe::bus::Error::Full),
                            "{e:?}"
                        );
                        false
                    }
                };
                (text, i, everywhere)
            }
        });
        outcomes.extend(futures::future::join_all(sends).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outcomes
}

/// Every client got each message at most once; its own server's always;
/// every message the bus took everywhere, on every server.
fn check_delivery(nodes: &[&Node], got: &[Vec<Vec<String>>], sent: &[(String, usize, bool)]) {
    assert_eq!(got.len(), nodes.len());
    for (k, per_node) in got.iter().enumerate() {
        for (i, lines) in per_node.iter().enumerate() {
            let mut unique = lines.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                lines.len(),
                "server {k} client {i} got a message twice"
            );
            for (text, from, everywhere) in sent {
                let has = lines.contains(text);
                if *from == k || *everywhere {
                    assert!(
                        has,
                        "server {k} client {i} lacks {text} (everywhere: {everywhere})"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn redis_restarted_mid_run_every_message_arrives_once_or_is_reported() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 6, async {
        // Presence outlives the outage, so a send during it still expects
        // every server (and reports the ones it missed).
        let mut config = config();
        config.presence_ttl = WAIT;
        let (bus_a, on_a) = bus(&redis);
        let (bus_b, on_b) = bus(&redis);
        let (bus_c, on_c) = bus(&redis);
        let a = Node::start(on_a, config.clone(), 2).await;
        let b = Node::start(on_b, config.clone(), 2).await;
        let c = Node::start(on_c, config, 2).await;
        settle(&[&a, &b, &c]).await;
        let nodes = [&a, &b, &c];
        for node in nodes {
            for i in 0..node.clients.len() {
                node.cluster.join("sala", node.id(i)).unwrap();
            }
        }

        // Up: everything everywhere.
        let mut sent = send_round(&nodes, "up", 10).await;
        assert!(
            sent.iter().all(|(_, _, everywhere)| *everywhere),
            "{sent:?}"
        );
        let got = drain_all(&nodes).await;
        check_delivery(&nodes, &got, &sent);

        // Down: every send reported, local delivery kept, failures counted.
        redis.down().await;
        let failures = a.cluster.stats().publish_failures;
        let down = send_round(&nodes, "down", 10).await;
        assert!(
            down.iter().all(|(_, _, everywhere)| !everywhere),
            "{down:?}"
        );
        assert!(a.cluster.stats().publish_failures >= failures + 10);
        sent.extend(down);

        // Back: the buses reconnect and subscribe again by themselves; what
        // is sent meanwhile reaches everyone or is reported.
        redis.up().await;
        let mut round = 0;
        tokio::time::timeout(WAIT, async {
            loop {
                let again = send_round(&nodes, &format!("back{round}"), 1).await;
                round += 1;
                let done = again.iter().all(|(_, _, everywhere)| *everywhere);
                sent.extend(again);
                if done {
                    break;
                }
            }
        })
        .await
        .expect("delivery everywhere resumes after the restart");
        sent.extend(send_round(&nodes, "after", 10).await);
        let got = drain_all(&nodes).await;
        check_delivery(&nodes, &got, &sent[30..]);
        for bus in [&bus_a, &bus_b, &bus_c] {
            assert!(bus.stats().resubscribes >= 1, "{:?}", bus.stats());
        }
        redis.down().await;
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_killed_server_leaves_presence_within_the_ttl_and_the_others_go_on() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 3, async {
        let a = Node::start(bus(&redis).1, config(), 1).await;
        let b = Node::start(bus(&redis).1, config(), 1).await;
        let c = Node::start(bus(&redis).1, config(), 1).await;
        settle(&[&a, &b, &c]).await;
        for node in [&a, &b, &c] {
            node.cluster.join("sala", node.id(0)).unwrap();
        }
        eventually("three members everywhere", || {
            [&a, &b]
                .iter()
                .all(|n| n.cluster.members("sala").len() == 3)
        })
        .await;

        // Killed: its cluster goes at once with no goodbye (its tasks find
        // it gone and end; no heartbeat says its rooms emptied).
        let gone = c.cluster.member(c.id(0));
        let killed = tokio::time::Instant::now();
        drop(c);
        eventually("c's member leaves presence", || {
            [&a, &b]
                .iter()
                .all(|n| !n.cluster.members("sala").contains(&gone))
        })
        .await;
        // Generous (a busy machine): the TTL plus a heartbeat, many times.
        let ttl = config().presence_ttl + config().heartbeat;
        assert!(killed.elapsed() < ttl * 10, "{:?}", killed.elapsed());
        assert_eq!(a.cluster.nodes().len(), 2);

        // The others go on, each message once.
        let sent = send_round(&[&a, &b], "after-kill", 10).await;
        assert!(
            sent.iter().all(|(_, _, everywhere)| *everywhere),
            "{sent:?}"
        );
        let got = drain_all(&[&a, &b]).await;
        check_delivery(&[&a, &b], &got, &sent);
        redis.down().await;
    })
    .await
    .expect("not hung");
}

#[tokio::test]
async fn a_server_cut_from_redis_reports_its_sends_and_catches_up_when_back() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    tokio::time::timeout(WAIT * 3, async {
        let relay = Relay::start(redis.port).await;
        let mut cut_config = RedisConfig::default();
        cut_config.keepalive = Duration::from_millis(100);
        cut_config.command_timeout = Duration::from_millis(300);
        cut_config.connect_timeout = Duration::from_millis(300);
        cut_config.min_backoff = Duration::from_millis(20);
        cut_config.max_backoff = Duration::from_millis(200);
        let cut_bus = RedisBus::open(&relay.url(), cut_config).unwrap();
        let history = || {
            let mut config = common::recovery::with_history(1_000, WAIT * 6);
            config.presence_ttl = WAIT;
            config
        };
        let a = Node::start(bus(&redis).1, history(), 1).await;
        let b = Node::start(Arc::new(cut_bus.clone()), history(), 1).await;
        settle(&[&a, &b]).await;
        b.cluster.join("sala", b.id(0)).unwrap();
        let say = |n: usize| {
            a.cluster
                .to_room_with("sala", None, |stamp| format!("{stamp} m{n}"))
                .unwrap()
        };
        let mut member = common::recovery::Member::default();
        for n in 0..10 {
            say(n);
        }
        for _ in 0..10 {
            member.read(&b, 0).await;
        }

        // Cut: b's connections to Redis carry nothing, and say nothing.
        relay.black_hole();
        for n in 10..20 {
            say(n);
        }
        // b's own sends are reported, not lost quietly.
        let err = b
            .cluster
            .to_room_confirmed("sala", None, "from b, cut")
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert_eq!(
            next(b.client(0)).await,
            "from b, cut",
            "local delivery goes on"
        );

        // b notices, reconnects, and catches up from the history: m10..m19
        // once each, in order, then live ones.
        for n in 20..25 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            say(n);
        }
        for _ in 10..25 {
            member.read(&b, 0).await;
        }
        member.check_order();
        let texts: Vec<&str> = member.got.iter().map(|(_, t)| t.as_str()).collect();
        let want: Vec<String> = (0..25).map(|n| format!("m{n}")).collect();
        assert_eq!(texts, want);
        assert_eq!(
            maybe_next(b.client(0), Duration::from_millis(300)).await,
            None
        );
        let stats = b.cluster.stats();
        assert!(stats.caught_up >= 10, "{stats:?}");
        assert_eq!(stats.missed, 0, "{stats:?}");
        assert!(cut_bus.stats().resubscribes >= 1);
        cut_bus.close().await;
        redis.down().await;
    })
    .await
    .expect("not hung");
}
