//! A peer's settings and errors.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use enchufe_server::{PeerLinks, Profile};

use crate::{Backoff, WhileDown};

/// Settings of a [`Peer`](crate::Peer).
///
/// ```
/// use std::time::Duration;
/// let config = enchufe::peer::Config::new("a").keepalive(Duration::from_millis(500));
/// assert_eq!(config.id, "a");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// This peer's node id, sent in every hello; peers are addressed by it.
    /// Ids must be unique within a mesh (two peers with one id would retire
    /// each other's links). Default: 16 random hex digits.
    pub id: String,
    /// The server side, which serves accepted and dialed links alike. Its
    /// profile, node id, peer flag, keepalive and idle timeout are set by
    /// the peer from the fields here. Default: the server's defaults, except
    /// [`SlowConsumer::Block`](enchufe_server::SlowConsumer::Block) (a peer's
    /// messages are never dropped; a peer that stops reading is dropped after
    /// the write timeout).
    pub server: enchufe_server::Config,
    /// How dialing retries while the other peer is not up. Default: the
    /// client's delays (50 ms, doubling up to 2 s between attempts) and
    /// **no limit on attempts**, as nng's dialers do: a listed peer that
    /// starts minutes later, or comes back after an outage, is still
    /// linked, at the cost of one connection attempt every 2 s while it is
    /// away. For a window, set [`Backoff::max_attempts`]: past it the dial
    /// gives up with [`Error::Unreachable`](crate::Error::Unreachable) and
    /// [`PeerEvent::Unreachable`](crate::PeerEvent::Unreachable).
    pub backoff: Backoff,
    /// How often an idle link sends a ping. Default 5 s.
    pub keepalive: Duration,
    /// A link that brings nothing (not even a ping) for this long is dead and
    /// dropped, then dialed again. Default 15 s: three missed pings. It is
    /// also the longest a retired duplicate link waits for the other end.
    pub idle_timeout: Duration,
    /// Events kept for a slow [`Peer::events`](crate::Peer::events) receiver before it starts
    /// missing the oldest. Default 1024.
    pub event_queue: usize,
    /// What [`Peer::send`](crate::Peer::send) and [`Peer::request`](crate::Peer::request) do when the peer has no
    /// link right now: [`WhileDown::FailFast`] (the default) fails at once
    /// with [`Error::NotConnected`](crate::Error::NotConnected); [`WhileDown::Wait`] waits up to its
    /// bound for the link to come (back), as while a peer restarts.
    pub while_down: WhileDown,
    /// TLS on every link (feature `tls`): the acceptor for links other
    /// peers dial to us, the connector for links we dial (its CAs must
    /// trust the other peers' certificates, which must name the host they
    /// are dialed by, or set its
    /// [`server_name`](enchufe_server::tls::Connector::server_name)).
    /// Default `None`: plain TCP. Every peer of a mesh must agree: a plain
    /// peer cannot link with a TLS one.
    #[cfg(feature = "tls")]
    pub tls: Option<(
        enchufe_server::tls::Acceptor,
        enchufe_server::tls::Connector,
    )>,
}

impl Config {
    /// The defaults, with this node id.
    pub fn new(id: impl Into<String>) -> Config {
        Config {
            id: id.into(),
            ..Config::default()
        }
    }

    enchufe_framing::setters! {
        server: enchufe_server::Config;
        backoff: Backoff;
        keepalive: Duration;
        idle_timeout: Duration;
        while_down: WhileDown;
    }

    /// Sets [`Config::tls`].
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(
        mut self,
        acceptor: enchufe_server::tls::Acceptor,
        connector: enchufe_server::tls::Connector,
    ) -> Self {
        self.tls = Some((acceptor, connector));
        self
    }

    pub(crate) fn server_config(&self) -> enchufe_server::Config {
        self.server
            .clone()
            .profile(Profile::Multiplexed)
            .peer(PeerLinks::default().keepalive(Some(self.keepalive)))
            .node_id(self.id.clone())
            .idle_timeout(Some(self.idle_timeout))
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(0);
        Config {
            id: format!("{:016x}", h.finish()),
            server: enchufe_server::Config::default()
                .slow_consumer(enchufe_server::SlowConsumer::Block),
            backoff: Backoff::default().forever(),
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            event_queue: 1024,
            while_down: WhileDown::FailFast,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}
