//! Whether publishing is open, and the publishes in progress, so that
//! shutdown can stop publishing and then know that every publish that got
//! in has written its message into its topic's feed for the shards.
//!
//! Shutdown, as this module sees it:
//! 1. [`PublishGate::close`]: from now on [`PublishGate::enter`] refuses;
//! 2. the caller waits until [`PublishGate::in_flight`] is 0: every publish
//!    that entered has finished routing its message;
//! 3. only then are the shards told to stop, and each reads the feeds
//!    queued for it before closing any connection.
//!
//! Without step 2 a publish that checked the flag just before step 1 could
//! be acknowledged after its subscribers' connections were gone, neither
//! delivered nor counted.

use crossbeam_utils::CachePadded;

#[cfg(shardcast_loom)]
use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

/// Open or closed, with a count of publishes in progress per slot (one per
/// shard, one for every other thread), so that publishing shards never
/// share a cache line. Shared by all threads; lock-free.
///
/// Orderings, the store-buffering pattern: `enter` increments its slot,
/// then a `SeqCst` fence, then reads the flag; `close` sets the flag, then a
/// `SeqCst` fence, and the caller reads the slots after it. The two fences
/// are ordered one way or the other: either the publisher's read of the
/// flag follows the closer's fence (it sees "closed" and backs out), or the
/// closer's reads follow the publisher's fence (they see the increment and
/// wait for it). The decrement is `Release` and `in_flight` reads are
/// `Acquire`: when the closer sees the count drop, what the publisher did
/// before (its message in an inbox) is visible. Checked by the loom model
/// below (fences rather than `SeqCst` accesses: loom models the former).
#[derive(Debug)]
pub struct PublishGate {
    closed: AtomicBool,
    slots: Box<[CachePadded<AtomicUsize>]>,
}

/// A publish in progress; leaving (drop) counts it done.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl PublishGate {
    /// An open gate with `slots` counters (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            closed: AtomicBool::new(false),
            slots: (0..slots.max(1))
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
        }
    }

    /// Enters a publish counted in `slot` (the last one for any slot past
    /// the end); `None` once the gate is closed.
    #[inline]
    pub fn enter(&self, slot: usize) -> Option<InFlight<'_>> {
        let counter = &self.slots[slot.min(self.slots.len() - 1)];
        counter.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Relaxed) {
            counter.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(InFlight(counter))
    }

    /// Closes the gate: later [`PublishGate::enter`] calls refuse.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Whether the gate is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Publishes in progress now (after [`PublishGate::close`]: those that
    /// got in before it).
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|c| c.load(Ordering::Acquire)).sum()
    }
}

#[cfg(all(test, not(shardcast_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_refuses_and_counts_what_got_in() {
        let gate = PublishGate::new(2);
        let first = gate.enter(0).unwrap();
        let second = gate.enter(7).unwrap();
        assert_eq!(gate.in_flight(), 2);
        gate.close();
        assert!(gate.enter(1).is_none());
        assert_eq!(gate.in_flight(), 2, "a refusal leaves no count behind");
        drop(first);
        drop(second);
        assert_eq!(gate.in_flight(), 0);
        assert!(gate.is_closed());
    }
}

#[cfg(all(test, shardcast_loom))]
mod loom_publishing {
    use super::PublishGate;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;

    /// A publish races the close: whatever the interleaving, either it is
    /// refused, or the closer, once it has seen no publish in progress,
    /// sees its message.
    #[test]
    fn loom_every_publish_that_got_in_is_seen_after_the_wait() {
        loom::model(|| {
            let gate = Arc::new(PublishGate::new(2));
            let inbox = Arc::new(AtomicBool::new(false));
            let publisher = {
                let (gate, inbox) = (Arc::clone(&gate), Arc::clone(&inbox));
                loom::thread::spawn(move || match gate.enter(0) {
                    Some(_in_flight) => {
                        inbox.store(true, Ordering::Relaxed);
                        true
                    }
                    None => false,
                })
            };
            gate.close();
            while gate.in_flight() != 0 {
                loom::thread::yield_now();
            }
            let seen = inbox.load(Ordering::Relaxed);
            let accepted = publisher.join().unwrap();
            assert!(
                !accepted || seen,
                "a publish got in but its message was not seen"
            );
        });
    }
}
