//! The Redis bus (feature `redis`).
//!
//! Crate: `redis` (redis-rs), the kept Rust client, with tokio. Publishing
//! goes through one multiplexed connection (commands from every task share
//! it, in order); each subscription has its own pub/sub connection, as
//! Redis requires (a subscribed connection takes no other commands).
//!
//! Plain pub/sub (`PUBLISH`/`SUBSCRIBE`), not sharded (`SPUBLISH`, Redis 7):
//! on one Redis server, or a primary with replicas, they behave alike; in a
//! Redis Cluster plain pub/sub sends every message to every node, which
//! sharded pub/sub avoids by keeping a channel on its key's shard. A
//! cluster of enchufe servers uses few channels (one by default), so a
//! sharded channel would sit on one shard anyway; plain pub/sub works with
//! every Redis from 2.0 and with Valkey.
//!
//! Failures: a publish that fails drops the connection and the next one
//! reconnects, no sooner than a backoff that doubles from
//! [`RedisConfig::min_backoff`] to [`RedisConfig::max_backoff`]; until then
//! publishes fail at once with [`Error::Unavailable`] instead of each
//! waiting for a connect. A subscription whose connection ends reconnects
//! with the same backoff and subscribes again; messages published while it
//! was away are lost (pub/sub keeps nothing): a publisher learns it from
//! `PUBLISH`'s count of subscriptions reached, and a member recovers them
//! from the history.
//!
//! Histories ([`Bus::publish_logged`]): one Redis Stream per room
//! (`XADD key MAXLEN ~ N * e PAYLOAD`, then `PEXPIRE key AGE` and the
//! `PUBLISH`, pipelined in one round trip and run in that order); read
//! with `TIME` and `XREVRANGE` in pages from the newest, keeping entries
//! younger than the age by Redis's clock, up to `max_read_bytes` (the
//! exclusive `(ID` range needs Redis 6.2 or later). `MAXLEN ~` lets Redis trim whole stream
//! nodes (100 entries by default), so up to about 100 more than N stay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Message, Subscription};
use crate::queue::{bounded, Feed};
use crate::{Error, History, Result};

/// A duration in whole milliseconds, at least 1 (Redis refuses an expiry
/// of 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Settings of a [`RedisBus`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// How long a connect may take. Default 2 s: a Redis on the same
    /// network answers in milliseconds; longer only delays the report that
    /// it is down.
    pub connect_timeout: Duration,
    /// How long a `PUBLISH` may take. Default 2 s, for the same reason.
    pub command_timeout: Duration,
    /// The first wait before reconnecting after a failure. Default 100 ms.
    pub min_backoff: Duration,
    /// The longest wait between reconnects; the wait doubles up to it.
    /// Default 2 s: a restarted Redis is found again within about that.
    pub max_backoff: Duration,
    /// How often a subscription pings Redis, to notice a connection that
    /// died without a word (a cut network, a firewall's dropped state):
    /// no answer within [`RedisConfig::command_timeout`] and it reconnects.
    /// Default 5 s: a dead subscription is found within about 7 s, for one
    /// small command per subscription every 5 s.
    pub keepalive: Duration,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            keepalive: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`RedisBus`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Messages Redis took.
    pub published: u64,
    /// Publishes that failed (Redis down, timed out, waiting to reconnect).
    pub publish_failures: u64,
    /// Times a subscription connected again after losing its connection.
    pub resubscribes: u64,
    /// The publishing connection is up.
    pub connected: bool,
}

/// A [`Bus`] on Redis pub/sub (see the module docs for the choices).
/// Cheap to clone; clones share the connections. [`RedisBus::close`] ends
/// its subscriptions.
///
/// ```no_run
/// use enchufe::bus::{Bus, RedisBus, RedisConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), enchufe::bus::Error> {
/// let bus = RedisBus::open("redis://127.0.0.1:6379", RedisConfig::default())?;
/// let mut sub = bus.subscribe(&["news"], 1 << 20)?;
/// bus.publish("news", "hola".into()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: redis::Client,
    config: RedisConfig,
    publisher: Mutex<Publisher>,
    published: AtomicU64,
    publish_failures: AtomicU64,
    resubscribes: AtomicU64,
    connected: AtomicBool,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// The publishing connection and when to try again after a failure.
