//! Defaults that cannot give a wrong answer. Two enchufe
//! ends with default settings (client: multiplexed; server: automatic)
//! never pair a push with a request, and every profile mismatch, in both
//! directions, is a typed error at connect or at the first request, never
//! a message taken for another. Run with `cargo test --test profile`.
//!
//! The first four tests fail where both defaults are plain.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::{bounded, echo_server, eventually};
use enchufe::client::Config as ClientConfig;
use enchufe::framing::mux::{Hello, Mismatch};
use enchufe::server::Config;
use enchufe::{Client, Connection, Handler, MultiClient, Profile, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The README's quick start handler: greets on connect, answers
/// `done: <cmd>`, and pushes `news` while a request named `push` is in
/// flight; a request named `slow` is answered late.
struct Commands;

impl Handler for Commands {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        let _ = conn.push("welcome").await;
    }

    async fn handle(&self, cmd: String, conn: &Connection) -> Result<Option<String>, Infallible> {
        match cmd.as_str() {
            "push" => {
                let _ = conn.push("news").await;
            }
            "slow" => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => {}
        }
        Ok(Some(format!("done: {cmd}")))
    }
}

async fn serve(config: Config) -> ServerHandle {
    common::serve(Commands, config).await
}

fn plain_client() -> ClientConfig {
    ClientConfig::default().profile(Profile::Plain)
}

// --- pushes and replies never mixed up, with default settings on both ends -

