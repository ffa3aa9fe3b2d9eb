//! Unit tests of `history.rs`.

use super::*;
use crate::sansio::ids::TopicId;
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
    Arc::new(Message::new(
        TopicId::new(0, 0),
        "t".into(),
        EPOCH,
        seq,
        key.map(Into::into),
        Bytes::from(vec![b'1'; data_len]),
        Stamp::now(),
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
    assert_eq!(seqs(&history.recent(50)), vec![8, 9, 10, 11, 12]);
    assert_eq!(seqs(&history.recent(2)), vec![11, 12]);
    assert!(history.recent(0).is_empty());
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
    assert_eq!(seqs(&history.recent(50)), vec![3, 4, 5]);
    assert_eq!(seqs(&history.recent(2)), vec![4, 5]);
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
    let mut history = History::new(limits(10, 10));
    history.record(&msg(1, Some("A")), &budget);
    history.record(&msg(2, None), &budget);
    assert_eq!(seqs(&history.recent(10)), vec![1]);
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
    let mut a = History::new(limits(100, 100));
    let mut b = History::new(limits(100, 100));
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
    let mut history = History::new(limits(100, 100));
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
    let mut history = History::new(limits(0, 10));
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
    let mut history = History::new(limits(0, 0));
    assert_eq!(
        history.record(&msg(1, Some("A")), &budget),
        Retention::NotApplicable
    );
    assert!(history.is_empty());
}

fn after(history: &History, seq: u64, last: u64) -> Result<Vec<u64>, ReplayError> {
    let position = Position { epoch: EPOCH, seq };
    history
        .replay(Replay::After(position), EPOCH, last)
        .map(|r| seqs(&r.messages))
}

#[test]
fn a_resume_gets_every_later_message_or_says_why_not() {
    let budget = roomy();
    let mut history = History::new(limits(5, 0));
    for seq in 1..=12 {
        history.record(&msg(seq, None), &budget);
    }
    // The ring holds 8..=12: resuming from 7 is exactly at its edge.
    assert_eq!(after(&history, 7, 12), Ok(vec![8, 9, 10, 11, 12]));
    assert_eq!(after(&history, 10, 12), Ok(vec![11, 12]));
    assert_eq!(after(&history, 12, 12), Ok(vec![]));
    assert_eq!(
        after(&history, 6, 12),
        Err(ReplayError::TooOld {
            asked: 6,
            oldest: 8,
            last: 12
        })
    );
    assert_eq!(
        after(&history, 13, 12),
        Err(ReplayError::Ahead {
            asked: 13,
            last: 12
        })
    );
    let other = Epoch::from_u64(0xf);
    let stale = Position {
        epoch: other,
        seq: 11,
    };
    assert_eq!(
        history.replay(Replay::After(stale), EPOCH, 12).unwrap_err(),
        ReplayError::EpochMismatch {
            asked: other,
            current: EPOCH,
            last: 12
        }
    );
}

/// A message published as transient is delivered but never kept, so the
/// ring's numbers skip it: a resume from any position still gets every
/// kept message after it, not a run counted off by position in the ring.
#[test]
fn a_resume_across_a_transient_message_gets_every_kept_message_after_it() {
    let budget = roomy();
    let mut history = History::new(limits(10, 0));
    for seq in [1, 2, 3, 5, 6] {
        history.record(&msg(seq, None), &budget);
    }
    // 4 was transient: never recorded.
    assert_eq!(after(&history, 3, 6), Ok(vec![5, 6]));
    assert_eq!(after(&history, 4, 6), Ok(vec![5, 6]));
    assert_eq!(after(&history, 5, 6), Ok(vec![6]));
    assert_eq!(after(&history, 6, 6), Ok(vec![]));
    assert_eq!(after(&history, 0, 6), Ok(vec![1, 2, 3, 5, 6]));
}

#[test]
fn a_resume_from_an_empty_or_cleared_ring_is_too_old_unless_nothing_was_missed() {
    let budget = roomy();
    let empty = History::new(limits(0, 10));
    assert_eq!(after(&empty, 0, 0), Ok(vec![]));
    assert_eq!(
        after(&empty, 0, 3),
        Err(ReplayError::TooOld {
            asked: 0,
            oldest: 4,
            last: 3
        })
    );
    // A message too big for the topic clears the ring rather than leaving a hole.
    let mut history = History::new(HistoryLimits {
        max_bytes: 2048,
        ..limits(10, 0)
    });
    history.record(&msg(1, None), &budget);
    history.record(&msg(2, None), &budget);
    assert_eq!(
        history.record(&sized(3, None, 4096), &budget),
        Retention::Refused
    );
    assert!(matches!(
        after(&history, 1, 3),
        Err(ReplayError::TooOld { oldest: 4, .. })
    ));
    assert_eq!(after(&history, 3, 3), Ok(vec![]));
}

#[test]
fn requests_choose_ring_or_snapshot_and_say_which() {
    let budget = roomy();
    let mut history = History::new(limits(10, 10));
    history.record(&msg(1, Some("a")), &budget);
    history.record(&msg(2, Some("b")), &budget);
    history.record(&msg(3, Some("a")), &budget);
    history.record(&msg(4, None), &budget);
    let answer = |request| history.replay(request, EPOCH, 4).unwrap();
    let last = answer(Replay::Last(2));
    assert_eq!(
        (seqs(&last.messages), last.kind),
        (vec![3, 4], FrameKind::Replay)
    );
    let snapshot = answer(Replay::Snapshot(10));
    assert_eq!(
        (seqs(&snapshot.messages), snapshot.kind),
        (vec![2, 3], FrameKind::Snapshot)
    );
    assert_eq!(seqs(&answer(Replay::Snapshot(1)).messages), vec![3]);
    assert_eq!(answer(Replay::Recent(10)).kind, FrameKind::Snapshot);
    assert!(answer(Replay::None).messages.is_empty());
    let unkeyed = History::new(limits(10, 10));
    let recent = unkeyed.replay(Replay::Recent(5), EPOCH, 0).unwrap();
    assert_eq!(recent.kind, FrameKind::Replay);
}

#[test]
fn a_topics_state_is_its_keys_latest_or_its_latest_message() {
    let budget = roomy();
    let mut keyed = History::new(limits(10, 10));
    keyed.record(&msg(1, Some("a")), &budget);
    keyed.record(&msg(2, Some("b")), &budget);
    keyed.record(&msg(3, Some("a")), &budget);
    keyed.record(&msg(4, None), &budget);
    let state = keyed.replay(Replay::State(10), EPOCH, 4).unwrap();
    assert_eq!(
        (seqs(&state.messages), state.kind),
        (vec![2, 3], FrameKind::Snapshot)
    );
    let mut plain = History::new(limits(10, 10));
    let empty = plain.replay(Replay::State(10), EPOCH, 0).unwrap();
    assert!(empty.messages.is_empty());
    for seq in 1..=5 {
        plain.record(&msg(seq, None), &budget);
    }
    let state = plain.replay(Replay::State(10), EPOCH, 5).unwrap();
    assert_eq!(
        (seqs(&state.messages), state.kind),
        (vec![5], FrameKind::Snapshot)
    );
}
