//! Sliding-window figures: counts, errors and a fine latency histogram per 10-second slot over
//! the last 15 minutes, from which the 1, 5 and 15-minute rates, error rates and p50/p90/p99
//! are read. Histogram buckets grow by 2^(1/16) (4.4 %), so a percentile is within ~2.2 % of
//! the exact one; slots hold only the buckets they use.

use serde::Serialize;

/// Slot width.
pub const SLOT_NS: u64 = 10 * 1_000_000_000;
/// 15 minutes of slots.
const SLOTS: usize = 90;
const PER_OCTAVE: f64 = 16.0;

/// The windows reported, in minutes.
pub const WINDOWS: [u64; 3] = [1, 5, 15];

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Which slot number (ts / SLOT_NS) this is; stale slots are reused.
    number: u64,
    count: u64,
    errors: u64,
    /// (bucket, count), sorted by bucket.
    buckets: Vec<(u16, u32)>,
}

/// One route's (or port's) figures over the last 15 minutes.
#[derive(Debug, Clone, Default)]
pub struct Windowed {
    slots: Vec<Slot>,
}

fn bucket(latency_ns: u64) -> u16 {
    let ns = latency_ns.max(1) as f64;
    (ns.log2() * PER_OCTAVE).floor().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The geometric middle of a bucket, in nanoseconds.
fn bucket_value(b: u16) -> f64 {
    ((f64::from(b) + 0.5) / PER_OCTAVE).exp2()
}

/// Figures over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the window.
    pub rate: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Windowed {
    pub fn record(&mut self, ts: u64, latency_ns: u64, error: bool) {
        if self.slots.is_empty() {
            self.slots = vec![Slot::default(); SLOTS];
        }
        let number = ts / SLOT_NS;
        let slot = &mut self.slots[(number % SLOTS as u64) as usize];
        if slot.number != number || slot.count == 0 {
            *slot = Slot {
                number,
                ..Slot::default()
            };
        }
        slot.count += 1;
        slot.errors += u64::from(error);
        let b = bucket(latency_ns);
        match slot.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => slot.buckets[i].1 += 1,
            Err(i) => slot.buckets.insert(i, (b, 1)),
        }
    }

    /// Whether nothing was recorded in the last 15 minutes.
    pub fn is_idle(&self, now: u64) -> bool {
        self.figures(now, 15).requests == 0
    }

    /// Figures over the last `minutes` (slots ending at `now`, the current one included).
    pub fn figures(&self, now: u64, minutes: u64) -> Figures {
        let now_slot = now / SLOT_NS;
        let span = (minutes * 60_000_000_000 / SLOT_NS).min(SLOTS as u64);
        let live = self
            .slots
            .iter()
            .filter(|s| s.count > 0 && s.number <= now_slot && now_slot - s.number < span);
        let mut requests = 0;
        let mut errors = 0;
        let mut merged: Vec<(u16, u64)> = Vec::new();
        for s in live {
            requests += s.count;
            errors += s.errors;
            for (b, c) in &s.buckets {
                merged.push((*b, u64::from(*c)));
            }
        }
        merged.sort_unstable_by_key(|(b, _)| *b);
        let seconds = (minutes * 60) as f64;
        let pct = |q: f64| quantile(&merged, requests, q);
        Figures {
            requests,
            errors,
            rate: requests as f64 / seconds,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
        }
    }
}

fn quantile(sorted: &[(u16, u64)], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, c) in sorted {
        seen += c;
        if seen >= rank {
            return Some((bucket_value(*b) / 1e6 * 1000.0).round() / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const MIN: u64 = 60_000_000_000;

    #[test]
    fn percentiles_are_close_to_the_truth() {
        let mut w = Windowed::default();
        for i in 0..1000u64 {
            w.record(MIN, (i + 1) * MS / 10, i % 10 == 0); // 0.1 … 100 ms
        }
        let f = w.figures(MIN, 1);
        assert_eq!(f.requests, 1000);
        assert_eq!(f.errors, 100);
        assert!((f.error_rate - 0.1).abs() < 1e-9);
        for (got, truth) in [(f.p50_ms, 50.0), (f.p90_ms, 90.0), (f.p99_ms, 99.0)] {
            let got = got.unwrap();
            assert!((got - truth).abs() / truth < 0.03, "{got} vs {truth}");
        }
        assert!((f.rate - 1000.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn windows_forget_what_is_older_than_them() {
        let mut w = Windowed::default();
        w.record(0, 5 * MS, false);
        w.record(4 * MIN, 5 * MS, false);
        w.record(10 * MIN, 5 * MS, true);
        let now = 10 * MIN + 1;
        assert_eq!(w.figures(now, 1).requests, 1);
        assert_eq!(w.figures(now, 5).requests, 1);
        assert_eq!(w.figures(now, 15).requests, 3);
        assert_eq!(w.figures(now + 5 * MIN, 15).requests, 2);
        assert!(w.is_idle(now + 16 * MIN));
        // A slot reused after 15 minutes starts over.
        w.record(15 * MIN, MS, false);
        assert_eq!(w.figures(15 * MIN, 1).requests, 1);
    }

    proptest! {
        #[test]
        fn quantiles_are_ordered_and_within_the_range(lat in prop::collection::vec(1u64..10_000_000_000, 1..200)) {
            let mut w = Windowed::default();
            for l in &lat { w.record(MIN, *l, false); }
            let f = w.figures(MIN, 15);
            let (p50, p90, p99) = (f.p50_ms.unwrap(), f.p90_ms.unwrap(), f.p99_ms.unwrap());
            prop_assert!(p50 <= p90 && p90 <= p99);
            let max = *lat.iter().max().unwrap() as f64 / 1e6;
            prop_assert!(p99 <= max * 1.05 + 0.001);
        }
    }
}
