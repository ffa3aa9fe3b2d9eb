//! Unit tests of `history.rs`: replay and resume, read from the window.

use super::*;

fn after(history: &Kept, seq: u64, last: u64) -> Result<Vec<u64>, ReplayError> {
    let position = Position { epoch: EPOCH, seq };
    history
        .replay(Replay::After(position), EPOCH, last)
        .map(|r| seqs(&r.messages))
}

#[test]
fn a_resume_gets_every_later_message_or_says_why_not() {
    let budget = roomy();
    let mut history = Kept::new(limits(5, 0));
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
    let mut history = Kept::new(limits(10, 0));
    for seq in 1..=6 {
        let message = unshared(seq, None, 8);
        // 4 is transient: it takes a number in the ring, and is never replayed.
        let reach = if seq == 4 { Reach::Live } else { Reach::Both };
        history.record(&Arc::new(message.reaching(reach)), &budget);
    }
    assert_eq!(after(&history, 3, 6), Ok(vec![5, 6]));
    assert_eq!(after(&history, 4, 6), Ok(vec![5, 6]));
    assert_eq!(after(&history, 5, 6), Ok(vec![6]));
    assert_eq!(after(&history, 6, 6), Ok(vec![]));
    assert_eq!(after(&history, 0, 6), Ok(vec![1, 2, 3, 5, 6]));
}

#[test]
fn a_resume_from_an_empty_or_cleared_ring_is_too_old_unless_nothing_was_missed() {
    let budget = roomy();
    let empty = Kept::new(limits(0, 10));
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
    let mut history = Kept::new(HistoryLimits {
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
    let mut history = Kept::new(limits(10, 10));
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
    let unkeyed = Kept::new(limits(10, 10));
    let recent = unkeyed.replay(Replay::Recent(5), EPOCH, 0).unwrap();
    assert_eq!(recent.kind, FrameKind::Replay);
}

#[test]
fn a_topics_state_is_its_keys_latest_or_its_latest_message() {
    let budget = roomy();
    let mut keyed = Kept::new(limits(10, 10));
    keyed.record(&msg(1, Some("a")), &budget);
    keyed.record(&msg(2, Some("b")), &budget);
    keyed.record(&msg(3, Some("a")), &budget);
    keyed.record(&msg(4, None), &budget);
    let state = keyed.replay(Replay::State(10), EPOCH, 4).unwrap();
    assert_eq!(
        (seqs(&state.messages), state.kind),
        (vec![2, 3], FrameKind::Snapshot)
    );
    let mut plain = Kept::new(limits(10, 10));
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
