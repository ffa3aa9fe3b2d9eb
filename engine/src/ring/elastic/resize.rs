//! How an [`Elastic`] ring changes size: growing before a publish would
//! lap a wanted reader (or its owner's window), shrinking once they have
//! caught up, at a publish or when asked to settle, and taking more room
//! for readers (see the module docs of `elastic.rs`).

use super::{Current, Displaced, Elastic, FanoutRing, NOT_READING};

#[cfg(shardcast_loom)]
use loom::sync::atomic::Ordering;
#[cfg(shardcast_loom)]
use loom::sync::Arc;
#[cfg(not(shardcast_loom))]
use std::sync::atomic::Ordering;
#[cfg(not(shardcast_loom))]
use std::sync::Arc;

impl<T: Clone> Elastic<T> {
    /// Raises the slots it starts with and goes back to, to `slots`
    /// (rounded up to a power of two, at most its most slots), growing the
    /// ring to them now if it is smaller: for a ring made small for its
    /// owner's window that readers now read. Returns the ring replaced.
    pub fn raise_least(&self, slots: usize) -> Option<Displaced<T>> {
        let mut current = self.current.lock();
        let slots = (slots.max(1).next_power_of_two() as u64).min(self.max);
        if slots <= self.least_slots() {
            return None;
        }
        // Relaxed: under the lock (see `least_slots`).
        self.min.store(slots, Ordering::Relaxed);
        if current.ring.capacity() >= slots {
            return None;
        }
        let old = self.replace(&mut current, slots);
        Some(Displaced {
            _value: None,
            _ring: Some(old),
            left: None,
        })
    }

    /// Before a publish: replaces the ring with a larger one if the publish
    /// would displace a message a wanted reader has not read, or with the
    /// least one if a grown ring's readers have caught up; returns the ring
    /// replaced.
    pub(super) fn resize(&self, current: &mut Current<T>) -> Option<Arc<FanoutRing<T>>> {
        let capacity = current.ring.capacity();
        let next = current.ring.claimed() + 1;
        // The window's first number once this publish is in.
        let window = if self.window == 0 {
            next + 1
        } else {
            current.kept.max((next + 1).saturating_sub(self.window))
        };
        // The number this publish pushes out of its slot: a wanted reader
        // at or below it has not read it, nor may the window lose it.
        let displaced = next.checked_sub(capacity).filter(|&number| number >= 1);
        let may_lap = |floor: u64| displaced.is_some_and(|number| number >= floor.min(window));
        let least = self.least(next + 1 - window.min(next + 1));
        let (can_grow, grown) = (capacity < self.max, capacity > least);
        if !(grown || can_grow && may_lap(current.floor)) {
            return None;
        }
        current.floor = self.floor(next);
        let slots = if may_lap(current.floor) {
            if !can_grow {
                return None;
            }
            self.growths.fetch_add(1, Ordering::Relaxed);
            // What the slowest wanted reader has still to read, or the
            // window holds, whichever is more.
            let behind = next - current.floor.min(window);
            (2 * capacity)
                .max((behind + 1).next_power_of_two())
                .min(self.max)
        } else if grown && next - current.floor <= self.least_slots() / 2 {
            least
        } else {
            return None;
        };
        Some(self.replace(current, slots))
    }

    /// The slots a ring goes back to once its readers have caught up: its
    /// least, or what holds a window of `held` numbers if that is more.
    pub(super) fn least(&self, held: u64) -> u64 {
        self.least_slots().max(held.next_power_of_two())
    }

    /// The lowest next number of a wanted reader (`next` if none is lower).
    pub(super) fn floor(&self, next: u64) -> u64 {
        // Acquire: pairs with the readers' Release (see the module docs).
        let cursors = self.read_to.iter().map(|r| r.load(Ordering::Acquire));
        cursors.min().unwrap_or(next).min(next)
    }

    /// Replaces the current ring with one of `slots` slots holding its
    /// messages from the floor on; returns the ring replaced.
    pub(super) fn replace(&self, current: &mut Current<T>, slots: u64) -> Arc<FanoutRing<T>> {
        let slots = usize::try_from(slots).expect("at most `max`, a usize");
        // From the slowest wanted reader, or the owner's window if older.
        let from = current.floor.min(current.kept);
        let ring = Arc::new(current.ring.regrown(from, slots));
        current.vacated = from;
        // Relaxed: see the module docs; the lock orders it with `join`.
        self.generation.fetch_add(1, Ordering::Relaxed);
        std::mem::replace(&mut current.ring, ring)
    }

    /// Gives a grown ring's room back if every wanted reader is within
    /// half the least slots of the newest message (as a publish would),
    /// and then raises every wanted reader's flag, calling `queue` for
    /// each whose flag was clear, so that each lets go of the grown ring
    /// at its next read. For a topic that went quiet after a burst, where
    /// no publish comes to do it. Returns the ring replaced (as
    /// [`Displaced`]), to be dropped where the caller likes.
    pub fn settle(&self, queue: impl FnMut(usize)) -> Option<Displaced<T>> {
        let mut current = self.current.lock();
        let next = current.ring.claimed() + 1;
        let least = self.least(next - current.kept.min(next));
        if current.ring.capacity() <= least {
            return None;
        }
        current.floor = self.floor(next);
        if next - current.floor > self.least_slots() / 2 {
            return None;
        }
        let old = self.replace(&mut current, least);
        drop(current);
        let wanted = (0..self.read_to.len())
            .filter(|&reader| self.read_to[reader].load(Ordering::Relaxed) != NOT_READING);
        self.wakes.raise_all(wanted, queue);
        Some(Displaced {
            _value: None,
            _ring: Some(old),
            left: None,
        })
    }
}
