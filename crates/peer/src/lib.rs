//! enchufe's peer: one endpoint that both serves and dials.
//!
//! The course's peer-to-peer example starts two programs that are each a
//! server and a client; start them in the wrong order and the first one's
//! connect fails. A [`Peer`] serves a [`Handler`] like a
//! [`Server`](enchufe_server::Server) and dials other peers with
//! [`Peer::connect`], which retries with exponential backoff and jitter
//! ([`Backoff`]) until the other side is up, so the start order no longer
//! matters.
//!
//! ```text
//!        Peer A                         Peer B
//!   +-------------+   A dials B    +-------------+
//!   | Server  <---+----------------+--- Client   |
//!   | Client  ----+--------------->+--> Server   |
//!   +-------------+   B dials A    +-------------+
//! ```
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe_peer::Peer;
//! use enchufe_server::handler_fn;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hello = |name: &'static str| handler_fn(move |msg: String, _conn| async move {
//!     Ok::<_, Infallible>(Some(format!("{name} got {msg}")))
//! });
//! let a = Peer::bind("127.0.0.1:0", hello("a")).await?;
//! let b = Peer::bind("127.0.0.1:0", hello("b")).await?;
//!
//! let to_b = a.connect(b.local_addr()).await?;
//! let reply: String = to_b.request("hola").await?;
//! assert_eq!(reply, "b got hola");
//! # a.close().await; b.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use enchufe_client::Client;
use enchufe_server::{Handler, Server, ServerHandle};
use tokio::net::ToSocketAddrs;
use tracing::debug;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a peer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer's listener could not be bound.
    #[error(transparent)]
    Server(#[from] enchufe_server::Error),

    /// Dialing gave up: the other peer never came up within the backoff's
    /// limits, or failed in a way retrying cannot fix.
    #[error("cannot reach peer {addr} after {attempts} attempts: {last}")]
    Unreachable {
        /// The address dialed.
        addr: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: enchufe_client::Error,
    },
}

/// Retry policy for dialing: exponential backoff with jitter.
///
/// The n-th wait is `initial * 2^n`, capped at `max_delay`, then scaled by a
/// random factor in `[0.5, 1.0]` so that peers restarted together do not
/// retry in lockstep.
///
/// ```
/// use std::time::Duration;
/// let policy = enchufe_peer::Backoff::default().max_attempts(5);
/// assert!(policy.delay(0) <= Duration::from_millis(50));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Backoff {
    /// First wait. Default 50 ms: a peer starting up usually binds within it.
    pub initial: Duration,
    /// Longest single wait. Default 2 s: a peer that comes up is found within
    /// 2 s, without hammering one that is down.
    pub max_delay: Duration,
    /// Attempts before giving up. Default 40: about a minute with the
    /// defaults, long enough to start the other peer by hand.
    pub max_attempts: u32,
}

impl Backoff {
    /// Sets [`Backoff::initial`].
    #[must_use]
    pub fn initial(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// Sets [`Backoff::max_delay`].
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`Backoff::max_attempts`] (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait after failed attempt number `attempt` (0-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        // A fresh RandomState is randomly keyed: enough jitter, no dependency.
        let mut h = RandomState::new().build_hasher();
        h.write_u32(attempt);
        let factor = 0.5 + (h.finish() % 1024) as f64 / 2048.0;
        exp.mul_f64(factor)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_attempts: 40,
        }
    }
}

/// Settings of a [`Peer`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Config {
    /// Its server side.
    pub server: enchufe_server::Config,
    /// Each connection it dials.
    pub client: enchufe_client::Config,
    /// How dialing retries while the other peer is not up.
    pub backoff: Backoff,
}

/// An endpoint that serves a [`Handler`] and dials other peers.
#[derive(Debug)]
pub struct Peer {
    server: ServerHandle,
    config: Config,
    /// Connections this peer dialed, closed with it.
    dialed: Mutex<Vec<Client>>,
}

impl Peer {
    /// Binds the listening side and starts serving `handler`.
    ///
    /// # Errors
    /// [`Error::Server`] if the address cannot be bound.
    pub async fn bind<H: Handler>(
        addr: impl ToSocketAddrs + std::fmt::Display,
        handler: H,
    ) -> Result<Peer> {
        Self::bind_with(addr, handler, Config::default()).await
    }

    /// [`Peer::bind`] with a configuration.
    ///
    /// # Errors
    /// As [`Peer::bind`].
    pub async fn bind_with<H: Handler>(
        addr: impl ToSocketAddrs + std::fmt::Display,
        handler: H,
        config: Config,
    ) -> Result<Peer> {
        let server = Server::bind(addr)
            .await?
            .with_config(config.server.clone())
            .serve(handler);
        Ok(Peer {
            server,
            config,
            dialed: Mutex::new(Vec::new()),
        })
    }

    /// The address this peer listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The serving side: live connections, push, broadcast.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Dials another peer, retrying while it is not up yet (connection
    /// refused, connect timeout, unreachable) per the [`Backoff`] policy.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the attempts run out, or at once for an
    /// address that does not resolve.
    pub async fn connect(&self, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client> {
        let shown = addr.to_string();
        let targets: Vec<SocketAddr> = match tokio::net::lookup_host(addr).await {
            Ok(targets) => targets.collect(),
            Err(source) => {
                return Err(Error::Unreachable {
                    addr: shown.clone(),
                    attempts: 0,
                    last: enchufe_client::Error::Resolve {
                        addr: shown,
                        source,
                    },
                })
            }
        };
        if targets.is_empty() {
            return Err(Error::Unreachable {
                addr: shown.clone(),
                attempts: 0,
                last: enchufe_client::Error::Resolve {
                    addr: shown,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
                },
            });
        }
        let policy = &self.config.backoff;
        let mut attempt = 0;
        loop {
            // Alternate between the resolved addresses (IPv6 and IPv4, say).
            let target = targets[attempt as usize % targets.len()];
            match Client::connect_with(target, self.config.client.clone()).await {
                Ok(client) => {
                    self.dialed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(client.clone());
                    return Ok(client);
                }
                Err(last) => {
                    attempt += 1;
                    let retryable = matches!(
                        last,
                        enchufe_client::Error::Refused { .. }
                            | enchufe_client::Error::ConnectTimeout { .. }
                            | enchufe_client::Error::Connect { .. }
                    );
                    if !retryable || attempt >= policy.max_attempts {
                        return Err(Error::Unreachable {
                            addr: shown,
                            attempts: attempt,
                            last,
                        });
                    }
                    let wait = policy.delay(attempt - 1);
                    debug!(peer = %shown, attempt, ?wait, error = %last, "peer not up yet; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Half-closes every connection this peer dialed and shuts its server
    /// down gracefully.
    pub async fn close(&self) {
        let dialed: Vec<Client> =
            std::mem::take(&mut *self.dialed.lock().unwrap_or_else(PoisonError::into_inner));
        for client in dialed {
            let _ = client.close().await;
        }
        self.server.shutdown().await;
    }
}
