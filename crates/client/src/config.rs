use std::time::Duration;

/// How a [`Client`](crate::Client) connects and waits.
///
/// ```
/// use std::time::Duration;
/// let config = enchufe_client::Config::default().request_timeout(Duration::from_secs(5));
/// assert_eq!(config.request_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Longest wait for the TCP connection to be established, over every
    /// address the name resolves to. Default 10 s: long enough for a slow
    /// network, short enough that a typo'd address fails while the user waits.
    pub connect_timeout: Duration,

    /// Longest wait for [`Client::request`](crate::Client::request) to get its
    /// reply, from the moment it is called. Default 30 s.
    pub request_timeout: Duration,

    /// Largest frame payload accepted or sent. Default 8 MiB. A server that
    /// announces more ends the connection with
    /// [`Error::FrameTooLarge`](crate::Error::FrameTooLarge), before any allocation.
    pub max_frame_length: usize,

    /// Frames queued for the writer task. Default 128. When full, `send`
    /// and `request` wait: the client cannot outrun the network by more.
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
    pub max_in_flight: usize,
}

impl Config {
    /// Sets [`Config::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Config::request_timeout`].
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`Config::max_frame_length`].
    #[must_use]
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// Sets [`Config::outbound_queue`] (at least 1).
    #[must_use]
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.outbound_queue = frames.max(1);
        self
    }

    /// Sets [`Config::incoming_queue`] (at least 1).
    #[must_use]
    pub fn incoming_queue(mut self, frames: usize) -> Self {
        self.incoming_queue = frames.max(1);
        self
    }

    /// Sets [`Config::max_in_flight`] (at least 1).
    #[must_use]
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    pub(crate) fn framing(&self) -> enchufe_framing::Config {
        enchufe_framing::Config::default().max_frame_length(self.max_frame_length)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_length: enchufe_framing::Config::DEFAULT_MAX_FRAME_LENGTH,
            outbound_queue: 128,
            incoming_queue: 128,
            max_in_flight: 256,
        }
    }
}
