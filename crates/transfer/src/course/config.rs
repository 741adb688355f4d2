//! The course protocol's constants and the limits of its two ends.

use std::time::Duration;

/// The receiver's answer: `"Gracias."` in UTF-8, not length-prefixed.
pub const THANKS: &[u8] = b"Gracias.";

/// Bytes moved per file read or write: large enough that the hops to
/// tokio's blocking threads for file I/O (one per read or write) do not
/// dominate, as they did at 256 KiB (a fifth of both ends' CPU in context
/// switches). A transfer holds two of them; over TCP on Linux, where the
/// body goes through the kernel (`sendfile`, `splice`), two pipes of this
/// size instead, in kernel memory.
pub const BUFFER: usize = 1 << 20;

/// Limits of the course protocol's two ends.
///
/// A receiver gives each sender two clocks: the idle limit on every read,
/// and an overall deadline of `grace + size / min_rate` from the moment it
/// connected, capped by `max_time`. The first cuts a sender that stops;
/// the second one that trickles (a byte now and then keeps any idle limit
/// happy), so it holds its connection slot for a bounded time.
///
/// ```
/// use std::time::Duration;
/// use enchufe::transfer::course::Config;
/// let config = Config::default().min_rate(Some(1 << 20)).max_time(Some(Duration::from_secs(600)));
/// // 10 MiB: 30 s of grace plus 10 s at 1 MiB/s.
/// assert_eq!(config.time_for(10 << 20), Some(Duration::from_secs(40)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest declared size the receiver accepts. Default 1 GiB (the
    /// header allows up to 4 GiB − 1, which a receiver need not accept
    /// from anyone who connects).
    pub max_size: u64,
    /// The longest wait for the next bytes of the size or the body.
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// The longest wait for (or to write) the `Gracias.` reply. Default 30 s.
    pub reply_timeout: Duration,
    /// The slowest average rate a body may arrive at, in bytes per second
    /// (`None`: no rate). Default 64 KiB/s: a slow home uplink (512 kbit/s)
    /// still passes; a 1 GiB body gets about 4 h 34 min. The course's
    /// scripts on loopback move hundreds of MiB/s.
    pub min_rate: Option<u64>,
    /// Time every sender gets besides what `min_rate` allows, and the limit
    /// for its 4-byte size to arrive (or `idle_timeout`, if shorter).
    /// Default 30 s: the course's sender connects first, then reads the
    /// whole file into memory, and only then sends the size.
    pub grace: Duration,
    /// The longest a whole transfer may take, whatever its size (`None`: no
    /// cap but the rate). Default `None`.
    pub max_time: Option<Duration>,
    /// Senders a [`Receiver`](super::server::Receiver) serves at once; the next waits in the
    /// listener's backlog. Default 16: each holds two [`BUFFER`]s
    /// (32 MiB in all) and a file.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 1 << 30,
            idle_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(30),
            min_rate: Some(64 << 10),
            grace: Duration::from_secs(30),
            max_time: None,
            max_connections: 16,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        max_size: u64;
        idle_timeout: Duration;
        reply_timeout: Duration;
        /// In bytes per second.
        min_rate: Option<u64>;
        grace: Duration;
        max_time: Option<Duration>;
        max_connections: usize;
    }

    /// The time a transfer of `size` bytes is given from its connection:
    /// `grace + size / min_rate`, capped by `max_time`; `None` when neither
    /// limits it.
    pub fn time_for(&self, size: u64) -> Option<Duration> {
        let by_rate = self.min_rate.map(|rate| {
            let secs = size as f64 / rate.max(1) as f64;
            self.grace
                .saturating_add(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
        });
        match (by_rate, self.max_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The limit for the 4-byte size: `grace`, or `max_time` if shorter.
    pub(super) fn header_time(&self) -> Duration {
        self.max_time.map_or(self.grace, |m| m.min(self.grace))
    }
}
