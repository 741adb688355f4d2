//! Many requests from one task, [`Client::pipeline`].

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_framing::{Decode, Encode};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::time::Instant;

use crate::link::{Link, Ready, Window};
use crate::{Client, Error, Result};

/// The replies to a sequence of requests sent on one connection with up to
/// `depth` in flight, in the order of the requests: what
/// [`Client::pipeline`] returns. A [`Stream`] of `Result<R>`, one item per
/// request.
///
/// One task drives it, so replies cost no task wakeup each and no channel:
/// the connection's driver puts each reply in its place in a window of
/// `depth` places, and wakes the pipeline only when the reply it waits for
/// (the oldest) has come. Each poll first tops the window up with the next
/// requests, so it stays full while replies are taken.
///
/// Each request is as one [`Client::request`]: the client's request
/// timeout from when it is sent, the same errors in its place, its place
/// among [`Config::max_in_flight`](crate::Config::max_in_flight). A
/// request whose message does not encode gets its error in its place, and
/// the others go on.
///
/// The pipeline takes the client's connection when first polled and keeps
/// it: if that connection ends, the requests left get its error (a
/// reconnecting client's later connections are not used). If no connection
/// comes ([`WhileDown`](crate::WhileDown)), the stream yields that error
/// once and ends.
///
/// # Cancel safety
/// Dropping the pipeline gives up its requests in flight, as dropping
/// their `request` futures would: in the multiplexed profile their slots
/// are freed at once and the server is sent a `cancel` for each; in the
/// plain profile each slot stays until its reply arrives, so later replies
/// still pair with their own requests. Requests not yet taken from the
/// iterator are never sent.
pub struct Pipeline<I, R> {
    client: Client,
    requests: I,
    /// The connection, once had.
    link: Option<Link>,
    /// Waiting for a connection (a reconnecting client that has none).
    connecting: Option<BoxFuture<'static, Result<Link>>>,
    depth: usize,
    timeout: Duration,
    window: Arc<Window>,
    /// Whether the pipeline has a lane (its requests take no slot each),
    /// and multiplexed, the high bits of its lane's ids.
    lane: Option<Option<u64>>,
    /// Places reserved in the window so far.
    reserved: u64,
    /// Places whose outcome was taken out of the window (into `answered`).
    taken: u64,
    /// Outcomes taken from the window, oldest first, not yet yielded (at
    /// most `depth`).
    answered: VecDeque<Result<BytesMut>>,
    /// Multiplexed requests in flight, `(place, id)`, oldest first: what
    /// dropping the pipeline cancels.
    ids: VecDeque<(u64, u64)>,
    /// Requests encoded, with their place and deadline, not yet queued:
    /// they wait for a place among `max_in_flight` or for room in the
    /// queue (at most `depth`).
    unsent: VecDeque<(Bytes, u64, Instant)>,
    /// That wait.
    waiting: Option<BoxFuture<'static, Option<Ready>>>,
    /// No more requests in the iterator.
    drained: bool,
    /// The stream has ended.
    ended: bool,
    reply: PhantomData<fn() -> R>,
}

impl<I, R> Pipeline<I, R> {
    pub(crate) fn new(client: Client, requests: I, depth: usize, timeout: Duration) -> Self {
        Pipeline {
            client,
            requests,
            link: None,
            connecting: None,
            depth: depth.max(1),
            timeout,
            window: Arc::new(Window::default()),
            lane: None,
            reserved: 0,
            taken: 0,
            answered: VecDeque::new(),
            ids: VecDeque::new(),
            unsent: VecDeque::new(),
            waiting: None,
            drained: false,
            ended: false,
            reply: PhantomData,
        }
    }

    /// Requests sent (or failed) whose outcome is still in the window.
    fn in_flight(&self) -> usize {
        (self.reserved - self.taken) as usize
    }
}

