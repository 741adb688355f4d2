//! The reconnect policy ([`Reconnect`], [`Backoff`], [`WhileDown`]) and the
//! [`Event`]s a client reports about its connection. Plain data: the
//! supervisor that acts on them lives in `supervisor.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::Error;

pub use enchufe_engine::retry::{Backoff, WhileDown};

/// What a [`Client`](crate::Client) does when its connection drops:
/// redial per [`Reconnect::backoff`], and meanwhile treat new calls per
/// [`Reconnect::while_down`]. Set it with
/// [`Config::reconnect`](crate::Config::reconnect).
///
/// Requests in flight when the connection drops are **never retried**: they
/// fail at once with the connection's error ([`Error::ClosedByPeer`],
/// [`Error::Framing`], ...). The server may or may not have acted on them, and
/// only the caller knows whether doing it twice is safe.
///
/// ```
/// use std::time::Duration;
/// use enchufe::client::{Backoff, Config, Reconnect, WhileDown};
/// let config = Config::default().reconnect(
///     Reconnect::default()
///         .backoff(Backoff::default().forever())
///         .while_down(WhileDown::FailFast),
/// );
/// assert_eq!(config.reconnect.unwrap().while_down, WhileDown::FailFast);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// How redialing waits and when it gives up. Default [`Backoff::default`].
    pub backoff: Backoff,
    /// What a call made while disconnected does. Default
    /// [`WhileDown::Wait`] of 5 s.
    pub while_down: WhileDown,
}

impl Reconnect {
    enchufe_framing::setters! {
        backoff: Backoff;
        while_down: WhileDown;
    }
}

/// Something that happened to a client's connection, from
/// [`Client::events`](crate::Client::events) (and, tagged with the server's
/// key, from [`MultiClient::events`](crate::MultiClient::events)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A connection was established for the first time. A [`Client`](crate::Client)
    /// is connected before `connect_with` returns, so only a
    /// [`MultiClient`](crate::MultiClient) reports this (when a server is
    /// added).
    Connected {
        /// The server's address.
        addr: SocketAddr,
    },
    /// The connection ended; requests in flight on it failed with this
    /// error. A reconnecting client now redials.
    Disconnected {
        /// Why, as those requests were told.
        error: Arc<Error>,
    },
    /// A reconnecting client is connected again (for the multiplexed
    /// profile: hellos exchanged).
    Reconnected {
        /// The server's address (the name is resolved anew each attempt).
        addr: SocketAddr,
        /// Attempts this outage took, the successful one included.
        attempts: u32,
    },
    /// A reconnecting client used up [`Backoff::max_attempts`] and stopped:
    /// every later call fails with [`Error::GaveUp`].
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Arc<Error>,
    },
}

/// Events kept for a slow reader of [`Client::events`](crate::Client::events).
/// A connection produces a handful per outage; 64 holds a long burst of
/// flapping. A receiver that falls further behind loses the oldest and is
/// told how many with `RecvError::Lagged`.
pub(crate) const EVENTS_QUEUE: usize = 64;
