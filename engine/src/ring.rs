//! A topic's fan-out ring: a bounded, multi-producer broadcast buffer of
//! numbered messages that every reader walks at its own cursor.
//!
//! Shared by every thread that publishes to a topic and every shard that
//! delivers it. Publishing claims the next sequence number with one atomic
//! increment and fills that number's slot; a reader (a shard) reads slot
//! after slot from its [`Cursor`] until it reaches one not yet filled. The
//! ring keeps the last `capacity` messages, so it is also a replay window:
//! a reader may start at any number still in it, and one that joins at
//! [`FanoutRing::claimed`] `+ 1`, replaying what it wants below that, gets
//! every message once (no gap, no duplicate).
//!
//! Each slot carries one atomic word: the number of the message it holds
//! (or `WRITING` while a publisher fills it) and how many readers are
//! inside it. A reader enters and reads the number in one increment, clones
//! the value if it is the number it wants, and leaves. A publisher takes
//! the slot with one compare-and-swap that succeeds only when the previous
//! lap's message is complete and no reader is inside, so the publishers of
//! one slot follow each other in order, no reader ever sees a slot before
//! it is complete, and no publisher replaces a value while a reader clones
//! it (see `Slot` for the orderings). A reader first looks at the word
//! and enters only when the slot holds the number it wants, and then stays
//! inside for one `clone` of the value.
//!
//! Its owner may empty a slot it no longer needs ([`FanoutRing::vacate`]:
//! a topic keeps its history in its ring, `ring/elastic.rs`), which a
//! reader then reads as [`Read::Void`].
//!
//! Nobody waits for a slow reader: a reader that falls a whole lap behind
//! finds its slot taken by a later number ([`Read::Lapped`]), skips to the
//! oldest message still held, and counts what it missed. Who does wait:
//! - a publisher, for the slot's previous publisher (which takes more than
//!   `capacity` publishes in flight at once) and for readers cloning the
//!   old value;
//! - every reader at a number, for that number's publisher to fill it.
//!
//! So a publisher stalled between claiming a number and filling it holds
//! back the readers at that number (and the next lap's publisher of its
//! slot) for as long as it is stalled: bounded waiting, not lock-free in
//! the strict sense. A publish whose `make` panics still fills its number,
//! with nothing ([`Read::Void`]), so a panic never wedges the ring.
//!
//! Checked by the loom models in `ring/models.rs` under every interleaving
//! with up to three preemptions (`.ci/run`: `--cfg shardcast_loom`,
//! capacities of 1 and 2), and under miri by the unit tests in
//! `ring/tests.rs`.

#![allow(unsafe_code)] // See each block, and `vacate.rs`; the one other is `shard::poller::watched`.

use std::fmt;

#[cfg(shardcast_loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a slot's word that count the readers inside it.
const READER_BITS: u32 = 16;
/// One reader inside.
const READER: u64 = 1;
/// The largest message number a ring can hold (2^48 - 2: at a million
/// messages a second, nine years of one topic's run).
pub const MAX_SEQ: u64 = (1 << (64 - READER_BITS)) - 2;
/// A slot's number while a publisher fills it.
const WRITING: u64 = MAX_SEQ + 1;

/// What a reader found at a sequence number.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<T> {
    /// The message numbered so.
    Ready(T),
    /// The number was claimed by a publish that failed (its `make`
    /// panicked): there is no message under it.
    Void,
    /// Not published yet, or claimed and still being filled: read again
    /// after the next wake-up.
    Pending,
    /// Overwritten: the reader is a lap behind. The oldest number that may
    /// still be read is `oldest`.
    Lapped {
        /// Where the reader may resume.
        oldest: u64,
    },
}

/// A bounded broadcast ring of `T` (an `Arc` of a message: one clone per
/// reader). Numbers start at 1.
pub struct FanoutRing<T> {
    /// The last number claimed; the next publish takes `claimed + 1`.
    claimed: AtomicU64,
    slots: Box<[Slot<T>]>,
    mask: u64,
    /// The first number it holds: 1, or for a ring grown from another
    /// ([`FanoutRing::regrown`]), the first number copied. Below it, every
    /// number reads as [`Read::Lapped`].
    oldest: u64,
}

