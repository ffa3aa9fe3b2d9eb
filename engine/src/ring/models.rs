//! Loom models of the fan-out ring: every interleaving of a few publishers
//! and a reader, with capacities shrunk to 1 and 2 so that laps happen.
//! Loom's `UnsafeCell` fails a model on any access to a slot's value that
//! overlaps a write, and its `Arc` on any value leaked or dropped twice.

use loom::sync::Arc;
use loom::thread;

use super::*;

fn ring(capacity: usize) -> Arc<FanoutRing<Arc<u64>>> {
    Arc::new(FanoutRing::new(capacity))
}

fn publisher(ring: &Arc<FanoutRing<Arc<u64>>>) -> thread::JoinHandle<u64> {
    let ring = Arc::clone(ring);
    thread::spawn(move || ring.publish(Arc::new))
}

/// One thread publishing two messages, one after the other.
fn publishing_twice(ring: &Arc<FanoutRing<Arc<u64>>>) -> thread::JoinHandle<()> {
    let ring = Arc::clone(ring);
    thread::spawn(move || {
        ring.publish(Arc::new);
        ring.publish(Arc::new);
    })
}

/// Whatever a reader gets at a number is that number's own value.
fn check(read: Read<Arc<u64>>, seq: u64) {
    if let Read::Ready(value) = read {
        assert_eq!(*value, seq);
    }
}

#[test]
fn loom_ring_two_publishers_and_a_reader() {
    loom::model(|| {
        let ring = ring(2);
        let a = publisher(&ring);
        let b = publisher(&ring);
        // Two numbers in two slots: nothing can be lapped.
        for seq in [1, 2] {
            let read = ring.read(seq);
            assert!(!matches!(read, Read::Lapped { .. } | Read::Void));
            check(read, seq);
        }
        let mut seqs = [a.join().unwrap(), b.join().unwrap()];
        seqs.sort_unstable();
        assert_eq!(seqs, [1, 2]);
        // Once both are done, both are there, in order.
        let mut cursor = Cursor::at(1);
        let mut seen = Vec::new();
        assert_eq!(
            cursor.drain(&ring, usize::MAX, |seq, v| seen.push((seq, *v))),
            0
        );
        assert_eq!(seen, vec![(1, 1), (2, 2)]);
    });
}

#[test]
fn loom_ring_wraps_while_a_reader_reads() {
    loom::model(|| {
        let ring = ring(1);
        let writer = publishing_twice(&ring);
        let first = ring.read(1);
        match &first {
            Read::Ready(value) => assert_eq!(**value, 1),
            Read::Pending => {}
            Read::Lapped { oldest } => assert_eq!(*oldest, 2),
            Read::Void => panic!("no publish failed"),
        }
        writer.join().unwrap();
        assert!(matches!(ring.read(1), Read::Lapped { oldest: 2 }));
        check(ring.read(2), 2);
        assert!(matches!(ring.read(2), Read::Ready(_)));
    });
}

#[test]
fn loom_ring_publishers_of_one_slot_take_turns() {
    loom::model(|| {
        let ring = ring(1);
        let a = publisher(&ring);
        let b = publisher(&ring);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(ring.claimed(), 2);
        check(ring.read(2), 2);
        assert!(matches!(ring.read(2), Read::Ready(_)));
    });
}

#[test]
fn loom_ring_a_joiner_meets_live_messages_exactly() {
    loom::model(|| {
        let ring = ring(2);
        let writer = publishing_twice(&ring);
        // Join wherever the publisher is: live after the position read
        // now, reading as it goes; the replay up to it is read later.
        let position = ring.claimed();
        let mut live = Cursor::at(position + 1);
        let mut lived = Vec::new();
        live.drain(&ring, usize::MAX, |_, v| lived.push(*v));
        writer.join().unwrap();
        live.drain(&ring, usize::MAX, |_, v| lived.push(*v));
        let mut seen: Vec<u64> = (1..=position)
            .map(|seq| match ring.read(seq) {
                Read::Ready(v) => *v,
                other => panic!("{seq}: {other:?}"),
            })
            .collect();
        seen.extend(lived);
        assert_eq!(seen, vec![1, 2]);
    });
}

