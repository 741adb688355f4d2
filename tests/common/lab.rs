//! A string handler whose requests pick a behaviour, shared by the tests of
//! failures and of the multiplexed profile (`tests/failures.rs`,
//! `tests/multiplexed.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use enchufe::{Connection, Handler};
use tokio::sync::Notify;

/// What [`Lab`] answers "fail" with: the handler error a caller can see.
pub const REFUSAL: &str = "refusing to do that";

/// "hang" waits for `release` (counted in `started`, its drop in `dropped`),
/// "fail" errs with [`REFUSAL`], "panic" panics with "handler bug", "big"
/// answers 2 KiB, "bye" closes its connection and answers nothing; anything
/// else is echoed as `echo:<req>`.
#[derive(Clone, Default)]
pub struct Lab {
    pub started: Arc<AtomicUsize>,
    pub dropped: Arc<AtomicUsize>,
    pub release: Arc<Notify>,
}

/// Adds one to its counter when dropped: a handler future that ended or was
/// cancelled.
pub struct CountDrop(pub Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Handler for Lab {
    type Request = String;
    type Response = String;
    type Error = String;

    async fn handle(&self, req: String, conn: &Connection) -> Result<Option<String>, String> {
        match req.as_str() {
            "hang" => {
                let _dropped = CountDrop(self.dropped.clone());
                self.started.fetch_add(1, Ordering::SeqCst);
                self.release.notified().await;
                Ok(Some("released".into()))
            }
            "fail" => Err(REFUSAL.into()),
            "panic" => panic!("handler bug"),
            "big" => Ok(Some("x".repeat(2048))),
            "bye" => {
                conn.close();
                Ok(None)
            }
            _ => Ok(Some(format!("echo:{req}"))),
        }
    }
}
