//! The one retry loop of enchufe: a reconnecting client's supervisor and a
//! peer's dialer both redial through [`retry`], with one [`Backoff`] and
//! one convention for when to wait.
//!
//! The convention: **an attempt that follows a failure waits first**, and
//! a connection that was up and is lost counts as a failure
//! ([`Start::AfterLoss`]). So the first dial of a new peer goes at once
//! ([`Start::Now`]), while a redial after a lost link waits
//! `Backoff::delay(0)`: a server that accepts and hangs up at once is not
//! redialed in a tight loop. The wait before the `n`-th retry (0-based) is
//! `Backoff::delay(n)`, and the loop gives up after
//! [`Backoff::max_attempts`] attempts.
//!
//! ```text
//!  Start::Now:       attempt 1, d(0), attempt 2, d(1), attempt 3 ...
//!  Start::AfterLoss: d(0), attempt 1, d(1), attempt 2, d(2) ...
//! ```
//!
//! Cancelling is dropping the future (race it against a cancellation
//! token in `select!`): it holds nothing but a timer between attempts.
//! (tarpc's `client/stub/retry.rs` has the same shape: one loop any caller
//! reuses, the policy passed in.)

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with jitter, for redialing a server that is down.
///
/// The wait before attempt `n` (0-based) is `initial * 2^n`, capped at
/// `max_delay`, then scaled by a random factor in `[0.5, 1.0]` so that many
/// clients cut off by one server restart do not all redial in the same
/// instant.
///
/// ```
/// use std::time::Duration;
/// use enchufe::client::Backoff;
/// let policy = Backoff::default().max_attempts(5);
/// assert_eq!(policy.max_attempts, Some(5));
/// assert!(policy.delay(0) <= Duration::from_millis(50));
/// assert!(policy.delay(30) <= Duration::from_secs(2));
/// // Without jitter the waits are exact: 50 ms, 100 ms, 200 ms...
/// assert_eq!(policy.jitter(false).delay(2), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// First wait. Default 50 ms: a server being restarted usually listens
    /// again within it, and a client that retries no sooner than this cannot
    /// spin on a server that accepts and closes at once.
    pub initial: Duration,
    /// Longest single wait. Default 2 s: a server that comes back is found
    /// within 2 s, without hammering one that stays down.
    pub max_delay: Duration,
    /// Failed attempts before giving up, `None` for never. Default
    /// `Some(40)`: about a minute with the other defaults, which covers a
    /// restart or a redeploy and still tells a caller, in time to matter,
    /// that a server is gone for good. For a reconnecting client (and a
    /// peer's dialer) the count starts over at every outage.
    pub max_attempts: Option<u32>,
    /// Whether each wait is scaled by a random factor in `[0.5, 1.0]`.
    /// Default `true`: clients cut off together spread their redials.
    /// `false` makes the waits exact, for a run that must repeat itself
    /// (a deterministic simulation: the factor comes from the process's
    /// random keys, not from the simulation's seed).
    pub jitter: bool,
}

impl Backoff {
    enchufe_framing::setters! {
        initial: Duration;
        max_delay: Duration;
        jitter: bool;
    }

    /// Sets [`Backoff::max_attempts`] to `Some(attempts)` (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Never gives up: [`Backoff::max_attempts`] `None`.
    #[must_use]
    pub fn forever(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// Whether `attempts` failed attempts use up the policy.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }

    /// The wait before attempt number `attempt` (0-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        if !self.jitter {
            return exp;
        }
        // A fresh RandomState is randomly keyed: enough jitter, no dependency.
        let mut h = RandomState::new().build_hasher();
        h.write_u32(attempt);
        let factor = 0.5 + (h.finish() % 1024) as f64 / 2048.0;
        exp.mul_f64(factor)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_attempts: Some(40),
            jitter: true,
        }
    }
}

/// What `send` and `request` do when called while a reconnecting client (or
/// a peer) has no connection to the other end.
///
/// "No connection" is what the caller's end knows: between the moment a
/// server dies and the moment the client reads its end (usually at once,
/// as the kernel closes the socket; up to a TCP timeout for a cut cable), a
/// call still goes out on the dead connection and fails with that
/// connection's error (`client::Error::ClosedByPeer`, a framing error)
/// rather than waiting. Requests are never resent for you: the first one
/// may have been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhileDown {
    /// Wait for the connection to come back, at most this long (and, for a
    /// request, within its request timeout), then fail
    /// (`client::Error::Disconnected`, `peer::Error::NotConnected`). Suits callers that would rather ride out a
    /// server restart than handle an error. The default, with 5 s: a blip
    /// plus two of the default backoff's longest waits.
    Wait(Duration),
    /// Fail at once, with the same error. Suits callers with
    /// somewhere else to go (another server, a cache, a queue of their own).
    FailFast,
}

impl Default for WhileDown {
    fn default() -> Self {
        WhileDown::Wait(Duration::from_secs(5))
    }
}

/// Where a retry loop starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nothing has failed yet: the first attempt goes at once.
    Now,
    /// A connection was just lost, which counts as a failure: wait
    /// `Backoff::delay(0)` before the first attempt.
    AfterLoss,
}

/// How a retry loop ended without success.
#[derive(Debug)]
pub struct GaveUp<E> {
    /// Attempts made, the last one included.
    pub attempts: u32,
    /// The last attempt's error.
    pub last: E,
}

