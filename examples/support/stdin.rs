//! Stdin lines for the examples that read commands, until the end of input,
//! Ctrl-C or SIGTERM.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

/// Stdin's lines; see [`Lines::next`].
pub(crate) struct Lines {
    lines: mpsc::Receiver<String>,
    /// Made once and kept: a signal that comes while the example is busy
    /// with a line is still there at the next call, not lost.
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Stdin's lines, read on a plain thread: a pending read on tokio's stdin
/// cannot be cancelled and would keep the program alive after its work is
/// done.
pub(crate) fn lines() -> Lines {
    let (tx, lines) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let stop = Some(Box::pin(super::stop::signal()) as Pin<Box<_>>);
    Lines { lines, stop }
}

impl Lines {
    /// The next line; `None` at the end of input (or when stdin fails), and
    /// from Ctrl-C or SIGTERM on.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: when another branch of a `select!` wins, no line and no
    /// signal is lost.
    pub(crate) async fn next(&mut self) -> Option<String> {
        let stop = self.stop.as_mut()?;
        tokio::select! {
            line = self.lines.recv() => return line,
            () = stop => {}
        }
        self.stop = None;
        None
    }
}
