//! What the harness reads about a process from `/proc`: CPU time and memory.

use std::io;
use std::sync::OnceLock;

/// CPU time (user + system, every thread) a process has used so far, in
/// seconds: `utime + stime` of `/proc/PID/stat` over the clock tick.
pub(crate) fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // the fields after its closing parenthesis start at field 3 (state).
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))?;
    let field = |n: usize| -> io::Result<u64> {
        after
            .split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))
    };
    let ticks = field(14)? + field(15)?; // utime, stime
    Ok(ticks as f64 / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/PID/stat` times (100 on
/// Linux, whatever the kernel's HZ).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(t)) if t > 0 => t as f64,
            _ => 100.0,
        },
    )
}

/// A process's memory from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// Resident set: pages actually in RAM.
    pub(crate) rss: u64,
    /// Virtual size: everything mapped, touched or not.
    pub(crate) size: u64,
    /// Peak resident set over the process's life.
    pub(crate) hwm: u64,
}

pub(crate) fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut mem = Memory::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kib = || {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        };
        match key {
            "VmRSS" => mem.rss = kib(),
            "VmSize" => mem.size = kib(),
            "VmHWM" => mem.hwm = kib(),
            _ => {}
        }
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_secs(pid).unwrap() >= 0.0);
        let mem = memory(pid).unwrap();
        assert!(mem.rss > 0 && mem.size >= mem.rss && mem.hwm >= mem.rss);
    }
}
