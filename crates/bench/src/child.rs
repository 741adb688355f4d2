//! Child processes: servers started and stopped by the harness, and one-shot
//! tools (a load run, a holder of idle connections) whose output it reads.
//!
//! Every child is spawned with `kill_on_drop`, so an error, a panic or Ctrl-C
//! in the harness (which drops everything it owns) kills them all.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::{Error, Result};

/// How to start a server: program, arguments, environment.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    /// Short name, used for its log file and in messages.
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(String, String)>,
}

/// A running server that printed `listening on ADDR`.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    child: Child,
    /// Held so the child never writes into a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
    /// Held open: our own `serve` exits when it closes, so even a harness
    /// killed with SIGKILL leaves no server behind.
    _stdin: Option<ChildStdin>,
}

impl Server {
    /// Starts the server, its stderr going to `NAME.log` in `logs`, and
    /// waits (up to 30 s) for its address.
    pub(crate) async fn start(spec: &ServerSpec, logs: &Path) -> Result<Server> {
        let log = std::fs::File::create(logs.join(format!("{}.log", spec.name)))?;
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::harness(format!("cannot start {}: {e}", spec.program.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::harness(format!("{} exited at once", spec.name)))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().parse::<SocketAddr>().map_err(|e| {
                        Error::harness(format!("{}: bad address {addr:?}: {e}", spec.name))
                    });
                }
            }
            Err(Error::harness(format!(
                "{} exited before printing its address (see {}/{}.log)",
                spec.name,
                logs.display(),
                spec.name
            )))
        })
        .await
        .map_err(|_| Error::harness(format!("{} printed no address within 30 s", spec.name)))??;
        Ok(Server {
            addr,
            pid,
            _stdin: child.stdin.take(),
            child,
            _stdout: lines,
        })
    }

    /// Whether the process is still running.
    pub(crate) fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 5 s to stop gracefully, then SIGKILL.
    pub(crate) async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Runs a child to completion within `limit` and returns its stdout; a
/// failure carries the end of its stderr.
pub(crate) async fn output(program: &Path, args: &[String], limit: Duration) -> Result<String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::harness(format!("{} {args:?} ran over {limit:?}", program.display()))
        })??;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(Error::harness(format!(
            "{} {} failed ({}): {}",
            program.display(),
            args.first().map_or("", String::as_str),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a child whose stdout the caller reads line by line (the holder of
/// idle connections, the abusive clients).
pub(crate) fn spawn_reading(
    program: &Path,
    args: &[String],
    logs: &Path,
    name: &str,
) -> Result<(Child, Lines<BufReader<ChildStdout>>)> {
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    Ok((child, BufReader::new(stdout).lines()))
}

/// `cargo build --release --example NAME` in this workspace; the path of
/// the binary, from cargo's JSON messages.
pub(crate) async fn build_example(name: &str) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the {name} example (release)...");
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--example", name])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::harness(format!("building {name} failed")));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error::harness(format!("cargo built no {name} executable")))
}