/// A number its owner empties ([`FanoutRing::vacate`]) while a reader
/// reads it: the reader gets the value or nothing (or "not yet", while the
/// vacate holds the slot: see `vacate`), never one being taken out (loom's
/// `UnsafeCell` fails a clone that overlaps the vacate's write), and the
/// value is dropped once (loom's `Arc` fails a value dropped twice or
/// leaked).
#[test]
fn loom_ring_a_vacate_races_a_reader() {
    loom::model(|| {
        let ring = ring(2);
        ring.publish(Arc::new);
        let reader = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                if let Read::Ready(value) = ring.read(1) {
                    assert_eq!(*value, 1);
                }
            })
        };
        let emptied = ring.vacate(1).expect("1 is in its slot");
        assert_eq!(*emptied, 1);
        reader.join().unwrap();
        assert!(matches!(ring.read(1), Read::Void));
    });
}

/// A number emptied while the next lap's publisher takes its slot
/// (capacity 1): the value leaves the ring once, by the vacate or by the
/// lap, and the new number is published whole.
#[test]
fn loom_ring_a_vacate_races_the_next_lap() {
    loom::model(|| {
        let ring = ring(1);
        ring.publish(Arc::new);
        let next = publisher(&ring);
        if let Some(value) = ring.vacate(1) {
            assert_eq!(*value, 1);
        }
        assert_eq!(next.join().unwrap(), 2);
        check(ring.read(2), 2);
        assert!(matches!(ring.read(2), Read::Ready(_)));
        assert!(ring.vacate(1).is_none(), "its slot holds 2");
    });
}

/// A publisher publishing `count` messages into `ring` for reader 0,
/// queuing it on `queue` (how many times it is in the reader's queue)
/// when the flag was clear.
fn publishing_into(
    ring: &Arc<Elastic<Arc<u64>>>,
    queue: &Arc<loom::sync::Mutex<u32>>,
    count: usize,
) -> thread::JoinHandle<()> {
    let (ring, queue) = (Arc::clone(ring), Arc::clone(queue));
    thread::spawn(move || {
        for _ in 0..count {
            let (_, displaced) = ring.publish([0].into_iter(), Arc::new, |_| push(&queue));
            drop(displaced);
        }
    })
}

fn push(queue: &loom::sync::Mutex<u32>) {
    let mut queued = queue.lock().unwrap();
    *queued += 1;
    assert_eq!(*queued, 1, "a ring is queued once per reader");
}

/// Reader 0 takes `ring` from its queue, if it is there, and reads one
/// message (so it must queue the ring again itself while there are more);
/// `false` when it was not queued.
fn take_and_read_one(
    ring: &Elastic<Arc<u64>>,
    queue: &loom::sync::Mutex<u32>,
    reading: &mut Reading<Arc<u64>>,
    seen: &mut Vec<u64>,
) -> bool {
    let mut queued = queue.lock().unwrap();
    if *queued == 0 {
        return false;
    }
    *queued -= 1;
    drop(queued);
    let each = |seq, v: Arc<u64>| {
        assert_eq!(seq, *v);
        seen.push(seq);
    };
    let missed = |_| panic!("a message lost");
    ring.read(0, reading, 1, each, missed, || push(queue));
    true
}

/// A reader of `ring` (its reader 0) taking it from its queue and reading
/// one message a wake-up, `early` times while a publisher publishes
/// `count` messages, then whatever is still queued once the publisher is
/// done; returns the reading and the numbers read, in order.
fn read_while_publishing(
    ring: &Arc<Elastic<Arc<u64>>>,
    queue: &Arc<loom::sync::Mutex<u32>>,
    count: usize,
    early: usize,
) -> (Reading<Arc<u64>>, Vec<u64>) {
    let mut reading = ring.join(0, true);
    let publisher = publishing_into(ring, queue, count);
    let mut seen = Vec::new();
    for _ in 0..early {
        if !take_and_read_one(ring, queue, &mut reading, &mut seen) {
            thread::yield_now();
        }
    }
    publisher.join().unwrap();
    // Whatever is still queued would be read next: read it.
    while take_and_read_one(ring, queue, &mut reading, &mut seen) {}
    (reading, seen)
}

/// A sweeper asking `ring` to settle, as a shard's topic sweep does,
/// queuing its reader if the settle wakes it.
fn settling(
    ring: &Arc<Elastic<Arc<u64>>>,
    queue: &Arc<loom::sync::Mutex<u32>>,
) -> thread::JoinHandle<()> {
    let (ring, queue) = (Arc::clone(ring), Arc::clone(queue));
    thread::spawn(move || drop(ring.settle(|_| push(&queue))))
}

