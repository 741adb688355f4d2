//! `MultiClient`: a server killed mid-stream fails only its own requests
//! and comes back, pushes tagged by key, servers added and removed at
//! runtime, and the routing policies' distributions.
//! Run with `cargo test --test multi_client`.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, eventually};
use enchufe::{Connection, Handler, MultiClient, ServerHandle};
use enchufe_client::{Config, Error, ErrorCode, Event, Reconnect, Routing, WhileDown};
use enchufe_server::Profile;
use tokio::sync::{broadcast, watch};

/// A test server named `name`: `hold` waits for the gate to open, then
/// answers; `push` pushes `news from <name>` first; `count` is counted;
/// anything else is answered `<name>:<msg>`.
#[derive(Clone)]
struct Named {
    name: &'static str,
    held: Arc<AtomicUsize>,
    counted: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

impl Handler for Named {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn handle(&self, req: String, conn: &Connection) -> Result<Option<String>, String> {
        match req.as_str() {
            "hold" => {
                self.held.fetch_add(1, Ordering::SeqCst);
                let mut gate = self.gate.clone();
                let _ = gate.wait_for(|open| *open).await;
                Ok(Some(format!("{}:released", self.name)))
            }
            "push" => {
                conn.push(format!("news from {}", self.name))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some("pushed".into()))
            }
            "count" => {
                self.counted.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }
            _ => Ok(Some(format!("{}:{req}", self.name))),
        }
    }
}

struct Running {
    server: ServerHandle,
    named: Named,
    open: watch::Sender<bool>,
}

