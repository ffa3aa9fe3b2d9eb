//! The history budget: bytes retained above their topics' floors, across
//! every topic of an engine. The one piece of history state that topics
//! share; a counter, no lock.

#[cfg(shardcast_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of retained messages above their topics' floors, across every topic
/// of an engine. Shared by all topics; lock-free. Touched only by messages
/// that do not fit under their topic's floor: a topic within its floor never
/// writes this shared cache line. (The total retained is the sum of the
/// topics' [`crate::History::bytes`], read when reported.)
///
/// The invariant: the bytes of all successful reservations not yet released
/// never exceed the limit. A reservation adds first and takes back what does
/// not fit, so `used` may pass the limit for an instant (making a racing
/// reservation fail spuriously, never wrongly succeed). Checked under every
/// interleaving by the loom model below (`.ci/run`: `--cfg shardcast_loom`).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if they fit.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        // Relaxed: a counter; no memory is published through it. Two racing
        // reservations near the limit may both fail, never both overshoot.
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(all(test, shardcast_loom))]
mod loom_budget {
    use super::MemoryBudget;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;

    /// Two reservations of 60 race for a budget of 100, each releasing after
    /// use: whatever the interleaving, the bytes held never pass the limit,
    /// and everything is given back at the end.
    #[test]
    fn loom_successful_reservations_never_exceed_the_limit() {
        loom::model(|| {
            let budget = Arc::new(MemoryBudget::new(100));
            let held = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let budget = Arc::clone(&budget);
                    let held = Arc::clone(&held);
                    loom::thread::spawn(move || {
                        if budget.try_reserve(60) {
                            let now = held.fetch_add(60, Ordering::SeqCst) + 60;
                            assert!(now <= 100, "{now} bytes held past the limit");
                            held.fetch_sub(60, Ordering::SeqCst);
                            budget.release(60);
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let won = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&won| won)
                .count();
            // Whoever added first fits, so at least one wins.
            assert!(won >= 1);
            assert_eq!(budget.used(), 0);
        });
    }
}
