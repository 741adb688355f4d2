//! One connection of a [`Client`](crate::Client): its driver task and what
//! the handles share with it.
//!
//! One task per connection owns the unsplit I/O ([`Wire`]): it takes the
//! frames callers queued, writes them in one batch, reads replies and hands
//! each to the request waiting for it, and flushes only when no further
//! frame is buffered, as the server's driver does. Callers reach it through
//! one [`Signal`] (frames queued, close, last handle gone): no command
//! channel, no second task, no cancellation future per frame.
//!
//! ```text
//!  request() --slot by id / in order--> Shared --Signal--> driver --Wire--> socket
//!      ^                                                      |
//!      +---------------- oneshot: reply or error -------------+--> incoming (recv)
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use enchufe_engine::session::{Abandon, InFlight};
use enchufe_engine::Signal;
use enchufe_framing::mux::{self, Header, Hello, Kind, Mismatch, Profile};
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, Instrument};

mod driver;

use driver::Driver;

use crate::error::{ended_error, Ended};
use crate::reconnect::EVENTS_QUEUE;
use crate::{Config, Error, Event, Result};

/// A frame for the driver, a plain request's slot, and its request's deadline.
type QueueItem = (Outgoing, Option<Pending>, Option<Instant>);

/// What a queue item carries to the driver.
#[derive(Debug)]
enum Outgoing {
    /// A whole frame.
    Frame(OutFrame),
    /// A frame whose body comes in chunks ([`Link::send_stream`]).
    Stream(StreamOut),
}

/// A streamed frame on its way out: the driver writes its header, then
/// every chunk as it comes, before any other frame.
#[derive(Debug)]
struct StreamOut {
    /// The body's length, as the header says.
    len: u64,
    /// The body, a few chunks at a time (the sender's memory bound).
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    /// Told once the whole body is queued for writing, or why not.
    done: oneshot::Sender<Result<()>>,
}

/// What a connection's driver needs from the client it serves.
#[derive(Debug, Clone)]
pub(crate) struct Wiring {
    /// Where unsolicited frames go.
    pub(crate) incoming: mpsc::Sender<Result<BytesMut>>,
    /// Where the connection's end is reported.
    pub(crate) events: broadcast::Sender<Event>,
    /// Whether the error that ends the connection goes to `incoming` too
    /// (`recv` returns it once). A reconnecting client's `recv` goes on
    /// across connections, so its links report their end as events only.
    pub(crate) report_end: bool,
}

impl Wiring {
    /// A client's incoming queue and events, for links that report their
    /// end to `recv` unless the client reconnects.
    pub(crate) fn new(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        // Every client is built through here: its metric series exist from
        // now on, before its first connection.
        #[cfg(feature = "metrics")]
        enchufe_engine::meter::register("client", enchufe_engine::meter::ERROR_KINDS);
        let (incoming, incoming_rx) = mpsc::channel(config.incoming_queue);
        let (events, _) = broadcast::channel(EVENTS_QUEUE);
        let wiring = Wiring {
            incoming,
            events,
            report_end: config.reconnect.is_none(),
        };
        (wiring, incoming_rx)
    }

    /// As [`Wiring::new`] for a client that cannot reconnect.
    pub(crate) fn fixed(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        let (mut wiring, incoming) = Self::new(config);
        wiring.report_end = true;
        (wiring, incoming)
    }
}

/// What each bit of a link's [`Signal`] means.
mod flag {
    /// Frames were queued for the driver (the driver's own bit).
    pub(super) const QUEUED: u8 = enchufe_engine::driver::QUEUED;
    /// [`Link::close`] was called: flush, then half-close.
    pub(super) const CLOSE: u8 = 2;
    /// The last handle is gone: flush, half-close, stop.
    pub(super) const DROPPED: u8 = 4;
}

/// One connection: its driver task and what the handles share with it. A
/// [`Client`](crate::Client) is one link, or a succession of them when it
/// reconnects.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    /// Bounds requests awaiting replies (`max_in_flight`).
    in_flight: Arc<Permits>,
    shared: Arc<Shared>,
    profile: Profile,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        // The driver sends what is queued, half-closes and stops.
        self.shared.signal.raise(flag::DROPPED);
    }
}

