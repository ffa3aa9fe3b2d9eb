//! Topics: named streams with gapless sequence numbers, history, and the
//! per-shard subscriber counts that route each message only to shards that
//! want it. The registry (`registry.rs`) creates and expires them.
//!
//! Publishing a message (all under that topic's own lock, never a global one):
//! 1. stamp the next sequence number;
//! 2. hand the stamped message back as [`Stamped`], which keeps the lock;
//! 3. the caller (the broker's fan-out, `broker.rs`) has it recorded in the
//!    topic's [`History`] (keyed snapshot and byte account, within the
//!    topic's and the engine's limits) and written into the topic's
//!    [`Feed`] (`feed.rs`), the fan-out ring every shard with a subscriber
//!    reads at its own cursor and whose window is the history's newest
//!    messages ([`Stamped::fan_out`]), then lets go.
//!
//! The lock is kept so that the feed holds a topic's messages in
//! sequence order even when several threads publish to it; this module
//! itself knows nothing of shards beyond their subscriber counts.
//! Subscribing takes the same lock, so a new subscriber's replay ends
//! exactly where its live messages begin (its shard reads the feed from the
//! number after the last message the replay holds): no gap, no duplicate.
//! A retired topic (see the registry) refuses both under the same lock:
//! [`Retired`], or for a publish the message back, so the caller can
//! resolve the name again.
//!
//! Each topic has an [`Epoch`]: a topic created again under the same name
//! (after it expired, or in another process) starts its sequence again
//! under a new one. With an external broker the bus numbers messages and
//! holds the epoch; the topic follows it (`follow.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::ring::Displaced;
use crate::sansio::budget::MemoryBudget;
use crate::sansio::history::History;
use crate::sansio::ids::{Epoch, TopicId};
use crate::sansio::message::{Message, Publication, Reach, Stamp};
use crate::sansio::outbox::DeliveryClass;
use crate::sansio::quota::TopicQuota;
use crate::sansio::replay::{Position, Replay, ReplayError, Replayed};
use crate::shard::ShardInbox;

/// The topic was retired (expired) while the caller held it; resolve the
/// name again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retired;

/// A publish refused by a retired topic, handing back what was to be
/// published so the caller can publish it into the live topic of that name.
#[derive(Debug)]
pub(crate) struct Rejected(pub(crate) Publication);

/// A topic. Shared by all shards; its state sits behind its own lock.
#[derive(Debug)]
pub struct Topic {
    id: TopicId,
    name: Arc<str>,
    /// The topic's [`Epoch`]: fixed at creation in one process; taken from
    /// the bus when an external broker numbers its messages. Written only
    /// under the state lock (see `follow.rs`).
    epoch: AtomicU64,
    /// How its messages are delivered, from the channel rules.
    class: DeliveryClass,
    /// Messages its feed's ring holds, and most it grows to (`feed.rs`).
    ring_slots: (usize, usize),
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
    /// The ring its shards read and its history's window, while it has
    /// subscribers or keeps a window (see `feed.rs`).
    feed: Option<Arc<Feed>>,
    /// Messages the history could not keep for lack of memory.
    retention_refused: u64,
    /// Last publish, or last subscriber leaving: the start of idleness.
    last_active: Instant,
    /// What this topic is charged to until it holds retained state.
    charge: Option<Charge>,
    retired: bool,
    /// Whether its state comes from the bus, and how far (`follow.rs`).
    follow: Follow,
    /// Gaps on the bus delivered as a jump, and the messages they skipped.
    gaps: u64,
    gap_skipped: u64,
}

/// What a new subscriber starts from.
#[derive(Debug)]
pub(crate) struct SubscribeStart {
    /// Live delivery begins after this position.
    pub position: Position,
    /// What to replay before it, or why that is not possible.
    pub replay: Result<Replayed, ReplayError>,
    /// Whether the caller must ask the broker to follow the topic (it was
    /// cold: see `follow.rs`).
    pub follow: bool,
    /// The first number of the topic's feed the subscriber is offered, and
    /// where its shard reads the feed from if it does not read it yet.
    pub join: Join,
}

