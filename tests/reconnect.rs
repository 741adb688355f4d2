//! A client that keeps itself connected (`Config::reconnect`): in-flight
//! requests fail typed and are not retried, calls made while down wait or
//! fail fast, the server coming back on its port is found again, the backoff
//! gives up, events in order, pushes across connections, and nothing left
//! running once the client is closed or dropped.
//! Run with `cargo test --test reconnect`.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::mux_peer::MuxPeer;
use common::{bounded, echo_server, echo_server_at, eventually};
use enchufe::framing::mux::Kind;
use enchufe::{handler_fn, Client, ServerHandle};
use enchufe_client::{Backoff, Config, Error, Event, Reconnect, WhileDown};
use enchufe_server::Profile;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Redials quickly so tests do not wait on the default backoff.
fn quick() -> Backoff {
    Backoff::default()
        .initial(Duration::from_millis(1))
        .max_delay(Duration::from_millis(20))
        .forever()
}

fn reconnecting(profile: Profile, while_down: WhileDown) -> Config {
    Config::default()
        .profile(profile)
        .reconnect(Reconnect::default().backoff(quick()).while_down(while_down))
}

fn mux_server_config() -> enchufe_server::Config {
    enchufe_server::Config::default().profile(Profile::Multiplexed)
}

/// Waits for the next event, whatever got lost before it.
async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    loop {
        match events.recv().await {
            Ok(event) => return event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
        }
    }
}

#[tokio::test]
async fn a_request_in_flight_when_the_connection_drops_fails_typed_and_is_not_retried() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        );
        let (client, mut first) = tokio::join!(
            async { Client::connect_with(addr, config).await.unwrap() },
            MuxPeer::accept(&listener)
        );
        let mut events = client.events();

        let pending = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("first").await }
        });
        let (_, body) = first.next_request().await;
        assert_eq!(body, "first");
        drop(first); // the server dies with the request unanswered

        let err = pending.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ClosedByPeer), "{err:?}");

        // The client redials; the first frame on the new connection is the
        // next request, not the old one again.
        let mut second = MuxPeer::accept(&listener).await;
        let reply = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("second").await }
        });
        let (id, body) = second.next_request().await;
        assert_eq!(body, "second");
        second.send(Kind::Response, id, "ok").await;
        assert_eq!(reply.await.unwrap().unwrap(), "ok");

        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { error } if matches!(*error, Error::ClosedByPeer)
        ));
        assert!(matches!(
            next_event(&mut events).await,
            Event::Reconnected { addr: a, attempts } if a == addr && attempts >= 1
        ));
    })
    .await;
}

#[tokio::test]
async fn fail_fast_fails_at_once_while_the_server_is_down() {
    bounded(async {
        let server = echo_server(mux_server_config()).await;
        // Long waits between attempts: the client stays down.
        let backoff = Backoff::default().initial(Duration::from_secs(3600));
        let config = Config::default().profile(Profile::Multiplexed).reconnect(
            Reconnect::default()
                .backoff(backoff)
                .while_down(WhileDown::FailFast),
        );
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let mut events = client.events();
        assert_eq!(client.request::<_, String>("a").await.unwrap(), "echo:a");

        server.shutdown().await;
        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { .. }
        ));
        assert!(!client.is_connected());
        assert!(!client.is_closed(), "down, not stopped");
        let err = client.request::<_, String>("b").await.unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
        let err = client.send("c").await.unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
    })
    .await;
}

