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
        fast.drain(&ring, |seq, v| seen_fast.push((seq, *v)));
    }
    let mut seen_slow = Vec::new();
    assert_eq!(slow.drain(&ring, |seq, v| seen_slow.push((seq, *v))), 0);
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
    assert_eq!(cursor.drain(&ring, |seq, _| seen.push(seq)), 5);
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
    live.drain(&ring, |_, v| lived.push(*v));
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
                    let skipped = cursor.drain(&ring, |seq, value: Arc<u64>| {
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
    let writers: Vec<_> = (0..publishers)
        .map(|_| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for _ in 0..each {
                    ring.publish(Arc::new);
                }
            })
        })
        .collect();
    for writer in writers {
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
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for _ in 0..each {
                    ring.publish(Arc::new);
                }
            })
        })
        .collect();
    let total = 2 * each as u64;
    let reader = {
        let ring = Arc::clone(&ring);
        std::thread::spawn(move || {
            let mut cursor = Cursor::at(1);
            let (mut read, mut skipped) = (0u64, 0u64);
            while cursor.next() <= total {
                let mut last = cursor.next() - 1;
                skipped += cursor.drain(&ring, |seq, value: Arc<u64>| {
                    assert_eq!(*value, seq);
                    assert!(seq > last);
                    last = seq;
                    read += 1;
                });
                std::thread::yield_now();
            }
            (read, skipped, cursor.next())
        })
    };
    for writer in writers {
        writer.join().unwrap();
    }
    let (read, skipped, next) = reader.join().unwrap();
    assert_eq!(read + skipped, next - 1);
    assert_eq!(next, total + 1);
}
