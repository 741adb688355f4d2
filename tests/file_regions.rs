//! Requests whose body ends in a file region (`Client::request_file`): on
//! plain TCP the region leaves by `sendfile` (the client's counters say
//! so), on a Unix socket it is read into the body; the other end gets the
//! same bytes either way, on both profiles. A region the file no longer
//! holds fails that request alone; a file that shrinks while its region is
//! going out ends the connection with an `UnexpectedEof`; a request that
//! times out while its region is going out has its cancel sent after the
//! region, never inside it.
//!
//! ```text
//! cargo test --test file_regions
//! ```
#![cfg(target_os = "linux")]

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use common::bounded;
use enchufe::client::{self, FileRegion};
use enchufe::{handler_fn, server, Client, Profile, Server};
use tokio::io::AsyncReadExt;

const LIMIT: usize = 8 << 20;

/// A file of `len` bytes that differ from their neighbours.
fn data_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&data).unwrap();
    (file, data)
}

fn echo() -> impl enchufe::Handler {
    handler_fn(|body: Bytes, _conn| async move { Ok::<_, Infallible>(Some(body)) })
}

fn client_config(profile: Profile) -> client::Config {
    client::Config::default()
        .profile(profile)
        .max_frame_length(LIMIT)
}

/// Sends regions of `file` with heads and checks each echo is head + region.
async fn echo_regions(client: &Client, file: &Arc<std::fs::File>, data: &[u8]) {
    for (offset, len) in [
        (0, 0),
        (5, 1),
        (1000, 65_536),
        (3, 3 << 20),
        (0, data.len()),
    ] {
        let head = Bytes::from(format!("chunk {offset}:"));
        let region = FileRegion::new(file.clone(), offset as u64, len);
        let back: Bytes = client.request_file(head.clone(), region).await.unwrap();
        let mut expected = head.to_vec();
        expected.extend_from_slice(&data[offset..offset + len]);
        assert!(
            back == expected,
            "region {offset}+{len} came back different"
        );
    }
    // Ordinary requests go on after them.
    let back: Bytes = client.request(Bytes::from_static(b"after")).await.unwrap();
    assert_eq!(&back[..], b"after");
}

