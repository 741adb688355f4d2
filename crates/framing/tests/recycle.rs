//! `recycle`: a large frame arrives into a buffer given back earlier, not a
//! fresh one. Its own test binary: the pool is process-wide, and another
//! test reading large frames at the same time could take the buffer.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use enchufe_framing::{recycle, Config, Wire};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_large_frame_arrives_in_a_buffer_given_back() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let len = 1024 * 1024;
        // What a receiver gives back: a frame's body, past its headers.
        let mut given = BytesMut::with_capacity(len + 9);
        given.put_bytes(0, len + 9);
        let start = given.as_ptr() as usize;
        let body = given.split_off(9).freeze();
        drop(given);
        assert!(recycle::give_back(body));
        assert_eq!(recycle::held(), len + 9);

        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let mut wire = Wire::new(io, &Config::default());
        let payload: Vec<u8> = (0..len as u32).map(|i| (i % 253) as u8).collect();
        let writing = tokio::spawn(async move {
            peer.write_all(&(len as u32).to_be_bytes()).await.unwrap();
            // In pieces, so the frame is incomplete when the header arrives
            // and goes to a large frame's own buffer.
            for piece in payload.chunks(100_000) {
                peer.write_all(piece).await.unwrap();
            }
            peer
        });
        let frame = wire.recv().await.unwrap().expect("a frame");
        let _peer = writing.await.unwrap();

        assert_eq!(frame.len(), len);
        assert!(frame.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        assert_eq!(
            frame.as_ptr() as usize,
            start,
            "read into the buffer given back"
        );
        assert_eq!(recycle::held(), 0);

        // And back again once done with, while a second handle to it is not.
        let frame = frame.freeze();
        let other = frame.clone();
        assert!(!recycle::give_back(frame));
        assert!(recycle::give_back(other));
    })
    .await
    .expect("bounded");
}
