use enchufe_framing::at_least_one;
use std::time::Duration;

pub use enchufe_framing::mux::Profile;

/// What a push does when the client's outbound queue is full: the client
/// reads slower than the server pushes. Replies are never dropped whatever
/// the policy (a dropped reply would leave a request hanging): they wait for
/// room up to `write_timeout`, then the connection is dropped.
///
/// Independently of the policy, a writer that cannot get a batch onto the
/// socket within `write_timeout` (the client reads nothing at all) drops the
/// connection, so memory stays bounded by the queue in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// [`Connection::push`](crate::Connection::push) waits for room, up to
    /// `write_timeout`, then fails with `WriteStalled`; the connection stays.
    /// The default: nothing is lost silently.
    #[default]
    Block,
    /// The new push is dropped (and counted); `push` fails with `QueueFull`
    /// at once. For streams where the latest message matters least.
    DropNewest,
    /// The oldest queued push is dropped (and counted) to make room: for
    /// state updates where only the latest matters.
    DropOldest,
    /// The push waits up to `write_timeout` for room; if there is none, the
    /// connection is dropped (and counted). A broadcast finding the queue
    /// full drops it at once.
    Disconnect,
}

/// What a multiplexed connection does with a request beyond
/// [`Config::max_in_flight`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BusyPolicy {
    /// Stop reading that connection until a handler finishes: the request
    /// waits, bounded by `max_in_flight` and TCP flow control. The default.
    #[default]
    Wait,
    /// Keep reading and answer such requests at once with a `busy` error
    /// (code 3), so the client can retry or go elsewhere.
    Refuse,
}

