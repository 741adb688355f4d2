//! Stdin lines for the examples that read commands
//! (`#[path = "support/stdin.rs"] mod stdin;`).

use tokio::sync::mpsc;

/// Stdin's lines, read on a plain thread: a pending read on tokio's stdin
/// cannot be cancelled and would keep the program alive after its work is
/// done. The channel closes at the end of input (or when stdin fails).
pub(crate) fn lines() -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    lines
}
