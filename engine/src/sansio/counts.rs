//! A subscriber's, a topic's or a shard's event counts.
//!
//! Plain `u64`s owned by one shard thread; merged by whoever reports them.

use crate::sansio::outbox::DropReason;

/// Event counts under one heading, split by drop reason. Owned by one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events written to sockets.
    pub sent: u64,
    /// Replayed events written to sockets (not part of `sent`).
    pub replayed: u64,
    /// Events replaced in an outbox by a newer one of the same topic and
    /// key before they were written (policy `conflate`; not drops).
    pub conflated: u64,
    /// Events of a subscribed topic that the subscription's filter
    /// ([`MessageFilter`](crate::MessageFilter)) left out: not addressed to
    /// it, so not drops.
    pub filtered: u64,
    /// Events not delivered, by [`DropReason`] index.
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Counts {
    /// Counts one drop.
    #[inline]
    pub fn drop_one(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    /// Drops under `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Drops under every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.replayed += other.replayed;
        self.conflated += other.conflated;
        self.filtered += other.filtered;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
    }
}
