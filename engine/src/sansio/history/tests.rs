//! Unit tests of `history.rs`.

use super::*;
use crate::sansio::ids::TopicId;
use crate::sansio::message::Reach;
use crate::sansio::message::Stamp;
use bytes::Bytes;

const ROOMY: usize = 1 << 30;
const EPOCH: Epoch = Epoch::from_u64(0xe);

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
    Arc::new(unshared(seq, key, data_len))
}

fn unshared(seq: u64, key: Option<&str>, data_len: usize) -> Message {
    Message::new(
        TopicId::new(0, 0),
        "t".into(),
        EPOCH,
        seq,
        key.map(Into::into),
        Bytes::from(vec![b'1'; data_len]),
        Stamp::now(),
    )
}

fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn roomy() -> MemoryBudget {
    MemoryBudget::new(ROOMY)
}

/// A history with its topic's ring, as a topic holds them: every message
/// recorded is published into the ring, whose window the history reads.
struct Kept {
    history: History,
    ring: Ring,
}

impl Kept {
    fn new(limits: HistoryLimits) -> Self {
        Self {
            history: History::new(limits),
            ring: Elastic::new(1, 1, 1 << 12).keeping(limits.capacity as u64),
        }
    }

    fn record(&mut self, msg: &Arc<Message>, budget: &MemoryBudget) -> Retention {
        let ring = &self.ring;
        let publish = |_| {
            Some(
                ring.publish(std::iter::empty(), |_| Arc::clone(msg), |_| {})
                    .1,
            )
        };
        let retention = self.history.record(msg, budget, Some(ring), publish).0;
        self.ring_len();
        retention
    }

    /// At most `limit` messages, as a telemetry replay asks: the latest
    /// per key when the topic has keyed messages, otherwise the newest.
    fn recent(&self, limit: usize) -> Vec<Arc<Message>> {
        if self.history.by_seq.is_empty() {
            newest(Some(&self.ring), limit)
        } else {
            self.history.snapshot(limit)
        }
    }

    fn replay(&self, request: Replay, epoch: Epoch, last: u64) -> Result<Replayed, ReplayError> {
        self.history.replay(request, epoch, last, Some(&self.ring))
    }

    /// Messages in the window, checking what the history counts without
    /// reading the ring: how many, and which snapshot entries are there.
    fn ring_len(&self) -> usize {
        let window = newest(Some(&self.ring), usize::MAX);
        assert_eq!(self.history.window_len(), window.len());
        for &seq in self.history.by_seq.keys() {
            let there = window.iter().any(|m| m.seq == seq);
            assert_eq!(self.history.in_window(seq), there, "snapshot entry {seq}");
        }
        window.len()
    }

    fn snapshot_len(&self) -> usize {
        self.history.snapshot_len()
    }

    fn bytes(&self) -> usize {
        self.history.bytes()
    }

    fn is_empty(&self) -> bool {
        self.history.is_empty(Some(&self.ring))
    }

    fn clear(&mut self, budget: &MemoryBudget) {
        self.history.clear(budget, Some(&self.ring));
    }

    fn trim_to(&mut self, max_bytes: usize, budget: &MemoryBudget) {
        self.history.trim_to(max_bytes, budget, Some(&self.ring));
        self.ring_len();
    }
}

#[test]
fn ring_keeps_the_last_capacity_messages_in_order() {
    let budget = roomy();
    let mut history = Kept::new(limits(5, 10));
    for seq in 1..=12 {
        assert_eq!(history.record(&msg(seq, None), &budget), Retention::Kept);
    }
    assert_eq!(history.ring_len(), 5);
    assert_eq!(seqs(&history.recent(50)), vec![8, 9, 10, 11, 12]);
    assert_eq!(seqs(&history.recent(2)), vec![11, 12]);
    assert!(history.recent(0).is_empty());
    assert_eq!(budget.used(), history.bytes());
    assert_eq!(history.bytes(), 5 * msg(1, None).retained_cost());
}

#[test]
fn snapshot_keeps_the_latest_message_per_key() {
    let budget = roomy();
    let mut history = Kept::new(limits(100, 10));
    history.record(&msg(1, Some("AAPL")), &budget);
    history.record(&msg(2, Some("MSFT")), &budget);
    history.record(&msg(3, Some("AAPL")), &budget);
    history.record(&msg(4, Some("TSLA")), &budget);
    history.record(&msg(5, Some("MSFT")), &budget);
    assert_eq!(history.snapshot_len(), 3);
    // Oldest first: AAPL@3, TSLA@4, MSFT@5.
    assert_eq!(seqs(&history.recent(50)), vec![3, 4, 5]);
    assert_eq!(seqs(&history.recent(2)), vec![4, 5]);
    // Shared by ring and snapshot, each message is counted once.
    assert_eq!(history.bytes(), 5 * msg(1, Some("AAPL")).retained_cost());
}

