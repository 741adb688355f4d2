//! Server processes under attack: the `echo_server` example users run, or
//! this binary's own `serve` for the checks that need another handler.
//! Every child is spawned with `kill_on_drop`, so a failing check leaves no
//! server behind.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server that printed `listening on ADDR`.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    /// Its stderr (the server's log).
    pub(crate) log: PathBuf,
    child: Child,
}

/// What to run: a program and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl Spec {
    /// The `echo_server` example with these extra arguments.
    pub(crate) fn echo(program: &Path, extra: &[&str]) -> Spec {
        Spec {
            program: program.to_owned(),
            args: extra.iter().map(OsString::from).collect(),
        }
    }

    /// This binary's `serve --kind KIND` with these extra arguments.
    pub(crate) fn own(kind: &str, extra: &[&str]) -> Spec {
        let program = std::env::current_exe().unwrap_or_else(|_| "enchufe-reliability".into());
        let mut args: Vec<OsString> = vec!["serve".into(), "--kind".into(), kind.into()];
        args.extend(extra.iter().map(OsString::from));
        Spec { program, args }
    }
}

impl Server {
    /// Starts `spec` listening on `addr`, its stderr going to `log`, and
    /// waits (up to 30 s) for the address it prints.
    pub(crate) async fn start(spec: &Spec, addr: &str, log: PathBuf) -> Result<Server, String> {
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .arg("--addr")
            .arg(addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().parse::<SocketAddr>().map_err(|e| e.to_string());
                }
            }
            Err(format!(
                "{} exited before printing its address (see {})",
                spec.program.display(),
                log.display()
            ))
        })
        .await
        .map_err(|_| "no address within 30 s".to_string())??;
        // Keep reading stdout so the server never writes into a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            addr,
            pid,
            log,
            child,
        })
    }

    /// Sends `signal` to the server.
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid as i32), signal);
    }

    /// Waits up to `limit` for the server to exit; kills it past that.
    /// Returns whether it exited by itself.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = self.child.kill().await;
                false
            }
        }
    }

    /// How the server ended, if it has: a server that dies during a check
    /// fails it, and this says how.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Stops the server with SIGTERM (SIGKILL after 15 s). Says so on
    /// stderr if it had ended before.
    pub(crate) async fn stop(mut self) {
        if let Some(status) = self.exited() {
            eprintln!(
                "   the server had already ended ({status}); its log: {}",
                self.log.display()
            );
            return;
        }
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(15)).await;
    }
}
