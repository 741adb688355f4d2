//! The tower bridge (feature `tower`): tower middleware over a server's
//! handler (`server::tower::ServiceHandler`), and over a client
//! (`Client::service`, `MultiClient::service`).

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, echo_server, serve};
use enchufe::client::{self, ErrorCode};
use enchufe::server::tower::{Request, ServiceHandler};
use enchufe::{Client, MultiClient, ServerHandle};
use enchufe_server::{BoxError, Config, Profile};
use tokio::sync::{mpsc, Notify};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// A tower timeout far shorter than any test's limit, far longer than a
/// loopback round trip.
const SHORT: Duration = Duration::from_millis(200);

fn mux_server() -> Config {
    Config::default().profile(Profile::Multiplexed)
}

async fn mux_client(server: &ServerHandle) -> Client {
    let config = client::Config::default().profile(Profile::Multiplexed);
    Client::connect_with(server.local_addr(), config)
        .await
        .unwrap()
}

fn remote_code(result: client::Result<String>) -> ErrorCode {
    match result {
        Err(err) => err
            .code()
            .unwrap_or_else(|| panic!("expected an error reply, got {err:?}")),
        Ok(reply) => panic!("expected an error reply, got {reply:?}"),
    }
}

#[tokio::test]
async fn a_tower_timeout_on_a_slow_service_is_a_timeout_error_reply() {
    bounded(async {
        // "slow" never finishes; anything else is answered at once.
        let service =
            ServiceBuilder::new()
                .timeout(SHORT)
                .service_fn(|req: Request<String>| async move {
                    if req.message == "slow" {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Infallible>(Some(format!("done:{}", req.message)))
                });
        let server = serve(ServiceHandler::new(service), mux_server()).await;
        let client = mux_client(&server).await;

        let slow = client.request::<_, String>("slow").await.unwrap_err();
        // The predicate sees a timeout on the server as a timeout.
        assert!(slow.is_timeout(), "{slow:?}");
        assert!(!slow.is_busy(), "{slow:?}");
        assert_eq!(remote_code(Err(slow)), ErrorCode::Timeout);
        // Only that request failed: the connection goes on.
        let fast: String = client.request("fast").await.unwrap();
        assert_eq!(fast, "done:fast");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn load_shed_over_a_concurrency_limit_answers_busy_while_the_service_is_full() {
    bounded(async {
        let (entered_tx, mut entered) = mpsc::channel::<()>(4);
        let release = Arc::new(Notify::new());
        let release_in = release.clone();
        // "hold" takes the only slot until the test releases it.
        let service = ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1)
            .service_fn(move |req: Request<String>| {
                let (entered_tx, release) = (entered_tx.clone(), release_in.clone());
                async move {
                    if req.message == "hold" {
                        entered_tx.send(()).await.map_err(BoxError::from)?;
                        release.notified().await;
                    }
                    Ok::<_, BoxError>(Some(format!("done:{}", req.message)))
                }
            });
        let server = serve(ServiceHandler::new(service), mux_server()).await;
        let client = mux_client(&server).await;

        let held = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("hold").await }
        });
        entered
            .recv()
            .await
            .expect("the held request entered the service");
        // The only slot is taken: shed, with the code that says "retry later".
        let shed = client.request::<_, String>("more").await.unwrap_err();
        assert!(shed.is_busy(), "{shed:?}");
        assert!(!shed.is_timeout(), "{shed:?}");
        assert_eq!(remote_code(Err(shed)), ErrorCode::Busy);

        release.notify_one();
        assert_eq!(held.await.unwrap().unwrap(), "done:hold");
        // The slot is free again: served.
        let after: String = client.request("after").await.unwrap();
        assert_eq!(after, "done:after");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_plain_server_serves_a_service_that_only_takes_the_message() {
    bounded(async {
        let service = ServiceBuilder::new()
            .map_request(|req: Request<String>| req.message)
            .service_fn(
                |msg: String| async move { Ok::<_, Infallible>(Some(msg.len().to_string())) },
            );
        let server = serve(ServiceHandler::new(service), Config::default()).await;
        let client = Client::connect(server.local_addr()).await.unwrap();
        let len: String = client.request("ñandú").await.unwrap();
        assert_eq!(len, "7");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_service_error_closes_a_plain_connection() {
    bounded(async {
        let service = service_fn(|_: Request<String>| async move {
            Err::<Option<String>, _>(BoxError::from("refused by the service"))
        });
        let server = serve(ServiceHandler::new(service), Config::default()).await;
        let plain = client::Config::default().profile(Profile::Plain);
        let client = Client::connect_with(server.local_addr(), plain)
            .await
            .unwrap();
        let reply = client.request::<_, String>("x").await;
        assert!(
            matches!(reply, Err(ref e) if e.is_closed()),
            "expected the connection closed, got {reply:?}"
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_service_under_a_timeout_layer_answers_and_times_out() {
    bounded(async {
        // "slow" is never answered.
        let server = serve(
            enchufe::handler_fn(|req: String, _conn| async move {
                if req == "slow" {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Some(req.to_uppercase()))
            }),
            mux_server(),
        )
        .await;
        let client = mux_client(&server).await;
        let mut service = ServiceBuilder::new()
            .timeout(SHORT)
            .service(client.service::<String, String>());

        let reply = service.ready().await.unwrap().call("hola".into()).await;
        assert_eq!(reply.unwrap(), "HOLA");
        let slow = service.ready().await.unwrap().call("slow".into()).await;
        let error = slow.expect_err("the timeout layer gave up");
        assert!(
            error.is::<tower::timeout::error::Elapsed>(),
            "expected Elapsed, got {error}"
        );

        // A closed client is not ready, before anything is sent.
        client.close().await.unwrap();
        let mut raw = client.service::<String, String>();
        assert!(matches!(raw.ready().await, Err(client::Error::Closed)));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_multi_client_service_sends_to_a_connected_server() {
    bounded(async {
        let server = echo_server(enchufe_server::Config::default()).await;
        let multi = MultiClient::new(client::Config::default());
        multi.add("a", server.local_addr()).await.unwrap();
        let (key, reply) = multi
            .service::<&str, String>()
            .oneshot("hola")
            .await
            .unwrap();
        assert_eq!((key, reply.as_str()), ("a", "echo:hola"));
        multi.close().await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_behind_a_buffer_is_shared_by_every_request() {
    bounded(async {
        // One request per hour: the second waits, and a timeout above the
        // buffer gives up on it. (RateLimit is not Clone: the Buffer is
        // what every request's clone shares.)
        let service = ServiceBuilder::new()
            .timeout(SHORT)
            .buffer(8)
            .rate_limit(1, Duration::from_secs(3600))
            .service_fn(|req: Request<String>| async move {
                Ok::<_, Infallible>(Some(format!("done:{}", req.message)))
            });
        let server = serve(ServiceHandler::new(service), mux_server()).await;
        let client = mux_client(&server).await;
        let first: String = client.request("first").await.unwrap();
        assert_eq!(first, "done:first");
        let second = client.request::<_, String>("second").await;
        assert_eq!(remote_code(second), ErrorCode::Timeout);
        server.shutdown().await;
    })
    .await;
}
