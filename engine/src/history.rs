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
//! Replay prefers the snapshot when the topic has keyed messages (the current
//! state of every key is worth more than the last N updates of a few keys),
//! otherwise the ring.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

#[cfg(shardcast_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::message::Message;

/// Bytes of retained messages above their topics' floors, across every topic
/// of an engine. Shared by all topics; lock-free. Touched only by messages
/// that do not fit under their topic's floor: a topic within its floor never
/// writes this shared cache line. (The total retained is the sum of the
/// topics' [`History::bytes`], read when reported.)
///
/// The invariant: the bytes of all successful reservations not yet released
/// never exceed the limit. A reservation adds first and takes back what does
/// not fit, so `used` may pass the limit for an instant (making a racing
/// reservation fail spuriously, never wrongly succeed). Checked under every
/// interleaving by the loom model below.
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
    pub fn replay(&self, limit: usize) -> Vec<Arc<Message>> {
        let mut out: Vec<Arc<Message>> = if self.by_seq.is_empty() {
            self.ring.iter().rev().take(limit).cloned().collect()
        } else {
            self.by_seq.values().rev().take(limit).cloned().collect()
        };
        out.reverse();
        out
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

    fn clear_ring(&mut self, budget: &MemoryBudget) {
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

#[cfg(all(test, not(shardcast_loom)))]
mod tests {
    use super::*;
    use crate::topic::TopicId;
    use bytes::Bytes;

    const ROOMY: usize = 1 << 30;

    fn limits(capacity: usize, max_keys: usize) -> HistoryLimits {
        HistoryLimits {
            capacity,
            max_keys,
            max_bytes: ROOMY,
            floor: 0,
        }
    }

    fn msg(seq: u64, key: Option<&str>) -> Arc<Message> {
        sized(seq, key, 8)
    }

    fn sized(seq: u64, key: Option<&str>, data_len: usize) -> Arc<Message> {
        Arc::new(Message::new(
            TopicId::new(0, 0),
            "t".into(),
            seq,
            key.map(Into::into),
            Bytes::from(vec![b'1'; data_len]),
        ))
    }

    fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    fn roomy() -> MemoryBudget {
        MemoryBudget::new(ROOMY)
    }

    #[test]
    fn ring_keeps_the_last_capacity_messages_in_order() {
        let budget = roomy();
        let mut history = History::new(limits(5, 10));
        for seq in 1..=12 {
            assert_eq!(history.record(&msg(seq, None), &budget), Retention::Kept);
        }
        assert_eq!(history.ring_len(), 5);
        assert_eq!(seqs(&history.replay(50)), vec![8, 9, 10, 11, 12]);
        assert_eq!(seqs(&history.replay(2)), vec![11, 12]);
        assert!(history.replay(0).is_empty());
        assert_eq!(budget.used(), history.bytes());
        assert_eq!(history.bytes(), 5 * msg(1, None).retained_cost());
    }

    #[test]
    fn snapshot_keeps_the_latest_message_per_key() {
        let budget = roomy();
        let mut history = History::new(limits(100, 10));
        history.record(&msg(1, Some("AAPL")), &budget);
        history.record(&msg(2, Some("MSFT")), &budget);
        history.record(&msg(3, Some("AAPL")), &budget);
        history.record(&msg(4, Some("TSLA")), &budget);
        history.record(&msg(5, Some("MSFT")), &budget);
        assert_eq!(history.snapshot_len(), 3);
        // Oldest first: AAPL@3, TSLA@4, MSFT@5.
        assert_eq!(seqs(&history.replay(50)), vec![3, 4, 5]);
        assert_eq!(seqs(&history.replay(2)), vec![4, 5]);
        // Shared by ring and snapshot, each message is counted once.
        assert_eq!(history.bytes(), 5 * msg(1, Some("AAPL")).retained_cost());
    }

    #[test]
    fn snapshot_evicts_the_key_updated_longest_ago() {
        let budget = roomy();
        let mut history = History::new(limits(0, 2));
        history.record(&msg(1, Some("A")), &budget);
        history.record(&msg(2, Some("B")), &budget);
        history.record(&msg(3, Some("A")), &budget);
        history.record(&msg(4, Some("C")), &budget);
        assert_eq!(history.snapshot_len(), 2);
        // B was updated longest ago and is gone.
        let keys: Vec<_> = history
            .replay(10)
            .iter()
            .map(|m| m.key.clone().unwrap())
            .collect();
        assert_eq!(keys, vec!["A".into(), "C".into()] as Vec<Box<str>>);
        assert_eq!(budget.used(), 2 * msg(1, Some("A")).retained_cost());
    }

    #[test]
    fn unkeyed_messages_in_a_keyed_topic_stay_out_of_the_snapshot() {
        let budget = roomy();
        let mut history = History::new(limits(10, 10));
        history.record(&msg(1, Some("A")), &budget);
        history.record(&msg(2, None), &budget);
        assert_eq!(seqs(&history.replay(10)), vec![1]);
    }

    #[test]
    fn the_topic_byte_limit_evicts_oldest_first_and_refuses_giants_without_a_hole() {
        let budget = roomy();
        let one = sized(1, None, 1000).retained_cost();
        let mut history = History::new(HistoryLimits {
            capacity: 100,
            max_keys: 100,
            max_bytes: 3 * one,
            floor: 0,
        });
        for seq in 1..=5 {
            assert_eq!(
                history.record(&sized(seq, None, 1000), &budget),
                Retention::Kept
            );
        }
        assert_eq!(seqs(&history.replay(100)), vec![3, 4, 5]);
        assert_eq!(history.bytes(), 3 * one);
        // Too big for the topic: not kept, and the ring does not keep a hole.
        assert_eq!(
            history.record(&sized(6, None, 10_000), &budget),
            Retention::Refused
        );
        assert!(history.is_empty());
        assert_eq!(budget.used(), 0);
        history.record(&sized(7, None, 1000), &budget);
        assert_eq!(seqs(&history.replay(100)), vec![7]);
    }

    #[test]
    fn the_shared_budget_makes_a_topic_evict_its_own_then_refuse() {
        let one = sized(1, None, 1000).retained_cost();
        let budget = MemoryBudget::new(3 * one);
        let mut a = History::new(limits(100, 100));
        let mut b = History::new(limits(100, 100));
        for seq in 1..=3 {
            a.record(&sized(seq, None, 1000), &budget);
        }
        // Topic b cannot take memory from a: with nothing of its own, it refuses.
        assert_eq!(b.record(&sized(1, None, 1000), &budget), Retention::Refused);
        // Topic a makes room by evicting its own oldest.
        assert_eq!(a.record(&sized(4, None, 1000), &budget), Retention::Kept);
        assert_eq!(seqs(&a.replay(10)), vec![2, 3, 4]);
        assert_eq!(budget.used(), 3 * one);
        a.clear(&budget);
        assert_eq!(budget.used(), 0);
        assert_eq!(b.record(&sized(2, None, 1000), &budget), Retention::Kept);
    }

    #[test]
    fn trimming_evicts_oldest_first_down_to_the_size() {
        let budget = roomy();
        let one = msg(1, None).retained_cost();
        let mut history = History::new(limits(100, 100));
        for seq in 1..=10 {
            history.record(
                &msg(seq, if seq % 2 == 0 { Some("k") } else { None }),
                &budget,
            );
        }
        history.trim_to(3 * one, &budget);
        assert!(history.bytes() <= 3 * one);
        assert_eq!(seqs(&history.replay(100)), vec![10]);
        // 8, 9 and 10 would be 3 x one plus two keys: 9 and 10 remain.
        assert_eq!(history.ring_len(), 2);
        assert_eq!(budget.used(), history.bytes());
    }

    #[test]
    fn a_refused_keyed_message_never_leaves_a_stale_latest_behind() {
        let small = sized(1, Some("AAPL"), 10);
        let budget = MemoryBudget::new(small.retained_cost() + 10);
        let mut history = History::new(limits(0, 10));
        history.record(&small, &budget);
        assert_eq!(
            history.record(&sized(2, Some("AAPL"), 5000), &budget),
            Retention::Refused
        );
        // The old price is not served as the latest one.
        assert!(history.replay(10).is_empty());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_topics_floor_is_its_own_whatever_the_budget() {
        // Keys of three characters, so every message costs the same.
        let one = sized(1, Some("k00"), 1000).retained_cost();
        let budget = MemoryBudget::new(4 * one);
        let floor = HistoryLimits {
            capacity: 0,
            max_keys: 100,
            max_bytes: 1 << 20,
            floor: 2 * one,
        };
        let mut hog = History::new(floor);
        for seq in 1..=20 {
            hog.record(&sized(seq, Some(&format!("k{seq:02}")), 1000), &budget);
        }
        // The hog holds its floor plus the whole budget.
        assert_eq!(hog.bytes(), 6 * one);
        assert_eq!(budget.used(), 4 * one);
        // A newcomer still keeps its floor's worth, newest first...
        let mut small = History::new(floor);
        for seq in 1..=3 {
            let key = format!("s{seq:02}");
            assert_eq!(
                small.record(&sized(seq, Some(&key), 1000), &budget),
                Retention::Kept
            );
        }
        let keys: Vec<_> = small
            .replay(10)
            .iter()
            .map(|m| m.key.clone().unwrap())
            .collect();
        assert_eq!(keys, vec!["s02".into(), "s03".into()] as Vec<Box<str>>);
        // ...and a message that could not fit even if it evicted everything
        // is refused without costing it what it has.
        assert_eq!(
            small.record(&sized(4, Some("s04"), 3000), &budget),
            Retention::Refused
        );
        assert_eq!(small.snapshot_len(), 2);
        assert_eq!(hog.bytes() + small.bytes(), 8 * one);
        hog.clear(&budget);
        small.clear(&budget);
        assert_eq!((budget.used(), hog.bytes() + small.bytes()), (0, 0));
    }

    #[test]
    fn nothing_to_keep_is_not_a_refusal() {
        let budget = roomy();
        let mut history = History::new(limits(0, 0));
        assert_eq!(
            history.record(&msg(1, Some("A")), &budget),
            Retention::NotApplicable
        );
        assert!(history.is_empty());
    }
}
