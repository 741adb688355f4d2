//! Logging for the examples (`support::log`; `tests/hosts/probe.rs` takes it too):
//! to stderr, `RUST_LOG` to choose (default `info`), colours only on a
//! terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Starts logging.
pub(crate) fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
