//! Wake-ups of a ring's readers: one flag per reader, set while the ring
//! waits in that reader's queue, so a reader is woken once per batch of
//! messages, not once per message.
//!
//! The protocol, for a ring read by several readers (shards), each with a
//! queue of rings that have news for it:
//! - a publisher fills its slot, then [`Wakes::raise`]s each reader's flag;
//!   only the publisher that finds a flag clear puts the ring in that
//!   reader's queue;
//! - a reader takes the ring from its queue, [`Wakes::lower`]s its flag,
//!   and only then reads the ring at its cursor until it finds a number not
//!   yet filled.
//!
//! So a publish either finds the flag clear and queues the ring again, or
//! finds it raised by an earlier publish whose lowering has not happened
//! yet: that lowering acquires this publish's raise (both are `swap`s,
//! AcqRel, read-modify-writes of one flag, so the lowering reads the last
//! raise before it and every raise in between continues its release
//! sequence), and the read that follows it sees the filled slot. No
//! message is left in a ring with nobody queued to read it; checked under
//! every interleaving by the loom models in `ring/models.rs`.

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

    /// After a publish: raises `reader`'s flag; `true` when it was clear,
    /// and so the caller must put the ring in `reader`'s queue.
    #[inline]
    pub fn raise(&self, reader: usize) -> bool {
        // AcqRel: Release publishes the filled slot to the lowering that
        // reads this raise (see the module docs); Acquire orders this raise
        // after the lowering it replaces, so the queue push follows it.
        !self.queued[reader].swap(true, Ordering::AcqRel)
    }

    /// Before a read: `reader` has taken the ring from its queue.
    #[inline]
    pub fn lower(&self, reader: usize) {
        // AcqRel: Acquire makes every slot filled before a raise this
        // lowering reads (or a later raise in its release sequence)
        // visible to the read that follows.
        self.queued[reader].swap(false, Ordering::AcqRel);
    }
}