/// How a [`Server`](crate::Server) behaves under load and at the edges.
///
/// Every field has a default chosen for a small production service; change
/// the ones your protocol needs.
///
/// ```
/// use std::time::Duration;
/// let config = enchufe::server::Config::default()
///     .max_connections(64)
///     .idle_timeout(Some(Duration::from_secs(30)));
/// assert_eq!(config.max_connections, 64);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Most connections served at once. Default 10,000.
    ///
    /// A permit is taken *before* `accept`, so the connection past the limit
    /// waits in the kernel's backlog until one leaves instead of costing a
    /// task and buffers. Each connection may hold one frame arriving (its
    /// buffer grows with the bytes that arrive, up to `max_frame_length`)
    /// plus `max_queued_bytes` of output, so this bounds the server's memory.
    ///
    /// Why 10,000: room for 1,000 slowloris plus 5,000 idle connections
    /// with an ordinary client still served at once (with 1,024 it waited
    /// behind them in the backlog; `RELIABILITY.md`), at about 8 KiB per
    /// connection that sends nothing or trickles, so about 80 MiB.
    /// Each connection needs a file descriptor: raise the process's
    /// open-file limit (`ulimit -n`; the `echo_server` example raises its
    /// soft limit to the hard one) or past it `accept` fails with EMFILE and
    /// backs off ([`Config::accept_backoff_max`]). A flood larger than the
    /// limit still fills it: against one source, set
    /// [`Config::max_connections_per_ip`].
    pub max_connections: usize,

    /// Largest frame payload accepted from a client or sent to it.
    /// Default 8 MiB ([`enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH`]).
    /// A client announcing more is disconnected on the header, before anything
    /// is allocated.
    pub max_frame_length: usize,

    /// Plain profile, opt-in: a frame declared longer than
    /// `max_frame_length` but at most this long is not refused; its body goes
    /// to [`Handler::handle_stream`](crate::Handler::handle_stream) as a
    /// [`Body`](enchufe_framing::Body) that arrives in chunks, so memory stays
    /// bounded by a few chunks (256 KiB) whatever its length, up to
    /// `u32::MAX` (the most a 4-byte header can say): the course's file
    /// protocol (a size, then the file) on an ordinary server. Default `0`:
    /// off. The multiplexed profile ignores it (large data there goes as
    /// many frames, so other requests are not held up).
    pub max_stream_length: u64,

    /// Most pushes waiting in one connection's outbound queue, counted in
    /// frames: a second cap beside [`Config::max_queued_bytes`], for many
    /// tiny pushes. Default 128.
    ///
    /// A client that stops reading fills the queue; then pushes follow the
    /// [`SlowConsumer`] policy and the connection is dropped once its writes
    /// make no progress for `write_timeout`, so it cannot grow the server's
    /// memory.
    pub outbound_queue: usize,

    /// Bytes one connection may hold for its client, replies and pushes
    /// together: what the driver has not yet written plus the pushes waiting
    /// in its queue. Default 4 MiB.
    ///
    /// Over it, the connection stops reading new requests until its output
    /// drains, and pushes follow the [`SlowConsumer`] policy. One frame is
    /// always admitted into an empty queue, so a frame larger than the budget
    /// can still be sent (alone). 4 MiB keeps a loopback or LAN link busy
    /// (several socket buffers' worth) while a client that never reads costs
    /// at most this plus one frame; with 8 MiB frames that is under 16 MiB.
    pub max_queued_bytes: usize,

    /// Bytes of pushes all connections together may hold (queued pushes and
    /// unwritten output). Default 128 MiB.
    ///
    /// A broadcast to 10,000 slow clients is bounded by this rather than by
    /// 10,000 budgets; over it, pushes follow the [`SlowConsumer`] policy as
    /// for a full connection. Each connection may still take one push into
    /// an empty queue.
    pub max_total_queued_bytes: usize,

    /// Bytes all connections together may hold in large frames still
    /// arriving (frames of 64 KiB or more, in a buffer of their own that
    /// grows with the bytes that arrive). Default 256 MiB.
    ///
    /// Past it, a connection whose frame would grow is not read until
    /// other frames complete or their connections end (TCP's flow control
    /// holds its sender back), counted in
    /// [`Stats::reads_paused_for_memory`](crate::Stats::reads_paused_for_memory);
    /// its [`Config::frame_timeout`] still runs, so clients that never
    /// finish their frames are cut and give their bytes back. Without it
    /// each connection may hold a frame up to `max_frame_length`: 300
    /// connections sending 8 MiB − 1 of an 8 MiB frame took a server from
    /// 4 MiB to 2.4 GiB in 3 s. 256 MiB is 32 such frames at once, with
    /// [`Config::max_total_queued_bytes`] (128 MiB) under 400 MiB for the
    /// two shared limits, well within a small VM. Not counted: each
    /// connection's first 128 KiB (its read buffer for small frames, or a
    /// large frame's first buffer), so the fast path of small frames never
    /// touches the budget and at most `max_connections` × 128 KiB sits
    /// outside it; frames already handed to handlers; streamed bodies
    /// ([`Config::max_stream_length`], a few chunks each). Raise it for a
    /// server that receives many large frames at once from trusted clients.
    pub max_total_partial_bytes: usize,

    /// A connection that completes no frame for this long is closed.
    /// Default 2 minutes; `None` waits forever.
    ///
    /// Time counts between complete frames, so a client trickling one byte at
    /// a time is cut off too (and sooner by [`Config::frame_timeout`]). Two
    /// minutes, against what the servers we measure ourselves by do: nginx
    /// closes an idle keep-alive connection after 75 s, HAProxy setups
    /// commonly use 30–60 s (`timeout client`), Redis never (`timeout 0`).
    /// Short enough that silent connections do not hold the slots for long,
    /// long enough for a person typing at the course's REPL; a chat client
    /// that may stay quiet longer should ping, or the server raise this.
    pub idle_timeout: Option<Duration>,

    /// Plain and automatic profiles: a new connection must complete its
    /// first frame within this, or it is closed (in the multiplexed profile
    /// the hello is the first frame: [`Config::handshake_timeout`]; under
    /// [`Profile::Auto`] this bounds the hello too). Default 10 s: a
    /// connection that sends nothing holds a slot for this long, not for the
    /// idle timeout. `None`: no such deadline (a server that speaks first
    /// and waits for a person to answer, say).
    pub first_frame_timeout: Option<Duration>,

    /// Once the first byte of a frame has arrived, the rest must arrive
    /// within this, or the connection is closed: a client that trickles a
    /// frame a byte at a time (slowloris) holds its slot this long at most,
    /// whatever the idle timeout. Default 30 s (8 MiB at 2 Mbit/s). A
    /// streamed body ([`Config::max_stream_length`]) is exempt: its chunks
    /// count as activity for the idle timeout instead. Not checked while a
    /// handler runs on the connection (plain profile).
    pub frame_timeout: Option<Duration>,

    /// Most connections from one IP address at once; over it a new one is
    /// accepted and closed at once (counted in
    /// [`Stats::refused_per_address`](crate::Stats::refused_per_address)),
    /// so one address cannot take every slot. Default `None`: no limit (many
    /// clients behind one NAT, or a test on loopback, share an address).
    pub max_connections_per_ip: Option<usize>,

    /// The kernel's queue of connections not yet accepted (`listen`'s
    /// backlog) on TCP listeners. Default `Some(4096)`, Linux's own
    /// `net.core.somaxconn` default since 5.4 (which also caps it); `None`
    /// keeps what the listener was made with (tokio asks for 1,024). 4,096
    /// rather than 1,024: thousands of attackers cut by the first-frame
    /// deadline in the same second reconnect in a burst, and a full queue
    /// drops everyone's SYN, the ordinary client's too, who then waits 1 s
    /// for its retransmission (`RELIABILITY.md`, the slowloris check). Past [`Config::max_connections`] the server
    /// stops accepting, and newcomers wait here until one leaves: a smaller
    /// backlog makes them fail at once instead (connection refused, or a
    /// SYN left unanswered), a larger one lets a burst wait.
    pub listen_backlog: Option<u32>,

    /// Longest a handler may run on one request. Past it the handler is
    /// dropped: in the plain profile the connection ends with
    /// [`Error::HandlerTimeout`](crate::Error::HandlerTimeout), reset like
    /// every failure (the plain wire cannot carry the error); in the
    /// multiplexed profile the request is answered with an error (code 8,
    /// `timeout`) and the connection goes on. A streamed message's handler
    /// ([`Handler::handle_stream`](crate::Handler::handle_stream)) gets
    /// this long from each chunk of its body it takes, and from the body's
    /// end: a large upload may take as long as it takes while the handler
    /// keeps reading it.
    ///
    /// Default 60 s: a handler that never ends (a bug, a lost wakeup, a
    /// remote call without its own timeout) would otherwise hold its
    /// connection's slot, and in the multiplexed profile one of its
    /// `max_in_flight` places, forever. 60 s is what proxies commonly give
    /// a backend to answer (nginx's `proxy_read_timeout`). `None`: handlers
    /// run as long as they take (long polls, a handler that waits for an
    /// event; such a server should still bound each wait itself).
    pub handler_timeout: Option<Duration>,

    /// TCP only: when the client closes its sending side while a handler
    /// runs (plain) or requests are in flight (multiplexed), the server
    /// turns on TCP keepalive probes on that connection, every this long,
    /// and watches the socket for an error. Default 10 s.
    ///
    /// A half-close is how the course's client asks its last question
    /// (send, `shutdown(SHUT_WR)`, read the answer), so EOF alone must not
    /// cancel anything; but a client whose process is gone has sent the
    /// same FIN, and its handler would run on for nobody. The client's
    /// kernel tells them apart: a live socket answers a probe, a socket
    /// that no longer exists answers with a reset, which ends the
    /// connection (dropping its handlers and freeing the slot). A host
    /// that vanished answers nothing, and the kernel gives up after its
    /// retries (9 on Linux: about 10 × this). A reset sent after the FIN
    /// (the client died with unread data, or closed with `SO_LINGER` 0) is
    /// seen at once. A closed client socket lingers in `FIN_WAIT2` in its
    /// kernel for a while (60 s on Linux, `tcp_fin_timeout`) and answers
    /// probes until then. Probes cost one small packet each way per
    /// interval, on such connections only. Unix sockets, TLS and WebSocket
    /// connections (whose socket is boxed out of reach) get no probes:
    /// [`Config::handler_timeout`] bounds them. `None`: no probes. Keepalive
    /// times are whole seconds (at least 1 s).
    pub eof_keepalive: Option<Duration>,

    /// Longest wait for a write to make progress: a queued reply finding room,
    /// a batch being flushed, the last frames before a close. Default 10 s.
    /// Past it the connection is considered stalled and dropped.
    pub write_timeout: Duration,

    /// On [`ServerHandle::shutdown`](crate::ServerHandle::shutdown), how long
    /// in-flight handlers may run to completion before they are cancelled.
    /// Default 10 s.
    pub shutdown_grace: Duration,

    /// What pushes do when a client's outbound queue is full.
    /// Default [`SlowConsumer::Block`].
    pub slow_consumer: SlowConsumer,

    /// The protocol. Default [`Profile::Auto`]: each connection's first
    /// frame decides, so one port serves enchufe's clients (multiplexed, their
    /// default) and the course's plain ones (its Python classes, `nc`), and
    /// neither can take a push for a reply. [`Profile::Plain`]: only the
    /// course's protocol (one frame one message; a multiplexed client is
    /// closed at its hello, counted in
    /// [`Stats::profile_mismatches`](crate::Stats::profile_mismatches)).
    /// [`Profile::Multiplexed`]: only enchufe's (hello, then request ids:
    /// concurrent handlers, replies out of order, pushes and errors told
    /// apart); the server sends its hello without waiting for the client's.
    /// A connection this server dials out speaks multiplexed under `Auto`.
    /// Under `Auto`, until a connection's first frame (or
    /// [`Config::detect_timeout`]) decides, neither framing would be right
    /// for a push: [`ServerHandle::push`](crate::ServerHandle::push) to it
    /// fails with [`Error::Unsupported`](crate::Error::Unsupported) and a
    /// broadcast passes it by (its handler has not seen it yet either).
    /// See `docs/PROTOCOL.md`.
    pub profile: Profile,

    /// [`Profile::Auto`] only: how long a new connection may stay silent
    /// before it is served as plain (its `on_connect` runs then). Default
    /// 500 ms. A multiplexed client sends its hello as soon as it is
    /// connected, so it is here long before; a plain client usually sends
    /// a request at once too. What waits this long is a plain client that
    /// waits for the server to speak first (a greeting): it gets the
    /// greeting this much later. Lower it for such clients (or pin
    /// [`Profile::Plain`]); raise it if multiplexed clients on a loaded or
    /// slow host fail with a profile mismatch. `None`: wait for the first
    /// frame (up to [`Config::first_frame_timeout`]), as hyper's automatic
    /// HTTP/1 and HTTP/2 server waits for the preface.
    pub detect_timeout: Option<Duration>,

    /// Multiplexed only: handlers running at once on one connection.
    /// Default 64: enough to keep a pipelining client busy, small enough that
    /// one connection cannot monopolise the runtime. Handlers of one
    /// connection run concurrently on that connection's task: spawn CPU-heavy
    /// work with `tokio::task::spawn_blocking`.
    pub max_in_flight: usize,

    /// Multiplexed only: what a request over `max_in_flight` gets.
    /// Default [`BusyPolicy::Wait`].
    pub busy: BusyPolicy,

    /// Multiplexed only: the node id this server sends in its hello.
    /// Default empty.
    pub node_id: String,

    /// [`Profile::Multiplexed`] only: how long a new connection may take to
    /// send its hello, and a connection this server dials to answer its own.
    /// Default 10 s. (Under [`Profile::Auto`] the hello is the first frame:
    /// [`Config::first_frame_timeout`].)
    pub handshake_timeout: Duration,

    /// Multiplexed only: speak as a peer, with these settings for links to
    /// other peers. The hello carries the peer flag, and on a connection
    /// whose other end is a peer too, both ends may send requests
    /// ([`Connection::request`](crate::Connection::request)) and keepalive
    /// pings. Set by `enchufe_peer`; default `None` (a plain server).
    pub peer: Option<PeerLinks>,

    /// Longest pause after a failing `accept` (for example EMFILE, out of file
    /// descriptors). The pause starts at 1 ms and doubles up to this. Default 1 s.
    pub accept_backoff_max: Duration,
}