/// Calls `attempt` until it succeeds, waiting per `backoff` before every
/// attempt that follows a failure (see the module's convention). Returns
/// the value and how many attempts it took, the successful one included.
///
/// # Errors
/// [`GaveUp`] with the last error when `backoff` runs out of attempts, or
/// at once when `retryable` says an error is final.
///
/// # Cancel safety
/// Dropping the future stops the loop; an attempt in flight is dropped
/// with it.
pub async fn retry<T, E, F, Fut>(
    backoff: &Backoff,
    start: Start,
    mut attempt: F,
    retryable: impl Fn(&E) -> bool,
) -> Result<(T, u32), GaveUp<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts = 0;
    // Waits so far: the index of the next delay.
    let mut waits = 0;
    if start == Start::AfterLoss {
        tokio::time::sleep(backoff.delay(waits)).await;
        waits += 1;
    }
    loop {
        attempts += 1;
        let last = match attempt().await {
            Ok(value) => return Ok((value, attempts)),
            Err(e) => e,
        };
        if !retryable(&last) || backoff.exhausted(attempts) {
            return Err(GaveUp { attempts, last });
        }
        let wait = backoff.delay(waits);
        waits += 1;
        tracing::debug!(attempts, ?wait, error = %last, "attempt failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use tokio::time::Instant;

    /// A backoff without jitter, so the waits are exact.
    fn exact() -> Backoff {
        Backoff::default()
            .initial(Duration::from_millis(100))
            .max_delay(Duration::from_millis(400))
            .jitter(false)
    }

    /// Runs `retry` over an attempt that fails `failures` times, recording
    /// when (since the start) each attempt was made.
    async fn run(
        backoff: &Backoff,
        start: Start,
        failures: u32,
    ) -> (Result<(u32, u32), GaveUp<String>>, Vec<Duration>) {
        let t0 = Instant::now();
        let times = RefCell::new(Vec::new());
        let result = retry(
            backoff,
            start,
            || {
                times.borrow_mut().push(t0.elapsed());
                let n = times.borrow().len() as u32;
                async move {
                    if n <= failures {
                        Err(format!("failure {n}"))
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| true,
        )
        .await;
        (result, times.into_inner())
    }

    fn ms(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_attempt_goes_at_once_and_each_retry_waits_double_capped() {
        let (result, times) = run(&exact(), Start::Now, 4).await;
        assert_eq!(result.unwrap(), (5, 5));
        // Waits 100, 200, 400, 400 (capped) after the failures.
        assert_eq!(times, ms(&[0, 100, 300, 700, 1100]));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_loss_the_first_attempt_waits_too() {
        let (result, times) = run(&exact(), Start::AfterLoss, 2).await;
        assert_eq!(result.unwrap(), (3, 3));
        assert_eq!(times, ms(&[100, 300, 700]));
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_max_attempts_with_the_last_error() {
        let (result, times) = run(&exact().max_attempts(3), Start::Now, 10).await;
        let gave_up = result.unwrap_err();
        assert_eq!(gave_up.attempts, 3);
        assert_eq!(gave_up.last, "failure 3");
        // No wait after the last attempt.
        assert_eq!(times, ms(&[0, 100, 300]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_stops_at_once() {
        let calls = RefCell::new(0);
        let result: Result<((), u32), _> = retry(
            &exact(),
            Start::Now,
            || {
                *calls.borrow_mut() += 1;
                async { Err("final") }
            },
            |e| *e != "final",
        )
        .await;
        assert_eq!(result.unwrap_err().attempts, 1);
        assert_eq!(*calls.borrow(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_jitter_each_wait_is_between_half_and_all_of_the_exact_one() {
        let (result, times) = run(&exact().jitter(true), Start::Now, 4).await;
        assert_eq!(result.unwrap().1, 5);
        let exact = [100, 200, 400, 400];
        for (i, pair) in times.windows(2).enumerate() {
            let wait = pair[1] - pair[0];
            let full = Duration::from_millis(exact[i]);
            assert!(wait <= full && wait >= full / 2, "wait {i}: {wait:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_loop_cancels_it_between_attempts() {
        let calls = RefCell::new(0);
        let forever = exact().forever();
        let looping = retry(
            &forever,
            Start::Now,
            || {
                *calls.borrow_mut() += 1;
                async { Err::<(), _>("down") }
            },
            |_| true,
        );
        // Attempts at 0, 100, 300; cancelled at 350, within the third wait.
        let cancelled = tokio::time::timeout(Duration::from_millis(350), looping).await;
        assert!(cancelled.is_err());
        assert_eq!(*calls.borrow(), 3);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(*calls.borrow(), 3, "no attempt after the loop was dropped");
    }

    #[test]
    fn delays_grow_and_are_capped_with_jitter() {
        let policy = Backoff::default();
        for attempt in 0..64 {
            let d = policy.delay(attempt);
            let exp = (Duration::from_millis(50) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_secs(2));
            assert!(d <= exp, "attempt {attempt}: {d:?} > {exp:?}");
            assert!(d >= exp / 2, "attempt {attempt}: {d:?} < half of {exp:?}");
        }
    }

    #[test]
    fn max_attempts_is_at_least_one_and_forever_never_ends() {
        assert_eq!(Backoff::default().max_attempts(0).max_attempts, Some(1));
        assert!(Backoff::default().max_attempts(3).exhausted(3));
        assert!(!Backoff::default().max_attempts(3).exhausted(2));
        assert!(!Backoff::default().forever().exhausted(u32::MAX));
    }
}
