//! Requests this end sends on a peer connection ([`Connection::request`]),
//! waiting for the other end's replies: bounded in number, each with its
//! deadline, a `cancel` sent for one given up.
//!
//! [`Connection::request`]: crate::Connection::request

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enchufe_engine::session::{Abandon, InFlight};
use enchufe_framing::mux::{Header, Kind};
use enchufe_framing::OutFrame;
use tokio::sync::{oneshot, Semaphore};
use tracing::trace;

use crate::{Error, Result};

/// How a request reaches the other end: the connection's output.
pub(crate) trait Carrier: Sync {
    /// `frame` if it is within the frame limit.
    fn check_len(&self, frame: OutFrame) -> Result<OutFrame>;
    /// Queues `frame`, waiting for room under the output's budget.
    async fn send(&self, frame: OutFrame) -> Result<()>;
    /// Tells the other end we gave up on request `id`.
    fn cancel(&self, id: u64);
}

/// Requests sent, awaiting replies.
pub(crate) struct Requests {
    /// Bounds requests awaiting replies (`max_in_flight`).
    permits: Semaphore,
    /// Reply slots by id: the session layer's table, the one the client
    /// uses too. After the connection's end, registering fails at once.
    slots: InFlight<oneshot::Sender<Result<BytesMut>>>,
    timeout: Duration,
}

impl Requests {
    pub(crate) fn new(max_in_flight: usize, timeout: Duration) -> Requests {
        Requests {
            permits: Semaphore::new(max_in_flight),
            slots: InFlight::new(),
            timeout,
        }
    }

    /// How long a request waits for its reply unless told otherwise.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `body` as a request through `carrier` and waits for its
    /// reply: for a place among `max_in_flight` first, then for room in the
    /// output. Dropping the future gives the request up (its slot freed, a
    /// `cancel` sent).
    pub(crate) async fn exchange(&self, carrier: &impl Carrier, body: Bytes) -> Result<BytesMut> {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let request = |id| {
            OutFrame::with_header(
                Header {
                    kind: Kind::Request,
                    id,
                },
                body.clone(),
            )
        };
        // The id does not change the length: check before registering.
        carrier.check_len(request(0))?;
        let (reply, answer) = oneshot::channel();
        let id = self.slots.register(reply).map_err(|_| Error::Closed)?;
        let cancel = |id| carrier.cancel(id);
        let mut outstanding = Abandon::new(&self.slots, id, &cancel);
        carrier.send(request(id)).await?;
        outstanding.sent();
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Answers request `id` with what the other end sent; a reply for an id
    /// no one waits for any more (timed out, cancelled) is dropped.
    pub(crate) fn answer(&self, id: u64, outcome: Result<BytesMut>) {
        match self.slots.take(id) {
            Some(slot) => {
                let _ = slot.send(outcome);
            }
            None => trace!(id, "reply for an abandoned request dropped"),
        }
    }

    /// The connection has ended: every request still waiting fails, and
    /// later ones fail at once.
    pub(crate) fn end(&self) {
        for slot in self.slots.end() {
            let _ = slot.send(Err(Error::Closed));
        }
        self.permits.close();
    }
}