/// The plain profile: a request made while the server is down waits for it
/// to come back on the same port, then succeeds.
#[tokio::test]
async fn a_waiting_request_succeeds_once_the_server_is_back_on_its_port() {
    bounded(async {
        let server = echo_server(enchufe_server::Config::default()).await;
        let addr = server.local_addr();
        let config = reconnecting(Profile::Plain, WhileDown::Wait(Duration::from_secs(30)));
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut events = client.events();
        assert_eq!(client.request::<_, String>("a").await.unwrap(), "echo:a");

        server.shutdown().await;
        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { .. }
        ));
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.request::<_, String>("b").await }
        });

        let server = echo_server_at(addr, enchufe_server::Config::default()).await;
        assert_eq!(waiting.await.unwrap().unwrap(), "echo:b");
        assert!(matches!(
            next_event(&mut events).await,
            Event::Reconnected { addr: a, .. } if a == addr
        ));
        assert!(client.is_connected());
        assert_eq!(client.peer_addr(), Some(addr));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn waiting_is_bounded_and_fails_as_disconnected() {
    bounded(async {
        let server = echo_server(mux_server_config()).await;
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_millis(50)),
        );
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let mut events = client.events();
        server.shutdown().await;
        next_event(&mut events).await;
        let err = client.request::<_, String>("b").await.unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
        // The request timeout bounds the wait too; nothing was sent, so the
        // error is still the outage, not a reply that did not come.
        let err = client
            .request_timeout::<_, String>("c", Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn the_client_gives_up_after_max_attempts() {
    bounded(async {
        let server = echo_server(mux_server_config()).await;
        let addr = server.local_addr();
        let config = Config::default().profile(Profile::Multiplexed).reconnect(
            Reconnect::default().backoff(quick().max_attempts(3)),
        );
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut events = client.events();
        server.shutdown().await;

        assert!(matches!(
            next_event(&mut events).await,
            Event::Disconnected { .. }
        ));
        match next_event(&mut events).await {
            Event::GaveUp { attempts, last } => {
                assert_eq!(attempts, 3);
                assert!(matches!(*last, Error::Refused { .. }), "{last:?}");
            }
            other => panic!("{other:?}"),
        }
        let err = client.request::<_, String>("a").await.unwrap_err();
        assert!(
            matches!(err, Error::GaveUp { attempts: 3, ref addr, .. } if *addr == server.local_addr().to_string()),
            "{err:?}"
        );
        assert!(client.is_closed());
        // recv says why once, then the stream is over.
        let err = client.recv::<String>().await.unwrap_err();
        assert!(matches!(err, Error::GaveUp { .. }), "{err:?}");
        assert!(client.recv::<String>().await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn events_come_in_order_over_two_outages() {
    bounded(async {
        let mut server = echo_server(mux_server_config()).await;
        let addr = server.local_addr();
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        );
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut events = client.events();
        for round in 0..2 {
            server.shutdown().await;
            let event = next_event(&mut events).await;
            assert!(
                matches!(event, Event::Disconnected { .. }),
                "round {round}: {event:?}"
            );
            server = echo_server_at(addr, mux_server_config()).await;
            let event = next_event(&mut events).await;
            assert!(
                matches!(event, Event::Reconnected { .. }),
                "round {round}: {event:?}"
            );
            assert_eq!(
                client.request::<_, String>("x").await.unwrap(),
                "echo:x",
                "round {round}"
            );
        }
        server.shutdown().await;
    })
    .await;
}

/// A multiplexed server that pushes `news:<msg>` before answering each request.
async fn pushing_server_at(addr: std::net::SocketAddr) -> ServerHandle {
    let server = common::bind_at(addr).await;
    server
        .with_config(mux_server_config())
        .serve(handler_fn(|msg: String, conn| async move {
            conn.push(format!("news:{msg}")).await.unwrap();
            Ok::<_, Infallible>(Some(msg))
        }))
}

#[tokio::test]
async fn pushes_keep_coming_across_a_reconnect() {
    bounded(async {
        let server = pushing_server_at("127.0.0.1:0".parse().unwrap()).await;
        let addr = server.local_addr();
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        );
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut events = client.events();
        let mut pushes = client.pushes::<String>();

        client.request::<_, String>("one").await.unwrap();
        assert_eq!(pushes.next().await.unwrap().unwrap(), "news:one");

        server.shutdown().await;
        // (A request made before the client notices the drop would go out
        // on the dead connection and fail with its error.)
        next_event(&mut events).await;
        let server = pushing_server_at(addr).await;
        client.request::<_, String>("two").await.unwrap();
        // The same stream, across connections, with no error in between.
        assert_eq!(pushes.next().await.unwrap().unwrap(), "news:two");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection_and_stops_redialing() {
    bounded(async {
        let server = echo_server(mux_server_config()).await;
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        );
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        let events = client.events();
        let other = client.clone();
        eventually(|| server.connection_count() == 1).await;
        drop(client);
        assert!(other.is_connected(), "a clone keeps it alive");
        drop(other);
        eventually(|| server.connection_count() == 0).await;
        // The supervisor ended: the events sender is gone with it.
        let mut events = events;
        loop {
            match events.recv().await {
                Err(broadcast::error::RecvError::Closed) => break,
                _ => continue,
            }
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn close_stops_reconnecting_and_later_calls_fail_closed() {
    bounded(async {
        let server = echo_server(mux_server_config()).await;
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        );
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        eventually(|| server.connection_count() == 1).await;
        client.close().await.unwrap();
        // The server sees the half-close and closes; nobody redials.
        assert!(client.recv::<String>().await.unwrap().is_none());
        eventually(|| server.connection_count() == 0).await;
        assert!(client.is_closed());
        let err = client.request::<_, String>("a").await.unwrap_err();
        assert!(matches!(err, Error::Closed), "{err:?}");
        assert_eq!(server.stats().connections_accepted, 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_while_down_that_outwaits_its_timeout_is_disconnected_not_timeout() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The request's own timeout (100 ms) is shorter than the wait for a
        // connection (30 s): it ends first, and nothing was sent.
        let config = reconnecting(
            Profile::Multiplexed,
            WhileDown::Wait(Duration::from_secs(30)),
        )
        .request_timeout(Duration::from_millis(100));
        let (client, first) = tokio::join!(
            async { Client::connect_with(addr, config).await.unwrap() },
            MuxPeer::accept(&listener)
        );
        let mut events = client.events();
        drop(first);
        drop(listener); // down, and stays down
        while !matches!(next_event(&mut events).await, Event::Disconnected { .. }) {}
        let err = client.request::<_, String>("hola").await.unwrap_err();
        assert!(matches!(err, Error::Disconnected), "{err:?}");
    })
    .await;
}