#[test]
fn snapshot_evicts_the_key_updated_longest_ago() {
    let budget = roomy();
    let mut history = Kept::new(limits(0, 2));
    history.record(&msg(1, Some("A")), &budget);
    history.record(&msg(2, Some("B")), &budget);
    history.record(&msg(3, Some("A")), &budget);
    history.record(&msg(4, Some("C")), &budget);
    assert_eq!(history.snapshot_len(), 2);
    // B was updated longest ago and is gone.
    let keys: Vec<_> = history
        .recent(10)
        .iter()
        .map(|m| m.key.clone().unwrap())
        .collect();
    assert_eq!(keys, vec!["A".into(), "C".into()] as Vec<Box<str>>);
    assert_eq!(budget.used(), 2 * msg(1, Some("A")).retained_cost());
}

#[test]
fn unkeyed_messages_in_a_keyed_topic_stay_out_of_the_snapshot() {
    let budget = roomy();
    let mut history = Kept::new(limits(10, 10));
    history.record(&msg(1, Some("A")), &budget);
    history.record(&msg(2, None), &budget);
    assert_eq!(seqs(&history.recent(10)), vec![1]);
}

#[test]
fn the_topic_byte_limit_evicts_oldest_first_and_refuses_giants_without_a_hole() {
    let budget = roomy();
    let one = sized(1, None, 1000).retained_cost();
    let mut history = Kept::new(HistoryLimits {
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
    assert_eq!(seqs(&history.recent(100)), vec![3, 4, 5]);
    assert_eq!(history.bytes(), 3 * one);
    // Too big for the topic: not kept, and the ring does not keep a hole.
    assert_eq!(
        history.record(&sized(6, None, 10_000), &budget),
        Retention::Refused
    );
    assert!(history.is_empty());
    assert_eq!(budget.used(), 0);
    history.record(&sized(7, None, 1000), &budget);
    assert_eq!(seqs(&history.recent(100)), vec![7]);
}

#[test]
fn the_shared_budget_makes_a_topic_evict_its_own_then_refuse() {
    let one = sized(1, None, 1000).retained_cost();
    let budget = MemoryBudget::new(3 * one);
    let mut a = Kept::new(limits(100, 100));
    let mut b = Kept::new(limits(100, 100));
    for seq in 1..=3 {
        a.record(&sized(seq, None, 1000), &budget);
    }
    // Topic b cannot take memory from a: with nothing of its own, it refuses.
    assert_eq!(b.record(&sized(1, None, 1000), &budget), Retention::Refused);
    // Topic a makes room by evicting its own oldest.
    assert_eq!(a.record(&sized(4, None, 1000), &budget), Retention::Kept);
    assert_eq!(seqs(&a.recent(10)), vec![2, 3, 4]);
    assert_eq!(budget.used(), 3 * one);
    a.clear(&budget);
    assert_eq!(budget.used(), 0);
    assert_eq!(b.record(&sized(2, None, 1000), &budget), Retention::Kept);
}

#[test]
fn trimming_evicts_oldest_first_down_to_the_size() {
    let budget = roomy();
    let one = msg(1, None).retained_cost();
    let mut history = Kept::new(limits(100, 100));
    for seq in 1..=10 {
        history.record(
            &msg(seq, if seq % 2 == 0 { Some("k") } else { None }),
            &budget,
        );
    }
    history.trim_to(3 * one, &budget);
    assert!(history.bytes() <= 3 * one);
    assert_eq!(seqs(&history.recent(100)), vec![10]);
    // 8, 9 and 10 would be 3 x one plus two keys: 9 and 10 remain.
    assert_eq!(history.ring_len(), 2);
    assert_eq!(budget.used(), history.bytes());
}

#[test]
fn a_refused_keyed_message_never_leaves_a_stale_latest_behind() {
    let small = sized(1, Some("AAPL"), 10);
    let budget = MemoryBudget::new(small.retained_cost() + 10);
    let mut history = Kept::new(limits(0, 10));
    history.record(&small, &budget);
    assert_eq!(
        history.record(&sized(2, Some("AAPL"), 5000), &budget),
        Retention::Refused
    );
    // The old price is not served as the latest one.
    assert!(history.recent(10).is_empty());
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
    let mut hog = Kept::new(floor);
    for seq in 1..=20 {
        hog.record(&sized(seq, Some(&format!("k{seq:02}")), 1000), &budget);
    }
    // The hog holds its floor plus the whole budget.
    assert_eq!(hog.bytes(), 6 * one);
    assert_eq!(budget.used(), 4 * one);
    // A newcomer still keeps its floor's worth, newest first...
    let mut small = Kept::new(floor);
    for seq in 1..=3 {
        let key = format!("s{seq:02}");
        assert_eq!(
            small.record(&sized(seq, Some(&key), 1000), &budget),
            Retention::Kept
        );
    }
    let keys: Vec<_> = small
        .recent(10)
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
    let mut history = Kept::new(limits(0, 0));
    assert_eq!(
        history.record(&msg(1, Some("A")), &budget),
        Retention::NotApplicable
    );
    assert!(history.is_empty());
}

mod replay;
