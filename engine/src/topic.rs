//! Topics: named streams with gapless sequence numbers, history, and the
//! per-shard subscriber counts that route each message only to shards that
//! want it. Their creation and expiry belong to the registry
//! (`registry.rs`).
//!
//! Publishing a message (all under that topic's own lock, never a global one):
//! 1. stamp the next sequence number;
//! 2. record it in the topic's [`History`] (ring and keyed snapshot), within
//!    the topic's and the engine's byte limits;
//! 3. offer it to the inbox of every shard with at least one subscriber.
//!
//! Step 3 happens under the lock so that every shard receives a topic's
//! messages in sequence order even when several threads publish to it.
//! Subscribing takes the same lock, so a new subscriber's replay ends exactly
//! where its live messages begin: no gap, no duplicate. A retired topic
//! (see the registry) refuses both under the same lock: [`Retired`], or for
//! a publish the message back, so the caller can resolve the name again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::warn;

use crate::budget::MemoryBudget;
use crate::history::{History, Retention};
use crate::message::Message;
use crate::quota::{QuotaError, TopicQuota};
use crate::shard::ShardInbox;

/// A topic's identity within its engine: a dense slot index and the slot's
/// generation, so that an id outlives its topic harmlessly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId {
    index: u32,
    generation: u32,
}

impl TopicId {
    /// The id of slot `index` in its `generation`.
    pub const fn new(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// The slot index: dense, below the number of topics ever alive at once.
    #[inline]
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The slot's generation.
    #[inline]
    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// Why a topic could not be had.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TopicError {
    /// Empty, too long, or with characters outside `A-Z a-z 0-9 . _ - :`.
    #[error("invalid channel name {0:?}: use 1-128 characters from A-Z a-z 0-9 . _ - :")]
    InvalidName(String),
    /// No channel rule declares this name.
    #[error("unknown channel {0:?}: it is not declared in the server's channel rules")]
    Undeclared(String),
    /// The engine already holds its maximum number of topics.
    #[error("channel {name:?} cannot be created: the server holds its limit of {limit} channels")]
    TooManyTopics {
        /// The name that was refused.
        name: String,
        /// The configured limit.
        limit: usize,
    },
    /// Half the topic limit is already held by topics that exist only for
    /// the principals that created them (subscribers), leaving the rest to
    /// topics with retained state.
    #[error("channel {name:?} cannot be created: {limit} channels already exist only for their subscribers")]
    TooManyUnclaimed {
        /// The name that was refused.
        name: String,
        /// The limit (half of `max_topics`).
        limit: usize,
    },
    /// The caller's topic-creation quota refused a new topic.
    #[error("channel {name:?} cannot be created: {quota}")]
    Quota {
        /// The name that was refused.
        name: String,
        /// Which limit.
        quota: QuotaError,
    },
}

/// The topic was retired (expired) while the caller held it; resolve the
/// name again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retired;

/// A publish refused by a retired topic, handing back what was to be
/// published so the caller can publish it into the live topic of that name.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) key: Option<Box<str>>,
    pub(crate) data: Bytes,
}

#[cold]
fn log_overflow(last: &mut Option<Instant>, topic: &str, total: u64) {
    let now = Instant::now();
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last = Some(now);
        warn!(
            topic,
            dropped_total = total,
            "shard inbox full: deliveries dropped (server overloaded)"
        );
    }
}

/// A topic. Shared by all shards; its state sits behind its own lock.
#[derive(Debug)]
pub struct Topic {
    id: TopicId,
    name: Arc<str>,
    budget: Arc<MemoryBudget>,
    /// Set once, under the state lock, when the topic is retired; read
    /// without it by shards pruning their caches.
    retired: AtomicBool,
    state: Mutex<TopicState>,
}

#[derive(Debug)]
struct TopicState {
    seq: u64,
    history: History,
    /// Subscriptions per shard; a shard at 0 is never sent this topic's messages.
    shard_subscribers: Vec<u32>,
    subscribers: u64,
    /// Deliveries lost because a shard's inbox was full.
    overflow_dropped: u64,
    /// Messages the history could not keep for lack of memory.
    retention_refused: u64,
    /// When overflow was last logged (logged at most once a second per topic).
    overflow_logged: Option<Instant>,
    /// Last publish, or last subscriber leaving: the start of idleness.
    last_active: Instant,
    /// What this topic is charged to until it holds retained state.
    charge: Option<Charge>,
    retired: bool,
}

/// A topic's figures at one moment.
#[derive(Clone, Debug)]
pub struct TopicStats {
    /// The topic's id.
    pub id: TopicId,
    /// The topic's name.
    pub name: Arc<str>,
    /// Messages published (equal to the last sequence number).
    pub published: u64,
    /// Subscriptions across all shards.
    pub subscribers: u64,
    /// Messages in the history ring.
    pub history: usize,
    /// Keys in the keyed snapshot.
    pub snapshot_keys: usize,
    /// Bytes retained by ring and snapshot.
    pub history_bytes: usize,
    /// Messages not retained for lack of memory (topic or engine limit).
    pub retention_refused: u64,
    /// Deliveries lost because a shard's inbox was full (one per subscriber there).
    pub overflow_dropped: u64,
}

/// What a new subscriber starts from.
#[derive(Debug)]
pub(crate) struct SubscribeStart {
    /// Deliver only messages with a greater sequence number.
    pub after_seq: u64,
    /// Messages to replay, oldest first.
    pub replay: Vec<Arc<Message>>,
}

