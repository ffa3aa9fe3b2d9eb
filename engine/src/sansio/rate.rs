//! Per-connection event rate limit: a GCRA token bucket in eight bytes.
//!
//! Owned by one shard thread. Sans-IO: callers pass `now` as nanoseconds on
//! the shard's clock. A limit of `r` events per second admits a burst of `r`
//! events and then one every `1/r` seconds.

/// Rate limit configuration shared by all connections of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Nanoseconds between events at the sustained rate; 0 means unlimited.
    interval_ns: u64,
    /// How far ahead of `now` the theoretical arrival time may run.
    burst_ns: u64,
}

impl RateLimit {
    /// `per_second` events per second with a one-second burst; 0 means unlimited.
    pub fn per_second(per_second: u32) -> Self {
        if per_second == 0 {
            return Self {
                interval_ns: 0,
                burst_ns: 0,
            };
        }
        let interval_ns = 1_000_000_000 / u64::from(per_second);
        Self {
            interval_ns,
            burst_ns: 1_000_000_000 - interval_ns,
        }
    }

    /// `events` per `period` on average, admitting a burst of `burst` at
    /// once (at least one); `events` of 0 means unlimited.
    pub fn new(events: u32, period: std::time::Duration, burst: u32) -> Self {
        if events == 0 {
            return Self::per_second(0);
        }
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = (period_ns / u64::from(events)).max(1);
        Self {
            interval_ns,
            burst_ns: interval_ns.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }

    /// Whether this limit admits everything.
    pub fn is_unlimited(&self) -> bool {
        self.interval_ns == 0
    }
}

/// One connection's bucket state: the theoretical arrival time of the next event.
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimiter {
    tat_ns: u64,
}

impl RateLimiter {
    /// Admits one event at `now_ns` under `limit`, or refuses it.
    #[inline]
    pub fn try_acquire(&mut self, limit: RateLimit, now_ns: u64) -> bool {
        if limit.interval_ns == 0 {
            return true;
        }
        let tat = self.tat_ns.max(now_ns);
        if tat - now_ns > limit.burst_ns {
            return false;
        }
        self.tat_ns = tat + limit.interval_ns;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn admits_a_one_second_burst_then_the_sustained_rate() {
        let limit = RateLimit::per_second(120);
        let mut bucket = RateLimiter::default();
        let start = 10 * SECOND;
        let admitted = (0..500)
            .filter(|_| bucket.try_acquire(limit, start))
            .count();
        assert_eq!(admitted, 120);
        // Half a second later, half a second's worth more.
        let later = start + SECOND / 2;
        let admitted = (0..500)
            .filter(|_| bucket.try_acquire(limit, later))
            .count();
        assert_eq!(admitted, 60);
    }

    #[test]
    fn sustained_rate_over_ten_seconds_is_the_limit() {
        let limit = RateLimit::per_second(50);
        let mut bucket = RateLimiter::default();
        // 1000 attempts per second for 10 s.
        let admitted = (0..10_000u64)
            .filter(|i| bucket.try_acquire(limit, i * SECOND / 1000))
            .count();
        // One second of burst plus 50/s thereafter.
        assert!((540..=551).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn a_burst_then_so_many_per_minute() {
        // BondX's market class: 1000 at once, then 100 per minute.
        let limit = RateLimit::new(100, std::time::Duration::from_secs(60), 1000);
        let mut bucket = RateLimiter::default();
        let t0 = 1_000_000_000_000;
        let admitted = (0..1500).filter(|_| bucket.try_acquire(limit, t0)).count();
        assert_eq!(admitted, 1000);
        // One more every 0.6 s.
        assert!(!bucket.try_acquire(limit, t0 + 500_000_000));
        assert!(bucket.try_acquire(limit, t0 + 600_000_000));
        assert!(!bucket.try_acquire(limit, t0 + 700_000_000));
        // A burst of one is one event per interval.
        let strict = RateLimit::new(10, std::time::Duration::from_secs(60), 1);
        let mut bucket = RateLimiter::default();
        assert!(bucket.try_acquire(strict, t0));
        assert!(!bucket.try_acquire(strict, t0 + 1));
        assert!(bucket.try_acquire(strict, t0 + 6_000_000_000));
    }

    #[test]
    fn zero_means_unlimited() {
        let limit = RateLimit::per_second(0);
        assert!(limit.is_unlimited());
        let mut bucket = RateLimiter::default();
        assert!((0..100_000).all(|_| bucket.try_acquire(limit, 0)));
    }
}
