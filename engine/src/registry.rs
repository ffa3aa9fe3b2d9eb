//! The topic registry: every live topic of an engine by name and by id; it
//! creates topics, charges their creation, retires the ones nobody needs,
//! and shares the history budget out again.
//!
//! Life of a topic:
//! 1. created on first use of a declared name, after every check of the
//!    caller has passed, and charged to the caller's [`TopicQuota`] (if any)
//!    until it holds retained state; topics so charged may be at most half
//!    of `max_topics`, so subscribers never crowd publishers out;
//! 2. alive while it has subscribers or retained state;
//! 3. with neither for [`RegistryConfig::idle_expiry`], it is *retired*:
//!    marked under its own lock (so no subscribe or publish can slip in),
//!    then removed from the registry; its slot is reused under a new
//!    generation, so a stale [`TopicId`] never matches the new topic. A
//!    caller still holding the retired handle gets [`Retired`] (or, for a
//!    publish, the message back) and resolves the name again.
//!
//! [`Retired`]: crate::topic::Retired

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::debug;

use crate::sansio::budget::MemoryBudget;
use crate::sansio::history::{History, HistoryLimits};
use crate::sansio::ids::TopicId;
use crate::sansio::pattern::TopicError;
use crate::sansio::pattern::{shown, validate_name, ChannelRules};
use crate::sansio::quota::TopicQuota;
use crate::shard::ShardInbox;
use crate::topic::{Charge, Cooled, Follow, Topic};

/// Share of the history budget in use above which [`TopicRegistry::rebalance`] trims.
pub const PRESSURE: f64 = 0.9;

/// Share of the history budget that rebalancing divides among the topics,
/// leaving the rest for the ones that had none.
pub const TARGET: f64 = 0.75;

/// How a registry creates and expires topics.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Which names exist.
    pub rules: ChannelRules,
    /// Most topics alive at once.
    pub max_topics: usize,
    /// Shards of the engine.
    pub shards: usize,
    /// Each topic's history bounds.
    pub history: HistoryLimits,
    /// Bytes of history across all topics.
    pub max_history_bytes: usize,
    /// How long a topic with no subscribers and no retained state lives on.
    pub idle_expiry: Duration,
    /// Whether topics are numbered on an external bus, and so start cold
    /// (see `topic/follow.rs`).
    pub followed: bool,
    /// Messages each topic's feed holds for its shards (its fan-out ring,
    /// made when the topic first has a subscriber) to begin with, and the
    /// most it grows to: at least the history's capacity, so that a
    /// catch-up from a bus (up to a history's worth in one go) fits. Both
    /// at most 2^20.
    pub ring_slots: (usize, usize),
}

/// The most slots a topic's feed may have (16 bytes each).
pub(crate) const MAX_RING_SLOTS: usize = 1 << 20;

/// Figures of topics that no longer exist, so totals never go backwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetiredTotals {
    /// Topics retired so far.
    pub topics: u64,
    /// Messages they had published.
    pub published: u64,
    /// Their refused retentions.
    pub retention_refused: u64,
}

/// All topics of an engine, by name and by id. Shared by all shards.
///
/// Read-mostly: the write lock is taken only to create or retire a topic.
/// The publish path does not come here per message; shards and publishers
/// keep `Arc<Topic>` handles.
#[derive(Debug)]
pub struct TopicRegistry {
    config: RegistryConfig,
    budget: Arc<MemoryBudget>,
    /// Topics still charged to their creators (no retained state yet).
    unclaimed: Arc<AtomicUsize>,
    topics: RwLock<Topics>,
}

#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<Arc<str>, Arc<Topic>>,
    /// Slot `i` holds the topic with index `i`, or `None` when free.
    slots: Vec<Option<Arc<Topic>>>,
    /// The generation the next topic in each slot gets.
    generations: Vec<u32>,
    free: Vec<u32>,
    retired: RetiredTotals,
}

impl TopicRegistry {
    pub(crate) fn new(mut config: RegistryConfig) -> Self {
        // A quarter of the total is set aside as every topic's floor (what
        // no other topic can take from it); the rest is the shared budget.
        let floor =
            (config.max_history_bytes / 4 / config.max_topics.max(1)).min(config.history.max_bytes);
        config.history.floor = floor;
        // The history is the newest numbers of a topic's feed, which holds
        // at most this many.
        config.history.capacity = config.history.capacity.min(MAX_RING_SLOTS);
        let shared = config
            .max_history_bytes
            .saturating_sub(floor.saturating_mul(config.max_topics));
        Self {
            budget: Arc::new(MemoryBudget::new(shared)),
            unclaimed: Arc::new(AtomicUsize::new(0)),
            config,
            topics: RwLock::default(),
        }
    }

    /// The topic called `name`, created on first use if a rule declares it
    /// and `quota` (when given) allows one more.
    pub fn resolve(
        &self,
        name: &str,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.read().by_name.get(name) {
            return Ok(Arc::clone(topic));
        }
        self.create(name, quota)
    }

