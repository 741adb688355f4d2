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
//!
//! Files: this one, the handle ([`Link`]); `shared` what handles and
//! driver share (queue, reply slots, the end); `driver` the task;
//! `permits` the `max_in_flight` bound; `window` a pipeline's reply
//! places; `lanes` the multiplexed pipelines, whose requests take no reply
//! slot each; `stream` streamed bodies; `hello`
//! the multiplexed hello exchange; `wiring` where pushes and the end go.
//! Children import each other, never this file.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_engine::notify::until_notified;
use enchufe_engine::session::{Abandon, InFlight};
use enchufe_engine::Signal;
use enchufe_framing::mux::{Header, Kind, Mismatch, Profile};
use enchufe_framing::{OutFrame, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod driver;
mod driving;
mod hello;
mod lanes;
mod permits;
mod shared;
mod stream;
mod window;
mod wiring;

use driver::Driver;
use driving::{Drive, Driving};
use hello::exchange_hellos;
use permits::Permits;
use shared::{flag, Outgoing, Pending, QueueItem, Reply, Shared, Slot};
use stream::{feed, StreamOut};
pub(crate) use window::Window;
pub(crate) use wiring::Wiring;

use crate::error::ended_error;
use crate::region::FileBytes;
use crate::{Config, Error, Event, Result};

/// A place among the `max_in_flight`, waited for by [`Link::ready`].
#[derive(Debug)]
pub(crate) struct Ready(permits::Permit);

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
    /// The driver, which a pipeline polls in place to write its batch.
    driver: Arc<dyn Drive>,
    profile: Profile,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    /// The I/O is a plain `TcpStream` (on Linux): the driver sends file
    /// regions with `sendfile`. Known from the I/O's type at spawn, so no
    /// transport needs a bound or a method for it.
    #[cfg(target_os = "linux")]
    zero_copy: bool,
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        // The driver sends what is queued, half-closes and stops.
        self.shared.signal.raise(flag::DROPPED);
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
            lanes: lanes::Lanes::default(),
            terminal: Mutex::default(),
            has_ended: AtomicBool::new(false),
            closed_here: AtomicBool::new(false),
            ended: CancellationToken::new(),
            events: wiring.events.clone(),
            file_bytes: Default::default(),
        });
        let span = tracing::info_span!("client", peer = ?peer_addr);
        let multiplexed = config.profile != Profile::Plain;
        let in_flight = Arc::new(Permits::new(config.max_in_flight));
        let driver = Driver::new(
            wire,
            shared.clone(),
            in_flight.clone(),
            multiplexed,
            config.silence_timeout,
            wiring,
        );
        let driving = Driving::new(driver, span.clone());
        tokio::spawn(driving.clone().run().instrument(span));
        Link {
            inner: Arc::new(LinkInner {
                in_flight,
                shared,
                driver: driving,
                profile: config.profile,
                peer_addr,
                local_addr,
                #[cfg(target_os = "linux")]
                zero_copy: driver::is_tcp::<Io>(),
            }),
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Bytes of file regions sent with `sendfile`, and read into buffers.
    pub(crate) fn file_region_bytes(&self) -> (u64, u64) {
        self.inner.shared.file_bytes.read()
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
        let frame = |header: Option<Header>| {
            Outgoing::Frame(match header {
                None => OutFrame::plain(body),
                Some(header) => OutFrame::with_header(header, body),
            })
        };
        self.exchange_with(frame, deadline, timeout).await
    }

    /// Sends a request whose body is `head` then the bytes of `region`, and
    /// waits for the reply frame, as [`Link::exchange`]. On plain TCP (Linux)
    /// the driver sends the region with `sendfile`; on every other
    /// transport it is read into the body first, on the blocking pool.
    pub(crate) async fn exchange_file(
        &self,
        head: Bytes,
        region: crate::FileRegion,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<BytesMut> {
        #[cfg(target_os = "linux")]
        if self.inner.zero_copy {
            let file = |header: Option<Header>| {
                let (head, id) = match header {
                    None => (head, None),
                    Some(header) => {
                        let mut prefixed =
                            BytesMut::with_capacity(enchufe_framing::mux::HEADER_LEN + head.len());
                        prefixed.extend_from_slice(&header.to_bytes());
                        prefixed.extend_from_slice(&head);
                        (prefixed.freeze(), Some(header.id))
                    }
                };
                Outgoing::File(shared::FileOut { head, region, id })
            };
            return self.exchange_with(file, deadline, timeout).await;
        }
        let len = region.len() as u64;
        let body = tokio::time::timeout_at(deadline, region.read_after(head))
            .await
            .map_err(|_| Error::Timeout(timeout))?
            .map_err(Error::FileRegion)?;
        FileBytes::add(&self.inner.shared.file_bytes.copied, len);
        self.exchange(body, deadline, timeout).await
    }

    /// [`Link::exchange`] for any outgoing item: `item` makes it from the
    /// request's multiplexed header (`None` in the plain profile).
    async fn exchange_with(
        &self,
        item: impl FnOnce(Option<Header>) -> Outgoing,
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
            reply: Some(Reply::One(reply)),
            _permit: permit,
            deadline,
            timeout,
        };
        if self.inner.profile == Profile::Plain {
            // Plain: the driver registers the slot as it writes the frame.
            self.submit_item(item(None), Some(slot), Some((deadline, timeout)))
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
        let header = Header {
            kind: Kind::Request,
            id,
        };
        self.submit_item(item(Some(header)), None, Some((deadline, timeout)))
            .await?;
        outstanding.sent();
        match answer.await {
            Ok(reply) => reply,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Queues pipelined requests from the front of `batch`, `(body, place,
    /// deadline)`, whose replies go to `window`'s places, as far as they
    /// can go now: a place among the `max_in_flight` each (`ready` holds
    /// one for the first) and room in the queue. One lock and one signal
    /// for the batch. What cannot go yet stays in `batch` ([`Link::ready`]
    /// waits for it); if the link is closed, every place is answered with
    /// why and `batch` emptied. Each multiplexed request's `(place, id)`
    /// goes to `ids`, for [`Link::abandon`].
    pub(crate) fn try_pipelined(
        &self,
        batch: &mut VecDeque<(Bytes, u64, Instant)>,
        timeout: Duration,
        window: &Arc<Window>,
        mut ready: Option<Ready>,
        ids: &mut VecDeque<(u64, u64)>,
    ) {
        let shared = &self.inner.shared;
        let plain = self.inner.profile == Profile::Plain;
        let mut out = shared.out();
        // Multiplexed: the batch's slots registered under one lock, taken
        // after `out` as everywhere (the end takes them one at a time).
        let mut by_id = (!plain).then(|| shared.by_id.registrar());
        let mut queued = false;
        while !out.closed && out.frames.len() < shared.max_queued {
            let permit = match ready.take() {
                Some(Ready(permit)) => permit,
                None => match Permits::try_acquire(&self.inner.in_flight) {
                    Some(permit) => permit,
                    None => break,
                },
            };
            let Some((body, seq, deadline)) = batch.pop_front() else {
                break;
            };
            let slot = Pending {
                reply: Some(Reply::Window(window.clone(), seq)),
                _permit: permit,
                deadline,
                timeout,
            };
            let item = if plain {
                // The driver registers the slot as it writes the frame.
                (
                    Outgoing::Frame(OutFrame::plain(body)),
                    Some(Slot::One(slot)),
                    Some(deadline),
                )
            } else {
                // Registered before the frame is queued, so the reply finds it.
                // It cannot have ended while `out` is open (the end closes
                // `out` first); were it so, the slot's drop answers its place.
                let registered = match by_id.as_mut() {
                    Some(by_id) => by_id.register(slot),
                    None => shared.by_id.register(slot),
                };
                let Ok(id) = registered else {
                    break;
                };
                ids.push_back((seq, id));
                let header = Header {
                    kind: Kind::Request,
                    id,
                };
                (
                    Outgoing::Frame(OutFrame::with_header(header, body)),
                    None,
                    Some(deadline),
                )
            };
            out.frames.push_back(item);
            queued = true;
        }
        let closed = out.closed;
        drop(by_id);
        drop(out);
        if queued {
            shared.signal.raise(flag::QUEUED | flag::WHOLE);
        }
        if closed && !batch.is_empty() {
            for (_, seq, _) in batch.drain(..) {
                window.fill(seq, Err(self.closed_error()));
            }
        }
    }

    /// A lane for a pipeline: its window, and (multiplexed profile) the
    /// high bits of its requests' ids; a plain lane's requests take their
    /// replies in line. `None` once the connection has ended or while the
    /// link has all the multiplexed lanes it can hold: the pipeline then
    /// takes a slot per request.
    pub(crate) fn open_lane(&self, timeout: Duration) -> Option<(Arc<Window>, Option<u64>)> {
        let window = Arc::new(Window::lane(self.inner.in_flight.clone(), timeout));
        if self.inner.profile == Profile::Plain {
            return (!self.is_ended()).then_some((window, None));
        }
        let base = self.inner.shared.lanes.open(window.clone())?;
        Some((window, Some(base)))
    }

    /// Queues a lane's requests as [`Link::try_lane`] does and, when the
    /// driver is not being polled elsewhere, polls it once from the
    /// caller's task: the batch is written now, before the caller hands
    /// out the replies that freed its places, and the driver's task is
    /// not woken for it.
    pub(crate) fn send_lane(
        &self,
        batch: &mut VecDeque<(Bytes, u64, Instant)>,
        window: &Arc<Window>,
        base: Option<u64>,
        ready: Option<Ready>,
    ) {
        let mut ready = ready;
        self.inner.driver.drive(&mut |here| {
            self.try_lane(batch, window, base, ready.take(), here);
        });
    }

    /// Queues a lane's requests from the front of `batch`, `(body, place,
    /// deadline)`, as [`Link::try_pipelined`] does, with the places among
    /// `max_in_flight` taken in one step for the batch (`ready` holds one).
    /// Multiplexed (`base`: the ids' high bits), `window`'s places hold
    /// them and give each back when answered; plain, the driver's line of
    /// replies holds them, one entry for the batch, until each reply comes.
    /// `quiet`: the caller holds the driver and polls it next, so the
    /// driver's task is not woken.
    fn try_lane(
        &self,
        batch: &mut VecDeque<(Bytes, u64, Instant)>,
        window: &Arc<Window>,
        base: Option<u64>,
        ready: Option<Ready>,
        quiet: bool,
    ) {
        let shared = &self.inner.shared;
        let in_flight = &self.inner.in_flight;
        let mut held = 0;
        if let Some(Ready(permit)) = ready {
            permit.into_count();
            held = 1;
        }
        let mut out = shared.out();
        let room = shared
            .max_queued
            .saturating_sub(out.frames.len())
            .min(batch.len());
        if !out.closed && held < room {
            held += in_flight.try_acquire_many(room - held);
        }
        let n = if out.closed { 0 } else { held.min(room) };
        match base {
            Some(base) if n > 0 => {
                // Marked under the queue's lock: the end, which closes the
                // queue first, finds every request it takes marked.
                let mut sending = window.sending();
                for (body, seq, deadline) in batch.drain(..n) {
                    sending.sent(seq, deadline);
                    let header = Header {
                        kind: Kind::Request,
                        id: lanes::id(base, seq),
                    };
                    out.frames.push_back((
                        Outgoing::Frame(OutFrame::with_header(header, body)),
                        None,
                        Some(deadline),
                    ));
                }
            }
            None if n > 0 => {
                // One `Arc` of the window for the batch, with its first
                // request; the others follow it in the queue.
                let mut first = Some(window.clone());
                for (body, seq, deadline) in batch.drain(..n) {
                    let slot = match first.take() {
                        Some(window) => Slot::LaneFirst(window, seq),
                        None => Slot::LaneNext(seq),
                    };
                    out.frames.push_back((
                        Outgoing::Frame(OutFrame::plain(body)),
                        Some(slot),
                        Some(deadline),
                    ));
                }
            }
            _ => {}
        }
        let closed = out.closed;
        drop(out);
        in_flight.release(held - n);
        if n > 0 && quiet {
            // The caller polls the driver next.
            shared.signal.set(flag::QUEUED | flag::WHOLE);
        } else if n > 0 {
            shared.signal.raise(flag::QUEUED | flag::WHOLE);
        }
        if closed && !batch.is_empty() {
            for (_, seq, _) in batch.drain(..) {
                window.fill(seq, Err(self.closed_error()));
            }
        }
    }

    /// A pipeline's lane whose replies nobody will take: closed, its
    /// requests in flight given up (their places among `max_in_flight`
    /// freed now) and the server told to stop each.
    pub(crate) fn close_lane(&self, base: u64, window: &Window) {
        let shared = &self.inner.shared;
        shared.lanes.close(base);
        for seq in window.give_up(|| Error::Closed) {
            shared.queue_cancel(lanes::id(base, seq));
        }
        window.clear();
    }

    /// Waits, until `deadline`, for a place among the `max_in_flight` and
    /// for room in the queue (or the link's end): what
    /// [`Link::try_pipelined`] needs. `None` when the deadline passed first.
    pub(crate) async fn ready(self, deadline: Instant) -> Option<Ready> {
        let shared = &self.inner.shared;
        let wait = async {
            let permit = Permits::acquire(&self.inner.in_flight).await;
            loop {
                let room = shared.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                {
                    let out = shared.out();
                    if out.closed || out.frames.len() < shared.max_queued {
                        return Ready(permit);
                    }
                }
                room.await;
            }
        };
        tokio::time::timeout_at(deadline, wait).await.ok()
    }

    /// A pipelined multiplexed request whose reply nobody will take: its
    /// slot is freed now and the server told to stop, unless its answer
    /// came first.
    pub(crate) fn abandon(&self, id: u64) {
        let shared = &self.inner.shared;
        if shared.by_id.take(id).is_some() {
            shared.queue_cancel(id);
        }
    }

    /// The error for a request the link could not answer.
    pub(crate) fn why_closed(&self) -> Error {
        self.closed_error()
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
        self.submit_item(Outgoing::Frame(frame), slot, limit).await
    }

    /// [`Link::submit`] for any outgoing item.
    async fn submit_item(
        &self,
        item: Outgoing,
        slot: Option<Pending>,
        limit: Option<(Instant, Duration)>,
    ) -> Result<()> {
        let item = (item, slot.map(Slot::One), limit.map(|(at, _)| at));
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
        until_notified(&shared.room, || {
            let mut out = shared.out();
            if out.closed {
                drop(out);
                return Some(Err(self.closed_error()));
            }
            if out.frames.len() >= shared.max_queued {
                return None;
            }
            out.frames.extend(item.take());
            drop(out);
            shared.signal.raise(flag::QUEUED);
            Some(Ok(()))
        })
        .await
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
