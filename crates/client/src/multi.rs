//! [`MultiClient`]: named, reconnecting connections to several servers, with
//! routing for "any of them".

use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::BytesMut;
use enchufe_engine::Counted;
use enchufe_framing::{Decode, Encode};
use futures::Stream;
use tokio::net::ToSocketAddrs;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::{Client, Config, Error, Event, Reconnect, Result};

/// Events kept for a slow reader of [`MultiClient::events`]: the single
/// client's 64 ([`Client::events`]), times a few servers flapping at once.
const EVENTS_QUEUE: usize = 256;

/// How [`MultiClient::request_any`] picks a server. Only connected servers
/// are candidates; with none, the request fails with [`Error::NoServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Routing {
    /// Each request to the next connected server, in the order they were
    /// added. The default: even load when requests cost alike.
    #[default]
    RoundRobin,
    /// The connected server with the fewest requests in flight from this
    /// `MultiClient` (ties go round robin). Steers around a slow server
    /// without measuring time.
    LeastInFlight,
    /// Rendezvous (highest-random-weight) hashing of the encoded request
    /// body: equal requests go to the same server while it is connected,
    /// and removing a server (or losing it) moves only the requests that
    /// went to it. For a key of your own use [`MultiClient::request_by`].
    KeyHash,
}

/// Connections to several servers, each named by a key `K` and each a
/// reconnecting [`Client`]: send to one by key, to all, or to any through a
/// [`Routing`] policy; what the servers push arrives tagged with the key.
///
/// A server going down fails its own requests at once (with its connection's
/// error) and is redialed per [`Config::reconnect`] (the default
/// [`Reconnect`] when that is `None`), while requests to the others go on
/// untouched. `request` and `send_to` a server that is down wait or fail per
/// [`WhileDown`](crate::WhileDown); `request_any` and `broadcast` only use
/// servers that are connected. A server whose client gave up stays listed
/// (its calls fail with [`Error::GaveUp`]) until [`MultiClient::remove`]d.
///
/// Cloning is cheap and shares the connections; dropping the last clone
/// closes them all.
///
/// ```no_run
/// use enchufe::client::{Config, MultiClient, Routing};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> enchufe::client::Result<()> {
/// let servers = MultiClient::with_routing(Config::default(), Routing::LeastInFlight);
/// servers.add("a", "127.0.0.1:8081").await?;
/// servers.add("b", "127.0.0.1:8082").await?;
/// let reply: String = servers.request(&"a", "hola").await?;
/// let (who, reply): (&str, String) = servers.request_any("hola").await?;
/// println!("{who} answered {reply}");
/// let reached = servers.broadcast("news").await;
/// while let Some((who, push)) = servers.recv::<String>().await? {
///     println!("[{who}] {push}");
/// }
/// # Ok(())
/// # }
/// ```
///
/// Keys are found by a linear scan (servers are kept in the order they were
/// added, which round robin follows): meant for a handful to a few dozen
/// servers, not thousands.
#[derive(Debug)]
pub struct MultiClient<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for MultiClient<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<K> {
    /// Each server's client configuration.
    config: Config,
    routing: Routing,
    /// In the order added. Read on every call; written by `add`/`remove`.
    servers: RwLock<Vec<Arc<Member<K>>>>,
    /// Round robin's position (and least-in-flight's tie breaker).
    next: AtomicUsize,
    /// Cloned into each server's forwarding task; taken by `close` so that
    /// `recv` ends once the forwarders have.
    incoming_tx: Mutex<Option<mpsc::Sender<(K, BytesMut)>>>,
    /// Every server's unsolicited messages, tagged; bounded
    /// (`Config::incoming_queue`).
    incoming: tokio::sync::Mutex<mpsc::Receiver<(K, BytesMut)>>,
    events: broadcast::Sender<(K, Event)>,
    /// Parent of every server's token: cancelled when the last handle goes.
    stop: CancellationToken,
}

impl<K> Drop for Inner<K> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug)]
struct Member<K> {
    key: K,
    /// `key`'s hash, for rendezvous hashing.
    key_hash: u64,
    client: Client,
    /// Requests in flight to this server through this `MultiClient`.
    in_flight: AtomicUsize,
    /// Stops this server's forwarding tasks (on `remove`).
    stop: CancellationToken,
}

