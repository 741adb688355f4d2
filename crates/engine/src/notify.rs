//! The wait for room: try, and on no answer wait for a wake-up.

use tokio::sync::Notify;

/// Calls `attempt` until it answers, waiting for `notify` between tries.
/// The wait is registered before each try, so a notification between a
/// try and the wait is not lost (`notify_waiters` keeps no permit).
///
/// # Cancel safety
/// Cancel-safe: nothing is kept between tries but what `attempt` holds.
pub async fn until_notified<T>(notify: &Notify, mut attempt: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(answer) = attempt() {
            return answer;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wake_up_between_a_try_and_the_wait_is_not_lost() {
        let notify = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(false));
        let (n, r) = (notify.clone(), ready.clone());
        let mut tries = 0;
        let waited = until_notified(&notify, || {
            tries += 1;
            if tries == 1 {
                // Room is made and announced right after this try failed,
                // before the wait: the registered wait still sees it.
                r.store(true, Ordering::Release);
                n.notify_waiters();
                return None;
            }
            ready.load(Ordering::Acquire).then_some(tries)
        });
        let tries = tokio::time::timeout(Duration::from_secs(5), waited)
            .await
            .expect("not hung");
        assert_eq!(tries, 2);
    }
}
