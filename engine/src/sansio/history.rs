//! A topic's memory: its newest messages and the latest message per key,
//! bounded in messages and in bytes, per topic and across all topics.
//!
//! Owned by its topic and touched only under the topic's lock; the
//! engine-wide [`MemoryBudget`] is the one shared piece (an atomic counter).
//!
//! - The newest messages are not copied anywhere: they are the window the
//!   topic's fan-out ring keeps (`ring/elastic.rs`, [`Elastic::keeping`]),
//!   the same slots its shards read live messages from. The window holds
//!   the last `capacity` numbers of the ring, as one contiguous run (it is
//!   cleared rather than left with a hole when a message cannot be kept).
//!   Transient messages take a number in it while the topic has
//!   subscribers (nobody else would read them), and are never replayed.
//! - The keyed snapshot keeps, for each key, the latest message with that
//!   key, at most `max_keys` keys; past that the key updated longest ago is
//!   evicted. `by_seq` orders it by sequence so replay is oldest-first and
//!   eviction is O(log n).
//! - A message in both is counted once. Its cost is
//!   [`Message::retained_cost`]: proportional to its data and key.
//! - Every topic may hold its `floor` of bytes on its own; only what it holds
//!   above the floor is drawn from the engine-wide [`MemoryBudget`]. No
//!   publisher, however busy, can take a topic's floor away from it.
//!
//! Recording a message ([`History::record`]), in order:
//! 1. the key's previous message leaves the snapshot (it is no longer the
//!    latest, whatever happens to the new one);
//! 2. a message larger than the topic's byte limit is not kept, and the
//!    window is cleared so that it never has a hole;
//! 3. room is made under the topic's own limit by evicting its oldest
//!    entries;
//! 4. the part above the floor is reserved from the budget, evicting this
//!    topic's oldest entries above its floor as needed; when even that could
//!    not make it fit (the budget is held by others), the message is not
//!    kept and nothing but the window (which may not have a hole) is
//!    evicted;
//! 5. it is published into the ring (a message not kept only if somebody
//!    reads the topic: the caller decides), which moves a full window on
//!    by one, and joins the snapshot, evicting by count.
//!
//! Replay ([`History::replay`]) answers a [`Replay`] request: the last N of
//! the window, the snapshot, the snapshot when the topic has keyed messages
//! (the current state of every key is worth more than the last N updates of
//! a few keys) and otherwise the window, or everything after a position. A
//! position is answered only from the window, and only when it holds every
//! message after it: the window is one contiguous run ending at the newest
//! message, so "the window starts at or before `seq + 1`" is the whole
//! check. Contiguous but for transient messages (`Publication::transient`),
//! which are never replayed: a resume skips them, by design, and gets every
//! kept message after its position.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ring::{Displaced, Elastic};
use crate::sansio::budget::MemoryBudget;
use crate::sansio::format::FrameKind;
use crate::sansio::ids::Epoch;
use crate::sansio::message::Message;
use crate::sansio::replay::{Position, Replay, ReplayError, Replayed};

/// A topic's fan-out ring, whose window is its history's newest messages.
pub(crate) type Ring = Elastic<Arc<Message>>;

/// Bounds on one topic's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most messages in the window (numbers of the ring it keeps).
    pub capacity: usize,
    /// Most keys in the snapshot.
    pub max_keys: usize,
    /// Most bytes (by [`Message::retained_cost`]) in window and snapshot together.
    pub max_bytes: usize,
    /// Bytes the topic may hold without drawing on the shared budget.
    pub floor: usize,
}

/// What became of a recorded message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept for replay.
    Kept,
    /// Neither the window nor the snapshot takes it (both disabled, no key
    /// and no window, or a transient message).
    NotApplicable,
    /// Not kept: larger than the topic's limit, or no memory left in the budget.
    Refused,
}

/// A topic's keyed snapshot, and the account of what it and the ring's
/// window hold. Owned by one topic, under its lock.
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    latest_by_key: HashMap<Box<str>, u64>,
    by_seq: BTreeMap<u64, Arc<Message>>,
    bytes: usize,
    /// Kept messages in the window (a count, so that stats need not walk it).
    windowed: usize,
    /// The newest seq of a kept message that is not in the window (it left,
    /// or never went in): every kept message above it is there. So the
    /// snapshot knows whether the window holds an entry without reading it.
    outside: u64,
}

