//! `Client::pipeline`: many requests from one task, replies in request
//! order, in both profiles; its bounds (`max_in_flight`, the outbound
//! queue); errors in their place; and what dropping it frees.
//! Run with `cargo test -p enchufe-client --test pipeline`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use enchufe_client::{Client, Config, Error, Profile};
use enchufe_framing::mux::Kind;
use enchufe_server::{handler_fn, Server, ServerHandle};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../../tests/common/mux_peer.rs"]
mod mux_peer;

mod support;
use support::{bounded, listen, mux_server};

/// An enchufe echo server (both profiles) on 127.0.0.1:0.
async fn echo_server() -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .await
        .unwrap()
        .serve(handler_fn(|frame: Bytes, _conn| async move {
            Ok::<_, Infallible>(Some(frame))
        }))
}

/// A client of `server` in `profile`, default settings otherwise.
async fn connect(server: &ServerHandle, profile: Profile) -> Client {
    let config = Config::default().profile(profile);
    Client::connect_with(server.local_addr(), config)
        .await
        .unwrap()
}

fn message(n: usize) -> String {
    format!("message {n}")
}

/// Checks that `client`'s pipeline of `count` requests, `depth` in
/// flight, answers each with its own echo, in order.
async fn echoes_in_order(client: &Client, count: usize, depth: usize) {
    let mut replies = client.pipeline::<_, String>((0..count).map(message), depth);
    let mut n = 0;
    while let Some(reply) = replies.next().await {
        assert_eq!(reply.unwrap(), message(n));
        n += 1;
    }
    assert_eq!(n, count);
    assert!(
        replies.next().await.is_none(),
        "an ended stream stays ended"
    );
}

/// Waits in vain for a first reply of `replies` (the server answers none),
/// drops the pipeline, runs `then`, and checks that a request made after
/// gets its own reply; closes the client.
async fn give_up_then_request<S>(client: &Client, mut replies: S, then: impl FnOnce())
where
    S: futures::Stream + Unpin,
    S::Item: std::fmt::Debug,
{
    let waited = tokio::time::timeout(Duration::from_millis(200), replies.next()).await;
    assert!(waited.is_err(), "no reply was sent, got {waited:?}");
    drop(replies);
    then();
    request_then_close(client).await;
}