/// A message just stamped, with its topic still locked. Record it and send
/// it to the shards ([`Stamped::fan_out`]) before dropping this: the lock
/// is what keeps a topic's messages in order in its feed.
pub(crate) struct Stamped<'a> {
    /// The message.
    pub(crate) msg: Arc<Message>,
    topic: &'a Topic,
    state: MutexGuard<'a, TopicState>,
}

impl Stamped<'_> {
    /// Records the message in the history and writes it into the topic's
    /// feed, waking every shard with a subscriber that is not already due
    /// to read it; returns what it displaced from the feed, to be dropped
    /// once the lock is let go.
    #[must_use = "drop what the feed displaced outside the topic's lock"]
    pub(crate) fn fan_out(&mut self, inboxes: &[ShardInbox]) -> Option<Displaced<Arc<Message>>> {
        self.topic.append(&mut self.state, &self.msg, inboxes)
    }
}

impl Topic {
    #[allow(clippy::too_many_arguments)] // One constructor, called by the registry only.
    pub(crate) fn new(
        id: TopicId,
        name: Arc<str>,
        shards: usize,
        history: History,
        budget: Arc<MemoryBudget>,
        charge: Option<Charge>,
        now: Instant,
        follow: Follow,
    ) -> Self {
        Self {
            id,
            name,
            epoch: AtomicU64::new(Epoch::fresh().as_u64()),
            class: DeliveryClass::default(),
            ring_slots: (
                crate::config::DEFAULT_RING_SLOTS,
                crate::config::DEFAULT_RING_MAX_SLOTS,
            ),
            budget,
            retired: AtomicBool::new(false),
            state: Mutex::new(TopicState {
                seq: 0,
                history,
                shard_subscribers: vec![0; shards],
                subscribers: 0,
                feed: None,
                retention_refused: 0,
                last_active: now,
                charge,
                retired: false,
                follow,
                gaps: 0,
                gap_skipped: 0,
            }),
        }
    }

    /// The same topic, its messages delivered as `class`.
    pub(crate) fn with_class(mut self, class: DeliveryClass) -> Self {
        self.class = class;
        self
    }

    /// The same topic, its feed's ring holding `slots` messages and
    /// growing to `max_slots`.
    pub(crate) fn with_ring_slots(mut self, slots: usize, max_slots: usize) -> Self {
        self.ring_slots = (slots, max_slots.max(slots));
        self
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// The topic's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// How its messages are delivered (priority, overflow policy).
    pub fn class(&self) -> DeliveryClass {
        self.class
    }

    /// The run of the topic's sequence: new each time a topic of this name is created.
    pub fn epoch(&self) -> Epoch {
        // Relaxed: a display value; every decision that depends on the
        // epoch reads it under the state lock, which orders its writes.
        Epoch::from_u64(self.epoch.load(Ordering::Relaxed))
    }

    /// Marks the topic looked at now by a session that watches it without
    /// subscribing (a periodic read of its state): a look keeps it followed
    /// on a bus, and not expired as idle, for as long as a subscriber
    /// would. Such a session looks at least once per `follow_linger`.
    pub fn look(&self) {
        let mut state = self.state.lock();
        state.last_active = state.last_active.max(Instant::now());
    }

    /// The position of its last message.
    pub fn position(&self) -> Position {
        let state = self.state.lock();
        Position {
            epoch: self.epoch(),
            seq: state.seq,
        }
    }

    /// Whether the topic has been retired (see the module docs).
    pub fn is_retired(&self) -> bool {
        // Relaxed: a hint for cache pruning; publish and subscribe decide
        // under the state lock, which orders them with retirement.
        self.retired.load(Ordering::Relaxed)
    }

    /// Stamps one message; the caller records and routes it (see [`Stamped`]).
    pub(crate) fn publish(&self, publication: Publication) -> Result<Stamped<'_>, Rejected> {
        // Clock reads and the allocation of the key stay outside the lock;
        // the epoch is read under it (a bus's thread may start a new run).
        let stamp = Stamp::now();
        let kind = publication.kind;
        let transient = publication.transient;
        let mut msg = Message::new(
            self.id,
            Arc::clone(&self.name),
            Epoch::from_u64(0),
            0,
            publication.key,
            publication.data,
            stamp,
        );
        msg.kind = kind;
        msg.class = self.class;
        if transient {
            msg = msg.reaching(Reach::Live);
        }
        let mut state = self.state.lock();
        msg.epoch = self.epoch();
        if state.retired {
            return Err(Rejected(Publication {
                key: msg.key,
                data: msg.data,
                kind,
                transient,
            }));
        }
        state.seq += 1;
        msg.seq = state.seq;
        state.last_active = msg.accepted_at;
        Ok(Stamped {
            msg: Arc::new(msg),
            topic: self,
            state,
        })
    }

