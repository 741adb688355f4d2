//! The reconnect policy ([`Reconnect`], [`Backoff`], [`WhileDown`]) and the
//! [`Event`]s a client reports about its connection. Plain data: the
//! supervisor that acts on them lives in `supervisor.rs`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Exponential backoff with jitter, for redialing a server that is down.
///
/// The wait before attempt `n` (0-based) is `initial * 2^n`, capped at
/// `max_delay`, then scaled by a random factor in `[0.5, 1.0]` so that many
/// clients cut off by one server restart do not all redial in the same
/// instant.
///
/// ```
/// use std::time::Duration;
/// use enchufe::client::Backoff;
/// let policy = Backoff::default().max_attempts(5);
/// assert_eq!(policy.max_attempts, Some(5));
/// assert!(policy.delay(0) <= Duration::from_millis(50));
/// assert!(policy.delay(30) <= Duration::from_secs(2));
/// // Without jitter the waits are exact: 50 ms, 100 ms, 200 ms...
/// assert_eq!(policy.jitter(false).delay(2), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// First wait. Default 50 ms: a server being restarted usually listens
    /// again within it, and a client that retries no sooner than this cannot
    /// spin on a server that accepts and closes at once.
    pub initial: Duration,
    /// Longest single wait. Default 2 s: a server that comes back is found
    /// within 2 s, without hammering one that stays down.
    pub max_delay: Duration,
    /// Failed attempts before giving up, `None` for never. Default
    /// `Some(40)`: about a minute with the other defaults, which covers a
    /// restart or a redeploy and still tells a caller, in time to matter,
    /// that a server is gone for good. For a reconnecting client the count
    /// starts over at every outage.
    pub max_attempts: Option<u32>,
    /// Whether each wait is scaled by a random factor in `[0.5, 1.0]`.
    /// Default `true`: clients cut off together spread their redials.
    /// `false` makes the waits exact, for a run that must repeat itself
    /// (a deterministic simulation: the factor comes from the process's
    /// random keys, not from the simulation's seed).
    pub jitter: bool,
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

    /// Sets [`Backoff::max_attempts`] to `Some(attempts)` (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Sets [`Backoff::jitter`].
    #[must_use]
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Never gives up: [`Backoff::max_attempts`] `None`.
    #[must_use]
    pub fn forever(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// Whether `attempts` failed attempts use up the policy.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }

    /// The wait before attempt number `attempt` (0-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        if !self.jitter {
            return exp;
        }
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
            max_attempts: Some(40),
            jitter: true,
        }
    }
}

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
    /// Sets [`Reconnect::backoff`].
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`Reconnect::while_down`].
    #[must_use]
    pub fn while_down(mut self, policy: WhileDown) -> Self {
        self.while_down = policy;
        self
    }
}

/// What `send` and `request` do when called while a reconnecting client has
/// no connection.
///
/// "No connection" is what the client knows: between the moment a server
/// dies and the moment the client reads its end (usually at once, as the
/// kernel closes the socket; up to a TCP timeout for a cut cable), a call
/// still goes out on the dead connection and fails with that connection's
/// error ([`Error::ClosedByPeer`], [`Error::Framing`]) rather than waiting.
/// Requests are never resent for you: the first one may have been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhileDown {
    /// Wait for the connection to come back, at most this long (and, for a
    /// request, within its request timeout), then fail with
    /// [`Error::Disconnected`]. Suits callers that would rather ride out a
    /// server restart than handle an error. The default, with 5 s: a blip
    /// plus two of the default backoff's longest waits.
    Wait(Duration),
    /// Fail at once with [`Error::Disconnected`]. Suits callers with
    /// somewhere else to go (another server, a cache, a queue of their own).
    FailFast,
}

impl Default for WhileDown {
    fn default() -> Self {
        WhileDown::Wait(Duration::from_secs(5))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped_with_jitter() {
        let policy = Backoff::default();
        for attempt in 0..64 {
            let d = policy.delay(attempt);
            let exp = (Duration::from_millis(50) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_secs(2));
            assert!(d <= exp, "attempt {attempt}: {d:?} > {exp:?}");
            assert!(d >= exp / 2, "attempt {attempt}: {d:?} < half of {exp:?}");
        }
    }

    #[test]
    fn max_attempts_is_at_least_one_and_forever_never_ends() {
        assert_eq!(Backoff::default().max_attempts(0).max_attempts, Some(1));
        assert!(Backoff::default().max_attempts(3).exhausted(3));
        assert!(!Backoff::default().max_attempts(3).exhausted(2));
        assert!(!Backoff::default().forever().exhausted(u32::MAX));
    }
}