impl History {
    /// Empty history under `limits`.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            latest_by_key: HashMap::new(),
            by_seq: BTreeMap::new(),
            bytes: 0,
            windowed: 0,
            outside: 0,
        }
    }

    /// Its limits.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Records `msg` (steps in the module docs), charging `budget`;
    /// `publish` writes it into `ring` (the topic's feed, keeping the
    /// window of `capacity` numbers), and is called once, with what became
    /// of the message: it may leave one not kept out of the ring when
    /// nobody reads it. Returns what the publish displaced.
    pub(crate) fn record(
        &mut self,
        msg: &Arc<Message>,
        budget: &MemoryBudget,
        ring: Option<&Ring>,
        publish: impl FnOnce(Retention) -> Option<Displaced<Arc<Message>>>,
    ) -> (Retention, Option<Displaced<Arc<Message>>>) {
        let retention = self.admit(msg, budget, ring);
        if retention == Retention::Refused {
            // It is not kept, and the window may not have a hole.
            self.clear_window(ring, budget);
        }
        let displaced = publish(retention);
        if let Some(left) = displaced.as_ref().and_then(|d| d.left_window()) {
            self.left_window(left, budget);
        }
        match retention {
            Retention::Kept => {
                debug_assert!(
                    self.limits.capacity == 0 || ring.is_some(),
                    "a window without its ring"
                );
                if self.limits.capacity > 0 {
                    self.windowed += 1;
                }
                self.join_snapshot(msg, budget);
            }
            Retention::Refused => {
                // It took the window's one number, uncounted: let it go.
                if let Some(ring) = ring {
                    drop(ring.forget_to(u64::MAX));
                }
            }
            Retention::NotApplicable => {}
        }
        debug_assert!(self.bytes <= self.limits.max_bytes);
        (retention, displaced)
    }

    /// Records `msg` in the snapshot alone (a keyed entry a bus's catch-up
    /// brings back from before the run the window takes); an unkeyed one
    /// is not kept.
    pub(crate) fn record_keyed(&mut self, msg: &Arc<Message>, budget: &MemoryBudget) -> Retention {
        if self.limits.max_keys == 0 || msg.key.is_none() {
            return Retention::NotApplicable;
        }
        // Only after the window was cleared: it holds nothing to evict.
        debug_assert_eq!(self.windowed, 0, "a keyed entry beside a window");
        let retention = self.admit(msg, budget, None);
        if retention == Retention::Kept {
            self.outside = self.outside.max(msg.seq);
            self.join_snapshot(msg, budget);
        }
        retention
    }

    /// Steps 1 to 4: whether `msg` is kept, its bytes counted if it is.
    fn admit(&mut self, msg: &Message, budget: &MemoryBudget, ring: Option<&Ring>) -> Retention {
        if !msg.is_replayed() {
            return Retention::NotApplicable;
        }
        let keyed = self.limits.max_keys > 0 && msg.key.is_some();
        if let (true, Some(key)) = (keyed, msg.key.as_deref()) {
            if let Some(old) = self.latest_by_key.remove(key) {
                self.remove_from_snapshot(old, budget);
            }
        }
        if self.limits.capacity == 0 && !keyed {
            return Retention::NotApplicable;
        }
        let cost = msg.retained_cost();
        if cost > self.limits.max_bytes {
            return Retention::Refused;
        }
        while self.bytes + cost > self.limits.max_bytes && self.evict_oldest(budget, ring) {}
        loop {
            let need = self.excess(self.bytes + cost) - self.excess(self.bytes);
            if need == 0 || budget.try_reserve(need) {
                break;
            }
            // Evicting what this topic holds above its floor is all it can
            // do; if the budget would not fit the message even then, evict
            // nothing but the window (which must not keep a hole).
            let reclaimable = self.excess(self.bytes);
            let hopeless =
                budget.used().saturating_sub(reclaimable) + self.excess(cost) > budget.limit();
            if hopeless || !self.evict_oldest(budget, ring) {
                return Retention::Refused;
            }
        }
        self.bytes += cost;
        Retention::Kept
    }

    /// Step 5's snapshot part, for a kept message.
    fn join_snapshot(&mut self, msg: &Arc<Message>, budget: &MemoryBudget) {
        let Some(key) = msg.key.as_deref().filter(|_| self.limits.max_keys > 0) else {
            return;
        };
        if self.latest_by_key.len() == self.limits.max_keys {
            if let Some((&seq, _)) = self.by_seq.first_key_value() {
                self.remove_from_snapshot(seq, budget);
            }
        }
        self.latest_by_key.insert(key.into(), msg.seq);
        self.by_seq.insert(msg.seq, Arc::clone(msg));
    }

    /// What of `bytes` lies above the floor, i.e. is drawn from the budget.
    fn excess(&self, bytes: usize) -> usize {
        bytes.saturating_sub(self.limits.floor)
    }

    fn snapshot(&self, limit: usize) -> Vec<Arc<Message>> {
        let skip = self.by_seq.len().saturating_sub(limit);
        self.by_seq.values().skip(skip).cloned().collect()
    }

    /// Answers `request` for a topic in `epoch` whose last message is `last`
    /// (see the module docs).
    pub(crate) fn replay(
        &self,
        request: Replay,
        epoch: Epoch,
        last: u64,
        ring: Option<&Ring>,
    ) -> Result<Replayed, ReplayError> {
        let keyed = !self.by_seq.is_empty();
        let (messages, kind) = match request {
            Replay::None => (Vec::new(), FrameKind::Replay),
            Replay::Last(n) => (newest(ring, n), FrameKind::Replay),
            Replay::Snapshot(n) => (self.snapshot(n), FrameKind::Snapshot),
            Replay::Recent(n) if !keyed => (newest(ring, n), FrameKind::Replay),
            Replay::Recent(n) => (self.snapshot(n), FrameKind::Snapshot),
            Replay::State(_) if !keyed => (newest(ring, 1), FrameKind::Snapshot),
            Replay::State(n) => (self.snapshot(n), FrameKind::Snapshot),
            Replay::After(Position { epoch: asked, seq }) => {
                if asked != epoch {
                    return Err(ReplayError::EpochMismatch {
                        asked,
                        current: epoch,
                        last,
                    });
                }
                if seq > last {
                    return Err(ReplayError::Ahead { asked: seq, last });
                }
                let oldest = oldest(ring).map_or(last + 1, |m| m.seq);
                if oldest > seq + 1 {
                    return Err(ReplayError::TooOld {
                        asked: seq,
                        oldest,
                        last,
                    });
                }
                // By number, not by place: a transient message took a
                // number and is not replayed.
                (after(ring, seq), FrameKind::Replay)
            }
        };
        Ok(Replayed { messages, kind })
    }

    /// Keys in the snapshot.
    pub fn snapshot_len(&self) -> usize {
        self.latest_by_key.len()
    }

    /// Messages in the window (transient ones left out).
    pub fn window_len(&self) -> usize {
        self.windowed
    }

    /// Bytes held, by [`Message::retained_cost`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is retained.
    pub(crate) fn is_empty(&self, ring: Option<&Ring>) -> bool {
        self.by_seq.is_empty() && oldest(ring).is_none()
    }

    /// Evicts oldest entries until at most `max_bytes` are held.
    pub(crate) fn trim_to(&mut self, max_bytes: usize, budget: &MemoryBudget, ring: Option<&Ring>) {
        while self.bytes > max_bytes && self.evict_oldest(budget, ring) {}
    }

    /// Drops everything, returning its bytes to `budget`.
    pub(crate) fn clear(&mut self, budget: &MemoryBudget, ring: Option<&Ring>) {
        self.clear_window(ring, budget);
        while let Some((&seq, _)) = self.by_seq.first_key_value() {
            self.remove_from_snapshot(seq, budget);
        }
        debug_assert_eq!(self.bytes, 0);
        // Nothing is kept: a new run may number from 1 again.
        self.outside = 0;
    }

    /// Whether the kept message numbered `seq` is in the window.
    fn in_window(&self, seq: u64) -> bool {
        self.limits.capacity > 0 && seq > self.outside
    }

    /// Evicts this topic's oldest entry, window or snapshot; `false` if empty.
    fn evict_oldest(&mut self, budget: &MemoryBudget, ring: Option<&Ring>) -> bool {
        let window = ring.and_then(|ring| oldest_in(ring).map(|oldest| (ring, oldest)));
        let snapshot = self.by_seq.first_key_value().map(|(&seq, _)| seq);
        match (window, snapshot) {
            (Some((_, (_, w))), Some(s)) if s < w.seq => self.remove_from_snapshot(s, budget),
            (Some((ring, (number, msg))), _) => {
                // It goes, and the transient ones before it.
                drop(ring.forget_to(number + 1));
                self.left_window(&msg, budget);
            }
            (None, Some(s)) => self.remove_from_snapshot(s, budget),
            (None, None) => return false,
        }
        true
    }

    /// `msg` left the window: its bytes go, unless the snapshot keeps it.
    fn left_window(&mut self, msg: &Message, budget: &MemoryBudget) {
        if !msg.is_replayed() {
            return;
        }
        self.windowed -= 1;
        self.outside = self.outside.max(msg.seq);
        if !self.by_seq.contains_key(&msg.seq) {
            self.forget(msg, budget);
        }
    }

    /// Empties the window (the snapshot keeps its entries).
    pub(crate) fn clear_window(&mut self, ring: Option<&Ring>, budget: &MemoryBudget) {
        let Some(ring) = ring else { return };
        // Read under one lock, let go of at once (transient ones too).
        let left = newest(Some(ring), usize::MAX);
        drop(ring.forget_to(u64::MAX));
        for msg in &left {
            self.left_window(msg, budget);
        }
    }

    /// Removes the snapshot entry at `seq` (its key too, if it still points there).
    fn remove_from_snapshot(&mut self, seq: u64, budget: &MemoryBudget) {
        let Some(msg) = self.by_seq.remove(&seq) else {
            return;
        };
        if let Some(key) = msg.key.as_deref() {
            if self.latest_by_key.get(key) == Some(&seq) {
                self.latest_by_key.remove(key);
            }
        }
        if !self.in_window(seq) {
            self.forget(&msg, budget);
        }
    }

    fn forget(&mut self, msg: &Message, budget: &MemoryBudget) {
        let cost = msg.retained_cost();
        let before = self.excess(self.bytes);
        self.bytes -= cost;
        budget.release(before - self.excess(self.bytes));
    }
}

