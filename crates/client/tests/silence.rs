//! `client::Config::silence_timeout` and `client::Config::connector`, over
//! in-memory connections on paused time: a link on which a reply has been
//! awaited and nothing arrives is dropped with `Error::Silent`; an idle link
//! is not; a reconnecting client redials through its connector.
//! Run with `cargo test -p enchufe-client --test silence`.

use std::net::SocketAddr;
use std::time::Duration;

use enchufe_client::{Client, Config, Error, Event, Reconnect};
use enchufe_engine::net::{BoxFuture, Connect, Connected};
use enchufe_framing::mux::Profile;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, Mutex};

const SILENCE: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(60);

/// The plain profile: the other ends here are plain echoes.
fn config() -> Config {
    Config::default()
        .profile(Profile::Plain)
        .request_timeout(Duration::from_secs(30))
        .silence_timeout(SILENCE)
}

/// Answers every frame with itself, forever.
async fn echo(mut io: DuplexStream) {
    loop {
        let mut len = [0; 4];
        if io.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        if io.read_exact(&mut body).await.is_err() {
            return;
        }
        if io.write_all(&len).await.is_err() || io.write_all(&body).await.is_err() {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_link_silent_while_a_reply_is_awaited_is_dropped() {
    let (ours, _theirs) = tokio::io::duplex(1024); // reads nothing, answers nothing
    let client = Client::from_io(ours, config());
    let err = tokio::time::timeout(LIMIT, client.request::<_, String>("hello"))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(err, Error::Silent), "{err}");
    assert!(err.is_timeout() && err.is_closed());
    assert!(!client.is_connected());
}

#[tokio::test(start_paused = true)]
async fn an_idle_link_is_not_dropped() {
    let (ours, theirs) = tokio::io::duplex(1024);
    tokio::spawn(echo(theirs));
    let client = Client::from_io(ours, config());
    // Many silence timeouts pass with nothing awaited.
    tokio::time::sleep(SILENCE * 20).await;
    let echoed: String = tokio::time::timeout(LIMIT, client.request("still here"))
        .await
        .expect("bounded")
        .expect("the idle link was kept");
    assert_eq!(echoed, "still here");
}

/// Hands out the client's end of each connection the test opens.
#[derive(Debug)]
struct InMemory(Mutex<mpsc::Receiver<DuplexStream>>);

impl Connect for InMemory {
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, std::io::Result<Connected>> {
        Box::pin(async move {
            assert_eq!(addr, "memory:1");
            let io = self.0.lock().await.recv().await;
            let io = io.ok_or(std::io::ErrorKind::ConnectionRefused)?;
            let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
            Ok(Connected::new(io, Some(peer), None))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_reconnecting_client_redials_through_its_connector_after_a_silent_link() {
    let (offer, offered) = mpsc::channel(2);
    let connector = InMemory(Mutex::new(offered));
    // The first connection goes silent; the second answers.
    let (first, _silent) = tokio::io::duplex(1024);
    let (second, theirs) = tokio::io::duplex(1024);
    tokio::spawn(echo(theirs));
    offer.send(first).await.unwrap();
    offer.send(second).await.unwrap();
    let config = config()
        .reconnect(Reconnect::default())
        .connector(connector);
    let client = Client::connect_with("memory:1", config)
        .await
        .expect("dialed");
    let mut events = client.events();
    let err = tokio::time::timeout(LIMIT, client.request::<_, String>("lost"))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(err, Error::Silent), "{err}");
    let events = async {
        let down = events.recv().await.unwrap();
        assert!(matches!(&down, Event::Disconnected { error } if matches!(**error, Error::Silent)));
        let up = events.recv().await.unwrap();
        assert!(
            matches!(up, Event::Reconnected { addr, .. } if addr.port() == 1),
            "{up:?}"
        );
    };
    tokio::time::timeout(LIMIT, events).await.expect("bounded");
    let echoed: String = tokio::time::timeout(LIMIT, client.request("found"))
        .await
        .expect("bounded")
        .expect("answered on the redialed link");
    assert_eq!(echoed, "found");
}

#[tokio::test(start_paused = true)]
async fn a_slow_reply_within_the_silence_timeout_keeps_the_link() {
    let (ours, mut theirs) = tokio::io::duplex(1024);
    tokio::spawn(async move {
        // Answers each frame 0.9 × SILENCE after it arrives.
        let mut frame = [0; 4 + 4];
        while theirs.read_exact(&mut frame).await.is_ok() {
            tokio::time::sleep(SILENCE * 9 / 10).await;
            if theirs.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let client = Client::from_io(ours, config());
    // Sent half a timeout into a quiet stretch: the silence check fires
    // while this request waits, and must leave it alone (it has not waited
    // a whole SILENCE yet).
    tokio::time::sleep(SILENCE * 20 + SILENCE / 2).await;
    for word in ["slow", "poke", "late"] {
        let echoed: String = tokio::time::timeout(LIMIT, client.request(word))
            .await
            .expect("bounded")
            .expect("a slow reply is not silence");
        assert_eq!(echoed, word);
    }
}