/// State the driver shares with the handles.
#[derive(Debug)]
struct Shared {
    /// Frames for the driver, in order, with the slot of each plain request
    /// (registered by the driver as it writes the frame, so replies pair with
    /// requests in write order).
    out: Mutex<Out>,
    /// Most frames in `out` (`outbound_queue`).
    max_queued: usize,
    /// Wakes callers waiting for room in `out`.
    room: Notify,
    signal: Signal,
    /// Multiplexed profile: reply slots by request id (the session layer's
    /// table, shared with peer links). The requesting task registers its
    /// slot before queueing the request, the driver takes it out when the
    /// reply or error arrives, and the request's drop guard takes it out if
    /// the caller gives up first; whoever takes it answers it.
    by_id: InFlight<Pending>,
    /// Set once when the connection ends.
    terminal: Mutex<Option<Ended>>,
    /// `terminal.is_some()`, readable without the lock.
    has_ended: AtomicBool,
    /// [`Link::close`] was called: what can no longer be sent is `Closed`,
    /// whatever the server did after.
    closed_here: AtomicBool,
    /// Cancelled when the connection ends: what a reconnecting client's
    /// supervisor waits on.
    ended: CancellationToken,
    /// Where the end is reported as [`Event::Disconnected`].
    events: broadcast::Sender<Event>,
}

#[derive(Debug, Default)]
struct Out {
    /// Each frame with a plain request's slot, and the deadline of the
    /// request it carries (plain or multiplexed), for the driver's timer.
    frames: VecDeque<QueueItem>,
    /// `close()` callers waiting for the half-close.
    close: Vec<oneshot::Sender<Result<()>>>,
    /// No more frames are taken (closed, or the connection ended).
    closed: bool,
}

#[derive(Debug)]
struct Pending {
    /// The reply's body, or why there is none. `None` once the driver has
    /// answered it with a timeout: a plain slot stays in line until its late
    /// reply arrives, so later replies still pair with their own requests.
    reply: Option<oneshot::Sender<Result<BytesMut>>>,
    /// Held until the slot is answered or dropped: a request's place among
    /// the `max_in_flight`.
    _permit: Permit,
    /// When the driver gives up waiting for the reply, and the timeout that
    /// means (for the error). The driver keeps every deadline in one timer:
    /// no timer is armed per request.
    deadline: Instant,
    timeout: Duration,
}

impl Pending {
    fn answer(&mut self, outcome: Result<BytesMut>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(outcome);
        }
    }
}

