//! [`Config`]: the server's limits and deadlines.

use std::time::Duration;

use crate::Limits;
#[cfg(doc)]
use crate::{Body, Handler};

/// The server's limits and deadlines.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// What a request head may hold ([`Limits`]: 16 KiB, 64 headers).
    pub limits: Limits,
    /// A head that began arriving must be whole within this (`408`, then
    /// close). Default 10 s: a client on a slow link sends a head in one
    /// round trip; one that trickles it is holding the connection.
    pub head_timeout: Duration,
    /// A connection with no request for this long is closed (the keep-alive
    /// timeout). Default 30 s: idle connections cost a socket each.
    pub idle_timeout: Duration,
    /// A reply that makes no write progress for this long is dropped with
    /// its connection. Default 10 s.
    pub write_timeout: Duration,
    /// The longest reply body plus head. Default 8 MiB (the framing
    /// default); a larger reply is answered `500`.
    pub max_response: usize,
    /// The longest request body, declared (`Content-Length`, refused
    /// before the handler runs) or counted as chunks arrive: past it the
    /// reply is `413` and the connection is closed. Default 8 MiB, as
    /// [`Config::max_response`]: the body is streamed ([`Body`]), so this
    /// bounds what a handler is offered, not memory; raise it for uploads.
    pub max_body: u64,
    /// After a reply whose handler left the body unread, at most this many
    /// body bytes are read and dropped so the connection can serve the next
    /// request; a longer rest closes it. Default 256 KiB: reading a small
    /// rest costs less than a new connection; a large one is the client's
    /// upload the server does not want.
    pub drain_bytes: u64,
    /// Replies held for a client that does not read, past which no further
    /// pipelined request is read. Default 256 KiB.
    pub output_budget: usize,
    /// Most connections at once; further clients wait in the listen
    /// backlog. Default 1024.
    pub max_connections: usize,
    /// After a refusal the server stops writing and reads what the client
    /// still sends, for at most this long and [`Config::linger_bytes`], so
    /// that closing with unread bytes (a TCP reset) does not destroy the
    /// reply before the client reads it. Default 1 s.
    pub linger: Duration,
    /// The most bytes read and thrown away while lingering. Default 64 KiB.
    pub linger_bytes: usize,
    /// At shutdown, how long open connections get to finish the request in
    /// hand: a [`Handler`] still running may complete and its reply is
    /// written (with `Connection: close`). Past it every connection is
    /// dropped, running handlers with it. Default 5 s.
    pub shutdown_grace: Duration,
    /// The longest a [`Handler`] may take over one request, counted from
    /// its first wait (a handler that answers in its first poll is never
    /// timed out, and no clock is read for it): past it, its future is
    /// dropped and the client gets `503 Service Unavailable`, and
    /// the connection goes on (kept alive if the request asked for it).
    /// `503` rather than `504 Gateway Timeout`: this server is no gateway
    /// and cannot tell that an upstream failed (a handler may time out on
    /// its own work), and `503` is what a server says when it cannot answer
    /// now but might later (Go's `http.TimeoutHandler` says the same).
    /// Default `None`: handlers take as long as they take (a client that
    /// gave up is not noticed while one runs; see [`Handler`]).
    pub handler_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_response: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            max_body: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH as u64,
            drain_bytes: 256 * 1024,
            output_budget: 256 * 1024,
            max_connections: 1024,
            linger: Duration::from_secs(1),
            linger_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            handler_timeout: None,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        limits: Limits;
        head_timeout: Duration;
        idle_timeout: Duration;
        write_timeout: Duration;
        shutdown_grace: Duration;
        /// `None`: no limit.
        handler_timeout: Option<Duration>;
        max_body: u64;
        drain_bytes: u64;
        max_connections: usize => enchufe_framing::at_least_one;
    }
}
