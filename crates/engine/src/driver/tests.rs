//! The driver's own tests, on the [`Bare`](crate::role::Bare) role.

use std::sync::Arc;

use super::*;
use enchufe_framing::Config;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::time::Instant;

/// A driver on one end of an in-memory pipe holding `pipe` bytes each
/// way, and the other end.
fn driver(pipe: usize, budget: usize, deadlines: Deadlines) -> (TestDriver, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(pipe);
    let wire = Wire::new(ours, &Config::default());
    let d = Driver::new(wire, Arc::new(Signal::default()), budget, deadlines);
    (d, theirs)
}

/// [`driver`] with room to spare: a 1 KiB pipe, no output budget.
fn roomy(deadlines: Deadlines) -> (TestDriver, DuplexStream) {
    driver(1024, usize::MAX, deadlines)
}

/// No deadline but the one `set` turns on.
fn only(set: impl FnOnce(&mut Deadlines)) -> Deadlines {
    let mut deadlines = Deadlines::default();
    set(&mut deadlines);
    deadlines
}

#[tokio::test]
async fn frames_then_eof() {
    let (mut d, mut theirs) = roomy(Deadlines::default());
    use tokio::io::AsyncWriteExt;
    theirs.write_all(b"\0\0\0\x02hi\0\0\0\x01!").await.unwrap();
    drop(theirs);
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"hi"));
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
    assert!(matches!(d.event(true).await, Event::Eof));
}

#[tokio::test]
async fn role_bits_are_reported_once_and_queued_until_taken() {
    let (mut d, _theirs) = roomy(Deadlines::default());
    d.signal().raise(4 | QUEUED);
    assert!(matches!(d.event(true).await, Event::Signal(4)));
    assert!(matches!(d.event(true).await, Event::Queued));
    assert!(matches!(d.event(true).await, Event::Queued));
    d.take_queued();
    let pending = tokio::time::timeout(Duration::from_millis(20), d.event(true)).await;
    assert!(pending.is_err(), "nothing more to report");
}

#[tokio::test(start_paused = true)]
async fn idle_fires_after_quiet_ticks_but_not_while_busy() {
    let deadlines = only(|d| d.idle = Some(Duration::from_secs(4)));
    let (mut d, _theirs) = roomy(deadlines.clone());
    let start = Instant::now();
    assert!(matches!(
        d.event(true).await,
        Event::End(Failure::IdleTimeout)
    ));
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(4) && took <= Duration::from_secs(5));

    let (mut d, _theirs) = roomy(deadlines);
    d.set_busy(true);
    let r = tokio::time::timeout(Duration::from_secs(30), d.event(true)).await;
    assert!(r.is_err(), "busy is not idle");
}

