//! Retrying what failed for a passing reason (a registry restarting, a proxy answering 503, a reset
//! connection): a bounded number of attempts with exponential backoff and jitter, each retry told
//! in the build log. Failures that another attempt cannot fix (401, 403, 404, a bad manifest, a
//! failed build step) are never retried.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::process::BuildLog;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: usize,
    /// The wait before the second attempt; each later wait doubles, up to `max_delay`. Each wait
    /// gets a random extra of up to itself, so servers that failed together do not retry together.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waiting 200 ms, 400 ms and 800 ms (each up to twice that with jitter).
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1))
    }
}

/// A failed attempt: the error to report if it is the last one, and, when another attempt may
/// succeed, what failed (`registry `h:5000` unreachable (connection refused)`).
pub(crate) struct Attempt<E> {
    pub error: E,
    pub transient: Option<String>,
}

impl<E> Attempt<E> {
    pub(crate) fn fatal(error: E) -> Self {
        Self { error, transient: None }
    }
}

/// Runs `op` until it succeeds, fails for good, or the policy's attempts are spent; each retry is
/// logged as `{what failed}; retrying in 400 ms (attempt 2 of 4)`.
pub(crate) async fn retrying<T, E, Fut>(
    policy: &RetryPolicy,
    log: Option<&BuildLog>,
    op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let mut attempt = 1;
    let outcome = op
        .retry(policy.backoff())
        .when(|a: &Attempt<E>| a.transient.is_some())
        .notify(|a: &Attempt<E>, wait: Duration| {
            attempt += 1;
            let line = format!(
                "{}; retrying in {} ms (attempt {attempt} of {})",
                a.transient.as_deref().unwrap_or("a passing failure"),
                wait.as_millis(),
                policy.attempts
            );
            tracing::warn!("{line}");
            if let Some(log) = log {
                log.line(line);
            }
        })
        .await;
    outcome.map_err(|a| a.error)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use backon::BackoffBuilder;

    use super::*;

    fn quick(attempts: usize) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    async fn run(
        policy: &RetryPolicy,
        fail_first: usize,
        transient: bool,
    ) -> (Result<usize, &'static str>, usize, Vec<String>) {
        let calls = AtomicUsize::new(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let log = BuildLog::new(tx);
        let outcome = retrying(policy, Some(&log), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= fail_first {
                Err(Attempt {
                    error: "down",
                    transient: transient.then(|| "registry `r:1` unreachable (HTTP 503)".to_owned()),
                })
            } else {
                Ok(n)
            }
        })
        .await;
        drop(log);
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        (outcome, calls.into_inner(), lines)
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_each_retry_is_logged() {
        let (outcome, calls, lines) = run(&quick(4), 2, true).await;
        assert_eq!(outcome, Ok(3));
        assert_eq!(calls, 3);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("registry `r:1` unreachable (HTTP 503); retrying in "),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(" ms (attempt 2 of 4)"), "{lines:?}");
        assert!(lines[1].ends_with(" ms (attempt 3 of 4)"), "{lines:?}");
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let (outcome, calls, lines) = run(&quick(4), usize::MAX, true).await;
        assert_eq!(outcome, Err("down"));
        assert_eq!(calls, 4);
        assert_eq!(lines.len(), 3);
        let (outcome, calls, _) = run(&RetryPolicy::none(), usize::MAX, true).await;
        assert_eq!((outcome, calls), (Err("down"), 1));
    }

    #[tokio::test]
    async fn lasting_failures_are_not_retried() {
        let (outcome, calls, lines) = run(&quick(4), usize::MAX, false).await;
        assert_eq!((outcome, calls), (Err("down"), 1));
        assert!(lines.is_empty());
    }

    #[test]
    fn waits_grow_and_stay_bounded() {
        let policy = RetryPolicy::default();
        let waits: Vec<Duration> = policy.backoff().build().collect();
        assert_eq!(waits.len(), 3, "{waits:?}");
        for (wait, base) in waits.iter().zip([200, 400, 800]) {
            let base = Duration::from_millis(base);
            assert!(*wait >= base && *wait <= base * 2, "{waits:?}");
        }
    }
}
