//! TLS (feature `tls`): the same servers, clients and peers over rustls,
//! with certificates made here by rcgen; and every way it can go wrong
//! failing fast with a typed error.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bounded, echo_server, eventually};
use enchufe::client::{self, Profile};
use enchufe::peer::{self, Peer};
use enchufe::tls::{Acceptor, Connector};
use enchufe::{handler_fn, Client, MultiClient, Server, ServerHandle};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a server certificate it signed, as PEM.
struct Certs {
    ca: String,
    cert: String,
    key: String,
}

/// A fresh CA, and a certificate from it for `names` (DNS names or IPs).
fn certs(names: &[&str]) -> Certs {
    // Each CA has a name of its own: a client looks for its issuer by name.
    static CAS: AtomicUsize = AtomicUsize::new(0);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let n = CAS.fetch_add(1, Ordering::Relaxed);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("enchufe test CA {n}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Certs {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Certs {
    fn localhost() -> Certs {
        certs(&["localhost", "127.0.0.1"])
    }
    fn acceptor(&self) -> Acceptor {
        Acceptor::from_pem(self.cert.as_bytes(), self.key.as_bytes()).unwrap()
    }
    fn connector(&self) -> Connector {
        Connector::from_ca_pem(self.ca.as_bytes()).unwrap()
    }
}

async fn tls_echo(certs: &Certs, profile: Profile) -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(enchufe::server::Config::default().profile(profile))
        .tls(certs.acceptor())
        .serve(handler_fn(|msg: String, _conn| async move {
            Ok::<_, Infallible>(Some(format!("echo:{msg}")))
        }))
}

fn tls_client(certs: &Certs, profile: Profile) -> client::Config {
    client::Config::default()
        .profile(profile)
        .tls(certs.connector())
}