impl Topic {
    pub(crate) fn new(
        id: TopicId,
        name: Arc<str>,
        shards: usize,
        history: History,
        budget: Arc<MemoryBudget>,
        charge: Option<Charge>,
        now: Instant,
    ) -> Self {
        Self {
            id,
            name,
            budget,
            retired: AtomicBool::new(false),
            state: Mutex::new(TopicState {
                seq: 0,
                history,
                shard_subscribers: vec![0; shards],
                subscribers: 0,
                overflow_dropped: 0,
                retention_refused: 0,
                overflow_logged: None,
                last_active: now,
                charge,
                retired: false,
            }),
        }
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// The topic's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether the topic has been retired (see the module docs).
    pub fn is_retired(&self) -> bool {
        // Relaxed: a hint for cache pruning; publish and subscribe decide
        // under the state lock, which orders them with retirement.
        self.retired.load(Ordering::Relaxed)
    }

    /// Stamps, records and routes one message; returns its sequence number.
    pub(crate) fn publish(
        &self,
        key: Option<Box<str>>,
        data: Bytes,
        shards: &[ShardInbox],
    ) -> Result<u64, Rejected> {
        // Clock reads and the allocation of the key stay outside the lock.
        let mut msg = Message::new(self.id, Arc::clone(&self.name), 0, key, data);
        let mut state = self.state.lock();
        if state.retired {
            return Err(Rejected {
                key: msg.key,
                data: msg.data,
            });
        }
        state.seq += 1;
        msg.seq = state.seq;
        state.last_active = msg.accepted_at;
        let msg = Arc::new(msg);
        let state = &mut *state;
        match state.history.record(&msg, &self.budget) {
            // Held state is what the charge was waiting for: it ends now.
            Retention::Kept => drop(state.charge.take()),
            Retention::NotApplicable => {}
            Retention::Refused => state.retention_refused += 1,
        }
        for (inbox, &subscribers) in shards.iter().zip(&state.shard_subscribers) {
            if subscribers > 0 && !inbox.deliver(&msg) {
                state.overflow_dropped += u64::from(subscribers);
                log_overflow(
                    &mut state.overflow_logged,
                    &self.name,
                    state.overflow_dropped,
                );
            }
        }
        Ok(msg.seq)
    }

    /// Registers one subscription on `shard`; returns where it starts and, if
    /// `replay_limit` is set, what to replay.
    pub(crate) fn subscribe(
        &self,
        shard: usize,
        replay_limit: Option<usize>,
    ) -> Result<SubscribeStart, Retired> {
        let mut state = self.state.lock();
        if state.retired {
            return Err(Retired);
        }
        state.shard_subscribers[shard] += 1;
        state.subscribers += 1;
        Ok(SubscribeStart {
            after_seq: state.seq,
            replay: replay_limit.map_or_else(Vec::new, |limit| state.history.replay(limit)),
        })
    }

    /// Removes one subscription on `shard`.
    pub(crate) fn unsubscribe(&self, shard: usize) {
        let mut state = self.state.lock();
        let count = &mut state.shard_subscribers[shard];
        debug_assert!(*count > 0, "unsubscribe without subscribe");
        if *count > 0 {
            *count -= 1;
            state.subscribers -= 1;
        }
        if state.subscribers == 0 {
            state.last_active = Instant::now();
        }
    }

    /// Evicts this topic's oldest retained messages down to `max_bytes`.
    pub(crate) fn trim_history(&self, max_bytes: usize) {
        let mut state = self.state.lock();
        if state.history.bytes() > max_bytes {
            state.history.trim_to(max_bytes, &self.budget);
        }
    }

    /// Whether nothing needs this topic and has not for `idle`.
    pub(crate) fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let state = self.state.lock();
        !state.retired
            && state.subscribers == 0
            && state.history.is_empty()
            && now.saturating_duration_since(state.last_active) >= idle
    }

    /// Retires the topic if it is still idle; returns its final figures.
    pub(crate) fn retire_if_idle(&self, now: Instant, idle: Duration) -> Option<TopicStats> {
        let mut state = self.state.lock();
        if state.retired
            || state.subscribers != 0
            || !state.history.is_empty()
            || now.saturating_duration_since(state.last_active) < idle
        {
            return None;
        }
        state.retired = true;
        self.retired.store(true, Ordering::Relaxed);
        drop(state.charge.take());
        drop(state);
        Some(self.stats())
    }

    /// The topic's figures now.
    pub fn stats(&self) -> TopicStats {
        let state = self.state.lock();
        TopicStats {
            id: self.id,
            name: Arc::clone(&self.name),
            published: state.seq,
            subscribers: state.subscribers,
            history: state.history.ring_len(),
            snapshot_keys: state.history.snapshot_len(),
            history_bytes: state.history.bytes(),
            retention_refused: state.retention_refused,
            overflow_dropped: state.overflow_dropped,
        }
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        // Return the history's bytes to the engine-wide budget.
        let state = self.state.get_mut();
        state.history.clear(&self.budget);
    }
}

/// A topic's charge to the principal that created it and to the registry's
/// count of topics held only by their creators; dropping it ends both.
#[derive(Debug)]
pub(crate) struct Charge {
    pub(crate) quota: Arc<TopicQuota>,
    pub(crate) unclaimed: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.quota.release();
        // Relaxed: a count read under the registry's write lock to refuse
        // creations; a stale (higher) value only refuses one too early.
        self.unclaimed.fetch_sub(1, Ordering::Relaxed);
    }
}
