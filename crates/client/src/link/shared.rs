//! What the handles share with the driver: the queue of frames, the reply
//! slots, and the connection's end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_engine::session::InFlight;
use enchufe_engine::Signal;
use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::OutFrame;
use tokio::sync::{broadcast, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::lanes::Lanes;
use super::permits::Permit;
use super::stream::StreamOut;
use super::window::Window;
use crate::error::{ended_error, Ended};
use crate::{Error, Event, Result};

/// A frame for the driver, a plain request's slot, and its request's deadline.
pub(super) type QueueItem = (Outgoing, Option<Slot>, Option<Instant>);

/// A plain request's place in the driver's line of replies, as queued.
#[derive(Debug)]
pub(super) enum Slot {
    /// A request's own slot.
    One(Pending),
    /// The first request of a plain pipeline's batch: its window, and its
    /// place there. The batch's places among `max_in_flight` were taken at
    /// once; the driver's line holds them until each reply comes.
    LaneFirst(Arc<Window>, u64),
    /// A later request of the same batch (the queue holds a batch's
    /// requests together): its place.
    LaneNext(u64),
}

/// What a queue item carries to the driver.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// A whole frame.
    Frame(OutFrame),
    /// A frame whose body comes in chunks ([`Link::send_stream`](super::Link::send_stream)).
    Stream(StreamOut),
    /// A frame whose body ends in a file region, sent with `sendfile`
    /// (plain TCP on Linux: [`Link::exchange_file`](super::Link::exchange_file)).
    #[cfg(target_os = "linux")]
    File(FileOut),
}

/// A frame whose body is `head` (the multiplexed header included) and then
/// `region`: the driver writes the frame's length and `head`, flushes, then
/// sends the region with `sendfile` before any other frame.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(super) struct FileOut {
    pub(super) head: Bytes,
    pub(super) region: crate::FileRegion,
    /// Multiplexed: the request's id, whose slot is answered with the error
    /// when the region is refused before anything is written.
    pub(super) id: Option<u64>,
}

/// What each bit of a link's [`Signal`] means.
pub(super) mod flag {
    /// Frames were queued for the driver (the driver's own bit).
    pub(in crate::link) const QUEUED: u8 = enchufe_engine::driver::QUEUED;
    /// [`Link::close`](crate::link::Link::close) was called: flush, then half-close.
    pub(in crate::link) const CLOSE: u8 = 2;
    /// The last handle is gone: flush, half-close, stop.
    pub(in crate::link) const DROPPED: u8 = 4;
    /// With `QUEUED`: the frames queued are a whole burst (a pipeline's),
    /// so the driver writes them without giving other tasks a turn first.
    pub(in crate::link) const WHOLE: u8 = 8;
}

/// State the driver shares with the handles.
#[derive(Debug)]
pub(super) struct Shared {
    /// Frames for the driver, in order, with the slot of each plain request
    /// (registered by the driver as it writes the frame, so replies pair with
    /// requests in write order).
    pub(super) out: Mutex<Out>,
    /// Most frames in `out` (`outbound_queue`).
    pub(super) max_queued: usize,
    /// Wakes callers waiting for room in `out`.
    pub(super) room: Notify,
    pub(super) signal: Signal,
    /// Multiplexed profile: reply slots by request id (the session layer's
    /// table, shared with peer links). The requesting task registers its
    /// slot before queueing the request, the driver takes it out when the
    /// reply or error arrives, and the request's drop guard takes it out if
    /// the caller gives up first; whoever takes it answers it.
    pub(super) by_id: InFlight<Pending>,
    /// Multiplexed profile: the pipelines' lanes, whose requests take no
    /// slot in `by_id`; their ids say so.
    pub(super) lanes: Lanes,
    /// Set once when the connection ends.
    pub(super) terminal: Mutex<Option<Ended>>,
    /// `terminal.is_some()`, readable without the lock.
    pub(super) has_ended: AtomicBool,
    /// [`Link::close`](super::Link::close) was called: what can no longer be sent is `Closed`,
    /// whatever the server did after.
    pub(super) closed_here: AtomicBool,
    /// Cancelled when the connection ends: what a reconnecting client's
    /// supervisor waits on.
    pub(super) ended: CancellationToken,
    /// Where the end is reported as [`Event::Disconnected`].
    pub(super) events: broadcast::Sender<Event>,
    /// Bytes of file regions sent, by path.
    pub(super) file_bytes: crate::region::FileBytes,
}