#[tokio::test(start_paused = true)]
async fn the_roles_deadline_and_the_hello_deadline_fire() {
    let deadlines = only(|d| d.hello = Some(Duration::from_secs(10)));
    let (mut d, _theirs) = roomy(deadlines);
    d.set_deadline(Some(Instant::now() + Duration::from_secs(1)));
    assert!(matches!(d.event(true).await, Event::Deadline));
    assert_eq!(d.deadline(), None);
    assert!(
        matches!(d.event(true).await, Event::End(Failure::HelloTimeout(t)) if t == Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn a_frame_trickled_past_its_deadline_ends_but_steady_frames_do_not() {
    use tokio::io::AsyncWriteExt;
    let deadlines = only(|d| d.frame = Some(Duration::from_secs(5)));
    // Steady traffic whose reads end mid-frame: each wait sees a partial
    // frame, but a different one, so no deadline passes.
    let (mut d, mut theirs) = roomy(deadlines.clone());
    for _ in 0..10 {
        theirs.write_all(b"\0\0\0\x02hi\0\0").await.unwrap();
        assert!(matches!(d.event(true).await, Event::Frame(_)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        theirs.write_all(b"\0\x01!").await.unwrap();
        assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
    }
    // One byte every 2 s: the frame never completes in time.
    let (mut d, mut theirs) = roomy(deadlines);
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in [0u8, 0, 0, 9, 1, 2, 3, 4] {
            if theirs.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    assert!(
        matches!(d.event(true).await, Event::End(Failure::FrameTimeout(t)) if t == Duration::from_secs(5))
    );
    assert!(start.elapsed() <= Duration::from_secs(6));
    trickle.abort();
}

/// Watches for `ms` of (real) time: `Some` if an event came.
async fn watch_for(d: &mut TestDriver, ms: u64) -> Option<Event> {
    let watching = std::future::poll_fn(|cx| d.poll_watching(cx));
    tokio::time::timeout(Duration::from_millis(ms), watching)
        .await
        .ok()
}

type TestDriver = Driver<DuplexStream, Arc<Signal>>;

#[tokio::test]
async fn watching_reads_ahead_within_its_bound_and_keeps_eof_for_after_the_frames() {
    use tokio::io::AsyncWriteExt;
    let (mut d, mut theirs) = driver(1 << 20, usize::MAX, Deadlines::default());
    theirs.write_all(b"\0\0\0\x02hi\0\0\0\x01!").await.unwrap();
    drop(theirs);
    // The EOF is read but not reported: the frames before it come first.
    assert!(watch_for(&mut d, 20).await.is_none());
    assert!(d.wire().is_read_closed());
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"hi"));
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
    assert!(matches!(d.event(true).await, Event::Eof));

    // 1,000 frames of 1 KiB pipelined: watching reads about WATCH_BOUND
    // of them, then nothing, and every frame still comes out in order.
    let (mut d, mut theirs) = driver(2 << 20, usize::MAX, Deadlines::default());
    let mut sent = Vec::new();
    for i in 0..1000u32 {
        sent.extend_from_slice(&1024u32.to_be_bytes());
        sent.extend(std::iter::repeat_n((i % 251) as u8, 1024));
    }
    theirs.write_all(&sent).await.unwrap();
    assert!(watch_for(&mut d, 20).await.is_none());
    let held = d.wire().read_capacity();
    assert!(
        (WATCH_BOUND..=2 * WATCH_BOUND + 8192).contains(&held),
        "{held}"
    );
    for i in 0..1000u32 {
        match d.event(true).await {
            Event::Frame(f) => assert!(f.len() == 1024 && f[0] == (i % 251) as u8),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn watching_stops_at_a_whole_large_frame_and_every_frame_comes_out() {
    use tokio::io::AsyncWriteExt;
    let (mut d, mut theirs) = driver(1 << 20, usize::MAX, Deadlines::default());
    let len = 100 * 1024;
    let mut sent = (len as u32).to_be_bytes().to_vec();
    sent.extend(vec![7u8; len]);
    sent.extend_from_slice(b"\0\0\0\x01!");
    // Part of the large frame: it moves to its own buffer.
    theirs.write_all(&sent[..1000]).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(20), d.event(true)).await;
    assert!(r.is_err());
    theirs.write_all(&sent[1000..]).await.unwrap();
    assert!(watch_for(&mut d, 20).await.is_none());
    assert!(!d.wire().is_read_closed());
    assert!(matches!(d.event(true).await, Event::Frame(f) if f.len() == len));
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"!"));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_does_not_read_stalls_the_output_and_stops_reading() {
    let deadlines = only(|d| d.write_timeout = Some(Duration::from_secs(2)));
    let (mut d, mut theirs) = driver(64, 1024, deadlines);
    d.write(&OutFrame::plain(Bytes::from(vec![7u8; 4096])))
        .unwrap();
    use tokio::io::AsyncWriteExt;
    // A frame is waiting, but the output is over budget: not read.
    theirs.write_all(b"\0\0\0\x01x").await.unwrap();
    assert!(
        matches!(d.event(true).await, Event::End(Failure::Stalled(t)) if t == Duration::from_secs(2))
    );
    assert!(d.is_write_done());
    assert_eq!(d.queued(), 0);
    // Output dropped: the frame can be read now.
    assert!(matches!(d.event(true).await, Event::Frame(f) if &f[..] == b"x"));
}
