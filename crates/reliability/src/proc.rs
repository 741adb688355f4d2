//! What the suite reads about a process from `/proc`, and its own limits.

use std::io;
use std::time::Duration;

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmRSS").map(|kib| kib * 1024)
}

/// Peak resident memory of `pid` in bytes (`VmHWM`), since its start or
/// since the last [`reset_peak`].
pub(crate) fn peak_rss(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmHWM").map(|kib| kib * 1024)
}

/// Starts `pid`'s peak resident memory afresh from its current one
/// (`echo 5 > /proc/PID/clear_refs`, Linux 4.0 and later).
pub(crate) fn reset_peak(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

fn status_kib(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.trim().trim_end_matches("kB").trim().parse().ok())?
        })
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
}

/// Open file descriptors of `pid`.
pub(crate) fn fds(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Polls `pid`'s descriptor count until `done(count)` holds or `limit`
/// passes; returns how long it took, or `None` on timeout.
pub(crate) async fn wait_fds(
    pid: u32,
    limit: Duration,
    done: impl Fn(usize) -> bool,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if fds(pid).map(&done).unwrap_or(false) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Raises the soft open-file limit to the hard one: the suite holds
/// thousands of sockets, and a soft limit of 1,024 is common. Returns the
/// limit in force afterwards.
pub(crate) fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// `n` bytes as MiB with one decimal.
pub(crate) fn mib(n: i64) -> String {
    format!("{:+.1} MiB", n as f64 / f64::from(1 << 20))
}
