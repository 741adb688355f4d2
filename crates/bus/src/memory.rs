//! The in-process bus: servers in one process (tests, one box).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::bus::{Bus, Message, Subscription};
use crate::queue::{bounded, Feed};
use crate::{History, Result};

/// The subscriptions to one channel (one subscription to several
/// channels shares its feed between them).
type Feeds = Vec<Arc<Feed<Message>>>;

/// A [`Bus`] inside one process: publishing offers the message to every
/// subscription of the channel at once (never waits; a full subscription
/// drops and counts it). Histories ([`Bus::append`]) are kept in memory,
/// trimmed to exactly `max_messages` and `max_age` (on tokio's clock, so a
/// test with paused time can age them). Cheap to clone; clones are the
/// same bus.
///
/// ```
/// use enchufe::bus::{Bus, MemoryBus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), enchufe::bus::Error> {
/// let bus = MemoryBus::new();
/// let mut sub = bus.subscribe(&["news"], 64 * 1024)?;
/// bus.publish("news", "hola".into()).await?;
/// assert_eq!(sub.recv().await.unwrap().payload, "hola");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    channels: Arc<Mutex<HashMap<String, Feeds>>>,
    logs: Arc<Mutex<HashMap<String, Log>>>,
}

/// One history: entries with the time they were appended, oldest first.
type Log = VecDeque<(Instant, Bytes)>;

/// Drops what `keep` no longer keeps.
fn trim(log: &mut Log, keep: History, now: Instant) {
    while log.len() > keep.max_messages {
        log.pop_front();
    }
    while log
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > keep.max_age)
    {
        log.pop_front();
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }
}

impl Bus for MemoryBus {
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<usize>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reached = 0;
        if let Some(feeds) = channels.get_mut(channel) {
            feeds.retain(|feed| !feed.is_closed());
            for feed in feeds.iter() {
                let message = Message {
                    channel: channel.to_owned(),
                    payload: payload.clone(),
                };
                let size = message.size();
                reached += usize::from(feed.offer(message, size));
            }
        }
        Box::pin(std::future::ready(Ok(reached)))
    }

    fn append(&self, log: &str, entry: Bytes, keep: History) -> BoxFuture<'_, Result<()>> {
        let now = Instant::now();
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        if !logs.contains_key(log) {
            // Histories nobody appended to within their age are dropped
            // whole when a new one starts, so rooms that went quiet cost
            // nothing (and a busy room does not pay for the sweep).
            logs.retain(|_, log| {
                trim(log, keep, now);
                !log.is_empty()
            });
        }
        let entries = logs.entry(log.to_owned()).or_default();
        entries.push_back((now, entry));
        trim(entries, keep, now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn history(&self, log: &str, keep: History) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        let now = Instant::now();
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = match logs.get_mut(log) {
            Some(entries) => {
                trim(entries, keep, now);
                // The newest, up to `max_read_bytes`.
                let mut bytes = 0;
                let mut newest: Vec<Bytes> = entries
                    .iter()
                    .rev()
                    .map(|(_, entry)| entry.clone())
                    .take_while(|entry| {
                        bytes += entry.len();
                        bytes <= keep.max_read_bytes
                    })
                    .collect();
                newest.reverse();
                newest
            }
            None => Vec::new(),
        };
        Box::pin(std::future::ready(Ok(entries)))
    }

    fn subscribe(&self, channels: &[&str], max_bytes: usize) -> Result<Subscription> {
        let (feed, drain) = bounded(max_bytes);
        let feed = Arc::new(feed);
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for channel in channels {
            map.entry((*channel).to_owned())
                .or_default()
                .push(feed.clone());
        }
        Ok(Subscription::new(drain, Arc::default()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The last two entries of the last minute.
    const KEEP: History = History {
        max_messages: 2,
        max_age: Duration::from_secs(60),
        max_read_bytes: 1 << 20,
    };

    #[tokio::test]
    async fn append_keeps_the_newest_entries_and_publishes_nothing() {
        let bus = MemoryBus::new();
        let sub = bus.subscribe(&["sala"], 1 << 10).unwrap();
        for entry in ["a", "b", "c"] {
            bus.append("log", entry.into(), KEEP).await.unwrap();
        }
        assert_eq!(bus.history("log", KEEP).await.unwrap(), ["b", "c"]);
        assert_eq!(sub.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn publish_logged_appends_then_publishes() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe(&["sala"], 1 << 10).unwrap();
        let reached = bus.publish_logged("sala", "log", "hola".into(), KEEP).await;
        assert_eq!(reached.unwrap(), 1);
        assert_eq!(sub.recv().await.unwrap().payload, "hola");
        assert_eq!(bus.history("log", KEEP).await.unwrap(), ["hola"]);
    }
}