    #[cold]
    fn create(
        &self,
        name: &str,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_name(name)?;
        if !self.config.rules.allows(name) {
            return Err(TopicError::Undeclared(shown(name)));
        }
        let mut topics = self.topics.write();
        if let Some(topic) = topics.by_name.get(name) {
            return Ok(Arc::clone(topic));
        }
        if topics.by_name.len() >= self.config.max_topics {
            return Err(TopicError::TooManyTopics {
                name: shown(name),
                limit: self.config.max_topics,
            });
        }
        let now = Instant::now();
        let charge = match quota {
            None => None,
            Some(quota) => {
                let limit = (self.config.max_topics / 2).max(1);
                if self.unclaimed.load(Ordering::Relaxed) >= limit {
                    return Err(TopicError::TooManyUnclaimed {
                        name: shown(name),
                        limit,
                    });
                }
                quota.try_charge(now).map_err(|quota| TopicError::Quota {
                    name: shown(name),
                    quota,
                })?;
                self.unclaimed.fetch_add(1, Ordering::Relaxed);
                Some(Charge {
                    quota: Arc::clone(quota),
                    unclaimed: Arc::clone(&self.unclaimed),
                })
            }
        };
        let index = match topics.free.pop() {
            Some(index) => index,
            None => {
                topics.slots.push(None);
                topics.generations.push(0);
                (topics.slots.len() - 1) as u32
            }
        };
        let generation = topics.generations[index as usize];
        let name: Arc<str> = name.into();
        let topic = Arc::new(
            Topic::new(
                TopicId::new(index, generation),
                Arc::clone(&name),
                self.config.shards,
                History::new(self.config.history),
                Arc::clone(&self.budget),
                charge,
                now,
                if self.config.followed {
                    Follow::Cold
                } else {
                    Follow::Local
                },
            )
            .with_class(self.config.rules.class_of(&name))
            .with_ring_slots(
                self.config.ring_slots.0.clamp(1, MAX_RING_SLOTS),
                (self.config.ring_slots.1)
                    .max(self.config.history.capacity)
                    .clamp(1, MAX_RING_SLOTS),
            ),
        );
        topics.by_name.insert(name, Arc::clone(&topic));
        topics.slots[index as usize] = Some(Arc::clone(&topic));
        Ok(topic)
    }

    /// Makes cold every followed topic nobody here has wanted for `after`;
    /// returns them, for the broker to stop following.
    pub(crate) fn cool_unwanted(&self, now: Instant, after: Duration) -> Vec<Arc<Topic>> {
        let topics: Vec<Arc<Topic>> = self.topics.read().by_name.values().cloned().collect();
        topics
            .into_iter()
            .filter(|t| t.cool_if_unwanted(now, after) == Cooled::Unfollow)
            .collect()
    }

    /// Retires every topic idle for the configured time; returns how many.
    ///
    /// Candidates are found under the read lock, so publishers resolving
    /// names wait only while the few retired topics are unlinked.
    pub fn expire_idle(&self, now: Instant) -> usize {
        let idle = self.config.idle_expiry;
        let candidates: Vec<Arc<Topic>> = self
            .topics
            .read()
            .by_name
            .values()
            .filter(|t| t.is_idle(now, idle))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return 0;
        }
        let mut topics = self.topics.write();
        let mut expired = 0;
        for topic in candidates {
            let Some(last) = topic.retire_if_idle(now, idle) else {
                continue;
            };
            let index = topic.id().index();
            topics.by_name.remove(&**topic.name());
            topics.slots[index] = None;
            topics.generations[index] = topics.generations[index].wrapping_add(1);
            topics.free.push(index as u32);
            let totals = &mut topics.retired;
            totals.topics += 1;
            totals.published += last.published;
            totals.retention_refused += last.retention_refused;
            expired += 1;
        }
        if expired > 0 {
            debug!(
                expired,
                alive = topics.by_name.len(),
                "idle channels expired"
            );
        }
        expired
    }

    /// Tidies every topic's feed (see [`Topic::tidy`]).
    pub(crate) fn tidy(&self, inboxes: &[ShardInbox]) {
        for topic in self.all() {
            topic.tidy(inboxes);
        }
    }

    /// Shares the history budget out again when it runs short.
    ///
    /// A topic makes room only by evicting its own messages, so once the
    /// engine-wide budget is spent, channels created later could keep
    /// nothing. When more than `PRESSURE` (90%) of the budget is in use, every
    /// topic holding more than an equal share of `TARGET` (75%) of it is trimmed
    /// to that share (oldest first), one topic lock at a time; the caller
    /// (shard 0, every few seconds) spreads the cost. Returns the bytes freed.
    pub fn rebalance(&self) -> usize {
        let budget = &self.budget;
        let used = budget.used();
        if (used as f64) < budget.limit() as f64 * PRESSURE {
            return 0;
        }
        let topics = self.all();
        if topics.is_empty() {
            return 0;
        }
        let share =
            (budget.limit() as f64 * TARGET) as usize / topics.len() + self.config.history.floor;
        for topic in &topics {
            topic.trim_history(share);
        }
        let freed = used.saturating_sub(budget.used());
        if freed > 0 {
            debug!(
                freed,
                share,
                channels = topics.len(),
                "history budget shared out again"
            );
        }
        freed
    }

    /// The live topic called `name`, if there is one (never creates it).
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().by_name.get(name).cloned()
    }

    /// Every live topic, in slot order.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().slots.iter().flatten().cloned().collect()
    }

    /// Topics alive now.
    pub fn len(&self) -> usize {
        self.topics.read().by_name.len()
    }

    /// Whether no topic is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Figures of the topics retired so far.
    pub fn retired(&self) -> RetiredTotals {
        self.topics.read().retired
    }

    /// The engine-wide history budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

#[cfg(test)]
mod tests;