impl Config {
    enchufe_framing::setters! {
        /// 0 counts as 1.
        max_connections: usize => at_least_one;
        max_frame_length: usize;
        first_frame_timeout: Option<Duration>;
        frame_timeout: Option<Duration>;
        max_connections_per_ip: Option<usize>;
        listen_backlog: Option<u32>;
        handler_timeout: Option<Duration>;
        eof_keepalive: Option<Duration>;
        /// Frames up to this long are streamed to
        /// [`Handler::handle_stream`](crate::Handler::handle_stream).
        max_stream_length: u64;
        /// 0 counts as 1.
        outbound_queue: usize => at_least_one;
        /// 0 counts as 1.
        max_queued_bytes: usize => at_least_one;
        /// 0 counts as 1.
        max_total_queued_bytes: usize => at_least_one;
        max_total_partial_bytes: usize;
        idle_timeout: Option<Duration>;
        write_timeout: Duration;
        shutdown_grace: Duration;
        accept_backoff_max: Duration;
        slow_consumer: SlowConsumer;
        profile: Profile;
        detect_timeout: Option<Duration>;
        /// 0 counts as 1.
        max_in_flight: usize => at_least_one;
        busy: BusyPolicy;
        handshake_timeout: Duration;
        /// This server then speaks as a peer.
        peer: PeerLinks => Some;
    }