impl Running {
    async fn start(name: &'static str, addr: SocketAddr) -> Running {
        let (open, gate) = watch::channel(false);
        let named = Named {
            name,
            held: Arc::default(),
            counted: Arc::default(),
            gate,
        };
        let server = common::bind_at(addr).await;
        let config = enchufe_server::Config::default()
            .profile(Profile::Multiplexed)
            .shutdown_grace(Duration::ZERO);
        let server = server.with_config(config).serve(named.clone());
        Running {
            server,
            named,
            open,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config() -> Config {
    let backoff = enchufe_client::Backoff::default()
        .initial(Duration::from_millis(1))
        .max_delay(Duration::from_millis(20))
        .forever();
    Config::default().profile(Profile::Multiplexed).reconnect(
        Reconnect::default()
            .backoff(backoff)
            .while_down(WhileDown::FailFast),
    )
}

/// Three servers `a`, `b`, `c` and a `MultiClient` over them.
async fn three(routing: Routing) -> (Vec<Running>, MultiClient<&'static str>) {
    let multi = MultiClient::with_routing(config(), routing);
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        let running = Running::start(name, any_port()).await;
        multi.add(name, running.addr()).await.unwrap();
        servers.push(running);
    }
    (servers, multi)
}

async fn wait_for_event(
    events: &mut broadcast::Receiver<(&'static str, Event)>,
    want: impl Fn(&'static str, &Event) -> bool,
) {
    loop {
        match events.recv().await {
            Ok((key, event)) if want(key, &event) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_fails_only_its_own_requests_then_comes_back() {
    bounded(async {
        const EACH: usize = 50;
        let (servers, multi) = three(Routing::RoundRobin).await;
        let mut events = multi.events();

        let mut requests = Vec::new();
        for key in ["a", "b", "c"] {
            for _ in 0..EACH {
                let multi = multi.clone();
                requests.push((
                    key,
                    tokio::spawn(async move { multi.request::<_, String>(&key, "hold").await }),
                ));
            }
        }
        for running in &servers {
            eventually(|| running.named.held.load(Ordering::SeqCst) == EACH).await;
        }

        // Kill b with every request to it in flight; then let a and c answer.
        let b_addr = servers[1].addr();
        servers[1].server.shutdown().await;
        servers[0].open.send_replace(true);
        servers[2].open.send_replace(true);

        for (key, request) in requests {
            let result = request.await.unwrap();
            if key == "b" {
                let err = result.unwrap_err();
                assert!(
                    matches!(
                        err,
                        Error::ClosedByPeer
                            | Error::Framing(_)
                            | Error::Remote {
                                code: ErrorCode::ShuttingDown,
                                ..
                            }
                    ),
                    "{err:?}"
                );
            } else {
                assert_eq!(result.unwrap(), format!("{key}:released"));
            }
        }
        wait_for_event(&mut events, |key, e| {
            key == "b" && matches!(e, Event::Disconnected { .. })
        })
        .await;
        // While b is down: fail fast for b, the others unaffected, and
        // request_any only goes to the others.
        let err = multi.request::<_, String>(&"b", "x").await.unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
        for _ in 0..10 {
            let (who, _) = multi.request_any::<_, String>("x").await.unwrap();
            assert_ne!(who, "b");
        }

        let b = Running::start("b", b_addr).await;
        wait_for_event(&mut events, |key, e| {
            key == "b" && matches!(e, Event::Reconnected { addr, .. } if *addr == b_addr)
        })
        .await;
        assert_eq!(multi.request::<_, String>(&"b", "x").await.unwrap(), "b:x");
        b.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn pushes_arrive_tagged_with_the_servers_key() {
    bounded(async {
        let (_servers, multi) = three(Routing::RoundRobin).await;
        for key in ["a", "b", "c"] {
            let _: String = multi.request(&key, "push").await.unwrap();
        }
        let mut got = HashSet::new();
        for _ in 0..3 {
            let (key, msg) = multi.recv::<String>().await.unwrap().unwrap();
            got.insert((key, msg));
        }
        let want: HashSet<_> = ["a", "b", "c"]
            .into_iter()
            .map(|k| (k, format!("news from {k}")))
            .collect();
        assert_eq!(got, want);
    })
    .await;
}

#[tokio::test]
async fn servers_are_added_and_removed_at_runtime() {
    bounded(async {
        let multi = MultiClient::new(config());
        let a = Running::start("a", any_port()).await;
        let b = Running::start("b", any_port()).await;
        let mut events = multi.events();

        let err = multi.request_any::<_, String>("x").await.unwrap_err();
        assert!(matches!(err, Error::NoServer), "{err:?}");

        multi.add("a", a.addr()).await.unwrap();
        assert!(matches!(
            events.recv().await.unwrap(),
            ("a", Event::Connected { addr }) if addr == a.addr()
        ));
        multi.add("b", b.addr()).await.unwrap();
        let err = multi.add("b", a.addr()).await.unwrap_err();
        assert!(matches!(err, Error::DuplicateServer { ref key } if key == "\"b\""));
        assert_eq!(multi.keys(), ["a", "b"]);

        assert!(multi.remove(&"a"));
        assert!(!multi.remove(&"a"));
        assert_eq!(multi.keys(), ["b"]);
        let err = multi.request::<_, String>(&"a", "x").await.unwrap_err();
        assert!(matches!(err, Error::UnknownServer { ref key } if key == "\"a\""));
        eventually(|| a.server.connection_count() == 0).await;
        for _ in 0..5 {
            let (who, reply) = multi.request_any::<_, String>("x").await.unwrap();
            assert_eq!((who, reply.as_str()), ("b", "b:x"));
        }

        // Back under a key of its own choosing, and a broadcast reaches both.
        multi.add("a2", a.addr()).await.unwrap();
        assert_eq!(multi.keys(), ["b", "a2"]);
        assert_eq!(multi.broadcast("count").await.unwrap(), 2);
        eventually(|| {
            a.named.counted.load(Ordering::SeqCst) == 1
                && b.named.counted.load(Ordering::SeqCst) == 1
        })
        .await;

        multi.close().await;
        assert!(multi.recv::<String>().await.unwrap().is_none());
        eventually(|| a.server.connection_count() == 0 && b.server.connection_count() == 0).await;
    })
    .await;
}

#[tokio::test]
async fn round_robin_gives_each_of_three_servers_exactly_a_third() {
    bounded(async {
        let (_servers, multi) = three(Routing::RoundRobin).await;
        let mut by_server: HashMap<&str, usize> = HashMap::new();
        for i in 0..300 {
            let (who, reply) = multi.request_any::<_, String>(i.to_string()).await.unwrap();
            assert_eq!(reply, format!("{who}:{i}"));
            *by_server.entry(who).or_default() += 1;
        }
        assert_eq!(
            by_server,
            HashMap::from([("a", 100), ("b", 100), ("c", 100)])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_in_flight_sends_nothing_to_a_server_holding_more_than_the_rest() {
    bounded(async {
        const HELD: usize = 3;
        // With at most 2 * HELD - 1 other requests in flight, the two fast
        // servers hold fewer than HELD between them at the least loaded.
        const TASKS: usize = 2 * HELD;
        let (servers, multi) = three(Routing::LeastInFlight).await;
        let held: Vec<_> = (0..HELD)
            .map(|_| {
                let multi = multi.clone();
                tokio::spawn(async move { multi.request::<_, String>(&"a", "hold").await })
            })
            .collect();
        eventually(|| servers[0].named.held.load(Ordering::SeqCst) == HELD).await;

        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let multi = multi.clone();
                tokio::spawn(async move {
                    let mut to_a = 0;
                    for i in 0..50 {
                        let (who, _) = multi.request_any::<_, String>(i.to_string()).await.unwrap();
                        to_a += usize::from(who == "a");
                    }
                    to_a
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 0, "the held server got a request");
        }
        servers[0].open.send_replace(true);
        for request in held {
            assert_eq!(request.await.unwrap().unwrap(), "a:released");
        }
        // Free again, it is a candidate like the others.
        let mut seen = HashSet::new();
        for i in 0..30 {
            seen.insert(
                multi
                    .request_any::<_, String>(i.to_string())
                    .await
                    .unwrap()
                    .0,
            );
        }
        assert_eq!(seen.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn key_hash_is_stable_balanced_and_removing_a_server_moves_only_its_keys() {
    bounded(async {
        let (_servers, multi) = three(Routing::KeyHash).await;
        let keys: Vec<String> = (0..3_000).map(|i| format!("user-{i}")).collect();
        let before: Vec<&str> = keys.iter().map(|k| multi.route(k).unwrap()).collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for server in &before {
            *counts.entry(server).or_default() += 1;
        }
        for (server, n) in &counts {
            assert!((800..=1_200).contains(n), "{server}: {n} of 3000");
        }
        // The requests go where `route` says, every time.
        for key in keys.iter().take(30) {
            for _ in 0..2 {
                let (who, reply) = multi.request_by::<_, String>(key, "x").await.unwrap();
                assert_eq!(who, multi.route(key).unwrap());
                assert_eq!(reply, format!("{who}:x"));
            }
        }
        // request_any hashes the body: equal bodies, one server.
        let (first, _) = multi.request_any::<_, String>("same").await.unwrap();
        for _ in 0..10 {
            assert_eq!(
                multi.request_any::<_, String>("same").await.unwrap().0,
                first
            );
        }

        multi.remove(&"c");
        for (key, was) in keys.iter().zip(&before) {
            let now = multi.route(key).unwrap();
            if *was == "c" {
                assert_ne!(now, "c");
            } else {
                assert_eq!(now, *was, "{key} moved though its server stayed");
            }
        }
    })
    .await;
}
