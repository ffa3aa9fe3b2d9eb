//! A topic's memory: the last N messages and the latest message per key,
//! bounded in messages and in bytes, per topic and across all topics.
//!
//! Owned by its topic and touched only under the topic's lock; the
//! engine-wide [`MemoryBudget`] is the one shared piece (an atomic counter).
//! Sans-IO.
//!
//! - The ring keeps the most recent messages, at most `capacity`, as one
//!   contiguous run of sequence numbers (it is cleared rather than left with
//!   a hole when a message cannot be kept).
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
//! Recording a message, in order:
//! 1. the key's previous message leaves the snapshot (it is no longer the
//!    latest, whatever happens to the new one);
//! 2. a message larger than the topic's byte limit is not kept, and the
//!    ring is cleared so that it never has a hole;
//! 3. room is made under the topic's own limit by evicting its oldest
//!    entries;
//! 4. the part above the floor is reserved from the budget, evicting this
//!    topic's oldest entries above its floor as needed; when even that could
//!    not make it fit (the budget is held by others), the message is not
//!    kept and nothing but the ring (which may not have a hole) is evicted;
//! 5. it joins the ring and the snapshot, evicting by count.
//!
//! Replay ([`History::replay`]) answers a [`Replay`] request: the last N of
//! the ring, the snapshot, the snapshot when the topic has keyed messages
//! (the current state of every key is worth more than the last N updates of
//! a few keys) and otherwise the ring, or everything after a position. A
//! position is answered only from the ring, and only when the ring holds
//! every message after it: the ring is one contiguous run ending at the
//! newest message, so "the ring starts at or before `seq + 1`" is the whole
//! check. Contiguous but for transient messages (`Publication::transient`),
//! which take a number and are never recorded: a resume skips them, by
//! design, and gets every kept message after its position.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::sansio::budget::MemoryBudget;
use crate::sansio::format::FrameKind;
use crate::sansio::ids::Epoch;
use crate::sansio::message::Message;
use crate::sansio::replay::{Position, Replay, ReplayError, Replayed};

/// Bounds on one topic's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most messages in the ring.
    pub capacity: usize,
    /// Most keys in the snapshot.
    pub max_keys: usize,
    /// Most bytes (by [`Message::retained_cost`]) in ring and snapshot together.
    pub max_bytes: usize,
    /// Bytes the topic may hold without drawing on the shared budget.
    pub floor: usize,
}

/// What became of a recorded message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept for replay.
    Kept,
    /// Neither the ring nor the snapshot takes it (both disabled, or no key
    /// and no ring).
    NotApplicable,
    /// Not kept: larger than the topic's limit, or no memory left in the budget.
    Refused,
}

/// A topic's recent messages and keyed snapshot. Owned by one topic, under its lock.
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    ring: VecDeque<Arc<Message>>,
    latest_by_key: HashMap<Box<str>, u64>,
    by_seq: BTreeMap<u64, Arc<Message>>,
    bytes: usize,
}

