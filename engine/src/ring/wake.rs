//! Wake-ups of a ring's readers: one flag per reader, set while the ring
//! waits in that reader's queue, so a reader is woken once per batch of
//! messages, not once per message.
//!
//! The protocol, for a ring read by several readers (shards), each with a
//! queue of rings that have news for it:
//! - a publisher fills its slot, then raises each reader's flag; only the
//!   publisher that finds a flag clear puts the ring in that reader's queue
//!   ([`Wakes::raise_all`]);
//! - a reader takes the ring from its queue, lowers its flag, and only then
//!   reads the ring at its cursor until it finds a number not yet filled,
//!   or its budget runs out; then it queues the ring again itself, unless a
//!   publish already has ([`Elastic::read`](super::Elastic::read)).
//!
//! So a publish either finds the flag clear and queues the ring again, or
//! finds it raised by an earlier publish (or a reader's requeue) whose
//! lowering has not happened yet. That lowering reads this raise or a later
//! one: both are `swap`s, read-modify-writes of one flag, so the lowering
//! reads the last raise before it, and every raise in between continues
//! the release sequence. The raise's Release and the lowering's Acquire
//! make the filled slot visible to the read that follows the lowering.
//! No message is left in a ring with nobody queued to read it. The loom
//! model `loom_ring_a_queued_reader_misses_no_wake_up` (`ring/models.rs`)
//! runs the ring's two functions, the ones the shards and topics run
//! (`Elastic::publish` and `Elastic::read`), with a
//! reader's budget of one message so that it queues itself again, under
//! every interleaving with up to three preemptions.

#[cfg(shardcast_loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{AtomicBool, Ordering};

/// One flag per reader: raised while the ring is queued for it.
#[derive(Debug)]
pub struct Wakes {
    queued: Box<[AtomicBool]>,
}

impl Wakes {
    /// Flags for `readers` readers, none queued.
    pub fn new(readers: usize) -> Self {
        Self {
            queued: (0..readers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Raises `reader`'s flag; `true` when it was clear, and so the caller
    /// must put the ring in `reader`'s queue.
    #[inline]
    pub fn raise(&self, reader: usize) -> bool {
        // Release is what the argument needs (see the module docs): the
        // slots filled before this raise reach the lowering that reads it.
        // Acquire (free on x86) orders the queue push after the lowering
        // this raise follows.
        !self.queued[reader].swap(true, Ordering::AcqRel)
    }

    /// Lowers `reader`'s flag: the reader has taken the ring from its queue.
    #[inline]
    pub fn lower(&self, reader: usize) {
        // Acquire is what the argument needs: every slot filled before a
        // raise this lowering reads (or a later one in its release
        // sequence) is visible to the read that follows.
        self.queued[reader].swap(false, Ordering::AcqRel);
    }

    /// The publisher's side, after filling a slot: raises the flag of
    /// every reader in `readers` and calls `queue` for each whose flag was
    /// clear.
    #[inline]
    pub fn raise_all(
        &self,
        readers: impl IntoIterator<Item = usize>,
        mut queue: impl FnMut(usize),
    ) {
        for reader in readers {
            if self.raise(reader) {
                queue(reader);
            }
        }
    }
}
