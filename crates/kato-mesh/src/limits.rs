//! Rate limiting (a token bucket per `LIMIT_DOMAIN`) and circuit breaking (counters whose
//! limits are read at each use, so a new revision changes them without cutting what is open).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A token bucket holding up to `rate` tokens, refilled at `rate` tokens per second.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            state: Mutex::new(Bucket {
                rate: f64::from(rate),
                tokens: f64::from(rate),
                last: now,
            }),
        }
    }

    /// Changes the rate (and capacity); tokens already there are kept, up to the new capacity.
    pub fn set_rate(&self, rate: u32) {
        let mut b = self.lock();
        b.rate = f64::from(rate);
        b.tokens = b.tokens.min(b.rate);
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.lock();
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / b.rate))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts something open (connections, retries) against a limit given at each try.
#[derive(Debug, Default)]
pub struct Counter {
    open: AtomicUsize,
}

impl Counter {
    /// One more, unless `max` are already open.
    pub fn try_open(self: &Arc<Self>, max: usize) -> Option<CounterGuard> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| CounterGuard(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Held while the counted thing is open.
#[derive(Debug)]
pub struct CounterGuard(Arc<Counter>);

impl Drop for CounterGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// In-flight requests: up to `max` run, up to `max_pending` more wait for a free place, the
/// rest overflow.
#[derive(Debug, Default)]
pub struct Gate {
    active: Arc<Counter>,
    pending: AtomicUsize,
    freed: Arc<Notify>,
}

/// A running request's place; dropping it lets a waiting one in.
#[derive(Debug)]
pub struct GateGuard {
    _active: CounterGuard,
    freed: Arc<Notify>,
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.freed.notify_one();
    }
}

impl Gate {
    /// A place for one request, waiting if needed; `None` when the queue is full too.
    pub async fn enter(&self, max: usize, max_pending: usize) -> Option<GateGuard> {
        if let Some(g) = self.try_enter(max) {
            return Some(g);
        }
        if self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_pending).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        let _leave = PendingGuard(&self.pending);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(g) = self.try_enter(max) {
                return Some(g);
            }
            freed.await;
        }
    }

    fn try_enter(&self, max: usize) -> Option<GateGuard> {
        self.active.try_open(max).map(|c| GateGuard {
            _active: c,
            freed: self.freed.clone(),
        })
    }

    pub fn active(&self) -> usize {
        self.active.open()
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_capacity_then_refills() {
        let t0 = Instant::now();
        let b = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        // 100 ms brings one token back at 10/s.
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // A long pause refills only up to the capacity.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(later).is_ok()).count(), 10);
    }

    #[test]
    fn bucket_rate_changes_live() {
        let t0 = Instant::now();
        let b = TokenBucket::new(100, t0);
        b.set_rate(2);
        assert_eq!((0..10).filter(|_| b.take(t0).is_ok()).count(), 2);
    }

    #[test]
    fn counter_limit_is_read_at_each_try() {
        let c = Arc::new(Counter::default());
        let a = c.try_open(2).unwrap();
        let _b = c.try_open(2).unwrap();
        assert!(c.try_open(2).is_none());
        // Lowering the limit keeps what is open, and refuses new ones.
        assert!(c.try_open(1).is_none());
        drop(a);
        assert!(c.try_open(1).is_none());
        assert!(c.try_open(2).is_some());
    }

    #[tokio::test]
    async fn gate_queues_then_overflows() {
        let gate = Arc::new(Gate::default());
        let first = gate.enter(1, 1).await.unwrap();
        let g2 = gate.clone();
        let waiting = tokio::spawn(async move { g2.enter(1, 1).await.map(|_| ()) });
        // Wait until the second request is queued.
        tokio::time::timeout(Duration::from_secs(5), async {
            while gate.pending() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(gate.enter(1, 1).await.is_none(), "queue full: overflow");
        drop(first);
        assert!(
            waiting.await.unwrap().is_some(),
            "the queued request runs once a place frees"
        );
        assert_eq!(gate.active(), 0);
        assert_eq!(gate.pending(), 0);
    }
}
