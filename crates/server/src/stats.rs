use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a server's life so far, from
/// [`ServerHandle::stats`](crate::ServerHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Pushes dropped by the slow-consumer policy (or missed by a broadcast
    /// because the queue was full).
    pub pushes_dropped: u64,
    /// Connections dropped because the client did not keep up: a queue full
    /// past the write timeout, or a write that made no progress.
    pub slow_disconnects: u64,
    /// Connections closed because the client was not speaking
    /// length-prefixed frames: what it sent looked like HTTP, SSH, TLS or
    /// text (`enchufe_framing::Error::NotFrames`). A browser or a port
    /// scanner at the server's port shows up here.
    pub not_frames: u64,
    /// Connections closed because their TLS handshake failed or timed out
    /// (`Server::tls`): a plain client at a TLS port, a client that
    /// refused our certificate, a stalled handshake.
    pub tls_failures: u64,
    /// Requests on the WebSocket listener (`Server::ws`) refused: not a
    /// WebSocket upgrade (and not the page), too large, too slow.
    pub ws_rejected: u64,
    /// Connections accepted and closed at once because their address had
    /// [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip)
    /// connections already.
    pub refused_per_address: u64,
    /// Connections closed because of what the other end did: bytes that
    /// broke the framing or the protocol, a reset or a cut frame, a hello,
    /// first frame or frame that did not arrive in time
    /// ([`Error::is_bad_input`](crate::Error::is_bad_input)). Their
    /// warnings are thinned (the 1st, 2nd, 4th, 8th...), this counts them
    /// all.
    pub closed_for_bad_input: u64,
    /// Connections closed because the client spoke the other profile: a
    /// multiplexed hello at a server pinned to `Profile::Plain` (the
    /// client is told at connect). Counted in `closed_for_bad_input` too.
    pub profile_mismatches: u64,
}

/// The live counters behind [`Stats`], shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) pushes_dropped: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) not_frames: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) ws_rejected: AtomicU64,
    pub(crate) refused_per_address: AtomicU64,
    pub(crate) closed_for_bad_input: AtomicU64,
    pub(crate) profile_mismatches: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            pushes_dropped: self.pushes_dropped.load(Ordering::Relaxed),
            slow_disconnects: self.slow_disconnects.load(Ordering::Relaxed),
            not_frames: self.not_frames.load(Ordering::Relaxed),
            tls_failures: self.tls_failures.load(Ordering::Relaxed),
            ws_rejected: self.ws_rejected.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
            closed_for_bad_input: self.closed_for_bad_input.load(Ordering::Relaxed),
            profile_mismatches: self.profile_mismatches.load(Ordering::Relaxed),
        }
    }
}
