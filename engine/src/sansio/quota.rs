//! What one principal (an API key, a token's user) may make the server
//! create: topics, at a bounded rate, and a bounded number of them alive
//! that exist only because of it.
//!
//! Shared by every connection of the principal, on any shard; its lock is
//! taken only when a topic is created, gains retained state, or expires —
//! never per message. Sans-IO: callers pass `now`.
//!
//! A topic created by a principal is *charged* to it until the topic holds
//! retained state (history or snapshot: a publisher's messages) or expires.
//! The rate is a token bucket; the charge is a count against `max_live`.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Topic-creation limits of one principal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaLimits {
    /// Sustained topic creations per second.
    pub rate_per_second: f64,
    /// Creations allowed at once (the bucket's size).
    pub burst: u32,
    /// Topics without retained state created by this principal that may
    /// exist at once.
    pub max_live: usize,
}

impl QuotaLimits {
    /// No limit at all (server-internal publishers).
    pub const UNLIMITED: QuotaLimits = QuotaLimits {
        rate_per_second: f64::INFINITY,
        burst: u32::MAX,
        max_live: usize::MAX,
    };
}

/// Why a topic could not be created for a principal.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// The principal created topics faster than its rate.
    #[error("topic creation rate exceeded ({rate_per_second}/s, burst {burst}); retry in {retry_after:?}")]
    Rate {
        /// The sustained rate.
        rate_per_second: f64,
        /// The burst.
        burst: u32,
        /// When one creation will be allowed again.
        retry_after: Duration,
    },
    /// The principal already holds its limit of topics without retained state.
    #[error("{limit} channels created by this client already exist with no retained state")]
    Live {
        /// The limit.
        limit: usize,
    },
}

/// One principal's topic-creation budget. Shared by all its connections.
#[derive(Debug)]
pub struct TopicQuota {
    limits: QuotaLimits,
    state: Mutex<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    tokens: f64,
    refilled_at: Option<Instant>,
    live: usize,
}

impl TopicQuota {
    /// A full budget under `limits`.
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(QuotaState {
                tokens: f64::from(limits.burst),
                refilled_at: None,
                live: 0,
            }),
        }
    }

    /// Charges one topic creation at `now`, or says why not (nothing is charged then).
    pub fn try_charge(&self, now: Instant) -> Result<(), QuotaError> {
        let mut state = self.state.lock();
        self.refill(&mut state, now);
        if state.live >= self.limits.max_live {
            return Err(QuotaError::Live {
                limit: self.limits.max_live,
            });
        }
        if state.tokens < 1.0 {
            let missing = 1.0 - state.tokens;
            return Err(QuotaError::Rate {
                rate_per_second: self.limits.rate_per_second,
                burst: self.limits.burst,
                retry_after: Duration::from_secs_f64(
                    (missing / self.limits.rate_per_second).min(3600.0),
                ),
            });
        }
        state.tokens -= 1.0;
        state.live += 1;
        Ok(())
    }

    /// Ends one charge: the topic gained retained state or expired.
    pub fn release(&self) {
        let mut state = self.state.lock();
        debug_assert!(state.live > 0, "release without charge");
        state.live = state.live.saturating_sub(1);
    }

    /// Topics charged now.
    pub fn live(&self) -> usize {
        self.state.lock().live
    }

    /// Whether forgetting this quota and starting a fresh one would change
    /// nothing: no charge held and the bucket full again at `now`.
    pub fn is_idle(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        self.refill(&mut state, now);
        state.live == 0 && state.tokens >= f64::from(self.limits.burst)
    }

    fn refill(&self, state: &mut QuotaState, now: Instant) {
        if let Some(then) = state.refilled_at {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            // `elapsed` 0 with an infinite rate would be NaN.
            if elapsed > 0.0 {
                state.tokens = (state.tokens + elapsed * self.limits.rate_per_second)
                    .min(f64::from(self.limits.burst));
            }
        }
        state.refilled_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QuotaLimits = QuotaLimits {
        rate_per_second: 2.0,
        burst: 3,
        max_live: 4,
    };

    #[test]
    fn the_burst_then_the_rate() {
        let quota = TopicQuota::new(LIMITS);
        let t0 = Instant::now();
        for _ in 0..3 {
            quota.try_charge(t0).unwrap();
            quota.release();
        }
        let Err(QuotaError::Rate { retry_after, .. }) = quota.try_charge(t0) else {
            panic!("the burst is spent");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert!(quota.try_charge(t0 + Duration::from_millis(499)).is_err());
        quota.try_charge(t0 + Duration::from_millis(1000)).unwrap();
    }

    #[test]
    fn live_charges_cap_topics_until_released() {
        let quota = TopicQuota::new(QuotaLimits {
            rate_per_second: 1e9,
            burst: 100,
            ..LIMITS
        });
        let now = Instant::now();
        for _ in 0..4 {
            quota.try_charge(now).unwrap();
        }
        assert_eq!(quota.try_charge(now), Err(QuotaError::Live { limit: 4 }));
        quota.release();
        quota.try_charge(now).unwrap();
        assert_eq!(quota.live(), 4);
    }

    #[test]
    fn a_quota_is_idle_only_when_nothing_distinguishes_it_from_a_new_one() {
        let quota = TopicQuota::new(LIMITS);
        let t0 = Instant::now();
        assert!(quota.is_idle(t0));
        quota.try_charge(t0).unwrap();
        // A charge held: not idle however long it waits.
        let t1 = t0 + Duration::from_secs(60);
        assert!(!quota.is_idle(t1));
        quota.release();
        assert!(quota.is_idle(t1));
        // Tokens spent: idle again only once refilled (2/s: half a second).
        quota.try_charge(t1).unwrap();
        quota.release();
        assert!(!quota.is_idle(t1 + Duration::from_millis(100)));
        assert!(quota.is_idle(t1 + Duration::from_millis(500)));
    }

    #[test]
    fn unlimited_never_refuses() {
        let quota = TopicQuota::new(QuotaLimits::UNLIMITED);
        let now = Instant::now();
        for _ in 0..10_000 {
            quota.try_charge(now).unwrap();
        }
    }
}