impl History {
    /// Empty history under `limits`.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            ring: VecDeque::new(),
            latest_by_key: HashMap::new(),
            by_seq: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Records `msg` (steps in the module docs), charging `budget`.
    pub fn record(&mut self, msg: &Arc<Message>, budget: &MemoryBudget) -> Retention {
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
            self.clear_ring(budget);
            return Retention::Refused;
        }
        while self.bytes + cost > self.limits.max_bytes && self.evict_oldest(budget) {}
        loop {
            let need = self.excess(self.bytes + cost) - self.excess(self.bytes);
            if need == 0 || budget.try_reserve(need) {
                break;
            }
            // Evicting what this topic holds above its floor is all it can
            // do; if the budget would not fit the message even then, evict
            // nothing but the ring (which must not keep a hole).
            let reclaimable = self.excess(self.bytes);
            let hopeless =
                budget.used().saturating_sub(reclaimable) + self.excess(cost) > budget.limit();
            if hopeless || !self.evict_oldest(budget) {
                self.clear_ring(budget);
                return Retention::Refused;
            }
        }
        self.bytes += cost;
        if self.limits.capacity > 0 {
            if self.ring.len() == self.limits.capacity {
                self.pop_ring(budget);
            }
            self.ring.push_back(Arc::clone(msg));
        }
        if let (true, Some(key)) = (keyed, msg.key.as_deref()) {
            if self.latest_by_key.len() == self.limits.max_keys {
                if let Some((&seq, _)) = self.by_seq.first_key_value() {
                    self.remove_from_snapshot(seq, budget);
                }
            }
            self.latest_by_key.insert(key.into(), msg.seq);
            self.by_seq.insert(msg.seq, Arc::clone(msg));
        }
        debug_assert!(self.bytes <= self.limits.max_bytes);
        Retention::Kept
    }

    /// What of `bytes` lies above the floor, i.e. is drawn from the budget.
    fn excess(&self, bytes: usize) -> usize {
        bytes.saturating_sub(self.limits.floor)
    }

    /// At most `limit` messages to replay, oldest first: the latest per key
    /// when the topic has keyed messages, otherwise the most recent.
    pub fn recent(&self, limit: usize) -> Vec<Arc<Message>> {
        if self.by_seq.is_empty() {
            self.last(limit)
        } else {
            self.snapshot(limit)
        }
    }

    fn last(&self, limit: usize) -> Vec<Arc<Message>> {
        let skip = self.ring.len().saturating_sub(limit);
        self.ring.iter().skip(skip).cloned().collect()
    }

    fn snapshot(&self, limit: usize) -> Vec<Arc<Message>> {
        let skip = self.by_seq.len().saturating_sub(limit);
        self.by_seq.values().skip(skip).cloned().collect()
    }

    /// Answers `request` for a topic in `epoch` whose last message is `last`
    /// (see the module docs).
    pub fn replay(
        &self,
        request: Replay,
        epoch: Epoch,
        last: u64,
    ) -> Result<Replayed, ReplayError> {
        let (messages, kind) = match request {
            Replay::None => (Vec::new(), FrameKind::Replay),
            Replay::Last(n) => (self.last(n), FrameKind::Replay),
            Replay::Snapshot(n) => (self.snapshot(n), FrameKind::Snapshot),
            Replay::Recent(n) if self.by_seq.is_empty() => (self.last(n), FrameKind::Replay),
            Replay::Recent(n) => (self.snapshot(n), FrameKind::Snapshot),
            Replay::State(_) if self.by_seq.is_empty() => (self.last(1), FrameKind::Snapshot),
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
                let oldest = self.ring.front().map_or(last + 1, |m| m.seq);
                if oldest > seq + 1 {
                    return Err(ReplayError::TooOld {
                        asked: seq,
                        oldest,
                        last,
                    });
                }
                // By number, not by place: a transient message took a
                // number and left no entry.
                let skip = self.ring.partition_point(|m| m.seq <= seq);
                let messages = self.ring.iter().skip(skip).cloned().collect();
                (messages, FrameKind::Replay)
            }
        };
        Ok(Replayed { messages, kind })
    }

    /// Keys in the snapshot.
    pub fn snapshot_len(&self) -> usize {
        self.latest_by_key.len()
    }

    /// Messages in the ring.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Bytes held, by [`Message::retained_cost`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.by_seq.is_empty()
    }

    /// Evicts oldest entries until at most `max_bytes` are held.
    pub fn trim_to(&mut self, max_bytes: usize, budget: &MemoryBudget) {
        while self.bytes > max_bytes && self.evict_oldest(budget) {}
    }

    /// Drops everything, returning its bytes to `budget`.
    pub fn clear(&mut self, budget: &MemoryBudget) {
        self.clear_ring(budget);
        while let Some((&seq, _)) = self.by_seq.first_key_value() {
            self.remove_from_snapshot(seq, budget);
        }
        debug_assert_eq!(self.bytes, 0);
    }

    /// Whether `seq` is in the ring (a contiguous run ending at the newest).
    fn in_ring(&self, seq: u64) -> bool {
        self.ring.front().is_some_and(|m| m.seq <= seq)
    }

    /// Evicts this topic's oldest entry, ring or snapshot; `false` if empty.
    fn evict_oldest(&mut self, budget: &MemoryBudget) -> bool {
        let ring = self.ring.front().map(|m| m.seq);
        let snapshot = self.by_seq.first_key_value().map(|(&seq, _)| seq);
        match (ring, snapshot) {
            (Some(r), Some(s)) if s < r => self.remove_from_snapshot(s, budget),
            (Some(_), _) => self.pop_ring(budget),
            (None, Some(s)) => self.remove_from_snapshot(s, budget),
            (None, None) => return false,
        }
        true
    }

    fn pop_ring(&mut self, budget: &MemoryBudget) {
        if let Some(msg) = self.ring.pop_front() {
            if !self.by_seq.contains_key(&msg.seq) {
                self.forget(&msg, budget);
            }
        }
    }

    /// Empties the ring (the snapshot keeps its entries).
    pub fn clear_ring(&mut self, budget: &MemoryBudget) {
        while !self.ring.is_empty() {
            self.pop_ring(budget);
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
        if !self.in_ring(seq) {
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

#[cfg(all(test, not(shardcast_loom)))]
mod tests;