#[derive(Debug, Default)]
pub(super) struct Out {
    /// Each frame with a plain request's slot, and the deadline of the
    /// request it carries (plain or multiplexed), for the driver's timer.
    pub(super) frames: VecDeque<QueueItem>,
    /// `close()` callers waiting for the half-close.
    pub(super) close: Vec<oneshot::Sender<Result<()>>>,
    /// No more frames are taken (closed, or the connection ended).
    pub(super) closed: bool,
}

#[derive(Debug)]
pub(super) struct Pending {
    /// The reply's body, or why there is none. `None` once the driver has
    /// answered it with a timeout: a plain slot stays in line until its late
    /// reply arrives, so later replies still pair with their own requests.
    pub(super) reply: Option<Reply>,
    /// Held until the slot is answered or dropped: a request's place among
    /// the `max_in_flight`.
    pub(super) _permit: Permit,
    /// When the driver gives up waiting for the reply, and the timeout that
    /// means (for the error). The driver keeps every deadline in one timer:
    /// no timer is armed per request.
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A window's place must be answered, or its reader waits forever (a
        // `One` caller learns it from its channel closing).
        if let Some(Reply::Window(window, seq)) = self.reply.take() {
            window.fill(seq, Err(Error::Closed));
        }
    }
}

/// Where a request's reply goes.
#[derive(Debug)]
pub(super) enum Reply {
    /// The task awaiting one `request`.
    One(oneshot::Sender<Result<BytesMut>>),
    /// A place in a pipeline's window.
    Window(Arc<Window>, u64),
}

impl Pending {
    pub(super) fn answer(&mut self, outcome: Result<BytesMut>) {
        match self.reply.take() {
            Some(Reply::One(reply)) => {
                let _ = reply.send(outcome);
            }
            Some(Reply::Window(window, seq)) => window.fill(seq, outcome),
            None => {}
        }
    }
}

impl Shared {
    pub(super) fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn terminal(&self) -> Option<Ended> {
        if !self.has_ended.load(Ordering::Acquire) {
            return None;
        }
        self.terminal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Queues a `cancel` for request `id`, whose caller gave up. A cancel is
    /// a few bytes that free the server's work: it goes past the queue's
    /// bound rather than wait (it comes from `Drop`). Skipping it once the
    /// connection is closing is safe: the late reply is dropped on arrival,
    /// as the id is no longer registered.
    pub(super) fn queue_cancel(&self, id: u64) {
        let cancel = OutFrame::with_header(
            Header {
                kind: Kind::Cancel,
                id,
            },
            Bytes::new(),
        );
        let mut out = self.out();
        if out.closed {
            debug!(id, "request abandoned; connection closing, no cancel");
            return;
        }
        out.frames.push_back((Outgoing::Frame(cancel), None, None));
        drop(out);
        self.signal.raise(flag::QUEUED);
        trace!(id, "request abandoned; cancel queued");
    }

    /// Records the end (first one wins), fails every waiting request and
    /// every queued one, and refuses new ones.
    pub(super) fn end(&self, how: Ended) {
        let (how, first) = {
            let mut terminal = self.terminal.lock().unwrap_or_else(PoisonError::into_inner);
            let first = terminal.is_none();
            let how = terminal.get_or_insert(how).clone();
            self.has_ended.store(true, Ordering::Release);
            (how, first)
        };
        if first {
            self.ended.cancel();
            // No receiver is fine: nobody asked.
            let _ = self.events.send(Event::Disconnected {
                error: Arc::new(ended_error(&how)),
            });
        }
        let (queued, closers) = {
            let mut out = self.out();
            out.closed = true;
            (
                std::mem::take(&mut out.frames),
                std::mem::take(&mut out.close),
            )
        };
        self.room.notify_waiters();
        self.lanes.end(|| ended_error(&how));
        for mut slot in self.by_id.end() {
            slot.answer(Err(ended_error(&how)));
        }
        let mut batch: Option<Arc<Window>> = None;
        for (_, slot, _) in queued {
            match slot {
                Some(Slot::One(mut slot)) => slot.answer(Err(ended_error(&how))),
                Some(Slot::LaneFirst(window, seq)) => {
                    window.fill(seq, Err(ended_error(&how)));
                    window.release(1);
                    batch = Some(window);
                }
                Some(Slot::LaneNext(seq)) => {
                    if let Some(window) = &batch {
                        window.fill(seq, Err(ended_error(&how)));
                        window.release(1);
                    }
                }
                None => {}
            }
        }
        for closer in closers {
            let _ = closer.send(Ok(()));
        }
    }
}
