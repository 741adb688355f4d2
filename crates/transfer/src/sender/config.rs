//! The sender's settings.

use std::time::Duration;

/// The sender's settings. `Default` gives every field the value it
/// documents.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Bytes per chunk (the receiver may lower it). Default 1 MiB, the
    /// receiver's default `max_chunk`.
    pub chunk_size: u32,
    /// Chunks unacknowledged at once (the receiver may lower it). Default 8:
    /// the sender's memory for chunks is `window × chunk_size`.
    pub window: u32,
    /// How long the receiver may take to verify, sync and rename once every
    /// chunk is acknowledged. Default 120 s: an `fsync` of many GiB on a
    /// slow disk takes a while.
    pub finish_timeout: Duration,
    /// How long a cancel waits for the receiver's answer. Default 5 s.
    pub cancel_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_size: 1 << 20,
            window: 8,
            finish_timeout: Duration::from_secs(120),
            cancel_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        chunk_size: u32;
        window: u32;
        finish_timeout: Duration;
    }
}
