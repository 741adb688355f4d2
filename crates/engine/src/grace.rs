//! The end of a graceful shutdown, one copy for the TCP server, the UDP
//! server and the bus cluster: the tasks get a grace period to finish,
//! then are told to stop, and the caller waits for the last of them.

use std::time::Duration;

use tokio_util::task::TaskTracker;

/// Closes `tracker` and waits for its tasks to end. If some still run after
/// `grace`, calls `overrun` (which tells them to stop now, and says so in
/// the log) and waits for them to end.
///
/// # Cancel safety
/// Cancel-safe: dropping the future leaves the tasks running; `overrun` is
/// called only once the grace period is over.
pub async fn drain(tracker: &TaskTracker, grace: Duration, overrun: impl FnOnce()) {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        overrun();
        tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::drain;

    #[tokio::test(start_paused = true)]
    async fn tasks_done_within_the_grace_are_not_told_to_stop() {
        let tracker = TaskTracker::new();
        tracker.spawn(tokio::time::sleep(Duration::from_secs(1)));
        let overrun = AtomicBool::new(false);
        let started = Instant::now();
        drain(&tracker, Duration::from_secs(5), || {
            overrun.store(true, Ordering::Relaxed)
        })
        .await;
        assert!(!overrun.load(Ordering::Relaxed));
        assert!(tracker.is_closed() && tracker.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_past_the_grace_are_told_to_stop_and_waited_for() {
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let told = stop.clone();
        tracker.spawn(async move {
            told.cancelled().await;
            // Stopping takes a moment of its own, which drain waits out.
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let started = Instant::now();
        drain(&tracker, Duration::from_secs(5), || stop.cancel()).await;
        assert!(stop.is_cancelled());
        assert!(tracker.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(6));
    }
}
