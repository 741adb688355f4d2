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
    /// Sends a file's chunks from the file itself
    /// ([`Client::request_file`](enchufe_client::Client::request_file)):
    /// `sendfile` on a plain TCP connection on Linux, a read into each
    /// request on every other transport, with the hash a pass of its own
    /// two chunks ahead of the sends. Default `false`: a producer reads
    /// each chunk into a buffer, hashes it there and the connection writes
    /// it. The hash needs every byte in this process either way (the
    /// workspace forbids `unsafe`, so no `mmap`), so `sendfile` saves the
    /// socket copy of a chunk that is still in the CPU's cache and costs
    /// page-cache lookups instead: measured over loopback it uses as much
    /// of the sender's CPU and makes the receiver copy from colder pages
    /// (BENCHMARKS.md, "File transfer"). What it saves is the sender's
    /// memory: one 256 KiB buffer instead of `window × chunk_size`.
    /// Readers ([`Upload::reader`](crate::Upload::reader)) ignore it.
    pub zero_copy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_size: 1 << 20,
            window: 8,
            finish_timeout: Duration::from_secs(120),
            cancel_timeout: Duration::from_secs(5),
            zero_copy: false,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        chunk_size: u32;
        window: u32;
        finish_timeout: Duration;
        zero_copy: bool;
    }
}
