//! Raises this process's open-file limit: every connection is a
//! descriptor, and a soft limit of 1,024 (common) would stop a server far
//! below `Config::max_connections` (10,000). A program does this for
//! itself, as nginx's `worker_rlimit_nofile` does; the library does not
//! change process-wide limits behind its host's back.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and past it up to
/// `want` descriptors (capped at `/proc/sys/fs/nr_open`) where the process
/// may raise its hard limit (root, `CAP_SYS_RESOURCE`); returns the limit
/// now in force (`None` if it cannot be read).
pub(crate) fn raise(want: u64) -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if want > hard {
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let more = want.min(ceiling);
        if more > hard && setrlimit(Resource::RLIMIT_NOFILE, more, more).is_ok() {
            return Some(more);
        }
    }
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}
