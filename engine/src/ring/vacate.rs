//! Emptying a slot its owner no longer needs (see [`FanoutRing::vacate`]).

#![allow(unsafe_code)] // One block, argued below and in `Slot`'s docs.

use super::{backoff, FanoutRing, Ordering, Slot, READER_BITS, WRITING};

impl<T: Clone> FanoutRing<T> {
    /// Empties the slot of the published number `seq` if it still holds
    /// it, and returns its value, for the caller to drop where it costs
    /// least: for an owner that keeps the ring's messages as a replay
    /// window and let this one go, once every reader is past it. A reader
    /// that asks for `seq` afterwards reads [`Read::Void`].
    ///
    /// Takes the slot as the next lap's publisher would (with no reader
    /// inside), so a reader cloning the value, or that publisher, only
    /// waits; a slot already holding a later number is left alone. `seq`
    /// must have been filled (its publish returned). While the slot is
    /// taken, a reader asking for `seq` reads [`Read::Pending`] and, asking
    /// again, [`Read::Void`]: empty only numbers no reader still asks for
    /// (an [`Elastic`](super::Elastic) ring empties only numbers below
    /// every reader's cursor).
    pub fn vacate(&self, seq: u64) -> Option<T> {
        if seq == 0 || seq > self.claimed() || seq < self.oldest {
            return None;
        }
        let slot = self.slot(seq);
        let held = seq << READER_BITS;
        let mut spins = 0;
        loop {
            match slot.word.compare_exchange_weak(
                held,
                WRITING << READER_BITS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                // A later lap's number (or its publisher, WRITING): gone.
                Err(word) if Slot::<T>::number(word) != seq => return None,
                // Readers inside, or a spurious failure: try again.
                Err(_) => backoff(&mut spins),
            }
        }
        let old = slot.value.with_mut(|cell| {
            // SAFETY: as in `fill`: this thread holds the slot (its CAS set
            // WRITING when no reader was inside), and readers that enter
            // meanwhile read WRITING and leave the value alone.
            unsafe { (*cell).take() }
        });
        // WRITING becomes `seq` again, with nothing under it; the readers'
        // count is left as it is.
        slot.word
            .fetch_add(seq.wrapping_sub(WRITING) << READER_BITS, Ordering::Release);
        old
    }
}
