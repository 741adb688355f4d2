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
    /// Connections that closed without sending a byte: a port check, a load
    /// balancer's health check, a flood of connects. Logged like bad input
    /// (the 1st, 2nd, 4th, 8th... at `info`, the rest at `debug`), counted
    /// here all.
    pub empty_connections: u64,
    /// Times a connection was not read because its large frame could not
    /// grow within [`Config::max_total_partial_bytes`](crate::Config::max_total_partial_bytes).
    pub reads_paused_for_memory: u64,
    /// Bytes held now by large frames still arriving, counted against
    /// [`Config::max_total_partial_bytes`](crate::Config::max_total_partial_bytes)
    /// (a gauge, not a count).
    pub partial_bytes: u64,
    /// The most [`Stats::partial_bytes`] has been.
    pub partial_bytes_peak: u64,
    /// Connections closed because the client spoke the other profile: a
    /// multiplexed hello at a server pinned to `Profile::Plain` (the
    /// client is told at connect). Counted in `closed_for_bad_input` too.
    pub profile_mismatches: u64,
    /// Connections handed to the HTTP door ([`Server::http`](crate::Server::http)).
    pub http_connections: u64,
}

/// What a graceful shutdown did with the work it found, from
/// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown): every request
/// in flight when it began (or read while the last handlers finished) is
/// in exactly one of these, unless its connection broke first. Counted
/// from the start of the shutdown.
///
/// In the plain profile a request is answered or cancelled: requests
/// pipelined behind the one running are left unread, since the plain wire
/// has no way to refuse them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handlers that were running and finished within the grace period
    /// ([`Config::shutdown_grace`](crate::Config::shutdown_grace)); their
    /// replies (multiplexed: or error replies) were sent.
    pub answered: u64,
    /// Requests refused with error code 6, `shutting down` (multiplexed
    /// profile): read but not started (parked behind `max_in_flight`), or
    /// arriving while the last handlers finished.
    pub refused: u64,
    /// Handlers still running when the grace period ended: their futures
    /// were dropped and their requests got no answer.
    pub cancelled: u64,
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
    pub(crate) http_connections: AtomicU64,
    pub(crate) empty_connections: AtomicU64,
    /// [`ShutdownReport`]'s, counted only once shutdown began.
    pub(crate) shutdown_answered: AtomicU64,
    pub(crate) shutdown_refused: AtomicU64,
    pub(crate) shutdown_cancelled: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Pushes dropped: counted here, and through the `metrics` facade
    /// (`enchufe_dropped_pushes_total`) with that feature.
    pub(crate) fn dropped(&self, n: u64) {
        Counters::add(&self.pushes_dropped, n);
        #[cfg(feature = "metrics")]
        metrics::counter!("enchufe_dropped_pushes_total", "role" => "server").increment(n);
    }

    pub(crate) fn snapshot(&self, memory: &enchufe_framing::MemoryBudget) -> Stats {
        Stats {
            reads_paused_for_memory: memory.pauses(),
            partial_bytes: memory.held() as u64,
            partial_bytes_peak: memory.peak() as u64,
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            pushes_dropped: self.pushes_dropped.load(Ordering::Relaxed),
            slow_disconnects: self.slow_disconnects.load(Ordering::Relaxed),
            not_frames: self.not_frames.load(Ordering::Relaxed),
            tls_failures: self.tls_failures.load(Ordering::Relaxed),
            ws_rejected: self.ws_rejected.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
            closed_for_bad_input: self.closed_for_bad_input.load(Ordering::Relaxed),
            profile_mismatches: self.profile_mismatches.load(Ordering::Relaxed),
            http_connections: self.http_connections.load(Ordering::Relaxed),
            empty_connections: self.empty_connections.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn shutdown_report(&self) -> ShutdownReport {
        ShutdownReport {
            answered: self.shutdown_answered.load(Ordering::Relaxed),
            refused: self.shutdown_refused.load(Ordering::Relaxed),
            cancelled: self.shutdown_cancelled.load(Ordering::Relaxed),
        }
    }
}

/// The `kind` labels [`error_kind`] gives the server's own errors (a
/// framing error's are `enchufe_engine::meter::ERROR_KINDS`).
#[cfg(feature = "metrics")]
pub(crate) const OWN_ERROR_KINDS: &[&str] = &[
    "tls",
    "handshake_timeout",
    "first_frame_timeout",
    "frame_timeout",
    "handler_timeout",
    "timeout",
    "handler",
    "handler_panic",
    "write_stalled",
    "unsupported",
    "remote",
];

/// The `kind` label of the error that ended a connection
/// (`enchufe_errors_total`, feature `metrics`).
#[cfg(feature = "metrics")]
pub(crate) fn error_kind(error: &crate::Error) -> &'static str {
    use crate::Error;
    match error {
        Error::Framing(e) => enchufe_engine::meter::error_kind(e),
        Error::Io(_) => "io",
        e if e.is_tls() => "tls",
        Error::HandshakeTimeout(_) => "handshake_timeout",
        Error::FirstFrameTimeout(_) => "first_frame_timeout",
        Error::FrameTimeout(_) => "frame_timeout",
        Error::HandlerTimeout(_) => "handler_timeout",
        Error::Timeout(_) => "timeout",
        Error::Handler(_) => "handler",
        Error::HandlerPanic(_) => "handler_panic",
        Error::WriteStalled(_) => "write_stalled",
        Error::Unsupported(_) => "unsupported",
        Error::Remote { .. } => "remote",
        _ => "other",
    }
}
