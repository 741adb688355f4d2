//! The multiplexed profile end to end, enchufe client against enchufe
//! server: many tasks on one connection, pushes never taken for replies,
//! deadlines, cancellation reaching the handler, panics as error replies,
//! broadcast to a thousand connections. Run with `cargo test --test multiplexed`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::lab::{Lab, REFUSAL};
use common::{bounded, eventually};
use enchufe::{Client, Connection, Handler, Server, ServerHandle};
use enchufe_client::{Error as ClientError, ErrorCode};
use enchufe_server::{BusyPolicy, Config, Profile};
use futures::StreamExt;

/// [`common::serve`] in the multiplexed profile.
async fn serve(lab: Lab, config: Config) -> ServerHandle {
    common::serve(lab, config.profile(Profile::Multiplexed)).await
}

async fn client(server: &ServerHandle) -> Client {
    let config = enchufe_client::Config::default().profile(Profile::Multiplexed);
    Client::connect_with(server.local_addr(), config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_times_a_thousand_requests_with_pushes_interleaved() {
    bounded(async {
        let server = serve(Lab::default(), Config::default()).await;
        let client = client(&server).await;
        const PUSHES: usize = 2_000;

        // Pushes flow the whole time; each must arrive as a push, in order.
        let collector = {
            // Unpin: no pinning before `next`.
            let mut pushes = client.pushes::<String>();
            tokio::spawn(async move {
                for expected in 0..PUSHES {
                    let push = pushes.next().await.expect("stream open").expect("push");
                    assert_eq!(push, format!("push {expected}"));
                }
            })
        };
        let pusher = {
            let server = server.clone();
            tokio::spawn(async move {
                let conn = server.connections().pop().expect("one connection");
                for n in 0..PUSHES {
                    conn.push(format!("push {n}")).await.expect("push");
                    if n % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let mut tasks = Vec::new();
        for t in 0..64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..1_000 {
                    let msg = format!("{t}:{r}");
                    let reply: String = client.request(msg.as_str()).await.expect("reply");
                    assert_eq!(reply, format!("echo:{msg}"), "a push passed for a reply?");
                }
            }));
        }
        for task in tasks {
            task.await.expect("requester");
        }
        pusher.await.unwrap();
        collector.await.unwrap();
        assert_eq!(server.connection_count(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_past_its_deadline_times_out_and_its_handler_is_cancelled() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), Config::default()).await;
        let client = client(&server).await;
        let err = client
            .request_timeout::<_, String>("hang", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
        // The cancel frame reached the server and dropped the handler's future.
        eventually(|| lab.dropped.load(Ordering::SeqCst) == 1).await;
        assert_eq!(
            client.request::<_, String>("next").await.unwrap(),
            "echo:next"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_a_request_cancels_its_handler() {
    bounded(async {
        let lab = Lab::default();
        let server = serve(lab.clone(), Config::default()).await;
        let client = client(&server).await;
        let pending = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("hang").await }
        });
        eventually(|| lab.started.load(Ordering::SeqCst) == 1).await;
        pending.abort();
        eventually(|| lab.dropped.load(Ordering::SeqCst) == 1).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn handler_errors_panics_and_busy_reach_the_caller_as_typed_remote_errors() {
    bounded(async {
        let lab = Lab::default();
        let config = Config::default().max_in_flight(1).busy(BusyPolicy::Refuse);
        let server = serve(lab.clone(), config).await;
        let client = client(&server).await;

        let err = client.request::<_, String>("fail").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote { code: ErrorCode::Handler, message } if message == REFUSAL),
            "{err:?}"
        );
        let err = client.request::<_, String>("panic").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote { code: ErrorCode::Panic, message } if message == "handler bug"),
            "{err:?}"
        );
        // One handler hangs; the next request is refused as busy.
        let hanging = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("hang").await }
        });
        eventually(|| lab.started.load(Ordering::SeqCst) == 1).await;
        let err = client.request::<_, String>("more").await.unwrap_err();
        assert!(matches!(err, ClientError::Remote { code: ErrorCode::Busy, .. }), "{err:?}");
        lab.release.notify_waiters();
        assert_eq!(hanging.await.unwrap().unwrap(), "released");
        // The connection survived all of it.
        assert_eq!(client.request::<_, String>("ok").await.unwrap(), "echo:ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_to_a_thousand_connections_delivers_each_message_exactly_once() {
    bounded(async {
        let server = serve(Lab::default(), Config::default()).await;
        let mut clients = Vec::with_capacity(1000);
        for _ in 0..1000 {
            // connect_with returns after the hello: the server has registered it.
            clients.push(client(&server).await);
        }
        assert_eq!(server.connection_count(), 1000);
        for n in 0..3 {
            assert_eq!(server.broadcast(format!("news {n}")).unwrap(), 1000);
        }
        server.shutdown().await;
        let checks = clients.into_iter().map(|client| async move {
            let mut got = Vec::new();
            while let Some(push) = client.recv::<String>().await.unwrap() {
                got.push(push);
            }
            assert_eq!(got, ["news 0", "news 1", "news 2"]);
        });
        futures::future::join_all(checks).await;
    })
    .await;
}

#[tokio::test]
async fn a_reply_over_the_servers_frame_limit_is_a_framework_refusal_not_a_handler_error() {
    bounded(async {
        // echo:<req> of a 150-byte request is 155 bytes, plus the 9-byte header.
        // The refusal's message is cut to fit the limit too: room enough here.
        let server = serve(Lab::default(), Config::default().max_frame_length(160)).await;
        let client = client(&server).await;
        let err = client
            .request::<_, String>("x".repeat(150))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote { code: ErrorCode::ReplyTooLarge, message }
                if message.contains("164 bytes") && message.contains("max_frame_length of 160")),
            "{err:?}"
        );
        // That request got its one answer; the connection goes on.
        assert_eq!(client.request::<_, String>("ok").await.unwrap(), "echo:ok");
        server.shutdown().await;

        // A limit too small for the whole explanation: cut, still answered.
        let server = serve(Lab::default(), Config::default().max_frame_length(70)).await;
        let small = self::client(&server).await;
        let err = small
            .request::<_, String>("x".repeat(60))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote { code: ErrorCode::ReplyTooLarge, message }
                if message.len() <= 70 - 10 && message.starts_with("a message of 74 bytes")),
            "{err:?}"
        );
        server.shutdown().await;
    })
    .await;
}

