use std::sync::Arc;

use super::super::{FanoutRing, Read};
use super::*;

/// Everything `reader` can read now: the numbers read and the numbers
/// skipped.
fn read_all(
    ring: &Elastic<Arc<u64>>,
    reader: usize,
    reading: &mut Reading<Arc<u64>>,
) -> (Vec<u64>, u64) {
    let mut seen = Vec::new();
    let mut skipped = 0;
    ring.read(
        reader,
        reading,
        usize::MAX,
        |seq, v| {
            assert_eq!(seq, *v, "a number's own value");
            seen.push(seq);
        },
        |run| skipped += run.end - run.start,
        || {},
    );
    (seen, skipped)
}

fn publish(ring: &Elastic<Arc<u64>>, readers: &[usize], count: u64) {
    for _ in 0..count {
        drop(ring.publish(readers.iter().copied(), Arc::new, |_| {}));
    }
}

#[test]
fn a_ring_grows_instead_of_lapping_a_reader_and_shrinks_once_it_caught_up() {
    let ring = Elastic::new(1, 4, 64);
    let mut reading = ring.join(0, true);
    publish(&ring, &[0], 40);
    assert_eq!(ring.capacity(), 64, "4 doubled until 40 fit");
    assert_eq!(read_all(&ring, 0, &mut reading), ((1..=40).collect(), 0));
    // Caught up: the next publish gives the room back.
    publish(&ring, &[0], 1);
    assert_eq!(ring.capacity(), 4);
    assert_eq!(read_all(&ring, 0, &mut reading), (vec![41], 0));
    assert_eq!(reading.capacity(), 4, "the reader took the new ring");
}

#[test]
fn a_quiet_ring_settles_back_once_its_readers_caught_up_and_wakes_them() {
    let ring = Elastic::new(2, 4, 64);
    let mut one = ring.join(0, true);
    let two = ring.join(1, true);
    publish(&ring, &[0, 1], 40);
    assert_eq!(ring.capacity(), 64);
    let mut woken = Vec::new();
    // Reader 1 has not read yet: nothing to give back.
    assert!(ring.settle(|r| woken.push(r)).is_none());
    assert_eq!(read_all(&ring, 0, &mut one), ((1..=40).collect(), 0));
    assert!(ring.settle(|r| woken.push(r)).is_none());
    // Once reader 1 has left, only reader 0 counts.
    drop(two);
    ring.leave(1);
    assert!(ring.settle(|r| woken.push(r)).is_some());
    assert_eq!(ring.capacity(), 4);
    // Reader 0's flag was down (it had read): it is woken to let go.
    assert_eq!(woken, [0]);
    assert_eq!(read_all(&ring, 0, &mut one), (vec![], 0));
    assert_eq!(one.capacity(), 4, "it took the small ring");
    publish(&ring, &[0], 1);
    assert_eq!(read_all(&ring, 0, &mut one), (vec![41], 0));
    // A reader that joins again starts at the newest.
    let two = ring.join(1, true);
    assert_eq!(two.next(), 42);
}

#[test]
fn a_reader_that_reads_as_it_goes_never_makes_it_grow() {
    let ring = Elastic::new(2, 4, 64);
    let mut reading = ring.join(0, true);
    // Reader 1 joined once and left: it holds nothing back.
    drop(ring.join(1, true));
    ring.leave(1);
    for seq in 1..=50 {
        publish(&ring, &[0], 1);
        assert_eq!(read_all(&ring, 0, &mut reading), (vec![seq], 0));
    }
    assert_eq!(ring.capacity(), 4);
}

#[test]
fn a_reader_a_lap_behind_a_ring_at_its_most_skips_and_counts() {
    let ring = Elastic::new(1, 2, 8);
    let mut reading = ring.join(0, true);
    publish(&ring, &[0], 20);
    assert_eq!(ring.capacity(), 8);
    assert_eq!(read_all(&ring, 0, &mut reading), ((13..=20).collect(), 12));
}

#[test]
fn a_reader_joining_after_growth_starts_at_the_newest() {
    let ring = Elastic::new(2, 2, 16);
    let mut early = ring.join(0, true);
    publish(&ring, &[0], 10);
    let mut late = ring.join(1, true);
    assert_eq!(late.next(), 11);
    publish(&ring, &[0, 1], 3);
    assert_eq!(read_all(&ring, 0, &mut early), ((1..=13).collect(), 0));
    assert_eq!(read_all(&ring, 1, &mut late), ((11..=13).collect(), 0));
}

/// The numbers `ring`'s window holds, oldest first.
fn window(ring: &Elastic<Arc<u64>>) -> Vec<u64> {
    let window = ring.window();
    (window.first()..=window.last())
        .filter_map(|seq| window.get(seq).map(|v| *v))
        .collect()
}

#[test]
fn a_window_keeps_the_newest_numbers_and_hands_back_each_that_leaves() {
    let ring = Elastic::new(1, 2, 2).keeping(3);
    let mut left = Vec::new();
    for _ in 0..6 {
        let (_, displaced) = ring.publish(std::iter::empty(), Arc::new, |_| {});
        left.extend(displaced.left_window().map(|v| **v));
    }
    assert_eq!(window(&ring), vec![4, 5, 6]);
    assert_eq!(
        left,
        vec![1, 2, 3],
        "one leaves with each publish once full"
    );
    // Its most slots were raised to hold it (4, not 2), and it grew to them.
    assert_eq!(ring.capacity(), 4);
    assert_eq!(ring.growths(), 1);
}