#[tokio::test]
async fn a_push_while_a_request_is_in_flight_is_not_its_reply() {
    bounded(async {
        let server = serve(Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("push").await.unwrap();
        assert_eq!(reply, "done: push");
        // Every later reply is its own request's, not one behind.
        let reply: String = client.request("jump").await.unwrap();
        assert_eq!(reply, "done: jump");
        assert_eq!(client.recv::<String>().await.unwrap().unwrap(), "welcome");
        assert_eq!(client.recv::<String>().await.unwrap().unwrap(), "news");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_quick_start_greeting_is_not_the_reply_to_a_request_made_before_reading_it() {
    bounded(async {
        let server = serve(Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let reply: String = client.request("jump").await.unwrap();
        assert_eq!(reply, "done: jump");
        let greeting: Option<String> = client.recv().await.unwrap();
        assert_eq!(greeting.as_deref(), Some("welcome"));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_plain_client_at_a_multiplexed_server_is_told_not_handed_the_hello() {
    bounded(async {
        let server = serve(Config::default().profile(Profile::Multiplexed)).await;
        let client = Client::connect_with(server.local_addr(), plain_client())
            .await
            .unwrap();
        let err = client.request::<_, String>("jump").await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::GotHello), "{err:?}");
        assert!(err.to_string().contains("multiplexed"), "{err}");
        // The connection is closed: later calls fail too, none succeeds.
        assert!(client.request::<_, String>("again").await.is_err());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_multiclient_broadcast_leaves_no_replies_for_a_later_request() {
    bounded(async {
        let a = serve(Config::default()).await;
        let b = serve(Config::default()).await;
        let servers = MultiClient::new(ClientConfig::default());
        servers.add("a", a.local_addr()).await.unwrap();
        servers.add("b", b.local_addr()).await.unwrap();
        // The servers answer `slow` late, after the request below is sent:
        // in the plain profile that answer was taken as the request's reply.
        assert_eq!(servers.broadcast("slow").await.unwrap(), 2);
        let reply: String = servers.request(&"a", "jump").await.unwrap();
        assert_eq!(reply, "done: jump");
        let reply: String = servers.request(&"b", "jump").await.unwrap();
        assert_eq!(reply, "done: jump");
        drop(servers);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

// --- one port, both profiles ------------------------------------------------

#[tokio::test]
async fn the_default_server_serves_a_multiplexed_and_a_plain_client_side_by_side() {
    bounded(async {
        let server = serve(Config::default()).await;
        let mux = Client::connect(server.local_addr()).await.unwrap();
        let plain = Client::connect_with(server.local_addr(), plain_client())
            .await
            .unwrap();
        // Plain: read the greeting first, as that profile requires.
        assert_eq!(plain.recv::<String>().await.unwrap().unwrap(), "welcome");
        let (a, b) = tokio::join!(
            mux.request::<_, String>("uno"),
            plain.request::<_, String>("dos")
        );
        assert_eq!(
            (a.unwrap().as_str(), b.unwrap().as_str()),
            ("done: uno", "done: dos")
        );
        assert_eq!(mux.recv::<String>().await.unwrap().unwrap(), "welcome");
        assert_eq!(server.stats().profile_mismatches, 0);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_plain_client_that_waits_for_the_greeting_gets_it_after_the_detect_timeout() {
    bounded(async {
        let config = Config::default().detect_timeout(Some(Duration::from_millis(50)));
        let server = serve(config).await;
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        // Nothing sent: the server takes it for plain and greets.
        let mut greeting = [0u8; 11];
        raw.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"\0\0\0\x07welcome");
        raw.write_all(b"\0\0\0\x04jump").await.unwrap();
        let mut reply = [0u8; 14];
        raw.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\0\0\0\x0adone: jump");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn before_its_first_frame_a_connection_is_passed_by_broadcasts() {
    bounded(async {
        // No window: the server waits for the first frame, as hyper's
        // automatic server waits for the preface.
        let server = serve(Config::default().detect_timeout(None)).await;
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        eventually(|| server.connection_count() == 1).await;
        // Neither framing would be right yet: nothing is queued for it.
        assert_eq!(server.broadcast("news").unwrap(), 0);
        raw.write_all(b"\0\0\0\x04jump").await.unwrap();
        let mut frames = [0u8; 11 + 14];
        raw.read_exact(&mut frames).await.unwrap();
        assert_eq!(&frames, b"\0\0\0\x07welcome\0\0\0\x0adone: jump");
        assert_eq!(server.broadcast("news").unwrap(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hello_of_another_version_at_the_default_server_is_answered_with_ours() {
    bounded(async {
        let server = serve(Config::default()).await;
        let mut raw = TcpStream::connect(server.local_addr()).await.unwrap();
        raw.write_all(b"\0\0\0\x07ENCH\x02\0\0").await.unwrap();
        // Ours (version 1, acceptor flag), then the server hangs up.
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).await.unwrap();
        let ours = Hello::new("").answering().encode().unwrap();
        assert_eq!(rest[4..], ours[..]);
        server.shutdown().await;
    })
    .await;
}

// --- every mismatch, typed ----------------------------------------------------

#[tokio::test]
async fn the_default_client_at_a_pinned_plain_server_fails_at_connect_and_is_counted() {
    bounded(async {
        let server = echo_server(Config::default().profile(Profile::Plain)).await;
        let err = Client::connect(server.local_addr()).await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::ClosedOnHello), "{err:?}");
        assert!(err.to_string().contains("Profile::Plain"), "{err}");
        eventually(|| server.stats().profile_mismatches == 1).await;
        // A plain client is served as before.
        let client = Client::connect_with(server.local_addr(), plain_client())
            .await
            .unwrap();
        assert_eq!(
            client.request::<_, String>("hola").await.unwrap(),
            "echo:hola"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_default_client_at_a_plain_server_that_greets_fails_at_connect() {
    bounded(async {
        let server = serve(Config::default().profile(Profile::Plain)).await;
        let err = Client::connect(server.local_addr()).await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::NotAHello), "{err:?}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_default_client_at_an_exact_echo_server_knows_its_own_hello() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let err = Client::connect(addr).await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::Echoed), "{err:?}");
        echo.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_plain_client_reading_first_from_a_multiplexed_server_is_told_too() {
    bounded(async {
        let server = serve(Config::default().profile(Profile::Multiplexed)).await;
        let client = Client::connect_with(server.local_addr(), plain_client())
            .await
            .unwrap();
        let err = client.recv::<String>().await.unwrap_err();
        assert!(err.mismatch() == Some(Mismatch::GotHello), "{err:?}");
        server.shutdown().await;
    })
    .await;
}
