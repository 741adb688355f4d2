//! Peers: start order, one link per pair, requests both ways, a mesh that
//! delivers every broadcast exactly once, and recovery after a peer restarts.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, eventually};
use enchufe::peer::{Backoff, Config, Error, Peer, PeerEvent, WhileDown};
use enchufe::{handler_fn, Handler};

/// What one peer received: (sender id, message) -> times.
type Inbox = Arc<Mutex<HashMap<(String, String), u32>>>;

/// A handler that counts every message by sender and answers
/// `<me> got <msg>`; a message `fail` is answered with an error.
fn recorder(me: &str, inbox: Inbox) -> impl Handler<Request = String, Response = String> {
    let me = me.to_owned();
    handler_fn(move |msg: String, conn| {
        let me = me.clone();
        let inbox = inbox.clone();
        let from = conn.node_id().unwrap_or("?").to_owned();
        async move {
            if msg == "fail" {
                return Err(format!("{me} refuses"));
            }
            *inbox
                .lock()
                .unwrap()
                .entry((from, msg.clone()))
                .or_default() += 1;
            Ok(Some(format!("{me} got {msg}")))
        }
    })
}

/// Short keepalives and fast retries, so tests do not wait on defaults.
fn config(id: &str) -> Config {
    Config::new(id)
        .keepalive(Duration::from_millis(200))
        .idle_timeout(Duration::from_secs(2))
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(10))
                .max_delay(Duration::from_millis(200))
                .max_attempts(200),
        )
}

async fn peer_at(addr: &str, id: &str) -> (Peer, Inbox) {
    let inbox = Inbox::default();
    let peer = Peer::bind_with(addr, recorder(id, inbox.clone()), config(id))
        .await
        .expect("bind");
    (peer, inbox)
}

async fn peer(id: &str) -> (Peer, Inbox) {
    peer_at("127.0.0.1:0", id).await
}

/// A port that was free a moment ago, for a peer that starts later.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Both ends agree on exactly one link: one connection each, and it is the
/// same TCP connection seen from both sides.
async fn one_link(a: &Peer, b: &Peer) {
    eventually(|| {
        let (Some(ab), Some(ba)) = (a.link(b.id()), b.link(a.id())) else {
            return false;
        };
        a.server().connection_count() == 1
            && b.server().connection_count() == 1
            && ab.local_addr() == ba.peer_addr()
            && ab.peer_addr() == ba.local_addr()
    })
    .await;
}

