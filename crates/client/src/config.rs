use enchufe_framing::at_least_one;
use std::time::Duration;

use enchufe_framing::mux::Profile;

use crate::Reconnect;

/// How a [`Client`](crate::Client) connects and waits.
///
/// ```
/// use std::time::Duration;
/// use enchufe::client::Profile;
/// // The course's Python server speaks only the plain profile.
/// let config = enchufe::client::Config::default()
///     .request_timeout(Duration::from_secs(5))
///     .profile(Profile::Plain);
/// assert_eq!(config.request_timeout, Duration::from_secs(5));
/// assert_eq!(enchufe::client::Config::default().profile, Profile::Multiplexed);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Which protocol the connection speaks on top of the framing
    /// (`docs/PROTOCOL.md`).
    ///
    /// Default [`Profile::Multiplexed`]: a hello each way when connecting,
    /// then 9 header bytes per frame; replies matched by id (in any order,
    /// from many tasks at once), pushes told apart from replies, server
    /// errors carried back as [`Error::Remote`](crate::Error::Remote), and
    /// cancellation of requests the caller gave up on. An enchufe server in
    /// its default profile ([`Profile::Auto`]) answers it; a server that
    /// speaks only the plain profile (the course's Python `Server`, an
    /// enchufe server pinned to [`Profile::Plain`]) makes connecting fail
    /// with a profile mismatch
    /// ([`Error::is_profile_mismatch`](crate::Error::is_profile_mismatch)), never
    /// a wrong reply. [`Profile::Auto`] here means multiplexed too.
    ///
    /// [`Profile::Plain`]: one frame is one message, nothing added, the
    /// course's protocol, for its Python `Server` and other plain servers.
    /// Replies are paired with requests by order, so it needs a server that
    /// answers every request once, in order, and pushes nothing while
    /// requests are outstanding (see [`Client`](crate::Client)). A
    /// multiplexed hello as the server's first frame fails with
    /// a profile mismatch
    /// ([`Error::is_profile_mismatch`](crate::Error::is_profile_mismatch)).
    pub profile: Profile,

    /// Our name, sent in the multiplexed hello. Default empty, which is what
    /// clients usually send; a server may log it or use it to tell its
    /// callers apart. At most 255 bytes of UTF-8: a longer one makes
    /// connecting fail with [`Error::Encode`](crate::Error::Encode). Unused
    /// in the plain profile, which has no hello.
    pub node_id: String,

    /// Longest wait for the TCP connection to be established, over every
    /// address the name resolves to, and (multiplexed profile) for the hello
    /// exchange after it: one deadline for both. Default 10 s: long enough for
    /// a slow network, short enough that a typo'd address, or a server that
    /// speaks the plain profile and so never sends a hello, fails while the
    /// user waits.
    pub connect_timeout: Duration,

    /// Longest wait for [`Client::request`](crate::Client::request) to get its
    /// reply, from the moment it is called. Default 30 s.
    pub request_timeout: Duration,

    /// Largest frame payload accepted or sent. Default 8 MiB. A server that
    /// announces more ends the connection with
    /// [`Error::Framing`](crate::Error::Framing) holding `FrameTooLarge`, before any allocation.
    pub max_frame_length: usize,

    /// Frames queued for the connection's driver. Default 128. When full,
    /// `send` and `request` wait: the client cannot outrun the network by
    /// more. (Multiplexed profile: the `cancel` frame of a request dropped
    /// goes past this bound, since it is sent from `Drop` and cannot wait.)
    pub outbound_queue: usize,

    /// Unsolicited messages kept until [`Client::recv`](crate::Client::recv)
    /// takes them. Default 128. When full, the client stops reading the socket
    /// until `recv` is called (TCP pushes back on the server); replies to
    /// requests then wait too, so a client that makes requests while the
    /// server pushes should keep calling `recv`.
    pub incoming_queue: usize,

    /// Requests awaiting their reply at once. Default 256. A request over the
    /// limit waits (within its timeout) for a slot. A request that timed out
    /// keeps its slot until its late reply arrives, so that later replies
    /// still match their own requests.
    ///
    /// In the multiplexed profile replies carry their request's id, so a slot
    /// is freed as soon as its request is over: by its reply or error, by its
    /// timeout, or by the caller dropping the request (the server is then
    /// sent a `cancel`, and a late reply is dropped on arrival). Servers
    /// usually run 64 handlers per connection and queue the rest, so more
    /// than that in flight mostly waits on the server side.
    pub max_in_flight: usize,

    /// Whether the client keeps itself connected. Default `None`: the client
    /// is one connection, and once it ends every call fails with its error.
    ///
    /// With `Some`, [`Client::connect_with`](crate::Client::connect_with)
    /// returns a client that redials after the connection drops (per the
    /// [`Backoff`](crate::Backoff)), exchanges hellos again in the
    /// multiplexed profile, and goes on; `recv` and `pushes` deliver across
    /// connections. The first connect is not retried: an address that does
    /// not work at the start is more likely a mistake than an outage, and
    /// fails loudly. Requests in flight when a connection drops fail and are
    /// never retried (see [`Reconnect`]). Only `connect_with` can redial: the
    /// constructors that take a stream ignore this field.
    pub reconnect: Option<Reconnect>,

    /// How long a connection may bring nothing while a reply is awaited
    /// before it is taken for dead. Default `None`: never (a request times
    /// out on its own, and the connection stays).
    ///
    /// A crashed server's kernel closes the connection, but a cut cable, a
    /// partition or a frozen host send nothing at all. With `Some(d)`, once
    /// nothing has arrived for `d` and the oldest awaited request is at least
    /// `d` old (checked in quarter steps of `d` on the connection's one
    /// timer: dropped between `d` and 2.25 × `d`), the connection is dropped:
    /// its requests fail with [`Error::Silent`](crate::Error::Silent), a
    /// reconnecting client redials and a `MultiClient` routes around it. An
    /// idle connection is never dropped by it. Choose it longer than the
    /// slowest reply, and in the multiplexed profile no longer than
    /// [`Config::request_timeout`].
    pub silence_timeout: Option<Duration>,

    /// How this client opens its connections, in place of TCP: a
    /// simulated network (`enchufe::sim`), an in-memory transport, your
    /// own. Default `None`: TCP (and `unix:PATH` addresses), resolved
    /// here. With `Some`, every dial and redial hands the address, as
    /// given, to the connector within `connect_timeout` (then the hello, in
    /// the multiplexed profile, within the same deadline); a failure is
    /// [`Error::ConnectVia`](crate::Error::ConnectVia), or
    /// [`Error::Refused`](crate::Error::Refused) when the connector says
    /// `ConnectionRefused` and the address is an IP address. `tls` is not
    /// applied on top.
    pub connector: Option<std::sync::Arc<dyn enchufe_engine::net::Connect>>,

    /// TLS for every connection this client dials (feature `tls`). Default
    /// `None`: plain TCP. With `Some`, each dial (and each redial) runs a
    /// TLS handshake on the TCP connection, within the same
    /// `connect_timeout`, checking the server's certificate against the
    /// connector's [`server_name`](crate::tls::Connector::server_name) or
    /// else the host of the address dialed; a failure is
    /// [`Error::Tls`](crate::Error::Tls). Not used for `unix:` addresses.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::Connector>,
}

impl Config {
    enchufe_framing::setters! {
        profile: Profile;
        connect_timeout: Duration;
        request_timeout: Duration;
        max_frame_length: usize;
        /// 0 counts as 1.
        outbound_queue: usize => at_least_one;
        /// 0 counts as 1.
        incoming_queue: usize => at_least_one;
        /// 0 counts as 1.
        max_in_flight: usize => at_least_one;
        reconnect: Reconnect => Some;
        silence_timeout: Duration => Some;
        #[cfg(feature = "tls")]
        tls: crate::tls::Connector => Some;
    }

    /// Sets [`Config::node_id`].
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets [`Config::connector`].
    #[must_use]
    pub fn connector(mut self, connector: impl enchufe_engine::net::Connect) -> Self {
        self.connector = Some(std::sync::Arc::new(connector));
        self
    }

    pub(crate) fn framing(&self) -> enchufe_framing::Config {
        enchufe_framing::Config::default().max_frame_length(self.max_frame_length)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Multiplexed,
            node_id: String::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_length: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            outbound_queue: 128,
            incoming_queue: 128,
            max_in_flight: 256,
            reconnect: None,
            silence_timeout: None,
            connector: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}