impl Shared {
    fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn terminal(&self) -> Option<Ended> {
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
    fn queue_cancel(&self, id: u64) {
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
    fn end(&self, how: Ended) {
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
        let waiting = self.by_id.end();
        for mut slot in waiting
            .into_iter()
            .chain(queued.into_iter().filter_map(|(_, slot, _)| slot))
        {
            slot.answer(Err(ended_error(&how)));
        }
        for closer in closers {
            let _ = closer.send(Ok(()));
        }
    }
}

impl Link {
    /// The hello exchange if the profile has one (within `deadline`), then
    /// the driver.
    pub(crate) async fn start<Io>(
        io: Io,
        config: &Config,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
        deadline: Instant,
        wiring: Wiring,
    ) -> Result<Link>
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut wire = Wire::new(io, &config.framing());
        if config.profile != Profile::Plain {
            // A server that never answers the hello speaks the plain
            // profile and waits for a request (or is far too slow).
            let no_hello = Mismatch::NoHello(config.connect_timeout);
            tokio::time::timeout_at(deadline, exchange_hellos(&mut wire, &config.node_id))
                .await
                .map_err(|_| Error::from(enchufe_framing::Error::ProfileMismatch(no_hello)))??;
        }
        Ok(Self::spawn(wire, config, addrs, wiring))
    }

    /// Starts the driver. The wire is taken as it is, not raw, because after
    /// a hello exchange its buffer may already hold the server's next frames.
    pub(crate) fn spawn<Io>(
        wire: Wire<Io>,
        config: &Config,
        (peer_addr, local_addr): (Option<SocketAddr>, Option<SocketAddr>),
        wiring: Wiring,
    ) -> Link
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            out: Mutex::default(),
            max_queued: config.outbound_queue.max(1),
            room: Notify::new(),
            signal: Signal::default(),
            by_id: InFlight::new(),
            terminal: Mutex::default(),
            has_ended: AtomicBool::new(false),
            closed_here: AtomicBool::new(false),
            ended: CancellationToken::new(),
            events: wiring.events.clone(),
        });
        let span = tracing::info_span!("client", peer = ?peer_addr);
        let multiplexed = config.profile != Profile::Plain;
        let driver = Driver::new(
            wire,
            shared.clone(),
            multiplexed,
            config.silence_timeout,
            wiring,
        );
        tokio::spawn(driver.run().instrument(span));
        Link {
            inner: Arc::new(LinkInner {
                in_flight: Arc::new(Permits::new(config.max_in_flight)),
                shared,
                profile: config.profile,
                peer_addr,
                local_addr,
            }),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Where this link reports its end.
    pub(crate) fn events(&self) -> broadcast::Sender<Event> {
        self.inner.shared.events.clone()
    }

    /// Whether the connection has ended (lock-free).
    pub(crate) fn is_ended(&self) -> bool {
        self.inner.shared.has_ended.load(Ordering::Acquire)
    }

    /// Resolves when the connection has ended.
    pub(crate) async fn ended(&self) {
        self.inner.shared.ended.cancelled().await;
    }

    /// Queues a one-way frame.
    pub(crate) async fn send(&self, frame: OutFrame) -> Result<()> {
        self.submit(frame, None, None).await
    }

    /// Sends one frame of `len` body bytes read from `reader`, a chunk at a
    /// time (plain profile): memory stays bounded by a few chunks whatever
    /// `len` is. Returns once the whole body is queued for writing.
    pub(crate) async fn send_stream<R>(&self, reader: R, len: u64) -> Result<()>
    where
        R: AsyncRead + Unpin + Send,
    {
        let (tx, chunks) = mpsc::channel(enchufe_framing::BODY_CHUNKS);
        let (done, finished) = oneshot::channel();
        let item = (
            Outgoing::Stream(StreamOut { len, chunks, done }),
            None,
            None,
        );
        match self.try_submit(item) {
            Ok(()) => {}
            Err(None) => return Err(self.closed_error()),
            Err(Some(item)) => self.submit_waiting(item).await?,
        }
        let fed = feed(reader, len, &tx).await;
        drop(tx);
        match finished.await {
            // The driver's answer says why the connection failed, if it did;
            // else the reader's error.
            Ok(Ok(())) => fed,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Sends a request body and waits for the reply frame, until `deadline`
    /// (`timeout` after the call began). Waiting for a permit or for room
    /// in the queue, rare, uses a timer; waiting for the reply, the common
    /// case, uses the driver's one timer.
    pub(crate) async fn exchange(
        &self,
        body: Bytes,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<BytesMut> {
        let in_flight = &self.inner.in_flight;
        let permit = match Permits::try_acquire(in_flight) {
            Some(permit) => permit,
            None => tokio::time::timeout_at(deadline, Permits::acquire(in_flight))
                .await
                .map_err(|_| Error::Timeout(timeout))?,
        };
        let (reply, answer) = oneshot::channel();
        let slot = Pending {
            reply: Some(reply),
            _permit: permit,
            deadline,
            timeout,
        };
        if self.inner.profile == Profile::Plain {
            // Plain: the driver registers the slot as it writes the frame.
            self.submit(OutFrame::plain(body), Some(slot), Some((deadline, timeout)))
                .await?;
            return match answer.await {
                Ok(reply) => reply,
                // The slot was dropped without an answer: the connection ended.
                Err(_) => Err(self.closed_error()),
            };
        }
        // Multiplexed: the slot is registered under a fresh id before the
        // request is queued, and a guard takes it back if this future is
        // dropped first.
        let shared = &self.inner.shared;
        let Ok(id) = shared.by_id.register(slot) else {
            return Err(self.closed_error());
        };
        let cancel = |id| shared.queue_cancel(id);
        let mut outstanding = Abandon::new(&shared.by_id, id, &cancel);
        let frame = OutFrame::with_header(
            Header {
                kind: Kind::Request,
                id,
            },
            body,
        );
        self.submit(frame, None, Some((deadline, timeout))).await?;
        outstanding.sent();
        match answer.await {
            Ok(reply) => reply,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Half-closes the connection (see [`Client::close`](crate::Client::close)):
    /// everything queued is written, then the writing side is shut down.
    pub(crate) async fn close(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let (done, finished) = oneshot::channel();
        {
            let mut out = shared.out();
            if out.closed {
                return Ok(()); // already closed or ended: nothing left to close
            }
            out.closed = true;
            out.close.push(done);
            shared.closed_here.store(true, Ordering::Release);
        }
        shared.room.notify_waiters();
        shared.signal.raise(flag::CLOSE);
        finished.await.unwrap_or(Ok(()))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.is_ended() || self.inner.shared.out().closed
    }

    /// Queues a frame (and a plain request's slot) for the driver, waiting
    /// for room in the queue (until the request's deadline, if it has one).
    async fn submit(
        &self,
        frame: OutFrame,
        slot: Option<Pending>,
        limit: Option<(Instant, Duration)>,
    ) -> Result<()> {
        let item = (Outgoing::Frame(frame), slot, limit.map(|(at, _)| at));
        let item = match self.try_submit(item) {
            Ok(()) => return Ok(()),
            Err(None) => return Err(self.closed_error()),
            Err(Some(item)) => item,
        };
        let wait = self.submit_waiting(item);
        match limit {
            Some((deadline, timeout)) => tokio::time::timeout_at(deadline, wait)
                .await
                .map_err(|_| Error::Timeout(timeout))?,
            None => wait.await,
        }
    }

    /// Queues `item` if there is room now; gives it back if not (`None`
    /// inside when the link is closed).
    #[allow(clippy::result_large_err)] // private; the item comes back whole
    fn try_submit(&self, item: QueueItem) -> std::result::Result<(), Option<QueueItem>> {
        let shared = &self.inner.shared;
        let mut out = shared.out();
        if out.closed {
            return Err(None);
        }
        if out.frames.len() >= shared.max_queued {
            return Err(Some(item));
        }
        out.frames.push_back(item);
        drop(out);
        shared.signal.raise(flag::QUEUED);
        Ok(())
    }

    async fn submit_waiting(&self, item: QueueItem) -> Result<()> {
        let shared = &self.inner.shared;
        let mut item = Some(item);
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut out = shared.out();
                if out.closed {
                    drop(out);
                    return Err(self.closed_error());
                }
                if out.frames.len() < shared.max_queued {
                    if let Some(item) = item.take() {
                        out.frames.push_back(item);
                    }
                    drop(out);
                    shared.signal.raise(flag::QUEUED);
                    return Ok(());
                }
            }
            room.await;
        }
    }

    fn closed_error(&self) -> Error {
        let shared = &self.inner.shared;
        if shared.closed_here.load(Ordering::Acquire) {
            // We closed it: the server's goodbye after ours is not news.
            return Error::Closed;
        }
        shared
            .terminal()
            .map_or(Error::Closed, |how| ended_error(&how))
    }
}

/// Reads exactly `len` bytes from `reader` into chunks for a streamed frame.
/// A reader that ends early sends its error down too: the frame cannot be
/// finished, and the driver ends the connection.
async fn feed<R: AsyncRead + Unpin>(
    mut reader: R,
    len: u64,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut left = len;
    while left > 0 {
        let want = left.min(enchufe_framing::STREAM_CHUNK as u64) as usize;
        let mut chunk = BytesMut::with_capacity(want);
        let n = match reader.read_buf(&mut (&mut chunk).limit(want)).await {
            Ok(0) => {
                let cut = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the reader ended {left} bytes short of the {len} declared"),
                );
                let error = Error::from(std::io::Error::new(cut.kind(), cut.to_string()));
                let _ = tx.send(Err(cut)).await;
                return Err(error);
            }
            Ok(n) => n,
            Err(e) => {
                let error = Error::from(std::io::Error::new(e.kind(), e.to_string()));
                let _ = tx.send(Err(e)).await;
                return Err(error);
            }
        };
        left -= n as u64;
        if tx.send(Ok(chunk.freeze())).await.is_err() {
            // The driver is gone: the caller hears why from it.
            return Ok(());
        }
    }
    Ok(())
}

/// Sends our hello and reads the server's (PROTOCOL.md, section 1). What
/// a server of the plain profile does instead (answers with a message,
/// sends our hello back, closes) is a profile mismatch ([`Error::is_profile_mismatch`]).
async fn exchange_hellos<Io: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<Io>,
    node_id: &str,
) -> Result<()> {
    let ours = Hello::new(node_id).encode().map_err(Error::Encode)?;
    // Each side sends its hello without waiting for the other's, so sending
    // before reading cannot deadlock.
    wire.write(&OutFrame::plain(ours.clone()))?;
    wire.flush().await?;
    let theirs = wire
        .recv()
        .await?
        .ok_or(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::ClosedOnHello,
        )))?;
    if theirs[..] == ours[..] {
        // A server answers with the acceptor flag set: this is ours.
        return Err(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::Echoed,
        )));
    }
    if !mux::is_hello(&theirs) {
        return Err(Error::from(enchufe_framing::Error::ProfileMismatch(
            Mismatch::NotAHello,
        )));
    }
    let hello = Hello::decode(&theirs)?;
    debug!(server = %hello.node_id, "hello exchanged");
    Ok(())
}