impl<I, M, R> Pipeline<I, R>
where
    I: Iterator<Item = M>,
    M: Encode,
{
    /// Tops the window up to `depth` with the next requests, then queues
    /// what it can in one batch. The clock is read once per batch.
    fn fill(&mut self, link: &Link, cx: &mut Context<'_>) {
        let room = self.depth - self.in_flight();
        if room > 0 && !self.drained {
            let first = self.window.reserve(room);
            let deadline = Instant::now() + self.timeout;
            let mut seq = first;
            while seq < first + room as u64 {
                let Some(msg) = self.requests.next() else {
                    self.drained = true;
                    break;
                };
                match self.client.body(msg) {
                    Ok(body) => self.unsent.push_back((body, seq, deadline)),
                    Err(e) => self.window.fill(seq, Err(e)),
                }
                seq += 1;
            }
            self.reserved = seq;
            if seq < first + room as u64 {
                // The iterator ended inside the reservation: give the rest back.
                self.window.unreserve((first + room as u64 - seq) as usize);
            }
        }
        loop {
            let mut ready = None;
            if let Some(waiting) = self.waiting.as_mut() {
                match waiting.poll_unpin(cx) {
                    Poll::Pending => return,
                    Poll::Ready(got) => {
                        self.waiting = None;
                        match got {
                            Some(got) => ready = Some(got),
                            None => {
                                // Out of time before it could be sent.
                                if let Some((_, seq, _)) = self.unsent.pop_front() {
                                    self.window.fill(seq, Err(Error::Timeout(self.timeout)));
                                }
                            }
                        }
                    }
                }
            }
            if self.unsent.is_empty() {
                return;
            }
            let window = &self.window;
            match self.lane {
                Some(base) => link.send_lane(&mut self.unsent, window, base, ready),
                None => {
                    link.try_pipelined(&mut self.unsent, self.timeout, window, ready, &mut self.ids)
                }
            }
            let Some(&(_, _, deadline)) = self.unsent.front() else {
                return;
            };
            // Rare: every place among `max_in_flight` is taken, or the
            // queue is full. Wait for both, boxed.
            self.waiting = Some(link.clone().ready(deadline).boxed());
        }
    }
}

impl<I, M, R> Stream for Pipeline<I, R>
where
    I: Iterator<Item = M> + Unpin,
    M: Encode,
    R: Decode,
{
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let link = match &this.link {
            Some(link) => link.clone(),
            None => {
                let connecting = this.connecting.get_or_insert_with(|| {
                    let client = this.client.clone();
                    async move { client.link_owned().await }.boxed()
                });
                match connecting.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(link)) => {
                        this.connecting = None;
                        // Nothing is reserved yet: the lane's window replaces
                        // the empty one.
                        if let Some((window, base)) = link.open_lane(this.timeout) {
                            this.window = window;
                            this.lane = Some(base);
                        }
                        this.link = Some(link.clone());
                        link
                    }
                    Poll::Ready(Err(e)) => {
                        this.connecting = None;
                        this.ended = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        };
        if this.answered.is_empty() {
            // Outcomes first, so that their places are refilled at once.
            let taken = this.window.take_answered(&mut this.answered, cx);
            this.taken += taken as u64;
            while this.ids.front().is_some_and(|&(seq, _)| seq < this.taken) {
                this.ids.pop_front();
            }
            this.fill(&link, cx);
        }
        let Some(outcome) = this.answered.pop_front() else {
            if this.drained && this.in_flight() == 0 {
                this.ended = true;
                return Poll::Ready(None);
            }
            // The window (or the wait for room) has the waker.
            return Poll::Pending;
        };
        let outcome = match outcome {
            // A slot dropped unanswered: the connection ended.
            Err(Error::Closed) => Err(link.why_closed()),
            other => other,
        };
        Poll::Ready(Some(
            outcome.and_then(|frame| R::decode(frame).map_err(Error::Decode)),
        ))
    }
}

impl<I, R> Drop for Pipeline<I, R> {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            if let Some(Some(base)) = self.lane {
                link.close_lane(base, &self.window);
            }
            for &(_, id) in &self.ids {
                link.abandon(id);
            }
        }
    }
}

impl<I, R> fmt::Debug for Pipeline<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("depth", &self.depth)
            .field("in_flight", &self.in_flight())
            .field("drained", &self.drained)
            .finish_non_exhaustive()
    }
}
