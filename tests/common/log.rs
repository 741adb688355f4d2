//! The log lines a test's server writes, kept for the test to read.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// What the subscriber set by [`Log::capture`] wrote.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// Sets a subscriber for the current thread, writing lines at `level`
    /// and above (without colours) into the returned `Log`, until the
    /// guard is dropped. In a `current_thread` test it sees the server's
    /// tasks too.
    pub fn capture(level: tracing::Level) -> (Log, DefaultGuard) {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Other tests of the same binary run at once without a subscriber:
        // a log call first reached there while this one was being set can
        // keep the "no one listens" it was given then, and this capture
        // would miss its lines. Asking every call site again now fixes that.
        tracing::callsite::rebuild_interest_cache();
        (log, guard)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many lines so far are at one of `levels` (`"WARN"`, ...).
    pub fn lines_at(&self, levels: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|line| levels.iter().any(|level| line.contains(level)))
            .count()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