#[tokio::test]
async fn round_trip_in_both_profiles() {
    bounded(async {
        let certs = Certs::localhost();
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let server = tls_echo(&certs, profile).await;
            let client = Client::connect_with(server.local_addr(), tls_client(&certs, profile))
                .await
                .unwrap();
            let reply: String = client.request("hola").await.unwrap();
            assert_eq!(reply, "echo:hola");
            // A frame bigger than one TLS record (16 KiB) comes back whole.
            let big = "ñ".repeat(40_000);
            let reply: String = client.request(big.as_str()).await.unwrap();
            assert_eq!(reply, format!("echo:{big}"));
            // The name checked is the host of the address: "localhost" too.
            let port = server.local_addr().port();
            let by_name =
                Client::connect_with(format!("localhost:{port}"), tls_client(&certs, profile))
                    .await
                    .unwrap();
            let reply: String = by_name.request("x").await.unwrap();
            assert_eq!(reply, "echo:x");
            client.close().await.unwrap();
            by_name.close().await.unwrap();
            assert_eq!(server.stats().tls_failures, 0);
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_peer_pair_links_over_tls() {
    bounded(async {
        let certs = Certs::localhost();
        let named = |name: &'static str| {
            handler_fn(move |msg: String, _conn| async move {
                Ok::<_, Infallible>(Some(format!("{name} got {msg}")))
            })
        };
        let config = |id| peer::Config::new(id).tls(certs.acceptor(), certs.connector());
        let a = Peer::bind_with("127.0.0.1:0", named("a"), config("a"))
            .await
            .unwrap();
        let b = Peer::bind_with("127.0.0.1:0", named("b"), config("b"))
            .await
            .unwrap();
        assert_eq!(a.connect(b.local_addr().to_string()).await.unwrap(), "b");
        let reply: String = a.request("b", "hola").await.unwrap();
        assert_eq!(reply, "b got hola");
        b.wait_for("a").await;
        let reply: String = b.request("a", "hi").await.unwrap();
        assert_eq!(reply, "a got hi");
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_with_the_wrong_ca_is_a_tls_error() {
    bounded(async {
        let (ours, theirs) = (Certs::localhost(), Certs::localhost());
        let handler =
            || handler_fn(|msg: String, _conn| async move { Ok::<_, Infallible>(Some(msg)) });
        let a_config = peer::Config::new("a")
            .tls(ours.acceptor(), ours.connector())
            .backoff(enchufe::peer::Backoff::default().max_attempts(1));
        let a = Peer::bind_with("127.0.0.1:0", handler(), a_config)
            .await
            .unwrap();
        let b_config = peer::Config::new("b").tls(theirs.acceptor(), theirs.connector());
        let b = Peer::bind_with("127.0.0.1:0", handler(), b_config)
            .await
            .unwrap();
        let err = a.connect(b.local_addr().to_string()).await.unwrap_err();
        assert!(err.is_tls(), "{err:?}");
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_multi_client_over_two_tls_servers() {
    bounded(async {
        let certs = Certs::localhost();
        let (one, two) = (
            tls_echo(&certs, Profile::Multiplexed).await,
            tls_echo(&certs, Profile::Multiplexed).await,
        );
        let multi = MultiClient::new(tls_client(&certs, Profile::Multiplexed));
        multi.add("one", one.local_addr()).await.unwrap();
        multi.add("two", two.local_addr()).await.unwrap();
        let a: String = multi.request(&"one", "a").await.unwrap();
        let b: String = multi.request(&"two", "b").await.unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("echo:a", "echo:b"));
        drop(multi);
        one.shutdown().await;
        two.shutdown().await;
    })
    .await;
}

/// Connects with `config` and returns the TLS error, checking it is one.
async fn tls_error(addr: impl std::fmt::Display, config: client::Config) -> enchufe::tls::Error {
    match Client::connect_with(addr.to_string(), config).await {
        Err(client::Error::Tls {
            addr: shown,
            source,
        }) => {
            assert_eq!(shown, addr.to_string());
            source
        }
        Err(other) => panic!("expected Error::Tls, got {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test]
async fn an_untrusted_ca_is_a_typed_error_and_counted() {
    bounded(async {
        let (certs, stranger) = (Certs::localhost(), Certs::localhost());
        let server = tls_echo(&certs, Profile::Plain).await;
        let err = tls_error(server.local_addr(), tls_client(&stranger, Profile::Plain)).await;
        assert!(err.is_unknown_issuer() && err.is_certificate(), "{err:?}");
        // The server was told by the client's alert, and counted it.
        eventually(|| server.stats().tls_failures == 1).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_wrong_server_name_is_a_typed_error() {
    bounded(async {
        let certs = Certs::localhost();
        let server = tls_echo(&certs, Profile::Plain).await;
        let connector = certs.connector().server_name("elsewhere.example").unwrap();
        let config = client::Config::default().tls(connector);
        let err = tls_error(server.local_addr(), config).await;
        assert!(err.is_wrong_name(), "{err:?}");
        // A certificate for another host, dialed by the right name.
        let other = certs_for_elsewhere();
        let server2 = tls_echo(&other, Profile::Plain).await;
        let err = tls_error(server2.local_addr(), tls_client(&other, Profile::Plain)).await;
        assert!(err.is_wrong_name(), "{err:?}");
        server.shutdown().await;
        server2.shutdown().await;
    })
    .await;
}

fn certs_for_elsewhere() -> Certs {
    certs(&["elsewhere.example"])
}

#[tokio::test]
async fn a_plain_client_at_a_tls_server_fails_and_the_server_goes_on() {
    bounded(async {
        let certs = Certs::localhost();
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let server = tls_echo(&certs, profile).await;
            let plain = client::Config::default()
                .profile(profile)
                .connect_timeout(Duration::from_secs(5));
            let started = Instant::now();
            let failed = match Client::connect_with(server.local_addr(), plain).await {
                Ok(client) => client.request::<_, String>("hola").await.unwrap_err(),
                Err(e) => e,
            };
            // The server answers the non-TLS bytes with a TLS alert, which
            // the plain client reads as a header that is not a frame.
            assert!(failed.is_not_frames(), "{failed:?}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "took {:?}",
                started.elapsed()
            );
            eventually(|| server.stats().tls_failures == 1).await;
            // Still serving TLS clients.
            let client = Client::connect_with(server.local_addr(), tls_client(&certs, profile))
                .await
                .unwrap();
            let reply: String = client.request("still").await.unwrap();
            assert_eq!(reply, "echo:still");
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_tls_client_at_a_plain_server_fails_within_the_timeout() {
    bounded(async {
        let certs = Certs::localhost();
        let timeout = Duration::from_secs(5);
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let server = echo_server(enchufe::server::Config::default().profile(profile)).await;
            let config = tls_client(&certs, profile).connect_timeout(timeout);
            let started = Instant::now();
            let err = tls_error(server.local_addr(), config).await;
            // The plain server takes the ClientHello for a foreign protocol
            // and hangs up (plain), or sends its hello, which is no TLS
            // record (multiplexed): either way at once, not at the timeout.
            assert!(!err.is_timeout(), "{err:?}");
            assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
            server.shutdown().await;
        }
        // A server that accepts and says nothing: the deadline ends it.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let _conn = silent.accept().await;
            std::future::pending::<()>().await;
        });
        let config = tls_client(&certs, Profile::Plain).connect_timeout(Duration::from_millis(300));
        let err = tls_error(addr, config).await;
        assert!(err.is_timeout(), "{err:?}");
        hold.abort();
    })
    .await;
}

/// `Server::tls_or_plain`: one port, TLS for the clients that start a TLS
/// handshake and plain frames for the others (a TLS client, a plain one, the
/// course's raw frame, and a plain client waiting for a greeting).
#[tokio::test]
async fn one_port_serves_tls_and_plain_clients() {
    bounded(async {
        let certs = Certs::localhost();
        let config =
            enchufe::server::Config::default().detect_timeout(Some(Duration::from_millis(200)));
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(config)
            .tls_or_plain(certs.acceptor())
            .serve(handler_fn(|msg: String, _conn| async move {
                Ok::<_, Infallible>(Some(format!("echo:{msg}")))
            }));
        let addr = server.local_addr();
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let tls = Client::connect_with(addr, tls_client(&certs, profile))
                .await
                .unwrap();
            let reply: String = tls.request("cifrado").await.unwrap();
            assert_eq!(reply, "echo:cifrado");
            let plain = Client::connect_with(addr, client::Config::default().profile(profile))
                .await
                .unwrap();
            let reply: String = plain.request("claro").await.unwrap();
            assert_eq!(reply, "echo:claro");
        }
        // The course's client: a raw frame, at once or after a silence
        // longer than the detection (a client waiting for a greeting).
        for wait in [Duration::ZERO, Duration::from_millis(400)] {
            let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(wait).await;
            raw.write_all(b"\0\0\0\x02hi").await.unwrap();
            let mut back = [0u8; 11];
            raw.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"\0\0\0\x07echo:hi");
        }
        assert_eq!(server.stats().tls_failures, 0);
        server.shutdown().await;
    })
    .await;
}
