use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::*;

#[test]
fn readers_get_every_message_in_order_at_their_own_pace() {
    let ring = FanoutRing::new(8);
    let mut fast = Cursor::at(1);
    let mut slow = Cursor::at(1);
    let mut seen_fast = Vec::new();
    for i in 1..=5u64 {
        assert_eq!(ring.publish(|seq| Arc::new(seq * 10)), i);
        fast.drain(&ring, usize::MAX, |seq, v| seen_fast.push((seq, *v)));
    }
    let mut seen_slow = Vec::new();
    assert_eq!(
        slow.drain(&ring, usize::MAX, |seq, v| seen_slow.push((seq, *v))),
        0
    );
    let want: Vec<(u64, u64)> = (1..=5).map(|s| (s, s * 10)).collect();
    assert_eq!(seen_fast, want);
    assert_eq!(seen_slow, want);
    assert_eq!(ring.read(6), Read::Pending);
    assert_eq!(fast.next(), 6);
}

#[test]
fn a_reader_a_lap_behind_skips_to_the_oldest_and_counts_what_it_missed() {
    let ring = FanoutRing::new(4);
    for _ in 0..10 {
        ring.publish(Arc::new);
    }
    assert_eq!(ring.read(2), Read::Lapped { oldest: 7 });
    let mut cursor = Cursor::at(2);
    let mut seen = Vec::new();
    assert_eq!(cursor.drain(&ring, usize::MAX, |seq, _| seen.push(seq)), 5);
    assert_eq!(seen, vec![7, 8, 9, 10]);
}

#[test]
fn joining_at_the_claimed_position_meets_the_replay_exactly() {
    let ring = FanoutRing::new(16);
    for _ in 0..6 {
        ring.publish(Arc::new);
    }
    // Join: replay up to the position, live after it.
    let position = ring.claimed();
    let mut replayed = Vec::new();
    let mut replay = Cursor::at(position.saturating_sub(3) + 1);
    while replay.next() <= position {
        match ring.read(replay.next()) {
            Read::Ready(v) => replayed.push(*v),
            other => panic!("{other:?}"),
        }
        replay = Cursor::at(replay.next() + 1);
    }
    let mut live = Cursor::at(position + 1);
    for _ in 0..3 {
        ring.publish(Arc::new);
    }
    let mut lived = Vec::new();
    live.drain(&ring, usize::MAX, |_, v| lived.push(*v));
    assert_eq!(replayed, vec![4, 5, 6]);
    assert_eq!(lived, vec![7, 8, 9]);
}

/// Counts live values, to show each is dropped exactly once.
struct Tracked(Arc<AtomicUsize>);

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(&self.0))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[test]
fn overwritten_and_remaining_values_are_dropped_once() {
    let live = Arc::new(AtomicUsize::new(0));
    {
        let ring = FanoutRing::new(2);
        for _ in 0..5 {
            ring.publish(|_| {
                live.fetch_add(1, Ordering::Relaxed);
                Tracked(Arc::clone(&live))
            });
        }
        assert_eq!(live.load(Ordering::Relaxed), 2, "only the held lap");
        let Read::Ready(clone) = ring.read(5) else {
            panic!("5 is held")
        };
        assert_eq!(live.load(Ordering::Relaxed), 3);
        drop(clone);
    }
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn a_vacated_number_reads_void_and_its_value_is_dropped_once() {
    let live = Arc::new(AtomicUsize::new(0));
    let ring = FanoutRing::new(4);
    for _ in 0..3 {
        ring.publish(|_| {
            live.fetch_add(1, Ordering::Relaxed);
            Tracked(Arc::clone(&live))
        });
    }
    let emptied = ring.vacate(2).expect("2 is held");
    assert_eq!(live.load(Ordering::Relaxed), 3, "handed back, not dropped");
    drop(emptied);
    assert_eq!(live.load(Ordering::Relaxed), 2);
    assert!(matches!(ring.read(2), Read::Void));
    assert!(matches!(ring.read(1), Read::Ready(_)));
    assert!(matches!(ring.read(3), Read::Ready(_)));
    assert!(ring.vacate(2).is_none(), "already empty");
    // A number not published, or a lap gone, is left alone.
    assert!(ring.vacate(4).is_none());
    for _ in 0..4 {
        ring.publish(|_| {
            live.fetch_add(1, Ordering::Relaxed);
            Tracked(Arc::clone(&live))
        });
    }
    assert!(ring.vacate(3).is_none(), "7 holds its slot");
    assert!(matches!(ring.read(7), Read::Ready(_)));
    // A reader walking over the emptied number counts it as skipped.
    let emptied = ring.vacate(5);
    assert!(emptied.is_some());
    let mut cursor = Cursor::at(4);
    let mut seen = Vec::new();
    assert_eq!(cursor.drain(&ring, usize::MAX, |seq, _| seen.push(seq)), 1);
    assert_eq!(seen, vec![4, 6, 7]);
    drop((emptied, ring));
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// `threads` threads publishing `each` messages (their own numbers) into `ring`.
fn publishers_of(
    ring: &Arc<FanoutRing<Arc<u64>>>,
    threads: usize,
    each: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let ring = Arc::clone(ring);
            std::thread::spawn(move || {
                for _ in 0..each {
                    ring.publish(Arc::new);
                }
            })
        })
        .collect()
}

