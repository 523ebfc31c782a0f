//! When a failed deploy is tried again: exponential backoff from a base (1 s by default),
//! capped at 5 minutes, with ±20 % jitter so that components failing together do not retry
//! together.

use std::time::Duration;

/// The first retry's delay unless the server is told otherwise.
pub const DEFAULT_BASE: Duration = Duration::from_secs(1);

/// The longest delay before jitter.
pub const CAP: Duration = Duration::from_secs(5 * 60);

/// How far the jitter moves a delay, either way.
const JITTER: f64 = 0.2;

/// The failures in a row once a deploy of `hash` failed, given the record before it: one more
/// when the same objects failed before, else 1 (a user change starts the count again).
pub fn attempts_after(previous_hash: Option<&str>, previous_attempts: u32, hash: &str) -> u32 {
    if previous_hash == Some(hash) && previous_attempts > 0 {
        previous_attempts.saturating_add(1)
    } else {
        1
    }
}

/// The delay after `attempts` failures in a row (at least 1), before jitter: `base`, `2 × base`,
/// `4 × base` … up to [`CAP`].
pub fn delay(base: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(CAP)
}

/// `d` moved by the jitter: `unit` in [0, 1] maps to [-20 %, +20 %].
pub fn jittered(d: Duration, unit: f64) -> Duration {
    d.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0))
}

/// The jittered delay before the retry that follows `attempts` failures in a row.
pub fn next(base: Duration, attempts: u32) -> Duration {
    jittered(delay(base, attempts), random_unit())
}

/// A uniform number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    // The top 53 bits: exactly what an f64 holds.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let delays: Vec<u64> = (1..=11).map(|n| delay(S, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(S, u32::MAX), CAP);
        assert_eq!(delay(S, 0), S, "no failure yet counts as the first");
        let ms = Duration::from_millis(50);
        assert_eq!(delay(ms, 3), Duration::from_millis(200));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(d, 0.5), d);
        assert_eq!(jittered(d, 1.0), Duration::from_secs(120));
        assert_eq!(jittered(d, 7.0), Duration::from_secs(120));
        for attempts in [1, 5, 20] {
            let plain = delay(S, attempts);
            for _ in 0..1000 {
                let j = next(S, attempts);
                assert!(
                    j >= plain.mul_f64(0.8) && j <= plain.mul_f64(1.2),
                    "{j:?} around {plain:?}"
                );
            }
        }
        let at_cap: Vec<Duration> = (0..1000).map(|_| next(S, 30)).collect();
        assert!(at_cap.iter().all(|d| *d <= CAP.mul_f64(1.2)));
        assert!(at_cap.iter().any(|d| *d != at_cap[0]), "the jitter varies");
    }

    #[test]
    fn the_count_grows_for_the_same_objects_and_restarts_on_a_change() {
        assert_eq!(attempts_after(None, 0, "h1"), 1);
        assert_eq!(attempts_after(Some("h1"), 1, "h1"), 2);
        assert_eq!(attempts_after(Some("h1"), 7, "h1"), 8);
        assert_eq!(attempts_after(Some("h1"), 7, "h2"), 1, "a user change resets");
        assert_eq!(attempts_after(Some("h1"), 0, "h1"), 1, "after a success");
        assert_eq!(attempts_after(Some("h1"), u32::MAX, "h1"), u32::MAX);
    }
}