    /// Registers one subscription on `shard`; returns where it starts and
    /// the answer to `replay`.
    pub(crate) fn subscribe(
        &self,
        shard: usize,
        replay: Replay,
    ) -> Result<SubscribeStart, Retired> {
        let mut state = self.state.lock();
        if state.retired {
            return Err(Retired);
        }
        let first = state.shard_subscribers[shard] == 0;
        state.shard_subscribers[shard] += 1;
        state.subscribers += 1;
        // A subscriber that did not wait (`ConnCtx::prepare`) still makes
        // the topic followed; its live messages start after the catch-up.
        let follow = state.follow == Follow::Cold;
        if follow {
            state.follow = Follow::Syncing(Vec::new());
        }
        let epoch = self.epoch();
        let join = self.feed(&mut state, true).join(shard, first);
        Ok(SubscribeStart {
            position: Position {
                epoch,
                seq: state.seq,
            },
            replay: state.history.replay(replay, epoch, state.seq, state.ring()),
            follow,
            join,
        })
    }

    /// The topic's position and the answer to `replay`, read together
    /// under its lock, without subscribing: a periodic look at its state
    /// (see [`Topic::look`]).
    pub fn peek(&self, replay: Replay) -> (Position, Result<Replayed, ReplayError>) {
        let mut state = self.state.lock();
        state.last_active = state.last_active.max(Instant::now());
        let epoch = self.epoch();
        let position = Position {
            epoch,
            seq: state.seq,
        };
        let replayed = state.history.replay(replay, epoch, state.seq, state.ring());
        (position, replayed)
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
            if state.history.limits().capacity == 0 {
                // Nobody reads it and it keeps no window: the ring and the
                // messages in it go (a shard still holding it drops it as
                // it leaves).
                state.feed = None;
            }
        }
    }

    /// Whether nothing needs this topic and has not for `idle`.
    pub(crate) fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let state = self.state.lock();
        !state.retired
            && !state.follow.is_followed()
            && state.subscribers == 0
            && state.history.is_empty(state.ring())
            && now.saturating_duration_since(state.last_active) >= idle
    }

    /// Retires the topic if it is still idle; returns its final figures.
    pub(crate) fn retire_if_idle(&self, now: Instant, idle: Duration) -> Option<TopicStats> {
        let mut state = self.state.lock();
        if state.retired
            || state.follow.is_followed()
            || state.subscribers != 0
            || !state.history.is_empty(state.ring())
            || now.saturating_duration_since(state.last_active) < idle
        {
            return None;
        }
        state.retired = true;
        self.retired.store(true, Ordering::Relaxed);
        drop(state.charge.take());
        state.feed = None;
        drop(state);
        Some(self.stats())
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        // Return the history's bytes to the engine-wide budget.
        self.state.get_mut().clear_history(&self.budget);
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

mod feed;
mod follow;
mod stats;
#[cfg(all(test, not(shardcast_loom)))]
mod tests;
mod window;

pub(crate) use feed::{Feed, Join};
pub(crate) use follow::{Cooled, Follow, Waiter};
pub use follow::{Ingested, Numbered};
pub use stats::TopicStats;