/// One slot of the ring.
///
/// `word` is `number << READER_BITS | readers`. Orderings:
/// - A reader looks at the word (a load, Acquire) and, only if the slot
///   holds the number it wants, enters with `fetch_add(READER)`, Acquire,
///   which reads the number again, and leaves with `fetch_sub(READER)`,
///   Release. The look decides nothing about the value; it keeps readers
///   waiting for a number out of the slot its publisher needs.
/// - A publisher takes the slot with a CAS, AcqRel, from `previous lap's
///   number << READER_BITS` (no reader inside) to `WRITING << READER_BITS`,
///   replaces the value, then adds `(its number - WRITING) << READER_BITS`,
///   Release, which leaves any count of readers that entered meanwhile
///   untouched.
/// - All of these but the look are RMWs on one location, so they are
///   totally ordered, and each reads the one before it. (The look may read
///   an older lap's number; that only makes the reader wait, since a
///   slot's numbers only grow.) The CAS succeeds only on a word
///   with no reader inside: every reader that cloned the old value left
///   before it, and the CAS acquires those leavings (their Releases, joined
///   into one release sequence by the RMWs between them), so every clone
///   happens before the replacement. A reader that enters after the CAS
///   reads [`WRITING`] and does not touch the value.
/// - A reader that enters and reads number `s` acquires the RMW that wrote
///   `s` (or a later RMW of its release sequence): the value written
///   before it is visible to the clone. The next lap's CAS acquires it the
///   same way, so the publishers of one slot are ordered.
/// - [`FanoutRing::vacate`] takes a slot as a publisher does (the same
///   CAS, from the number it holds with no reader inside, to `WRITING`),
///   takes the value out, and gives the number back (the same Release
///   add): a reader that enters after reads the number and finds nothing
///   ([`Read::Void`]); one that entered before left before the CAS.
/// - A ring made by [`FanoutRing::regrown`] starts with words and values
///   written by plain construction, before any other thread has it: they
///   reach readers and publishers through whatever hands the ring over
///   (`Elastic`'s lock), which happens before their first access.
///   Numbers below its `oldest` are refused before any slot is touched.
struct Slot<T> {
    word: AtomicU64,
    value: cell::UnsafeCell<Option<T>>,
}

impl<T> Slot<T> {
    fn number(word: u64) -> u64 {
        word >> READER_BITS
    }
}

// SAFETY: the value is written only by the publisher holding the slot
// (number = WRITING, taken with no reader inside) and read only by readers
// inside it that read a published number; `Slot` shows these never
// overlap. Values move between threads (`Send`) and are cloned through
// shared references from several threads at once (`Sync`).
unsafe impl<T: Send + Sync> Sync for FanoutRing<T> {}

impl<T> fmt::Debug for FanoutRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanoutRing")
            .field("claimed", &self.claimed.load(Ordering::Relaxed))
            .field("capacity", &(self.mask + 1))
            .finish()
    }
}

