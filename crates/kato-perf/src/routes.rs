//! The routes of one port that figures name: at most `cap`, the busiest. A new route takes a
//! free place; when none is free it counts in `other` and as a candidate, and every
//! rebalance (each 10 s) a candidate that was clearly busier than the quietest named route over
//! that period takes its place. Routes idle for 15 minutes give theirs up.

use std::collections::HashMap;

use crate::window::Windowed;

/// Candidates remembered per period, as a multiple of the cap.
const CANDIDATES_PER_PLACE: usize = 4;
/// A candidate replaces a named route when it was this many times busier over the period.
const MARGIN: u64 = 2;

#[derive(Debug, Default)]
struct Named {
    windows: Windowed,
    /// Exchanges since the last rebalance.
    period: u64,
}

#[derive(Debug, Default)]
pub struct RouteSet {
    named: HashMap<String, Named>,
    candidates: HashMap<String, u64>,
}

impl RouteSet {
    /// The windows of `route`, when it is named (taking a free place if there is one).
    pub fn windows(&mut self, route: &str, cap: usize) -> Option<&mut Windowed> {
        if !self.named.contains_key(route) {
            if self.named.len() >= cap {
                let room = self.candidates.len() < cap * CANDIDATES_PER_PLACE;
                match self.candidates.get_mut(route) {
                    Some(n) => *n += 1,
                    None if room => {
                        self.candidates.insert(route.to_owned(), 1);
                    }
                    None => {}
                }
                return None;
            }
            self.named.insert(route.to_owned(), Named::default());
        }
        let n = self.named.get_mut(route)?;
        n.period += 1;
        Some(&mut n.windows)
    }

    /// Named routes and their windows.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Windowed)> {
        self.named.iter().map(|(r, n)| (r.as_str(), &n.windows))
    }

    /// Idle routes leave, busier candidates replace the quietest; answers the routes that left.
    pub fn rebalance(&mut self, now: u64, cap: usize) -> Vec<String> {
        let mut left: Vec<String> = self
            .named
            .iter()
            .filter(|(_, n)| n.windows.is_idle(now))
            .map(|(r, _)| r.clone())
            .collect();
        for r in &left {
            self.named.remove(r);
        }
        let mut candidates: Vec<(String, u64)> = self.candidates.drain().collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (route, count) in candidates {
            if self.named.len() < cap {
                self.named.insert(route, Named::default());
                continue;
            }
            let quietest = self
                .named
                .iter()
                .min_by(|a, b| a.1.period.cmp(&b.1.period).then_with(|| b.0.cmp(a.0)))
                .map(|(r, n)| (r.clone(), n.period));
            match quietest {
                Some((q, period)) if count >= period.max(1) * MARGIN => {
                    self.named.remove(&q);
                    left.push(q);
                    self.named.insert(
                        route,
                        Named {
                            windows: Windowed::default(),
                            period: count,
                        },
                    );
                }
                _ => break,
            }
        }
        for n in self.named.values_mut() {
            n.period = 0;
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    fn hit(set: &mut RouteSet, route: &str, n: usize) -> usize {
        (0..n)
            .filter(|_| match set.windows(route, 2) {
                Some(w) => {
                    w.record(MIN, 1, false);
                    true
                }
                None => false,
            })
            .count()
    }

    #[test]
    fn a_busier_route_takes_the_quietest_place_and_idle_ones_leave() {
        let mut set = RouteSet::default();
        assert_eq!(hit(&mut set, "a", 5), 5);
        assert_eq!(hit(&mut set, "b", 1), 1);
        assert_eq!(hit(&mut set, "c", 10), 0, "no place: other");
        assert_eq!(hit(&mut set, "d", 1), 0);
        assert_eq!(set.rebalance(MIN, 2), ["b"]);
        assert_eq!(hit(&mut set, "c", 3), 3, "named now");
        assert_eq!(hit(&mut set, "d", 1), 0, "not busier than the quietest: still other");
        // A candidate only a little busier than the quietest does not churn the set.
        hit(&mut set, "a", 3);
        hit(&mut set, "d", 4);
        assert!(set.rebalance(MIN, 2).is_empty());
        // Fifteen minutes without a request: the place is free again.
        assert_eq!(set.rebalance(17 * MIN, 2).len(), 2);
        assert_eq!(hit(&mut set, "d", 1), 1);
    }

    #[test]
    fn candidates_are_bounded() {
        let mut set = RouteSet::default();
        for i in 0..1000 {
            hit(&mut set, &format!("r{i}"), 1);
        }
        assert!(set.candidates.len() <= 2 * CANDIDATES_PER_PLACE);
    }
}
