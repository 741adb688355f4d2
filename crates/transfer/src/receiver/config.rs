//! The receiver's limits.

use std::time::Duration;

/// The receiver's limits. `Default` gives every field the value it
/// documents.
///
/// ```
/// use enchufe::transfer::receiver::Config;
/// let config = Config::default().max_file_size(1 << 30).max_transfers(4);
/// assert_eq!(config.max_file_size, 1 << 30);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest declared size accepted. Default 64 GiB: past 4 GiB (the
    /// course's 4-byte header) on purpose, small enough that a typo in a
    /// size does not fill a disk.
    pub max_file_size: u64,
    /// Transfers running at once, all connections together. Default 16:
    /// each holds a writer task and up to `2 × window × max_chunk` bytes.
    pub max_transfers: usize,
    /// Largest chunk a sender may use, in bytes. Default 1 MiB: a frame well
    /// under the 8 MiB frame limit, large enough that per-chunk costs (a
    /// request, an ack, a hop to the blocking pool) vanish beside the copy.
    pub max_chunk: u32,
    /// Chunks a sender may have unacknowledged. Default 8: 8 MiB in flight
    /// keeps loopback busy (measured in `BENCHMARKS.md`) while a transfer's
    /// memory stays bounded by `window × max_chunk` in the queue plus as
    /// much being reordered.
    pub window: u32,
    /// A transfer with no chunk for this long is ended, its partial file
    /// kept for a resume. Default 30 s.
    pub idle_timeout: Duration,
    /// Replace a file that already has the offered name. Default `false`:
    /// the offer is refused with [`Error::Exists`](crate::Error::Exists).
    pub overwrite: bool,
    /// `fsync` the file before it takes its final name, so "done" means on
    /// disk. Default `true`.
    pub sync: bool,
    /// A cut transfer's partial file (kept for a resume) older than this is
    /// removed at the next offer. Default 24 h: a sender cut off resumes
    /// within a day, and what it never resumes does not stay for ever.
    pub max_part_age: Duration,
    /// The most bytes the partial files of cut transfers may hold together;
    /// past it, the oldest are removed at the next offer. Default 16 GiB. A
    /// leftover larger than this alone does not survive the next offer.
    /// Whatever this cap, a transfer that finds the disk full removes
    /// leftovers, oldest first, and writes again before it fails.
    pub max_part_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_file_size: 64 << 30,
            max_transfers: 16,
            max_chunk: 1 << 20,
            window: 8,
            idle_timeout: Duration::from_secs(30),
            overwrite: false,
            sync: true,
            max_part_age: Duration::from_secs(24 * 60 * 60),
            max_part_bytes: 16 << 30,
        }
    }
}

impl Config {
    enchufe_framing::setters! {
        max_file_size: u64;
        max_transfers: usize;
        max_chunk: u32;
        window: u32;
        idle_timeout: Duration;
        overwrite: bool;
        sync: bool;
        max_part_age: Duration;
        max_part_bytes: u64;
    }
}
