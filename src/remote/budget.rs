//! The time a run may lose to its remote cache. `--remote-timeout` is not a bound per call
//! (which multiplied by tries and calls turned a silent server into minutes of waiting) but a
//! budget for the whole run's dealings with the server: every call is charged the time it took
//! beyond a short grace and beyond what its bytes take at a modest rate, no call may wait longer
//! than what is left, and once the budget is spent the remote is off for the run.
//!
//! A healthy server costs nothing (its calls answer within the grace, its transfers beat the
//! rate), so a long CI run with thousands of look-ups is never cut short; a silent one costs the
//! budget once; a server that answers at 100 B/s is cut off after the budget, not after every
//! call has crawled to its end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A call answered within this long is not charged.
const GRACE: Duration = Duration::from_secs(1);
/// Transfers at this rate or faster are not charged: a slow link is still a link.
const FLOOR_BYTES_PER_SEC: u64 = 1 << 20;

#[derive(Debug)]
pub struct Budget {
    limit: Duration,
    spent_micros: AtomicU64,
}

impl Budget {
    pub fn new(limit: Duration) -> std::sync::Arc<Budget> {
        std::sync::Arc::new(Budget {
            limit,
            spent_micros: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    pub fn spent(&self) -> Duration {
        Duration::from_micros(self.spent_micros.load(Ordering::Relaxed))
    }

    /// How long the next call may take: what is left of the budget, plus the grace a healthy
    /// call is allowed and the time `bytes` take at the floor rate.
    pub fn call_timeout(&self, bytes: u64) -> Duration {
        let left = self.limit.saturating_sub(self.spent());
        (left + GRACE + transfer_time(bytes)).min(self.limit + transfer_time(bytes))
    }

    /// Charges a call that took `elapsed` and moved `bytes`; whether the budget is now spent.
    pub fn charge(&self, elapsed: Duration, bytes: u64) -> bool {
        let charged = elapsed.saturating_sub(GRACE + transfer_time(bytes));
        let micros = u64::try_from(charged.as_micros()).unwrap_or(u64::MAX);
        let before = self.spent_micros.fetch_add(micros, Ordering::Relaxed);
        Duration::from_micros(before.saturating_add(micros)) >= self.limit
    }

    pub fn exhausted(&self) -> bool {
        self.spent() >= self.limit
    }
}

fn transfer_time(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / FLOOR_BYTES_PER_SEC as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_calls_cost_nothing_and_slow_ones_add_up() {
        let budget = Budget::new(Duration::from_secs(10));
        for _ in 0..10_000 {
            assert!(!budget.charge(Duration::from_millis(40), 0));
        }
        // 100 MB in 20 s is 5 MB/s: faster than the floor.
        assert!(!budget.charge(Duration::from_secs(20), 100 << 20));
        assert_eq!(budget.spent(), Duration::ZERO);
        assert!(!budget.charge(Duration::from_secs(5), 0));
        assert_eq!(budget.spent(), Duration::from_secs(4));
        assert!(budget.call_timeout(0) <= Duration::from_secs(7));
        assert!(budget.charge(Duration::from_secs(8), 0));
        assert!(budget.exhausted());
        assert!(budget.call_timeout(0) <= GRACE);
    }
}