/// The window's oldest message that is replayed.
fn oldest(ring: Option<&Ring>) -> Option<Arc<Message>> {
    oldest_in(ring?).map(|(_, msg)| msg)
}

/// The window's oldest message that is replayed, and its number.
fn oldest_in(ring: &Ring) -> Option<(u64, Arc<Message>)> {
    let window = ring.window();
    (window.first()..=window.last()).find_map(|number| {
        let msg = window.get(number).filter(|m| m.is_replayed())?;
        Some((number, msg))
    })
}

/// The window's newest `limit` messages that are replayed, oldest first.
fn newest(ring: Option<&Ring>, limit: usize) -> Vec<Arc<Message>> {
    // Every message has a seq above 0.
    newest_after(ring, limit, 0)
}

/// The window's messages after `seq`, replayed ones, oldest first.
fn after(ring: Option<&Ring>, seq: u64) -> Vec<Arc<Message>> {
    newest_after(ring, usize::MAX, seq)
}

/// The window's newest `limit` replayed messages after seq `after`,
/// oldest first, read under one lock.
fn newest_after(ring: Option<&Ring>, limit: usize, after: u64) -> Vec<Arc<Message>> {
    let Some(ring) = ring else {
        return Vec::new();
    };
    let window = ring.window();
    let mut messages: Vec<Arc<Message>> = (window.first()..=window.last())
        .rev()
        .map_while(|number| match window.get(number) {
            Some(m) if m.seq <= after => None,
            other => Some(other),
        })
        .flatten()
        .filter(|m| m.is_replayed())
        .take(limit)
        .collect();
    messages.reverse();
    messages
}

#[cfg(all(test, not(shardcast_loom)))]
mod tests;