#[test]
fn a_window_grows_its_ring_as_it_fills_and_no_reader_shrinks_it_below() {
    let ring = Elastic::new(1, 4, 8).keeping(100);
    let mut reading = ring.join(0, true);
    publish(&ring, &[0], 100);
    assert_eq!(window(&ring), (1..=100).collect::<Vec<_>>());
    assert_eq!(ring.capacity(), 128, "doubled from 4 to hold 100");
    // The reader has caught up, and the ring stays: the window needs it.
    assert_eq!(read_all(&ring, 0, &mut reading), ((1..=100).collect(), 0));
    publish(&ring, &[0], 30);
    assert!(ring.settle(|_| {}).is_none());
    assert_eq!(ring.capacity(), 128);
    assert_eq!(window(&ring), (31..=130).collect::<Vec<_>>());
    // The owner lets most of it go: the ring gives that room back.
    drop(ring.forget_to(128));
    assert_eq!(read_all(&ring, 0, &mut reading), ((101..=130).collect(), 0));
    assert!(ring.settle(|_| {}).is_some());
    assert_eq!(ring.capacity(), 4);
    assert_eq!(window(&ring), vec![128, 129, 130]);
}

#[test]
fn a_ring_grown_for_a_slow_reader_keeps_the_window_when_it_shrinks() {
    let ring = Elastic::new(1, 8, 64).keeping(6);
    let mut reading = ring.join(0, true);
    publish(&ring, &[0], 40);
    assert_eq!(ring.capacity(), 64);
    assert_eq!(read_all(&ring, 0, &mut reading), ((1..=40).collect(), 0));
    // Caught up: the next publish shrinks the ring, copying from the
    // window's first number, however far ahead the reader is.
    publish(&ring, &[0], 1);
    assert_eq!(ring.capacity(), 8);
    assert_eq!(window(&ring), (36..=41).collect::<Vec<_>>());
}

#[test]
fn forgetting_empties_only_what_every_reader_has_read() {
    let live = |ring: &Elastic<Arc<u64>>, seq: u64| ring.window().get(seq).is_some();
    let ring = Elastic::new(2, 8, 8).keeping(8);
    let mut slow = ring.join(0, true);
    let mut fast = ring.join(1, true);
    publish(&ring, &[0, 1], 6);
    assert_eq!(read_all(&ring, 1, &mut fast), ((1..=6).collect(), 0));
    let one_step = |reading: &mut Reading<Arc<u64>>| {
        ring.read(0, reading, 3, |_, _| {}, |_| panic!("skipped"), || {});
    };
    one_step(&mut slow);
    // The window lets 1..=5 go; reader 0 has read 1..=3 only.
    let vacated = ring.forget_to(6);
    assert_eq!(
        vacated._values.iter().map(|v| **v).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(window(&ring), vec![6]);
    assert!(!live(&ring, 4), "out of the window");
    // 4 and 5 stay in their slots for reader 0, which reads them whole.
    assert_eq!(read_all(&ring, 0, &mut slow), ((4..=6).collect(), 0));
    let vacated = ring.tidy(|_| true);
    assert_eq!(
        vacated._values.iter().map(|v| **v).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        ring.tidy(|_| true)._values.is_empty(),
        "nothing left to empty"
    );
}

#[test]
fn a_regrown_ring_keeps_the_numbers_it_copied_and_no_others() {
    let ring = FanoutRing::new(4);
    for _ in 0..6 {
        ring.publish(Arc::new);
    }
    let grown = ring.regrown(1, 16);
    // 1 and 2 were overwritten in the old ring: not copied.
    assert_eq!(grown.read(2), Read::Lapped { oldest: 3 });
    for seq in 3..=6 {
        assert_eq!(grown.read(seq), Read::Ready(Arc::new(seq)));
    }
    assert_eq!(grown.read(7), Read::Pending);
    assert_eq!(grown.publish(Arc::new), 7);
    assert_eq!(grown.read(7), Read::Ready(Arc::new(7)));
    // Smaller, from a later number: only what fits, from there.
    let shrunk = grown.regrown(5, 2);
    assert_eq!(shrunk.read(5), Read::Lapped { oldest: 6 });
    assert_eq!(shrunk.read(6), Read::Ready(Arc::new(6)));
    assert_eq!(shrunk.publish(Arc::new), 8);
    assert_eq!(shrunk.read(6), Read::Lapped { oldest: 7 });
}

#[test]
fn readers_woken_from_two_threads_read_every_message_once() {
    // A publisher and a reader on two threads, the reader's queue a
    // channel, the ring starting at 4 slots: every message is read exactly
    // once, in order, whatever the timing, while the ring grows and
    // shrinks under the reader.
    let ring = Arc::new(Elastic::new(1, 4, 1024));
    let mut reading = ring.join(0, true);
    let (queue, queued) = std::sync::mpsc::channel::<()>();
    const MESSAGES: u64 = if cfg!(miri) { 50 } else { 500 };
    let publisher = {
        let ring = Arc::clone(&ring);
        std::thread::spawn(move || {
            for _ in 0..MESSAGES {
                let (_, displaced) = ring.publish([0].into_iter(), Arc::new, |_| {
                    queue.send(()).unwrap();
                });
                drop(displaced);
            }
        })
    };
    let mut seen = Vec::new();
    // The channel closes when the publisher is done and every wake-up it
    // sent has been received.
    while queued.recv().is_ok() {
        let (read, skipped) = read_all(&ring, 0, &mut reading);
        assert_eq!(skipped, 0, "1024 slots hold every message");
        seen.extend(read);
    }
    publisher.join().unwrap();
    assert_eq!(seen, (1..=MESSAGES).collect::<Vec<_>>());
}