#[tokio::test]
async fn requests_travel_both_ways_on_one_link() {
    bounded(async {
        let (a, _) = peer("a").await;
        let (b, _) = peer("b").await;
        assert_eq!(a.connect(b.local_addr()).await.unwrap(), "b");
        b.wait_for("a").await;
        one_link(&a, &b).await;

        let reply: String = a.request("b", "hola").await.unwrap();
        assert_eq!(reply, "b got hola");
        let reply: String = b.request("a", "hi").await.unwrap();
        assert_eq!(reply, "a got hi");

        // The dialer is the one with the outbound connection.
        assert!(a.link("b").unwrap().is_outbound());
        assert!(!b.link("a").unwrap().is_outbound());
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn dialing_a_peer_that_is_not_up_yet_waits_for_it() {
    bounded(async {
        // Start order 1: b dials a before a exists.
        let addr = free_port();
        let (b, _) = peer("b").await;
        let dial = {
            let b = b.clone();
            tokio::spawn(async move { b.connect(addr.to_string()).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (a, a_inbox) = peer_at(&addr.to_string(), "a").await;
        assert_eq!(dial.await.unwrap().unwrap(), "a");
        b.send("a", "late but here").await.unwrap();
        eventually(|| a_inbox.lock().unwrap().len() == 1).await;

        // Start order 2: a is up and dials b, which was up first.
        let (c, _) = peer("c").await;
        assert_eq!(c.connect(a.local_addr().to_string()).await.unwrap(), "a");
        let reply: String = a.request("c", "x").await.unwrap();
        assert_eq!(reply, "c got x");
        for p in [a, b, c] {
            p.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_dial_closed_during_the_hello_is_retried() {
    bounded(async {
        // Something at the address hangs up at once, three times, as a dying
        // peer's listener does; then it is gone and the real peer comes up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, _) = peer("a").await;
        let dial = {
            let a = a.clone();
            tokio::spawn(async move { a.connect(addr.to_string()).await })
        };
        for _ in 0..3 {
            drop(listener.accept().await.unwrap());
        }
        drop(listener);
        let (b, _) = peer_at(&addr.to_string(), "b").await;
        assert_eq!(dial.await.unwrap().unwrap(), "b");
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_peer_reports_no_peer_as_unreachable() {
    bounded(async {
        // A closing peer's dialer sees its link go down and its next dial
        // fail at the moment of the close: that is not the other peer
        // being unreachable. (The race showed as a stray `error gave up
        // dialing` line in tests/hosts/mesh.sh.)
        for _ in 0..200 {
            let (a, _) = peer("a").await;
            let (b, _) = peer("b").await;
            let mut events = a.events();
            a.add_peer(b.local_addr().to_string());
            one_link(&a, &b).await;
            a.close().await; // returns once every dialer has ended
            while let Ok(event) = events.try_recv() {
                assert!(!matches!(event, PeerEvent::Unreachable { .. }), "{event:?}");
            }
            b.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_static_pair_links_whatever_the_start_order() {
    bounded(async {
        for first_is_low in [true, false] {
            let (low_addr, high_addr) = (free_port(), free_port());
            let start = |addr: SocketAddr, id: &'static str, other: SocketAddr| async move {
                let (p, _) = peer_at(&addr.to_string(), id).await;
                p.add_peer(other.to_string());
                p
            };
            let (low, high) = if first_is_low {
                let low = start(low_addr, "a", high_addr).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                (low, start(high_addr, "b", low_addr).await)
            } else {
                let high = start(high_addr, "b", low_addr).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                (start(low_addr, "a", high_addr).await, high)
            };
            one_link(&low, &high).await;
            let reply: String = high.request("a", "ping").await.unwrap();
            assert_eq!(reply, "a got ping");
            low.close().await;
            high.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn peers_dialing_each_other_at_once_keep_exactly_one_link() {
    bounded(async {
        for round in 0..100 {
            // Alternate which side has the smaller id.
            let (x, y) = if round % 2 == 0 {
                ("a", "b")
            } else {
                ("b", "a")
            };
            let (p, p_inbox) = peer(x).await;
            let (q, q_inbox) = peer(y).await;
            let (pq, qp) = tokio::join!(
                p.connect(q.local_addr().to_string()),
                q.connect(p.local_addr().to_string()),
            );
            assert_eq!(pq.unwrap(), y, "round {round}");
            assert_eq!(qp.unwrap(), x, "round {round}");
            one_link(&p, &q).await;
            // The link both kept was dialed by the smaller id.
            let low = if x < y { &p } else { &q };
            let high_id = if x < y { y } else { x };
            assert!(low.link(high_id).unwrap().is_outbound(), "round {round}");

            // Messages sent now arrive once each.
            p.send(y, "one").await.unwrap();
            q.send(x, "two").await.unwrap();
            eventually(|| {
                q_inbox
                    .lock()
                    .unwrap()
                    .get(&(x.to_owned(), "one".to_owned()))
                    == Some(&1)
                    && p_inbox
                        .lock()
                        .unwrap()
                        .get(&(y.to_owned(), "two".to_owned()))
                        == Some(&1)
            })
            .await;
            p.close().await;
            q.close().await;
            assert_eq!(q_inbox.lock().unwrap().len(), 1, "round {round}");
            assert_eq!(p_inbox.lock().unwrap().len(), 1, "round {round}");
        }
    })
    .await;
}

const MESH: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Starts the five peers in the given order, each given the others'
/// addresses as a static list.
async fn mesh(order: [usize; 5]) -> Vec<(Peer, Inbox)> {
    let addrs: Vec<SocketAddr> = MESH.iter().map(|_| free_port()).collect();
    let mut started: Vec<Option<(Peer, Inbox)>> = MESH.iter().map(|_| None).collect();
    for i in order {
        let (p, inbox) = peer_at(&addrs[i].to_string(), MESH[i]).await;
        for (j, addr) in addrs.iter().enumerate() {
            if j != i {
                p.add_peer(addr.to_string());
            }
        }
        started[i] = Some((p, inbox));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peers: Vec<(Peer, Inbox)> = started.into_iter().map(Option::unwrap).collect();
    for (p, _) in &peers {
        eventually(|| p.peers().len() == MESH.len() - 1).await;
    }
    peers
}

/// Every peer broadcasts `per_peer` numbered messages tagged `tag`; waits
/// until each other peer got each one, and checks none came twice.
async fn broadcast_round(peers: &[(Peer, Inbox)], tag: &str, per_peer: usize) {
    for (p, _) in peers {
        for n in 0..per_peer {
            let sent = p.broadcast(format!("{tag}-{n}")).await.unwrap();
            assert_eq!(sent, MESH.len() - 1, "{} saw only {sent} peers", p.id());
        }
    }
    let expected = (MESH.len() - 1) * per_peer;
    for (p, inbox) in peers {
        eventually(|| {
            inbox
                .lock()
                .unwrap()
                .keys()
                .filter(|(_, msg)| msg.starts_with(&format!("{tag}-")))
                .count()
                == expected
        })
        .await;
        let inbox = inbox.lock().unwrap();
        for (key, times) in inbox.iter() {
            assert_eq!(*times, 1, "{} got {key:?} {times} times", p.id());
        }
    }
}

#[tokio::test]
async fn a_mesh_of_five_delivers_a_thousand_broadcasts_exactly_once() {
    bounded(async {
        let peers = mesh([3, 0, 4, 1, 2]).await;
        // 5 peers x 200 = 1,000 broadcasts, 4,000 deliveries.
        broadcast_round(&peers, "m", 200).await;
        // Duplicate links retired while the mesh formed are gone by now, or
        // soon (they wait for the other end's goodbye).
        for (p, _) in &peers {
            eventually(|| p.server().connection_count() == MESH.len() - 1).await;
        }
        for (p, _) in peers {
            p.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_peer_rejoins_the_mesh() {
    bounded(async {
        let mut peers = mesh([0, 1, 2, 3, 4]).await;
        broadcast_round(&peers, "before", 5).await;

        // c goes away; the others see it go, then it comes back on its port.
        let mut events = peers[0].0.events();
        let (c, _) = peers.remove(2);
        let c_addr = c.local_addr();
        c.close().await;
        loop {
            match events.recv().await.unwrap() {
                PeerEvent::Down { id } if id == "c" => break,
                _ => {}
            }
        }
        let err = peers[0].0.send("c", "nobody home").await.unwrap_err();
        assert!(
            matches!(err, Error::NotConnected(ref id) if id == "c"),
            "{err}"
        );

        let (c, c_inbox) = peer_at(&c_addr.to_string(), "c").await;
        // The restarted c knows nobody: the others' dialers find it.
        peers.insert(2, (c, c_inbox));
        for (p, _) in &peers {
            eventually(|| p.peers().len() == MESH.len() - 1).await;
        }
        loop {
            match events.recv().await.unwrap() {
                PeerEvent::Up { id, .. } if id == "c" => break,
                _ => {}
            }
        }
        broadcast_round(&peers, "after", 20).await;
        for (p, _) in peers {
            p.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_send_while_the_peer_restarts_waits_for_it_by_policy() {
    bounded(async {
        let inbox = Inbox::default();
        let patient = config("a").while_down(WhileDown::Wait(Duration::from_secs(30)));
        let a = Peer::bind_with("127.0.0.1:0", recorder("a", inbox), patient)
            .await
            .unwrap();
        let (b, _) = peer("b").await;
        let b_addr = b.local_addr();
        a.connect(b_addr.to_string()).await.unwrap();
        b.close().await;
        eventually(|| a.peers().is_empty()).await;

        // Sent while b is down: it waits for a's dialer to find b again.
        let send = {
            let a = a.clone();
            tokio::spawn(async move { a.send("b", "patience").await })
        };
        let (b, b_inbox) = peer_at(&b_addr.to_string(), "b").await;
        send.await.unwrap().unwrap();
        eventually(|| {
            b_inbox
                .lock()
                .unwrap()
                .get(&("a".to_owned(), "patience".to_owned()))
                == Some(&1)
        })
        .await;
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn errors_are_typed() {
    bounded(async {
        let (a, _) = peer("a").await;
        let (b, _) = peer("b").await;
        a.connect(b.local_addr().to_string()).await.unwrap();

        let err = a.send("zz", "hi").await.unwrap_err();
        assert!(matches!(err, Error::NotConnected(_)), "{err}");
        let err = a.request::<_, String>("b", "fail").await.unwrap_err();
        assert!(
            matches!(err, Error::Server(enchufe::server::Error::Remote { .. })),
            "{err}"
        );

        // Nobody listens there, and the backoff gives up.
        let nowhere = free_port();
        let quick = config("q").backoff(
            Backoff::default()
                .initial(Duration::from_millis(1))
                .max_attempts(3),
        );
        let q = Peer::bind_with("127.0.0.1:0", recorder("q", Inbox::default()), quick)
            .await
            .unwrap();
        let err = q.connect(nowhere.to_string()).await.unwrap_err();
        assert!(
            matches!(err, Error::Unreachable { attempts: 3, .. }),
            "{err}"
        );
        for p in [a, b, q] {
            p.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_silent_link_is_dropped_and_dialed_again() {
    bounded(async {
        let (a, _) = peer("a").await;
        let (b, b_inbox) = peer("b").await;
        // a reaches b through a relay that can be frozen: bytes stop
        // flowing both ways but no FIN or RST is sent, as with a cut cable.
        let relay = Relay::start(b.local_addr()).await;
        let mut events = a.events();
        a.connect(relay.addr.to_string()).await.unwrap();
        a.send("b", "before").await.unwrap();
        eventually(|| b_inbox.lock().unwrap().len() == 1).await;

        relay.freeze(true);
        // No pings get through: a's idle timeout ends the link, and its
        // dialer starts again (through the frozen relay, so it waits).
        loop {
            if let PeerEvent::Down { id } = events.recv().await.unwrap() {
                assert_eq!(id, "b");
                break;
            }
        }
        relay.freeze(false);
        loop {
            if let PeerEvent::Up { id, .. } = events.recv().await.unwrap() {
                assert_eq!(id, "b");
                break;
            }
        }
        a.send("b", "after").await.unwrap();
        eventually(|| b_inbox.lock().unwrap().len() == 2).await;
        assert_eq!(
            b_inbox
                .lock()
                .unwrap()
                .get(&("a".to_owned(), "after".to_owned())),
            Some(&1)
        );
        a.close().await;
        b.close().await;
    })
    .await;
}

/// A TCP relay to `target` whose forwarding can be paused without closing
/// anything. While frozen it also holds new connections unanswered.
struct Relay {
    addr: SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    if watch.clone().wait_for(|frozen| !frozen).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, watch.clone()), pump(ro, wi, watch));
                });
            }
        });
        Relay { addr, frozen }
    }

    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

async fn until_frozen(watch: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = watch.wait_for(|frozen| *frozen).await;
}

/// Copies bytes while not frozen. A connection that saw a freeze is dead for
/// good, as a real link whose peers gave up on it: it copies no more.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watch: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = until_frozen(&mut watch) => {
                // Hold both sockets open, silently, until the test ends.
                std::future::pending::<()>().await;
                return;
            }
        };
        let frozen = *watch.borrow();
        if frozen || to.write_all(&buf[..n]).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
