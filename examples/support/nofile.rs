//! Raises this process's soft open-file limit to its hard one: every
//! connection is a descriptor, and a soft limit of 1,024 (common) would
//! stop a server far below `Config::max_connections` (10,000). A program
//! does this for itself, as nginx's `worker_rlimit_nofile` does; the
//! library does not change process-wide limits behind its host's back.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now
/// in force (`None` if it cannot be read).
pub(crate) fn raise() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}