impl<T: Clone> FanoutRing<T> {
    /// A ring holding the last `capacity` messages (rounded up to a power
    /// of two, at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1).next_power_of_two();
        let slots = (0..capacity)
            .map(|_| Slot {
                word: AtomicU64::new(0),
                value: cell::UnsafeCell::new(None),
            })
            .collect();
        Self {
            claimed: AtomicU64::new(0),
            slots,
            mask: capacity as u64 - 1,
            oldest: 1,
        }
    }

    /// A new ring of `capacity` slots (rounded up to a power of two, at
    /// least 1) holding this ring's messages numbered from `from` to the
    /// last claimed, under the same numbers: as many of them as are still
    /// here and fit. The next publish into it takes the number after this
    /// ring's last.
    ///
    /// For a caller that serializes publishes, between two of them: a
    /// number still being filled would be copied as [`Read::Void`].
    pub fn regrown(&self, from: u64, capacity: usize) -> Self {
        let capacity = capacity.max(1).next_power_of_two() as u64;
        let mask = capacity - 1;
        let last = self.claimed();
        // One number per slot: the last `capacity` numbers up to `last`.
        let held = last.saturating_sub(capacity) + 1;
        let first = from
            .max(held)
            .max(self.oldest)
            .max(last.saturating_sub(self.capacity()) + 1);
        let mut slots: Vec<Slot<T>> = (0..capacity)
            .map(|_| Slot {
                word: AtomicU64::new(0),
                value: cell::UnsafeCell::new(None),
            })
            .collect();
        for number in held..=last {
            let value = if number >= first {
                match self.read(number) {
                    Read::Ready(value) => Some(value),
                    Read::Void | Read::Pending | Read::Lapped { .. } => None,
                }
            } else {
                // Not copied: `oldest` keeps readers out of it. Its number
                // is still written, as the previous lap the next publish
                // into this slot waits for.
                None
            };
            // Nobody else sees the new ring yet: plain stores would do.
            let slot = &mut slots[(number & mask) as usize];
            slot.word = AtomicU64::new(number << READER_BITS);
            slot.value = cell::UnsafeCell::new(value);
        }
        Self {
            claimed: AtomicU64::new(last),
            slots: slots.into_boxed_slice(),
            mask,
            oldest: first.min(last + 1),
        }
    }

    /// How many messages it holds at most.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The last number claimed by a publisher (published, or still being
    /// filled).
    pub fn claimed(&self) -> u64 {
        // Relaxed: no data is published through `claimed`. A reader that
        // saw a later lap's number (or WRITING) in a slot acquired (by its
        // look or its entry) that publisher's RMW of the slot's word, which
        // its claim is sequenced before; so the claim happens before this
        // load, and coherence makes the load see it or a later claim.
        self.claimed.load(Ordering::Relaxed)
    }

    /// Publishes the value `make` builds from its number; returns the number.
    ///
    /// `make` must not publish into this ring (its slot may be the one the
    /// number it would claim needs). Should it panic, the number is still
    /// filled, with nothing ([`Read::Void`]), and the panic goes on.
    ///
    /// # Panics
    /// Past [`MAX_SEQ`] messages.
    pub fn publish(&self, make: impl FnOnce(u64) -> T) -> u64 {
        self.publish_displacing(make).0
    }

    /// As [`FanoutRing::publish`], also handing back the value a lap older
    /// that the new one displaced from its slot, for the caller to drop
    /// where it costs least (outside a lock, say).
    #[must_use = "the displaced value is dropped where the caller drops it"]
    pub fn publish_displacing(&self, make: impl FnOnce(u64) -> T) -> (u64, Option<T>) {
        // Relaxed: the claim publishes no data; the slot's word does.
        let seq = self.claimed.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(seq <= MAX_SEQ, "a fan-out ring ran out of numbers");
        let unfilled = Unfilled { ring: self, seq };
        let value = make(seq);
        std::mem::forget(unfilled);
        (seq, self.fill(seq, Some(value)))
    }

    /// Fills the slot of the claimed number `seq` with `value`; returns the
    /// value it displaced.
    fn fill(&self, seq: u64, value: Option<T>) -> Option<T> {
        let slot = self.slot(seq);
        let previous = seq.saturating_sub(self.capacity()) << READER_BITS;
        let mut spins = 0;
        // Take the slot once the previous lap's message is complete and no
        // reader is inside.
        while slot
            .word
            .compare_exchange_weak(
                previous,
                WRITING << READER_BITS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            backoff(&mut spins);
        }
        let old = slot.value.with_mut(|cell| {
            // SAFETY: this publisher holds the slot: its CAS set WRITING when
            // no reader was inside, and a reader that enters later reads
            // WRITING (never a number it may ask for: `read` refuses numbers
            // above MAX_SEQ) and leaves the value alone (see `Slot`).
            unsafe { std::mem::replace(&mut *cell, value) }
        });
        // WRITING becomes `seq`; the readers' count below is left as it is.
        slot.word
            .fetch_add(seq.wrapping_sub(WRITING) << READER_BITS, Ordering::Release);
        // The old value is dropped outside the slot.
        old
    }

    /// The message numbered `seq`, if it is there.
    ///
    /// A value's `clone` must not panic into this (it would leave a reader
    /// counted in the slot for ever): `Arc`'s does not.
    pub fn read(&self, seq: u64) -> Read<T> {
        if seq == 0 || seq > MAX_SEQ {
            // Never a message; and WRITING must never match a wanted number.
            return Read::Pending;
        }
        if seq < self.oldest {
            // Before a regrown ring's first number: not kept.
            let claimed = self.claimed();
            return Read::Lapped {
                oldest: self
                    .oldest
                    .max((claimed + 1).saturating_sub(self.capacity())),
            };
        }
        let slot = self.slot(seq);
        // A look first: enter only a slot that holds `seq`, so readers
        // waiting for a number do not hold back the publisher filling it.
        let mut number = Slot::<T>::number(slot.word.load(Ordering::Acquire));
        if number == seq {
            let entered = slot.word.fetch_add(READER, Ordering::Acquire);
            if entered & ((1 << READER_BITS) - 1) == (1 << READER_BITS) - 1 {
                // 65,535 readers inside one slot: the count would carry into
                // the number. Only a leak could get here.
                std::process::abort();
            }
            number = Slot::<T>::number(entered);
            let found = if number == seq {
                slot.value.with(|cell| {
                    // SAFETY: this reader is inside the slot and read a
                    // published number (`seq` <= MAX_SEQ < WRITING) on
                    // entering, so no publisher holds the slot now or can
                    // take it until the reader leaves (see `Slot`).
                    unsafe { (*cell).clone() }
                })
            } else {
                None
            };
            slot.word.fetch_sub(READER, Ordering::Release);
            if number == seq {
                return found.map_or(Read::Void, Read::Ready);
            }
        }
        let claimed = self.claimed();
        let lapped = if number == WRITING {
            claimed >= seq.saturating_add(self.capacity())
        } else {
            number > seq
        };
        if lapped {
            Read::Lapped {
                oldest: (claimed - self.capacity() + 1).max(self.oldest),
            }
        } else {
            Read::Pending
        }
    }

    fn slot(&self, seq: u64) -> &Slot<T> {
        &self.slots[(seq & self.mask) as usize]
    }
}

