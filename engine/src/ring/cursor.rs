//! A reader's place in a ring, and its walk from there.

use std::ops::Range;

use super::{FanoutRing, Read, MAX_SEQ};

/// A reader's place in one ring: the next number it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    next: u64,
}

impl Cursor {
    /// A cursor that reads `next` first (numbers start at 1 and end at
    /// [`MAX_SEQ`]).
    pub fn at(next: u64) -> Self {
        Self {
            next: next.clamp(1, MAX_SEQ + 1),
        }
    }

    /// The next number it reads.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Hands `each` the messages ready from the cursor on, in order, and
    /// stops at the first one not yet published or after `max` steps (a
    /// step: a message read, or a run of numbers skipped);
    /// returns how many numbers were skipped: overwritten by the time the
    /// cursor got there, or claimed by a publish that failed.
    pub fn drain<T: Clone>(
        &mut self,
        ring: &FanoutRing<T>,
        max: usize,
        each: impl FnMut(u64, T),
    ) -> u64 {
        self.drain_with(ring, max, each, |_| {})
    }

    /// As [`Cursor::drain`], also handing `skipped` each run of numbers
    /// skipped, as it is skipped.
    pub fn drain_with<T: Clone>(
        &mut self,
        ring: &FanoutRing<T>,
        max: usize,
        mut each: impl FnMut(u64, T),
        mut skipped: impl FnMut(Range<u64>),
    ) -> u64 {
        let mut total = 0;
        for _ in 0..max {
            let run = match ring.read(self.next) {
                Read::Ready(value) => {
                    each(self.next, value);
                    self.next += 1;
                    continue;
                }
                Read::Pending => break,
                Read::Void => self.next..self.next + 1,
                Read::Lapped { oldest } => {
                    // `oldest` is past `next`: a later lap holds its slot.
                    debug_assert!(oldest > self.next);
                    self.next..oldest
                }
            };
            total += run.end - run.start;
            self.next = run.end;
            skipped(run);
        }
        total
    }
}