    /// Sets [`Config::node_id`].
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    pub(crate) fn framing(&self) -> enchufe_framing::Config {
        // Under `Auto` streams are on until a hello makes the connection
        // multiplexed (a hello is never over the frame limit).
        let streams = if self.profile != Profile::Multiplexed {
            self.max_stream_length
        } else {
            0
        };
        enchufe_framing::Config::default()
            .max_frame_length(self.max_frame_length)
            .max_stream_length(streams)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_frame_length: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            max_stream_length: 0,
            outbound_queue: 128,
            max_queued_bytes: 4 << 20,
            max_total_queued_bytes: 128 << 20,
            max_total_partial_bytes: 256 << 20,
            idle_timeout: Some(Duration::from_secs(120)),
            first_frame_timeout: Some(Duration::from_secs(10)),
            frame_timeout: Some(Duration::from_secs(30)),
            max_connections_per_ip: None,
            handler_timeout: Some(Duration::from_secs(60)),
            eof_keepalive: Some(Duration::from_secs(10)),
            listen_backlog: Some(4096),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            accept_backoff_max: Duration::from_secs(1),
            slow_consumer: SlowConsumer::Block,
            profile: Profile::Auto,
            detect_timeout: Some(Duration::from_millis(500)),
            max_in_flight: 64,
            busy: BusyPolicy::Wait,
            node_id: String::new(),
            handshake_timeout: Duration::from_secs(10),
            peer: None,
        }
    }
}

/// Settings that matter only on links between two peers ([`Config::peer`];
/// the `enchufe_peer` crate sets them), kept apart so a plain server's
/// [`Config`] does not carry them.
///
/// ```
/// use std::time::Duration;
/// use enchufe::server::{Config, PeerLinks};
/// let config = Config::default().peer(PeerLinks::default().keepalive(Some(Duration::from_secs(1))));
/// assert!(config.peer.is_some());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerLinks {
    /// Send a ping every this long, so that the other end's idle timeout
    /// tells a silent link from a dead one. Default `None` (no pings; the
    /// peer crate sets 5 s).
    pub keepalive: Option<Duration>,

    /// How long [`Connection::request`](crate::Connection::request) waits for
    /// its reply. Default 30 s, the client's request timeout.
    pub request_timeout: Duration,
}

impl PeerLinks {
    enchufe_framing::setters! {
        keepalive: Option<Duration>;
        request_timeout: Duration;
    }
}

impl Default for PeerLinks {
    fn default() -> Self {
        PeerLinks {
            keepalive: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}
