//! Token buckets. Time is passed in, so the session core's limits are testable with a virtual
//! clock.

use tokio::time::Instant;

/// Allows `rate` events per second with bursts of up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens whether or not they are there: work already accepted (a Hello's
    /// resume) is paid for by refusing what comes after it until the bucket has refilled. The
    /// debt is at most `max_debt` tokens.
    pub(crate) fn charge(&mut self, n: f64, max_debt: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - n).max(-max_debt);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        assert_eq!((0..10).filter(|_| b.try_take(t0)).count(), 5);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.try_take(t1)).count(), 5);
        let t2 = t1 + Duration::from_millis(100);
        assert!(b.try_take(t2));
        assert!(!b.try_take(t2));
    }

    #[test]
    fn a_charge_goes_into_debt_that_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5, t0);
        b.charge(25.0, 1000.0, t0);
        // 5 - 25 = -20: two seconds to get back to zero, a tenth more for one token.
        assert!(!b.try_take(t0 + Duration::from_millis(2000)));
        assert!(b.try_take(t0 + Duration::from_millis(2100)));
        let mut capped = TokenBucket::new(10.0, 5, t0);
        capped.charge(1e9, 10.0, t0);
        assert!(capped.try_take(t0 + Duration::from_millis(1100)));
    }
}