#[derive(Debug)]
struct Publisher {
    conn: Option<MultiplexedConnection>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl RedisBus {
    /// A bus on the Redis at `url` (`redis://HOST:PORT`). Connects lazily:
    /// on the first publish, and in the background for each subscription.
    ///
    /// # Errors
    /// [`Error::Address`] if `url` is not a Redis URL.
    pub fn open(url: &str, config: RedisConfig) -> Result<RedisBus> {
        let client = redis::Client::open(url).map_err(|e| Error::Address(e.into()))?;
        Ok(RedisBus {
            shared: Arc::new(Shared {
                client,
                publisher: Mutex::new(Publisher {
                    conn: None,
                    retry_at: None,
                    backoff: config.min_backoff,
                }),
                config,
                published: AtomicU64::new(0),
                publish_failures: AtomicU64::new(0),
                resubscribes: AtomicU64::new(0),
                connected: AtomicBool::new(false),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> RedisStats {
        let s = &self.shared;
        RedisStats {
            published: s.published.load(Ordering::Relaxed),
            publish_failures: s.publish_failures.load(Ordering::Relaxed),
            resubscribes: s.resubscribes.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription (their `recv` returns `None`) and waits for
    /// their tasks; later publishes and subscribes fail with
    /// [`Error::Closed`].
    pub async fn close(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Shared {
    fn publisher(&self) -> std::sync::MutexGuard<'_, Publisher> {
        self.publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The publishing connection, connecting if the backoff allows.
    async fn connection(&self) -> Result<MultiplexedConnection> {
        {
            let publisher = self.publisher();
            if let Some(conn) = &publisher.conn {
                return Ok(conn.clone());
            }
            if publisher.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(Error::Unavailable("waiting to reconnect to redis".into()));
            }
        }
        let connect = self.client.get_multiplexed_async_connection();
        match timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(conn)) => {
                let mut publisher = self.publisher();
                publisher.conn = Some(conn.clone());
                publisher.retry_at = None;
                publisher.backoff = self.config.min_backoff;
                self.connected.store(true, Ordering::Relaxed);
                Ok(conn)
            }
            Ok(Err(e)) => {
                self.lost();
                Err(Error::Unavailable(e.into()))
            }
            Err(_) => {
                self.lost();
                Err(Error::Timeout)
            }
        }
    }

    /// The publishing connection failed: drop it, wait before the next try.
    fn lost(&self) {
        let mut publisher = self.publisher();
        publisher.conn = None;
        publisher.retry_at = Some(Instant::now() + publisher.backoff);
        publisher.backoff = (publisher.backoff * 2).min(self.config.max_backoff);
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Runs one request (a command or a pipeline) on the publishing
    /// connection within the command timeout. A connection that failed is
    /// dropped, so the next request reconnects (after the backoff); an
    /// error reply from Redis leaves it be.
    async fn request<T>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        if self.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        let mut conn = self.connection().await?;
        match timeout(self.config.command_timeout, run(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.lost();
                }
                Err(Error::Unavailable(e.into()))
            }
            Err(_) => {
                self.lost();
                Err(Error::Timeout)
            }
        }
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> Result<usize> {
        let command = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&payload[..])
            .to_owned();
        let outcome = self
            .request(async |conn| command.query_async::<usize>(conn).await)
            .await;
        match &outcome {
            Ok(_) => self.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.publish_failures.fetch_add(1, Ordering::Relaxed),
        };
        outcome
    }

    /// `XADD log MAXLEN ~ N * e PAYLOAD` and `PEXPIRE log AGE`: a stream
    /// trimmed to about its length as it grows, gone whole once nobody
    /// wrote to it for its age.
    fn append_to(pipe: &mut redis::Pipeline, log: &str, payload: &[u8], keep: History) {
        pipe.cmd("XADD")
            .arg(log)
            .arg("MAXLEN")
            .arg("~")
            .arg(keep.max_messages)
            .arg("*")
            .arg("e")
            .arg(payload)
            .ignore()
            .cmd("PEXPIRE")
            .arg(log)
            .arg(millis(keep.max_age))
            .ignore();
    }

    /// [`Shared::append_to`] alone, in one round trip.
    async fn append(&self, log: &str, payload: Bytes, keep: History) -> Result<()> {
        let mut pipe = redis::pipe();
        Self::append_to(&mut pipe, log, &payload, keep);
        self.request(async |conn| pipe.query_async::<()>(conn).await)
            .await
    }

    /// [`Shared::append_to`] and `PUBLISH channel PAYLOAD` in one round
    /// trip, run by Redis in that order: a publication that is in the
    /// history before anyone receives it.
    async fn publish_logged(
        &self,
        channel: &str,
        log: &str,
        payload: Bytes,
        keep: History,
    ) -> Result<usize> {
        let mut pipe = redis::pipe();
        Self::append_to(&mut pipe, log, &payload, keep);
        pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]);
        let outcome = self
            .request(async |conn| pipe.query_async::<(usize,)>(conn).await)
            .await
            .map(|(reached,)| reached);
        match &outcome {
            Ok(_) => self.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.publish_failures.fetch_add(1, Ordering::Relaxed),
        };
        outcome
    }

    /// `TIME`, then `XREVRANGE log (LAST - COUNT 32` page by page from the
    /// newest: the entries younger than `max_age` by Redis's own clock (a
    /// stream id starts with the milliseconds it was added at), at most
    /// `max_messages` of them and no more than `max_read_bytes` (pages keep
    /// one reply small whatever the entries weigh).
    async fn history(&self, log: &str, keep: History) -> Result<Vec<Bytes>> {
        const PAGE: usize = 32;
        let (secs, micros): (u64, u64) = self
            .request(async |conn| redis::cmd("TIME").query_async(conn).await)
            .await?;
        let now = secs * 1_000 + micros / 1_000;
        let oldest = now.saturating_sub(millis(keep.max_age));
        let mut out: Vec<Bytes> = Vec::new();
        let mut bytes = 0;
        let mut from = "+".to_owned();
        'pages: while out.len() < keep.max_messages {
            let count = PAGE.min(keep.max_messages - out.len());
            let command = redis::cmd("XREVRANGE")
                .arg(log)
                .arg(&from)
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .to_owned();
            type Entries = Vec<(String, Vec<Vec<u8>>)>;
            let page: Entries = self
                .request(async |conn| command.query_async(conn).await)
                .await?;
            let last = page.len() < count;
            for (id, mut fields) in page {
                let ms = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok());
                if ms.is_none_or(|ms| ms < oldest) {
                    break 'pages;
                }
                // [field, value]: the one field "e" this bus writes.
                if fields.len() == 2 {
                    let entry = fields.swap_remove(1);
                    bytes += entry.len();
                    if bytes > keep.max_read_bytes {
                        break 'pages;
                    }
                    out.push(Bytes::from(entry));
                }
                from = format!("({id}");
            }
            if last {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// A subscription's task: connect, subscribe, forward; on a lost
    /// connection wait the backoff and do it again, until the subscription
    /// is dropped or the bus closed.
    async fn subscriber(
        self: Arc<Self>,
        channels: Vec<String>,
        feed: Feed<Message>,
        resumes: Arc<AtomicU64>,
    ) {
        let mut backoff = self.config.min_backoff;
        let mut first = true;
        loop {
            let session = async {
                let mut pubsub =
                    timeout(self.config.connect_timeout, self.client.get_async_pubsub())
                        .await
                        .map_err(|_| Error::Timeout)?
                        .map_err(|e| Error::Unavailable(e.into()))?;
                for channel in &channels {
                    timeout(self.config.command_timeout, pubsub.subscribe(channel))
                        .await
                        .map_err(|_| Error::Timeout)?
                        .map_err(|e| Error::Unavailable(e.into()))?;
                }
                Ok::<_, Error>(pubsub)
            };
            let pubsub = tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = feed.closed() => return,
                pubsub = session => pubsub,
            };
            match pubsub {
                Ok(pubsub) => {
                    if !first {
                        self.resubscribes.fetch_add(1, Ordering::Relaxed);
                        resumes.fetch_add(1, Ordering::Release);
                    }
                    first = false;
                    backoff = self.config.min_backoff;
                    let (mut sink, mut messages) = pubsub.split();
                    let mut keepalive = tokio::time::interval(self.config.keepalive);
                    keepalive.reset();
                    loop {
                        tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            _ = feed.closed() => return,
                            _ = keepalive.tick() => {
                                let ping = sink.ping::<redis::Value>();
                                if !matches!(timeout(self.config.command_timeout, ping).await, Ok(Ok(_))) {
                                    tracing::warn!("redis subscription silent; reconnecting");
                                    break;
                                }
                            }
                            msg = messages.next() => match msg {
                                Some(msg) => {
                                    let message = Message {
                                        channel: msg.get_channel_name().to_owned(),
                                        payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                                    };
                                    let size = message.size();
                                    feed.offer(message, size);
                                }
                                None => {
                                    tracing::warn!("redis subscription lost; reconnecting");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "redis subscribe failed; retrying"),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = feed.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }
}

impl Bus for RedisBus {
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<usize>> {
        let channel = channel.to_owned();
        Box::pin(async move { self.shared.publish(&channel, payload).await })
    }

    fn append(&self, log: &str, payload: Bytes, keep: History) -> BoxFuture<'_, Result<()>> {
        let log = log.to_owned();
        Box::pin(async move { self.shared.append(&log, payload, keep).await })
    }

    fn publish_logged(
        &self,
        channel: &str,
        log: &str,
        payload: Bytes,
        keep: History,
    ) -> BoxFuture<'_, Result<usize>> {
        let (channel, log) = (channel.to_owned(), log.to_owned());
        Box::pin(async move {
            self.shared
                .publish_logged(&channel, &log, payload, keep)
                .await
        })
    }

    fn history(&self, log: &str, keep: History) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        let log = log.to_owned();
        Box::pin(async move { self.shared.history(&log, keep).await })
    }

    fn subscribe(&self, channels: &[&str], max_bytes: usize) -> Result<Subscription> {
        if self.shared.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        let (feed, drain) = bounded(max_bytes);
        let channels = channels.iter().map(|c| (*c).to_owned()).collect();
        let resumes = Arc::new(AtomicU64::new(0));
        self.shared.tasks.spawn(
            self.shared
                .clone()
                .subscriber(channels, feed, resumes.clone()),
        );
        Ok(Subscription::new(drain, resumes))
    }
}