/// A request made now gets its own reply; then the client closes.
async fn request_then_close(client: &Client) {
    let reply: String = client
        .request_timeout("after", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, "after");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_come_back_in_request_order_in_both_profiles() {
    bounded(async {
        let server = echo_server().await;
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let client = connect(&server, profile).await;
            echoes_in_order(&client, 1000, 64).await;
            // Requests through `request` on clones meanwhile pair with their own replies.
            let other = client.clone();
            let side = tokio::spawn(async move {
                for n in 0..50 {
                    let reply: String = other.request(format!("side {n}")).await.unwrap();
                    assert_eq!(reply, format!("side {n}"));
                }
            });
            echoes_in_order(&client, 300, 16).await;
            side.await.unwrap();
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_depth_over_max_in_flight_and_a_full_queue_wait_instead_of_failing() {
    bounded(async {
        let server = echo_server().await;
        for profile in [Profile::Plain, Profile::Multiplexed] {
            // 3 places in flight and a queue of one frame: most requests
            // find no place or no room and take the waiting path.
            let config = Config::default()
                .profile(profile)
                .max_in_flight(3)
                .outbound_queue(1);
            let client = Client::connect_with(server.local_addr(), config)
                .await
                .unwrap();
            echoes_in_order(&client, 200, 64).await;
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_message_too_large_fails_in_its_place_and_the_others_go_on() {
    bounded(async {
        let server = echo_server().await;
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let config = Config::default().profile(profile).max_frame_length(64);
            let client = Client::connect_with(server.local_addr(), config)
                .await
                .unwrap();
            let bodies = ["a", &"x".repeat(100), "c"].map(str::to_owned);
            let replies: Vec<_> = client
                .pipeline::<_, String>(bodies, 8)
                .collect::<Vec<_>>()
                .await;
            assert_eq!(replies.len(), 3);
            assert_eq!(replies[0].as_deref().unwrap(), "a");
            assert!(
                replies[1].as_ref().unwrap_err().is_frame_too_large(),
                "{:?}",
                replies[1]
            );
            assert_eq!(replies[2].as_deref().unwrap(), "c");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_connection_ending_fails_each_request_left_in_its_place() {
    bounded(async {
        let (addr, server) = listen(|mut s| async move {
            // Five plain requests of 1 byte each, one answered, then EOF.
            let mut requests = [0u8; 25];
            s.read_exact(&mut requests).await.unwrap();
            s.write_all(&[0, 0, 0, 1, b'0']).await.unwrap();
        })
        .await;
        let client = Client::connect_with(addr, Config::default().profile(Profile::Plain))
            .await
            .unwrap();
        let replies: Vec<_> = client
            .pipeline::<_, String>((0..5).map(|n| n.to_string()), 5)
            .collect()
            .await;
        server.await.unwrap();
        assert_eq!(replies.len(), 5);
        assert_eq!(replies[0].as_deref().unwrap(), "0");
        for reply in &replies[1..] {
            assert!(
                matches!(reply, Err(Error::ClosedByPeer)),
                "expected ClosedByPeer, got {reply:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn dropping_a_multiplexed_pipeline_frees_its_places_and_cancels_its_requests() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let mut ids = Vec::new();
            for _ in 0..4 {
                ids.push(script.expect(Kind::Request).await.0);
            }
            // Nothing answered: the client gives up on all four.
            let mut cancelled = Vec::new();
            for _ in 0..4 {
                cancelled.push(script.expect(Kind::Cancel).await.0);
            }
            cancelled.sort_unstable();
            assert_eq!(cancelled, ids);
            let (id, body) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, body).await;
            script.expect_end().await;
        })
        .await;
        let config = Config::default()
            .profile(Profile::Multiplexed)
            .max_in_flight(4);
        let client = Client::connect_with(addr, config).await.unwrap();
        let replies = client.pipeline::<_, String>((0..100).map(message), 4);
        // Its four places among max_in_flight (4) are free again after.
        give_up_then_request(&client, replies, || {}).await;
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dropping_a_plain_pipeline_keeps_later_replies_paired() {
    bounded(async {
        let (dropped, was_dropped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = listen(|mut s| async move {
            // Two requests of 1 byte, answered once the pipeline is gone.
            let mut requests = [0u8; 10];
            s.read_exact(&mut requests).await.unwrap();
            was_dropped.await.unwrap();
            let mut third = [0u8; 9];
            s.read_exact(&mut third).await.unwrap();
            assert_eq!(&third[4..], b"after");
            s.write_all(&[0, 0, 0, 1, b'0', 0, 0, 0, 1, b'1'])
                .await
                .unwrap();
            s.write_all(&third).await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let config = Config::default().profile(Profile::Plain).max_in_flight(3);
        let client = Client::connect_with(addr, config).await.unwrap();
        let replies = client.pipeline::<_, String>((0..2).map(|n| n.to_string()), 2);
        // The late replies to the dropped requests go nowhere; the request
        // after gets its own.
        give_up_then_request(&client, replies, || dropped.send(()).unwrap()).await;
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_plain_request_keeps_its_place_until_its_late_reply() {
    bounded(async {
        let (timed_out, saw_timeout) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = listen(|mut s| async move {
            let mut first = [0u8; 5];
            s.read_exact(&mut first).await.unwrap();
            saw_timeout.await.unwrap();
            // The one place among max_in_flight is still the slow request's:
            // nothing more may come while its reply is owed.
            nothing_arrives(&mut s).await;
            let mut next = [0u8; 9];
            s.write_all(&[0, 0, 0, 4, b'l', b'a', b't', b'e'])
                .await
                .unwrap();
            s.read_exact(&mut next).await.unwrap();
            assert_eq!(&next[4..], b"after");
            s.write_all(&next).await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let config = Config::default()
            .profile(Profile::Plain)
            .max_in_flight(1)
            .request_timeout(Duration::from_millis(100));
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut replies = client.pipeline::<_, String>(["0".to_owned()].into_iter(), 1);
        let first = replies.next().await.expect("one outcome per request");
        assert!(matches!(first, Err(Error::Timeout(_))), "{first:?}");
        assert!(replies.next().await.is_none());
        timed_out.send(()).unwrap();
        // Sent once the late reply frees the place (which it does not
        // take: it was the timed-out request's).
        request_then_close(&client).await;
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_multiplexed_pipeline_frees_each_place_when_answered_even_while_unread() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            for _ in 0..2 {
                let (id, body) = script.expect(Kind::Request).await;
                script.send(Kind::Response, id, body).await;
            }
            let (id, body) = script.expect(Kind::Request).await;
            assert_eq!(body, "after");
            script.send(Kind::Response, id, body).await;
            script.expect_end().await;
        })
        .await;
        let config = Config::default()
            .profile(Profile::Multiplexed)
            .max_in_flight(2);
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut replies = client.pipeline::<_, String>((0..2).map(message), 2);
        // One poll sends both requests and takes both places; then nobody
        // reads the pipeline (as when it is zipped with a stream that waits).
        assert!(futures::poll!(replies.next()).is_pending());
        let after: String = client
            .request_timeout("after", Duration::from_secs(5))
            .await
            .expect("the answered places were free for another request");
        assert_eq!(after, "after");
        assert_eq!(replies.next().await.unwrap().unwrap(), message(0));
        assert_eq!(replies.next().await.unwrap().unwrap(), message(1));
        client.close().await.unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_multiplexed_request_past_its_deadline_fails_in_its_place_and_is_cancelled() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            let (first, _) = script.expect(Kind::Request).await;
            let (second, body) = script.expect(Kind::Request).await;
            script.send(Kind::Response, second, body).await;
            // The first is never answered: the client gives up on it.
            assert_eq!(script.expect(Kind::Cancel).await.0, first);
            let (id, body) = script.expect(Kind::Request).await;
            script.send(Kind::Response, id, body).await;
            script.expect_end().await;
        })
        .await;
        let config = Config::default()
            .profile(Profile::Multiplexed)
            .max_in_flight(2)
            .request_timeout(Duration::from_millis(300));
        let client = Client::connect_with(addr, config).await.unwrap();
        let replies: Vec<_> = client
            .pipeline::<_, String>((0..2).map(message), 2)
            .collect()
            .await;
        assert!(
            matches!(replies[0], Err(Error::Timeout(_))),
            "{:?}",
            replies[0]
        );
        assert_eq!(replies[1].as_deref().unwrap(), message(1));
        // Both places among max_in_flight (2) are free again.
        request_then_close(&client).await;
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_multiplexed_pipeline_awaiting_replies_on_a_silent_link_fails_as_silent() {
    bounded(async {
        let (addr, server) = mux_server(|mut script| async move {
            // Takes the requests, answers nothing, until the client leaves.
            while script.recv_no_ping().await.is_some() {}
        })
        .await;
        let config = Config::default()
            .profile(Profile::Multiplexed)
            .request_timeout(Duration::from_secs(60))
            .silence_timeout(Duration::from_millis(300));
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut replies = client.pipeline::<_, String>((0..3).map(message), 3);
        let first = replies.next().await.unwrap();
        assert!(matches!(first, Err(Error::Silent)), "{first:?}");
        drop(replies);
        drop(client);
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_multiplexed_pipeline_beyond_the_links_lanes_takes_a_slot_per_request() {
    bounded(async {
        let server = echo_server().await;
        let config = Config::default().profile(Profile::Multiplexed);
        let client = Client::connect_with(server.local_addr(), config)
            .await
            .unwrap();
        // Each pipeline holds its lane from its first poll until dropped: a
        // link's 65,536 lanes, held by pipelines with nothing to send.
        let mut held = Vec::new();
        for _ in 0..(1 << 16) {
            let mut idle = client.pipeline::<_, String>(std::iter::empty::<String>(), 1);
            assert!(idle.next().await.is_none());
            held.push(idle);
        }
        echoes_in_order(&client, 300, 16).await;
        drop(held);
        echoes_in_order(&client, 300, 16).await;
        client.close().await.unwrap();
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_plain_pipelines_timed_out_requests_keep_their_places_until_their_late_replies() {
    bounded(async {
        let (timed_out, saw_timeout) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = listen(|mut s| async move {
            let mut requests = [0u8; 10];
            s.read_exact(&mut requests).await.unwrap();
            saw_timeout.await.unwrap();
            // Both places among max_in_flight (2) are the late replies':
            // nothing more may come while they are owed.
            nothing_arrives(&mut s).await;
            let mut next = [0u8; 9];
            s.write_all(&[0, 0, 0, 1, b'0', 0, 0, 0, 1, b'1'])
                .await
                .unwrap();
            s.read_exact(&mut next).await.unwrap();
            assert_eq!(&next[4..], b"after");
            s.write_all(&next).await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let config = Config::default()
            .profile(Profile::Plain)
            .max_in_flight(2)
            .request_timeout(Duration::from_millis(200));
        let client = Client::connect_with(addr, config).await.unwrap();
        let replies: Vec<_> = client
            .pipeline::<_, String>((0..2).map(|n| n.to_string()), 2)
            .collect()
            .await;
        for reply in &replies {
            assert!(matches!(reply, Err(Error::Timeout(_))), "{reply:?}");
        }
        timed_out.send(()).unwrap();
        // The late replies go nowhere; this request gets its own.
        request_then_close(&client).await;
        server.await.unwrap();
    })
    .await;
}

/// No request arrives on `s` within 300 ms: every place among
/// `max_in_flight` is still owed a reply.
async fn nothing_arrives(s: &mut tokio::net::TcpStream) {
    let mut next = [0u8; 9];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut next));
    assert!(
        early.await.is_err(),
        "a request went out past max_in_flight"
    );
}

#[tokio::test]
async fn a_pipeline_left_unpolled_mid_way_leaves_its_link_going() {
    bounded(async {
        let server = echo_server().await;
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let client = connect(&server, profile).await;
            let mut replies = client.pipeline::<_, String>((0..100).map(message), 8);
            // Each poll that takes replies queues the next requests and
            // writes them from this task.
            for n in 0..20 {
                assert_eq!(replies.next().await.unwrap().unwrap(), message(n));
            }
            // The pipeline is not polled while this task waits for another
            // request of its client: the link takes that reply and the
            // pipeline's on its own.
            let reply: String = client
                .request_timeout("meanwhile", Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(reply, "meanwhile");
            let mut n = 20;
            while let Some(reply) = replies.next().await {
                assert_eq!(reply.unwrap(), message(n));
                n += 1;
            }
            assert_eq!(n, 100);
            drop(replies);
            client.close().await.unwrap();
        }
        server.shutdown().await;
    })
    .await;
}