/// Publishers on several threads, readers on others: each reader sees
/// numbers in increasing order, each with its own value, and with a ring
/// larger than the run, every number exactly once.
#[test]
fn concurrent_publishers_and_readers_agree() {
    let publishers = 3;
    let each = if cfg!(miri) { 20 } else { 20_000 };
    let total = (publishers * each) as u64;
    let ring = Arc::new(FanoutRing::new(total as usize));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                let mut cursor = Cursor::at(1);
                let mut last = 0;
                while cursor.next() <= total {
                    let skipped = cursor.drain(&ring, usize::MAX, |seq, value: Arc<u64>| {
                        assert_eq!(*value, seq);
                        assert_eq!(seq, last + 1);
                        last = seq;
                    });
                    assert_eq!(skipped, 0);
                    std::thread::yield_now();
                }
                last
            })
        })
        .collect();
    for writer in publishers_of(&ring, publishers, each) {
        writer.join().unwrap();
    }
    for reader in readers {
        assert_eq!(reader.join().unwrap(), total);
    }
}

/// A small ring lapped again and again while readers read: a reader never
/// gets a value under another number, and accounts for every number as
/// read or skipped.
#[test]
fn lapping_under_concurrency_never_mixes_numbers() {
    let each = if cfg!(miri) { 30 } else { 50_000 };
    let ring = Arc::new(FanoutRing::new(4));
    let writers = publishers_of(&ring, 2, each);
    let total = 2 * each as u64;
    let reader = {
        let ring = Arc::clone(&ring);
        std::thread::spawn(move || {
            let mut cursor = Cursor::at(1);
            let mut read = Vec::new();
            while cursor.next() <= total {
                cursor.drain(&ring, usize::MAX, |seq, value: Arc<u64>| {
                    assert_eq!(*value, seq, "a value read under another number");
                    read.push(seq);
                });
                std::thread::yield_now();
            }
            read
        })
    };
    for writer in writers {
        writer.join().unwrap();
    }
    let read = reader.join().unwrap();
    assert!(read.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(read.last(), Some(&total), "the reader caught up");
    // Every number the reader skipped was really gone: overwritten, so a
    // reader asking for it now is told it was lapped.
    let mut read = read.into_iter().peekable();
    for seq in 1..=total {
        if read.next_if_eq(&seq).is_none() {
            assert!(
                matches!(ring.read(seq), Read::Lapped { .. }),
                "{seq} was skipped but is still held"
            );
        }
    }
}

#[test]
fn numbers_outside_the_range_are_never_read() {
    let ring = FanoutRing::new(1);
    ring.publish(Arc::new);
    assert_eq!(ring.read(0), Read::Pending);
    // MAX_SEQ + 1 is the mark of a slot being filled: never a match.
    assert_eq!(ring.read(MAX_SEQ + 1), Read::Pending);
    assert_eq!(ring.read(u64::MAX), Read::Pending);
    assert_eq!(Cursor::at(u64::MAX).next(), MAX_SEQ + 1);
    assert_eq!(Cursor::at(0).next(), 1);
}

#[test]
fn a_publish_that_panics_leaves_its_number_void_not_the_ring_wedged() {
    let ring = FanoutRing::new(2);
    ring.publish(Arc::new);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ring.publish(|_| -> Arc<u64> { panic!("cannot build the message") })
    }));
    assert!(failed.is_err());
    assert_eq!(ring.read(2), Read::Void);
    // The next laps of its slot publish, and a reader goes past it.
    ring.publish(Arc::new);
    ring.publish(Arc::new);
    let mut cursor = Cursor::at(3);
    let mut seen = Vec::new();
    assert_eq!(cursor.drain(&ring, usize::MAX, |seq, _| seen.push(seq)), 0);
    assert_eq!(seen, vec![3, 4]);
    let mut from_the_start = Cursor::at(1);
    let mut seen = Vec::new();
    // 1 and 2 were overwritten by 3 and 4.
    assert_eq!(
        from_the_start.drain(&ring, usize::MAX, |seq, _| seen.push(seq)),
        2
    );
    assert_eq!(seen, vec![3, 4]);
    // A void number read in its lap is skipped and counted.
    let ring = FanoutRing::new(4);
    ring.publish(Arc::new);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ring.publish(|_| -> Arc<u64> { panic!("cannot build the message") })
    }));
    ring.publish(Arc::new);
    let mut cursor = Cursor::at(1);
    let mut seen = Vec::new();
    assert_eq!(cursor.drain(&ring, usize::MAX, |seq, _| seen.push(seq)), 1);
    assert_eq!(seen, vec![1, 3]);
}

#[test]
fn a_drain_stops_after_its_budget() {
    let ring = FanoutRing::new(8);
    for _ in 0..5 {
        ring.publish(Arc::new);
    }
    let mut cursor = Cursor::at(1);
    let mut seen = Vec::new();
    cursor.drain(&ring, 2, |seq, _| seen.push(seq));
    assert_eq!(seen, vec![1, 2]);
    assert_eq!(cursor.next(), 3);
}

#[test]
fn a_publish_hands_back_the_value_a_lap_older() {
    let ring = FanoutRing::new(2);
    assert_eq!(ring.publish_displacing(Arc::new), (1, None));
    assert_eq!(ring.publish_displacing(Arc::new), (2, None));
    let (seq, displaced) = ring.publish_displacing(Arc::new);
    assert_eq!((seq, displaced.as_deref()), (3, Some(&1)));
}

#[test]
fn a_ring_is_queued_once_per_reader_until_that_reader_takes_it() {
    let wakes = Wakes::new(2);
    assert!(wakes.raise(0), "the first publish queues it");
    assert!(!wakes.raise(0), "then it is queued already");
    assert!(wakes.raise(1), "each reader has its own flag");
    wakes.lower(0);
    assert!(
        wakes.raise(0),
        "taken, it is queued again by the next publish"
    );
    assert!(!wakes.raise(1));
}