#[tokio::test]
async fn on_plain_tcp_regions_leave_by_sendfile_and_arrive_whole() {
    bounded(async {
        let (file, data) = data_file(4 << 20);
        let file = Arc::new(file.reopen().unwrap());
        let sum: u64 = 1 + 65_536 + (3 << 20) + data.len() as u64;
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let server = Server::bind("127.0.0.1:0")
                .await
                .unwrap()
                .with_config(server::Config::default().max_frame_length(LIMIT))
                .serve(echo());
            let config = client_config(profile);
            let client = Client::connect_with(server.local_addr(), config)
                .await
                .unwrap();
            echo_regions(&client, &file, &data).await;
            assert_eq!(client.file_region_bytes(), (sum, 0), "{profile:?}");
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn on_a_unix_socket_regions_are_read_and_arrive_the_same() {
    bounded(async {
        let (file, data) = data_file(4 << 20);
        let file = Arc::new(file.reopen().unwrap());
        let sum: u64 = 1 + 65_536 + (3 << 20) + data.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        for (n, profile) in [Profile::Plain, Profile::Multiplexed]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("s{n}.sock"));
            let server = Server::bind_unix(&path)
                .unwrap()
                .with_config(server::Config::default().max_frame_length(LIMIT))
                .serve(echo());
            let client = Client::connect_unix(&path, client_config(profile))
                .await
                .unwrap();
            echo_regions(&client, &file, &data).await;
            assert_eq!(client.file_region_bytes(), (0, sum), "{profile:?}");
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_region_past_the_files_end_fails_alone_before_anything_is_sent() {
    bounded(async {
        let (file, _) = data_file(1000);
        let file = Arc::new(file.reopen().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let tcp = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_config(server::Config::default().max_frame_length(LIMIT))
            .serve(echo());
        let unix = Server::bind_unix(&path)
            .unwrap()
            .with_config(server::Config::default().max_frame_length(LIMIT))
            .serve(echo());
        for profile in [Profile::Plain, Profile::Multiplexed] {
            let config = client_config(profile);
            let clients = [
                Client::connect_with(tcp.local_addr(), config.clone())
                    .await
                    .unwrap(),
                Client::connect_unix(&path, config).await.unwrap(),
            ];
            for client in clients {
                let region = FileRegion::new(file.clone(), 900, 101);
                let err = client
                    .request_file::<_, Bytes>(Bytes::from_static(b"x"), region)
                    .await
                    .unwrap_err();
                match &err {
                    client::Error::FileRegion(e) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
                        assert!(e.to_string().contains("1000"), "{e}");
                    }
                    other => panic!("{profile:?}: {other:?}"),
                }
                // The connection goes on.
                let back: Bytes = client.request(Bytes::from_static(b"still")).await.unwrap();
                assert_eq!(&back[..], b"still");
                assert_eq!(client.file_region_bytes(), (0, 0));
            }
        }
        tcp.shutdown().await;
        unix.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_file_that_shrinks_under_its_region_ends_the_connection() {
    bounded(async {
        // A sparse file larger than what the socket buffers hold, to a peer
        // that reads nothing until the file has been cut.
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(64 << 20).unwrap();
        let shared = Arc::new(file.reopen().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = client::Config::default()
            .profile(Profile::Plain)
            .max_frame_length(128 << 20);
        let client = Client::connect_with(addr, config).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let region = FileRegion::new(shared, 0, 64 << 20);
        let sender = client.clone();
        let sending = tokio::spawn(async move {
            sender
                .request_file::<_, Bytes>(Bytes::from_static(b"big"), region)
                .await
        });
        common::eventually(|| client.file_region_bytes().0 > 0).await;
        file.as_file().set_len(0).unwrap();
        // Now drain: the sender finds the file's end before the region's.
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = peer.read_to_end(&mut sink).await;
            sink.len()
        });
        let err = sending.await.unwrap().unwrap_err();
        let client::Error::Framing(framing) = &err else {
            panic!("{err:?}");
        };
        let enchufe::framing::Error::Io(io) = &**framing else {
            panic!("{framing:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof, "{io}");
        assert!(client.file_region_bytes().0 < 64 << 20);
        // The connection ended: the peer reads its end.
        assert!(drain.await.unwrap() < (64 << 20) + 7);
    })
    .await;
}

#[tokio::test]
async fn a_request_that_times_out_while_its_region_goes_out_is_cancelled_after_it() {
    use common::mux_peer::MuxPeer;
    use enchufe::framing::mux::{Hello, Kind};
    use enchufe::framing::Transport;

    bounded(async {
        // A peer that reads nothing until the request has timed out: the
        // region stalls in the middle, where no cancel may go.
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(32 << 20).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = 64 << 20;
        let peer = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let config = enchufe::framing::Config::default().max_frame_length(limit);
            let mut t = Transport::with_config(stream, &config);
            let hello = Hello::new("").answering().encode().unwrap();
            t.send(hello).await.unwrap();
            let theirs = t.recv().await.unwrap().expect("the client's hello");
            Hello::decode(&theirs).unwrap();
            MuxPeer(t)
        });
        let config = client::Config::default()
            .max_frame_length(limit)
            .request_timeout(std::time::Duration::from_millis(300));
        let client = Client::connect_with(addr, config).await.unwrap();
        let mut peer = peer.await.unwrap();
        let region = FileRegion::new(Arc::new(file.reopen().unwrap()), 0, 32 << 20);
        let err = client
            .request_file::<_, Bytes>(Bytes::from_static(b"big"), region)
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(
            client.file_region_bytes().0 < 32 << 20,
            "the region stalled"
        );
        // Now read: the request whole (its region all zeros), then its cancel.
        let (request, body) = peer.recv_bytes().await.unwrap();
        assert_eq!(request.kind, Kind::Request);
        assert_eq!(body.len(), 3 + (32 << 20));
        assert_eq!(&body[..3], b"big");
        assert!(body[3..].iter().all(|&b| b == 0), "bytes inside the region");
        let (cancel, _) = peer.recv_bytes().await.unwrap();
        assert_eq!((cancel.kind, cancel.id), (Kind::Cancel, request.id));
        assert_eq!(client.file_region_bytes(), (32 << 20, 0));
    })
    .await;
}
