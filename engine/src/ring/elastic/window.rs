//! An [`Elastic`] ring as its owner's replay window: keeping it, reading
//! it, letting go of it, and emptying the slots of what it let go of.
//!
//! A topic's history is the ring's newest `window` numbers, read in place
//! ([`Elastic::window`]), not a second list of the same messages.
//! - No change of rings drops the window: a new ring copies from the
//!   slowest wanted reader's cursor or the window's first number,
//!   whichever is older, and the ring grows while the window fills (the
//!   publish would displace a number the window keeps) and shrinks only to
//!   what the window holds. Its most slots are raised to the window's
//!   length (rounded up to a power of two), so the window never laps.
//! - Each publish moves a full window on by one and hands back the message
//!   that left it, for the owner's byte account; the owner may let go of
//!   more ([`Elastic::forget_to`]: a byte budget, a gap on a bus).
//! - A message that left the window (or one in it the owner does not
//!   keep) stays in its slot until every wanted reader has read it: then
//!   a publish, [`Elastic::forget_to`] or the owner's sweep
//!   ([`Elastic::tidy`]) empties the slot
//!   ([`vacate`](super::super::FanoutRing::vacate)), so a topic nobody
//!   reads holds its window's kept messages and no others. A reader never
//!   meets an emptied slot: only numbers below every wanted reader's
//!   `read_to` (which trails its cursor) are emptied.

use super::{lock, Current, Elastic, Read};

/// The owner's window, read under the ring's lock (publishes wait): see
/// [`Elastic::window`].
#[allow(missing_debug_implementations)] // A lock guard.
pub struct Window<'a, T> {
    current: lock::Guard<'a, Current<T>>,
}

impl<T: Clone> Window<'_, T> {
    /// The first number in it (past [`Window::last`] when it is empty).
    pub fn first(&self) -> u64 {
        self.current.kept
    }

    /// The newest number published.
    pub fn last(&self) -> u64 {
        self.current.ring.claimed()
    }

    /// The message numbered `seq`, if it is in the window and not void.
    pub fn get(&self, seq: u64) -> Option<T> {
        if seq < self.current.kept {
            return None;
        }
        match self.current.ring.read(seq) {
            Read::Ready(value) => Some(value),
            Read::Void | Read::Pending | Read::Lapped { .. } => None,
        }
    }
}

/// Messages the owner let go of and the ring emptied: drop them where
/// dropping costs least (outside a lock).
#[must_use = "drop what the ring let go of outside the owner's lock"]
#[allow(missing_debug_implementations)] // Only ever dropped.
pub struct Vacated<T> {
    pub(super) _values: Vec<T>,
}

impl<T: Clone> Elastic<T> {
    /// The same ring, keeping its newest `window` numbers as its owner's
    /// replay window: no change of rings drops them, however far ahead
    /// its readers are. The ring grows (doubling, from its least slots)
    /// as the window fills, to at most `window` rounded up to a power of
    /// two (its most slots are raised to that), and never shrinks below
    /// what the window holds. Each publish moves a full window on by one,
    /// and hands back the message that left it
    /// ([`Displaced::left_window`]); the owner may let go of more
    /// ([`Elastic::forget_to`]). A message that left the window stays in
    /// its slot until the next lap, or until every reader is past it and
    /// a publish, the owner's [`Elastic::forget_to`] or its sweep
    /// ([`Elastic::tidy`]) empties the slot.
    pub fn keeping(mut self, window: u64) -> Self {
        self.window = window;
        self.max = self.max.max(window.next_power_of_two());
        self
    }

    /// The owner's window, for reading (publishes wait until it is dropped).
    pub fn window(&self) -> Window<'_, T> {
        Window {
            current: self.current.lock(),
        }
    }

    /// Lets go of the owner's window below `upto` (all of it, past the
    /// newest number); returns what the ring emptied: the messages below
    /// it that every wanted reader has read (the others stay in their
    /// slots until they are read and the ring is tidied or lapped).
    pub fn forget_to(&self, upto: u64) -> Vacated<T> {
        let mut current = self.current.lock();
        let upto = upto.min(current.ring.claimed() + 1);
        current.kept = current.kept.max(upto);
        self.vacate(&mut current)
    }

    /// Empties the slots of messages the owner let go of, and of those in
    /// the window it does not keep (`kept` says no: a transient message),
    /// that every wanted reader has read; for a periodic sweep (a topic
    /// nobody reads keeps only its window's kept messages). Looks at each
    /// number of the window once. Returns what it emptied.
    pub fn tidy(&self, kept: impl Fn(&T) -> bool) -> Vacated<T> {
        let mut current = self.current.lock();
        let mut emptied = self.vacate(&mut current);
        let next = current.ring.claimed() + 1;
        current.floor = self.floor(next);
        let upto = current.floor.min(next);
        let from = current.swept.max(current.kept);
        for seq in from..upto {
            if let Read::Ready(value) = current.ring.read(seq) {
                if !kept(&value) {
                    drop(value);
                    emptied._values.extend(current.ring.vacate(seq));
                }
            }
        }
        current.swept = current.swept.max(upto);
        emptied
    }

    /// Empties every slot below the window and below every wanted reader.
    fn vacate(&self, current: &mut Current<T>) -> Vacated<T> {
        let next = current.ring.claimed() + 1;
        if current.vacated >= current.kept {
            return Vacated {
                _values: Vec::new(),
            };
        }
        current.floor = self.floor(next);
        let lapped = next.saturating_sub(current.ring.capacity());
        let from = current.vacated.max(lapped);
        let upto = current.kept.min(current.floor);
        let emptied = (from..upto).filter_map(|seq| current.ring.vacate(seq));
        let emptied = Vacated {
            _values: emptied.collect(),
        };
        current.vacated = current.vacated.max(upto);
        emptied
    }

    /// After the publish of `seq`, which displaced `lapped` from its slot:
    /// moves a full window on by one; returns the message that left it
    /// (taken from `lapped` when it is that one).
    pub(super) fn move_window(
        &self,
        current: &mut Current<T>,
        seq: u64,
        lapped: &mut Option<T>,
    ) -> Option<T> {
        if self.window == 0 {
            // Nothing kept: the window is always empty.
            current.kept = seq + 1;
            return None;
        }
        let first = (seq + 1).saturating_sub(self.window).max(1);
        if current.kept >= first {
            return None;
        }
        let leaving = current.kept;
        current.kept = first;
        // One number leaves per publish (the window's length is fixed):
        // the one this publish lapped, when the ring is no longer than
        // the window; or one still in its slot, taken out if every wanted
        // reader has read it (`floor` trails them all), else cloned.
        if leaving + current.ring.capacity() == seq {
            return lapped.take();
        }
        if leaving < current.floor {
            if current.vacated == leaving {
                current.vacated += 1;
            }
            return current.ring.vacate(leaving);
        }
        match current.ring.read(leaving) {
            Read::Ready(value) => Some(value),
            Read::Void | Read::Pending | Read::Lapped { .. } => None,
        }
    }
}
