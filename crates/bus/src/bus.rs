//! The bus trait, its messages and subscriptions.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;

use crate::queue::Drain;
use crate::{Error, History, Result};

/// A publish/subscribe bus shared by the servers of a cluster: bytes
/// published to a channel reach every subscription to that channel, on
/// every server attached to the same bus (the publisher's own included).
///
/// Delivery is at most once: a subscriber that is disconnected, or whose
/// queue is full, misses messages (counted in
/// [`Subscription::dropped`]); messages from one publisher arrive in the
/// order they were published.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` to `channel`; resolves once the bus took it,
    /// with the number of subscriptions it reached (each server of a
    /// cluster has one, the publisher's included).
    ///
    /// # Errors
    /// [`Error::Unavailable`](crate::Error::Unavailable) when the bus cannot
    /// be reached, [`Error::Timeout`](crate::Error::Timeout) when it did not
    /// answer in time, [`Error::Closed`](crate::Error::Closed) once closed.
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<usize>>;

    /// Appends `payload` to the history `log`, which keeps at least the
    /// last `keep.max_messages` entries and none older than `keep.max_age`
    /// ([`Bus::history`] reads them back); entries from one caller keep
    /// their order. A bus that keeps histories implements this; the default
    /// keeps none.
    ///
    /// # Errors
    /// As [`Bus::publish`]; [`Error::NoHistory`] from a bus that keeps none
    /// (the default).
    fn append(&self, log: &str, payload: Bytes, keep: History) -> BoxFuture<'_, Result<()>> {
        let _ = (log, payload, keep);
        Box::pin(std::future::ready(Err(Error::NoHistory)))
    }

    /// Appends `payload` to the history `log` ([`Bus::append`]), then
    /// publishes it to `channel`, in that order (whoever receives it can
    /// find it in the history). Resolves as [`Bus::publish`]. A bus that
    /// can do both in one round trip (Redis) overrides this; the default
    /// waits for the append, then publishes, and publishes nothing when the
    /// append failed.
    ///
    /// # Errors
    /// As [`Bus::append`] and [`Bus::publish`].
    fn publish_logged(
        &self,
        channel: &str,
        log: &str,
        payload: Bytes,
        keep: History,
    ) -> BoxFuture<'_, Result<usize>> {
        let appended = self.append(log, payload.clone(), keep);
        let channel = channel.to_owned();
        Box::pin(async move {
            appended.await?;
            self.publish(&channel, payload).await
        })
    }

    /// The entries of the history `log` within `keep` (at most
    /// `keep.max_messages`, the newest), oldest first.
    ///
    /// # Errors
    /// As [`Bus::append`].
    fn history(&self, log: &str, keep: History) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        let _ = (log, keep);
        Box::pin(std::future::ready(Err(Error::NoHistory)))
    }

    /// Subscribes to `channels`; the subscription holds at most
    /// `max_bytes` of payload not yet read, and drops (and counts) what
    /// would go past it. Dropping the subscription unsubscribes.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) once the bus is closed.
    fn subscribe(&self, channels: &[&str], max_bytes: usize) -> Result<Subscription>;
}

/// One message read from a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published to.
    pub channel: String,
    /// The bytes published.
    pub payload: Bytes,
}

impl Message {
    /// What the message costs in a subscription's byte budget.
    pub(crate) fn size(&self) -> usize {
        self.channel.len() + self.payload.len()
    }
}

/// A subscription to some channels of a [`Bus`]: a queue bounded in bytes
/// that the bus fills and [`Subscription::recv`] empties.
#[derive(Debug)]
pub struct Subscription {
    drain: Drain<Message>,
    resumes: Arc<AtomicU64>,
}

impl Subscription {
    /// A subscription reading `drain`; its bus counts in `resumes` each
    /// time it subscribed again after losing its connection.
    pub(crate) fn new(drain: Drain<Message>, resumes: Arc<AtomicU64>) -> Subscription {
        Subscription { drain, resumes }
    }

    /// How many times the bus subscribed again after losing the
    /// connection (each time, what was published meanwhile was missed).
    /// It is counted before any message of the new connection is queued.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Acquire)
    }

    /// The next message; `None` once the bus is closed.
    ///
    /// # Cancel safety
    /// Cancel-safe: no message is lost if this is dropped before it
    /// resolves.
    pub async fn recv(&mut self) -> Option<Message> {
        self.drain.recv().await
    }

    /// How many messages were dropped because this subscription's queue was
    /// full (its reader was slower than the bus).
    pub fn dropped(&self) -> u64 {
        self.drain.dropped()
    }

    /// The payload bytes queued and not yet read.
    pub fn queued_bytes(&self) -> usize {
        self.drain.queued_bytes()
    }

    /// The messages as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Message> + Send {
        futures::stream::unfold(self, |mut sub| async move {
            sub.recv().await.map(|message| (message, sub))
        })
    }
}