/// A claimed number not yet filled: if the publish unwinds before filling
/// it, the number is filled with nothing, so readers and the next lap's
/// publisher of its slot are not left waiting for ever.
struct Unfilled<'a, T: Clone> {
    ring: &'a FanoutRing<T>,
    seq: u64,
}

impl<T: Clone> Drop for Unfilled<'_, T> {
    fn drop(&mut self) {
        drop(self.ring.fill(self.seq, None));
    }
}

/// Waits a little: spins at first, then lets other threads run.
fn backoff(spins: &mut u32) {
    #[cfg(shardcast_loom)]
    {
        *spins += 1;
        loom::thread::yield_now();
    }
    #[cfg(not(shardcast_loom))]
    {
        if *spins < 64 {
            *spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// `UnsafeCell` with loom's closure interface, so the same code runs under
/// loom (which checks every access) and without it.
mod cell {
    #[cfg(shardcast_loom)]
    pub(super) use loom::cell::UnsafeCell;

    #[cfg(not(shardcast_loom))]
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(shardcast_loom))]
    impl<T> UnsafeCell<T> {
        pub(super) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        pub(super) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

mod cursor;
mod elastic;
mod vacate;
mod wake;
pub use cursor::Cursor;
pub use elastic::{Displaced, Elastic, Reading, Vacated, Window};
pub use wake::Wakes;

#[cfg(all(test, shardcast_loom))]
mod models;
#[cfg(all(test, not(shardcast_loom)))]
mod tests;