fn queue() -> Arc<loom::sync::Mutex<u32>> {
    Arc::new(loom::sync::Mutex::new(0))
}

/// The wake-up protocol of `wake.rs`, through the two functions the topics
/// and shards run: a publisher raising the flag after each message
/// (`Elastic::publish`), queuing the ring only when the flag was clear; a
/// reader taking it from its queue and reading one message a wake-up
/// (`Elastic::read` with a budget of 1), so it must queue the ring again
/// itself. Whenever the queue ends up empty, the reader has read every
/// message: no wake-up is lost.
#[test]
fn loom_ring_a_queued_reader_misses_no_wake_up() {
    loom::model(|| {
        let ring = Arc::new(Elastic::new(1, 4, 4));
        let (_, seen) = read_while_publishing(&ring, &queue(), 2, 2);
        assert_eq!(seen, [1, 2], "every message read once, in order");
    });
}

/// A ring of one slot that may grow to four, a publisher of three
/// messages, and a reader reading one message a wake-up: the ring grows
/// under the reader instead of lapping it, the reader moves to each new
/// ring, and reads every message once, in order, whatever the interleaving.
/// Once the reader has caught up, the next publish gives the room back.
#[test]
fn loom_elastic_ring_grows_under_a_slow_reader_and_loses_nothing() {
    loom::model(|| {
        let ring = Arc::new(Elastic::new(1, 1, 4));
        let queue = queue();
        let (mut reading, mut seen) = read_while_publishing(&ring, &queue, 3, 1);
        assert_eq!(seen, [1, 2, 3], "every message read once, in order");
        drop(ring.publish([0].into_iter(), Arc::new, |_| push(&queue)));
        assert_eq!(ring.capacity(), 1, "caught up, it shrinks");
        while take_and_read_one(&ring, &queue, &mut reading, &mut seen) {}
        assert_eq!(seen, [1, 2, 3, 4]);
    });
}

/// A ring of two slots that may grow to four, a publisher of four
/// messages, and a reader that reads while the publisher runs: the ring
/// may grow and then shrink back while the reader still holds the grown
/// ring with messages unread in it. The reader reads every message once,
/// in order, whatever the interleaving.
#[test]
fn loom_elastic_ring_shrinks_under_a_reader_still_reading() {
    loom::model(|| {
        let ring = Arc::new(Elastic::new(1, 2, 4));
        let (_, seen) = read_while_publishing(&ring, &queue(), 4, 3);
        assert_eq!(seen, [1, 2, 3, 4], "every message read once, in order");
    });
}

/// A ring of one slot that may grow to four, three messages published
/// while a reader reads one a wake-up; then, once the reader has caught
/// up, a sweeper asks the ring to settle (as a shard's sweep does for a
/// topic gone quiet) while the reader may read again. The ring gives its
/// room back, and the reader, woken by the settle, lets go of the grown
/// ring: nothing else would wake it, since no publish comes.
#[test]
fn loom_elastic_ring_settles_and_wakes_its_reader() {
    loom::model(|| {
        let ring = Arc::new(Elastic::new(1, 1, 4));
        let queue = queue();
        let (mut reading, mut seen) = read_while_publishing(&ring, &queue, 3, 1);
        assert_eq!(seen, [1, 2, 3], "every message read once, in order");
        let sweeper = settling(&ring, &queue);
        if !take_and_read_one(&ring, &queue, &mut reading, &mut seen) {
            thread::yield_now();
        }
        sweeper.join().unwrap();
        while take_and_read_one(&ring, &queue, &mut reading, &mut seen) {}
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(ring.capacity(), 1, "caught up, it settles");
        assert_eq!(reading.capacity(), 1, "woken, the reader let go");
    });
}

/// A ring of one slot that may grow to four: a publisher of three
/// messages, a sweeper settling the ring while the publisher may be
/// growing it, and a reader reading one message a wake-up. Whatever the
/// interleaving, the reader reads every message once, in order.
#[test]
fn loom_elastic_ring_settles_while_a_publish_grows_it() {
    loom::model(|| {
        let ring = Arc::new(Elastic::new(1, 1, 4));
        let queue = queue();
        let sweeper = settling(&ring, &queue);
        let (_, seen) = read_while_publishing(&ring, &queue, 3, 1);
        sweeper.join().unwrap();
        assert_eq!(seen, [1, 2, 3], "every message read once, in order");
    });
}