/// Answers nothing per message; once the client has finished sending,
/// pushes how many messages came.
struct CountThenAnswer;

impl Handler for CountThenAnswer {
    type Request = String;
    type Response = String;
    type Error = std::convert::Infallible;

    async fn handle(
        &self,
        _msg: String,
        conn: &Connection,
    ) -> Result<Option<String>, std::convert::Infallible> {
        conn.with_state(|n: &mut usize| *n += 1);
        Ok(None)
    }

    async fn on_eof(&self, conn: &Connection) -> Option<String> {
        Some(format!("{} mensajes", conn.with_state(|n: &mut usize| *n)))
    }
}

#[tokio::test]
async fn after_the_clients_half_close_on_eof_answers_with_a_push() {
    bounded(async {
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(Config::default().profile(Profile::Multiplexed))
            .serve(CountThenAnswer);
        let client = client(&server).await;
        for msg in ["a", "b", "c"] {
            client.send(msg).await.unwrap();
        }
        client.close().await.unwrap();
        assert_eq!(
            client.recv::<String>().await.unwrap().unwrap(),
            "3 mensajes"
        );
        assert_eq!(client.recv::<String>().await.unwrap(), None);
        server.shutdown().await;
    })
    .await;
}

/// Tells requests from one-way messages: a request is answered, a
/// notify only counted.
#[derive(Clone, Default)]
struct Kinds {
    notified: Arc<AtomicUsize>,
}

impl Handler for Kinds {
    type Request = String;
    type Response = String;
    type Error = std::convert::Infallible;

    async fn handle(
        &self,
        msg: String,
        _conn: &Connection,
    ) -> Result<Option<String>, std::convert::Infallible> {
        Ok(Some(format!("request:{msg}")))
    }

    async fn handle_notify(
        &self,
        _msg: String,
        _conn: &Connection,
    ) -> Result<(), std::convert::Infallible> {
        self.notified.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn the_handler_tells_a_request_from_a_one_way_message() {
    bounded(async {
        let kinds = Kinds::default();
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(Config::default().profile(Profile::Multiplexed))
            .serve(kinds.clone());
        let client = client(&server).await;
        client.send("uno").await.unwrap();
        client.notify("dos").await.unwrap();
        assert_eq!(
            client.request::<_, String>("tres").await.unwrap(),
            "request:tres"
        );
        eventually(|| kinds.notified.load(Ordering::SeqCst) == 2).await;
        server.shutdown().await;
    })
    .await;
}