/// The bound on requests awaiting replies (`max_in_flight`): an atomic
/// count, so taking and giving back a place costs two atomic operations and
/// no lock (tokio's `Semaphore` locks its waiters' list on every release,
/// which showed in the client's profile). Only a request that finds every
/// place taken waits, on a `Notify`.
#[derive(Debug)]
struct Permits {
    used: AtomicUsize,
    max: usize,
    /// Requests waiting for a place.
    waiting: AtomicUsize,
    freed: Notify,
}

/// One request's place among the `max_in_flight`; given back when dropped.
#[derive(Debug)]
struct Permit(Arc<Permits>);

impl Permits {
    fn new(max: usize) -> Permits {
        Permits {
            used: AtomicUsize::new(0),
            max: max.max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    fn try_acquire(this: &Arc<Permits>) -> Option<Permit> {
        let mut used = this.used.load(Ordering::Relaxed);
        loop {
            if used >= this.max {
                return None;
            }
            match this.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(this.clone())),
                Err(now) => used = now,
            }
        }
    }

    /// Waits for a place (not bounded by itself: the caller's deadline is).
    ///
    /// # Cancel safety
    /// Dropping the future leaves no trace: the waiter count is a guard,
    /// and a notification taken by a dropped waiter passes to the next
    /// (tokio's `Notified` forwards it).
    async fn acquire(this: &Arc<Permits>) -> Permit {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        this.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&this.waiting);
        loop {
            let freed = this.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = Permits::try_acquire(this) {
                return permit;
            }
            freed.await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        if self.0.waiting.load(Ordering::Acquire) > 0 {
            self.0.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_bounded_given_back_on_drop_and_waiters_wake() {
        let permits = Arc::new(Permits::new(2));
        let a = Permits::try_acquire(&permits).unwrap();
        let _b = Permits::try_acquire(&permits).unwrap();
        assert!(Permits::try_acquire(&permits).is_none());
        let waiting = Permits::acquire(&permits);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(a);
        let _c = waiting.await;
        assert!(Permits::try_acquire(&permits).is_none());
        // A waiter that gives up leaves nothing behind.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), Permits::acquire(&permits));
        assert!(gave_up.await.is_err());
        assert_eq!(permits.waiting.load(Ordering::Acquire), 0);
    }
}
