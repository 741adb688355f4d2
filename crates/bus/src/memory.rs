//! The in-process bus: servers in one process (tests, one box).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::bus::{Bus, Message, Subscription};
use crate::queue::{bounded, Feed};
use crate::Result;

/// The subscriptions to one channel (one subscription to several
/// channels shares its feed between them).
type Feeds = Vec<Arc<Feed<Message>>>;

/// A [`Bus`] inside one process: publishing offers the message to every
/// subscription of the channel at once (never waits; a full subscription
/// drops and counts it). Cheap to clone; clones are the same bus.
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
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }
}

impl Bus for MemoryBus {
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<()>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feeds) = channels.get_mut(channel) {
            feeds.retain(|feed| !feed.is_closed());
            for feed in feeds.iter() {
                let message = Message {
                    channel: channel.to_owned(),
                    payload: payload.clone(),
                };
                let size = message.size();
                feed.offer(message, size);
            }
        }
        Box::pin(std::future::ready(Ok(())))
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
        Ok(Subscription::new(drain))
    }
}