impl<K> MultiClient<K>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
{
    /// An empty `MultiClient` routing round robin; each server added is
    /// connected with `config` (and its [`Config::reconnect`], or the
    /// default [`Reconnect`] if that is `None`).
    pub fn new(config: Config) -> Self {
        Self::with_routing(config, Routing::default())
    }

    /// [`MultiClient::new`] with a [`Routing`] policy for `request_any`.
    pub fn with_routing(mut config: Config, routing: Routing) -> Self {
        config.reconnect.get_or_insert_with(Reconnect::default);
        let (incoming_tx, incoming) = mpsc::channel(config.incoming_queue);
        let (events, _) = broadcast::channel(EVENTS_QUEUE);
        Self {
            inner: Arc::new(Inner {
                config,
                routing,
                servers: RwLock::default(),
                next: AtomicUsize::new(0),
                incoming_tx: Mutex::new(Some(incoming_tx)),
                incoming: tokio::sync::Mutex::new(incoming),
                events,
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Connects to a server and adds it under `key`, reporting
    /// [`Event::Connected`]. As with [`Client::connect_with`], this first
    /// connect is not retried.
    ///
    /// # Errors
    /// [`Error::DuplicateServer`] if `key` is taken (or becomes taken while
    /// connecting); else as [`Client::connect_with`].
    pub async fn add(&self, key: K, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<()> {
        if self.find(&key).is_some() {
            return Err(duplicate(&key));
        }
        let client = Client::connect_with(addr, self.inner.config.clone()).await?;
        let connected = client.peer_addr();
        let (member, incoming) = {
            let mut servers = self.write();
            if servers.iter().any(|m| m.key == key) {
                return Err(duplicate(&key));
            }
            let Some(incoming) = self.incoming_tx() else {
                return Err(Error::Closed);
            };
            let member = Arc::new(Member {
                key_hash: hash_of(&key),
                key,
                client,
                in_flight: AtomicUsize::new(0),
                stop: self.inner.stop.child_token(),
            });
            servers.push(member.clone());
            (member, incoming)
        };
        // Subscribed before `Connected` is sent, so that this server's
        // events reach the shared channel in the order they happened.
        let events = member.client.events();
        if let Some(addr) = connected {
            let _ = self
                .inner
                .events
                .send((member.key.clone(), Event::Connected { addr }));
        }
        let span = tracing::info_span!("multi", server = ?member.key);
        let shared = self.inner.events.clone();
        tokio::spawn(forward_events(member.clone(), events, shared).instrument(span.clone()));
        tokio::spawn(forward_incoming(member, incoming).instrument(span));
        Ok(())
    }

    /// Removes the server under `key`: no new calls go to it, and its
    /// connection closes once the requests already in flight to it are over
    /// (messages it sends meanwhile are dropped). Returns whether it was
    /// there.
    pub fn remove(&self, key: &K) -> bool {
        let removed = {
            let mut servers = self.write();
            let at = servers.iter().position(|m| m.key == *key);
            at.map(|at| servers.remove(at))
        };
        match removed {
            Some(member) => {
                member.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// The servers' keys, in the order they were added.
    pub fn keys(&self) -> Vec<K> {
        self.read().iter().map(|m| m.key.clone()).collect()
    }

    /// Whether the server under `key` is connected now (`false` if unknown).
    pub fn is_connected(&self, key: &K) -> bool {
        self.find(key).is_some_and(|m| m.client.is_connected())
    }

    /// The client of the server under `key`, for what this type does not
    /// wrap (its own timeout, its address).
    pub fn client(&self, key: &K) -> Option<Client> {
        self.find(key).map(|m| m.client.clone())
    }

    /// Sends a request to the server under `key` and waits for its reply,
    /// as [`Client::request`].
    ///
    /// # Errors
    /// [`Error::UnknownServer`]; else as [`Client::request`] (for a server
    /// that is down, [`Error::Disconnected`] per
    /// [`WhileDown`](crate::WhileDown), or its connection's error for a
    /// request in flight when it went down).
    pub async fn request<M: Encode, R: Decode>(&self, key: &K, msg: M) -> Result<R> {
        let member = self.find(key).ok_or_else(|| unknown(key))?;
        member.request(msg).await
    }

    /// Sends a one-way message to the server under `key`, as [`Client::send`].
    ///
    /// # Errors
    /// [`Error::UnknownServer`]; else as [`Client::send`].
    pub async fn send_to<M: Encode>(&self, key: &K, msg: M) -> Result<()> {
        let member = self.find(key).ok_or_else(|| unknown(key))?;
        member.client.send(msg).await
    }

    /// Sends a one-way message to every connected server, all at once, and
    /// returns to how many it was queued. Servers that are down are skipped.
    ///
    /// In the multiplexed profile (the default) it is a `notify`: nothing
    /// comes back. In the plain profile a server that answers every message
    /// answers this one too, and that answer can be taken as the reply to a
    /// request made after it: broadcast there only to servers that do not
    /// answer one-way messages.
    ///
    /// # Errors
    /// [`Error::Encode`] (nothing sent).
    pub async fn broadcast<M: Encode>(&self, msg: M) -> Result<usize> {
        let body = msg.encode().map_err(Error::Encode)?;
        let up: Vec<Arc<Member<K>>> = self
            .read()
            .iter()
            .filter(|m| m.client.is_connected())
            .cloned()
            .collect();
        let sends = up.iter().map(|m| m.client.send(body.clone()));
        let sent = futures::future::join_all(sends).await;
        Ok(sent.iter().filter(|r| r.is_ok()).count())
    }

    /// Sends a request to one connected server picked by the [`Routing`]
    /// policy; returns which server answered, and its reply. Under
    /// [`Routing::KeyHash`] the encoded request body is the routing key.
    /// The request is not retried elsewhere if that server fails it.
    ///
    /// # Errors
    /// [`Error::NoServer`] when none is connected; else as
    /// [`Client::request`].
    pub async fn request_any<M: Encode, R: Decode>(&self, msg: M) -> Result<(K, R)> {
        let body = msg.encode().map_err(Error::Encode)?;
        let member = match self.inner.routing {
            Routing::KeyHash => self.pick_by(hash_of(&body[..])),
            routing => self.pick(routing),
        }?;
        Ok((member.key.clone(), member.request(body).await?))
    }

    /// Sends a request to the connected server that `route_key` maps to by
    /// rendezvous hashing, whatever the [`Routing`] policy: the same key goes
    /// to the same server while it is connected, and removing a server moves
    /// only the keys that mapped to it. Returns which server answered.
    ///
    /// # Errors
    /// As [`MultiClient::request_any`].
    pub async fn request_by<M: Encode, R: Decode>(
        &self,
        route_key: &impl Hash,
        msg: M,
    ) -> Result<(K, R)> {
        let member = self.pick_by(hash_of(route_key))?;
        Ok((member.key.clone(), member.request(msg).await?))
    }

    /// Which server `route_key` maps to now, as [`MultiClient::request_by`]
    /// would pick it; `None` when no server is connected.
    pub fn route(&self, route_key: &impl Hash) -> Option<K> {
        self.pick_by(hash_of(route_key)).ok().map(|m| m.key.clone())
    }

    /// The next unsolicited message from any server, with the key of the
    /// server that sent it. Waits while there is none; `Ok(None)` only
    /// after [`MultiClient::close`], once every server's last messages were
    /// taken.
    ///
    /// # Errors
    /// [`Error::Decode`] if the message is not an `M` (the next call goes on
    /// with the next one). Connection errors are not reported here but as
    /// [`MultiClient::events`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a message is never lost when the future is dropped.
    pub async fn recv<M: Decode>(&self) -> Result<Option<(K, M)>> {
        match self.inner.incoming.lock().await.recv().await {
            Some((key, frame)) => Ok(Some((key, M::decode(frame).map_err(Error::Decode)?))),
            None => Ok(None),
        }
    }

    /// The unsolicited messages as a [`Stream`] of what
    /// [`MultiClient::recv`] returns; ends where it returns `Ok(None)`. Pin
    /// it to call `StreamExt::next`. It holds a handle, so it keeps the
    /// connections open while it lives.
    pub fn pushes<M: Decode>(&self) -> impl Stream<Item = Result<(K, M)>> {
        futures::stream::unfold(self.clone(), |multi| async move {
            match multi.recv::<M>().await {
                Ok(Some(msg)) => Some((Ok(msg), multi)),
                Ok(None) => None,
                Err(e) => Some((Err(e), multi)),
            }
        })
    }

    /// Every server's [`Event`]s, tagged with its key: [`Event::Connected`]
    /// when added, then drops, reconnections, giving up. The queue holds
    /// 256; a receiver that falls further behind loses the oldest and is
    /// told how many with `RecvError::Lagged`.
    pub fn events(&self) -> broadcast::Receiver<(K, Event)> {
        self.inner.events.subscribe()
    }

    /// Half-closes every server's connection ([`Client::close`]) and
    /// removes them all; `recv` then delivers their last messages and
    /// returns `Ok(None)`. Later `add`s fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.inner
            .incoming_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let servers = std::mem::take(&mut *self.write());
        let closes = servers.iter().map(|m| m.client.close());
        futures::future::join_all(closes).await;
    }

    fn pick(&self, routing: Routing) -> Result<Arc<Member<K>>> {
        let servers = self.read();
        let up = || servers.iter().filter(|m| m.client.is_connected());
        let count = up().count();
        if count == 0 {
            return Err(Error::NoServer);
        }
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed) % count;
        let picked = match routing {
            Routing::LeastInFlight => up()
                .enumerate()
                .min_by_key(|(i, m)| {
                    let in_flight = m.in_flight.load(Ordering::Relaxed);
                    (in_flight, (i + count - turn) % count)
                })
                .map(|(_, m)| m),
            _ => up().nth(turn),
        };
        // A server may drop between the count and the pick: take any.
        picked
            .or_else(|| up().next())
            .cloned()
            .ok_or(Error::NoServer)
    }

    /// Rendezvous hashing: the connected server whose score for this key is
    /// highest. A server's scores do not depend on the others, so adding or
    /// removing one moves only the keys it wins or held.
    fn pick_by(&self, route_hash: u64) -> Result<Arc<Member<K>>> {
        self.read()
            .iter()
            .filter(|m| m.client.is_connected())
            .max_by_key(|m| hash_of(&(route_hash, m.key_hash)))
            .cloned()
            .ok_or(Error::NoServer)
    }

    fn find(&self, key: &K) -> Option<Arc<Member<K>>> {
        self.read().iter().find(|m| m.key == *key).cloned()
    }

    fn incoming_tx(&self) -> Option<mpsc::Sender<(K, BytesMut)>> {
        self.inner
            .incoming_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Member<K>>>> {
        self.inner
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Member<K>>>> {
        self.inner
            .servers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K> Member<K> {
    async fn request<M: Encode, R: Decode>(&self, msg: M) -> Result<R> {
        let _counted = Counted::new(&self.in_flight);
        self.client.request(msg).await
    }
}

/// Moves a server's unsolicited messages to the shared queue, tagged. Ends
/// when the server is removed, the `MultiClient` is dropped, or the client's
/// stream ends (closed, gave up).
async fn forward_incoming<K: Clone + Debug>(
    member: Arc<Member<K>>,
    tx: mpsc::Sender<(K, BytesMut)>,
) {
    loop {
        let frame = tokio::select! {
            () = member.stop.cancelled() => break,
            frame = member.client.recv_frame() => frame,
        };
        match frame {
            Some(Ok(frame)) => tokio::select! {
                () = member.stop.cancelled() => break,
                sent = tx.send((member.key.clone(), frame)) => if sent.is_err() { break },
            },
            // Already reported as an event (GaveUp).
            Some(Err(e)) => debug!(error = %e, "server's stream ended"),
            None => break,
        }
    }
    // The events task goes with it.
    member.stop.cancel();
}

/// Copies a server's events to the shared channel, tagged.
async fn forward_events<K: Clone>(
    member: Arc<Member<K>>,
    mut events: broadcast::Receiver<Event>,
    tx: broadcast::Sender<(K, Event)>,
) {
    loop {
        let event = tokio::select! {
            () = member.stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                let _ = tx.send((member.key.clone(), event));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(lost = n, "events lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn hash_of(value: &(impl Hash + ?Sized)) -> u64 {
    // Fixed keys (unlike `RandomState`): a key maps to the same server in
    // every `MultiClient` of the process.
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn unknown(key: &impl Debug) -> Error {
    Error::UnknownServer {
        key: format!("{key:?}"),
    }
}

fn duplicate(key: &impl Debug) -> Error {
    Error::DuplicateServer {
        key: format!("{key:?}"),
    }
}
