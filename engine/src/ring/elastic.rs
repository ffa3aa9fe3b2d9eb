//! A fan-out ring that grows while a reader is a lap behind, and its
//! readers' wake-ups: what a topic's feed is made of (`topic/feed.rs`).
//!
//! A [`FanoutRing`] of fixed size loses messages to a reader that falls a
//! lap behind, and a burst longer than the ring (a batch publish of a
//! thousand messages on one topic, while the shard that reads it is busy,
//! or is the very thread publishing) would do that to every reader. An
//! [`Elastic`] ring grows instead, up to its most slots, and gives the
//! room back once its readers have caught up:
//! - each reader publishes the next number it reads (`read_to`) after every
//!   read; the publisher keeps a floor below every wanted reader's cursor,
//!   and looks at them again only when the number its publish displaces
//!   is not below that floor, or while the ring is grown (to know when to
//!   give the room back);
//! - a publish that would displace a message a wanted reader has not read
//!   first moves the ring's messages, from that reader's cursor on, into
//!   a ring of at least twice the slots ([`FanoutRing::regrown`], same numbers),
//!   which takes this and every later publish;
//! - a grown ring goes back to its least slots at the first publish that
//!   finds every wanted reader within half of them of the newest message,
//!   or when a reader asks it to settle (a topic that went quiet after a
//!   burst, where no publish comes to do it: [`Elastic::settle`], which
//!   wakes every reader so that it lets go of the grown ring);
//! - a reader looks at the ring's `generation` on every read, and when a
//!   ring has replaced the one it holds, takes the new one under the lock
//!   and reads on at the same cursor: the new ring holds every number from
//!   the slowest wanted reader's cursor on, and the old one takes no more
//!   publishes, so nothing is read twice or skipped. The old ring is freed
//!   by the last reader to let go of it.
//!
//! At its most slots the ring laps as a [`FanoutRing`] does, and the
//! reader skips and counts ([`Read::Lapped`](super::Read::Lapped)).
//!
//! The ring is also its owner's replay window: see `elastic/window.rs`.
//!
//! Publishes are serialized by the ring's lock, which they hold for the
//! publish alone (a topic publishes under its own lock anyway, so no two
//! publishes contend for it); readers take it only to change rings, or to
//! settle, and the owner to read its window (a replay, under the topic's
//! lock) or let go of some of it. A reader is "wanted" from its first join to its leave
//! ([`Elastic::leave`]): outside that its `read_to` is `u64::MAX`, which no
//! floor counts. A shard joins a topic's feed with its first local
//! subscriber of the topic and leaves it with the last, or as it stops.
//!
//! Orderings: `generation` carries no data and is `Relaxed`; so is
//! `read_to` for growth, and Release/Acquire for emptying slots.
//! - `read_to` only ever trails the reader's true cursor, so a stale value
//!   makes the ring grow when it need not have, never lose a message. It
//!   also says which numbers a reader is done with, so that the owner may
//!   empty their slots: the reader stores it with Release after its reads
//!   (and its leave after dropping its reading), and `floor` loads it with
//!   Acquire, so every slot access of the reader below it happens before
//!   the vacate that follows (whose CAS then finds no reader inside and
//!   comes after them in the slot's order: the reader read the value). It
//!   is written by the reader's thread only: after each read,
//!   by its first join (under the lock, at the newest number, where a
//!   reader that holds no other reading of the ring starts; a caller that
//!   says `first` while it keeps an older reading breaks this), and by its
//!   leave (`NOT_READING`, once it has dropped its reading).
//! - `generation` is changed before the publish into the new ring, and
//!   that publish before the wake-up's raise (Release); a reader lowers
//!   its flag (Acquire) before looking at `generation`. A reader woken for
//!   a message in the new ring therefore sees the new generation
//!   (write-read coherence); one that looks earlier reads the old ring to
//!   its end and is woken again. The rings themselves pass through the lock.
//!
//! The window's own rules are unit tests (`elastic/tests.rs`); the emptying
//! of a slot is the ring's `vacate`, with its own loom model
//! (`loom_ring_a_vacate_races_a_reader`, `loom_ring_a_vacate_races_the_next_lap`).
//! The loom models
//! `loom_elastic_ring_grows_under_a_slow_reader_and_loses_nothing`,
//! `loom_elastic_ring_shrinks_under_a_reader_still_reading`,
//! `loom_elastic_ring_settles_and_wakes_its_reader` and
//! `loom_elastic_ring_settles_while_a_publish_grows_it` (`ring/models.rs`)
//! run a publisher, a reader and a settle through growth and shrinking
//! under every interleaving with up to three preemptions.

use std::fmt;
use std::ops::Range;

#[cfg(shardcast_loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(shardcast_loom)]
use loom::sync::Arc;
#[cfg(not(shardcast_loom))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(shardcast_loom))]
use std::sync::Arc;

use super::{Cursor, FanoutRing, Read, Wakes};

/// A reader's `read_to` while it does not read the ring.
const NOT_READING: u64 = u64::MAX;

/// A growing fan-out ring with a wake-up flag per reader.
pub struct Elastic<T> {
    current: lock::Mutex<Current<T>>,
    /// Changed, under the lock, each time a new ring replaces the current.
    generation: AtomicU64,
    /// Times it grew (changed under the lock; a figure for stats).
    growths: AtomicU64,
    /// Per reader: the next number it reads, as it last said; `NOT_READING`
    /// before its first join and after its leave.
    read_to: Box<[AtomicU64]>,
    wakes: Wakes,
    /// Slots it starts with and goes back to, and the most it grows to.
    /// (`min` may be raised: [`Elastic::raise_least`]; changed and read
    /// under the lock but for `least_slots`, a figure.)
    min: AtomicU64,
    max: u64,
    /// The newest numbers its owner keeps for replay (0: none).
    window: u64,
}

impl<T> fmt::Debug for Elastic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elastic")
            .field("min", &self.min.load(Ordering::Relaxed))
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

struct Current<T> {
    ring: Arc<FanoutRing<T>>,
    /// No wanted reader's cursor is below it (cursors only grow, and a
    /// reader joins at the newest number).
    floor: u64,
    /// The first number of the owner's window (see [`Elastic::keeping`]):
    /// from it to the newest, nothing leaves the ring but by a lap at its
    /// most slots. Past the newest when the window is empty.
    kept: u64,
    /// Every number of the current ring below it was emptied
    /// ([`FanoutRing::vacate`]) or lapped.
    vacated: u64,
    /// Every number of the window below it was looked at by a tidy.
    swept: u64,
}

/// A reader's hold on an [`Elastic`] ring: the ring it reads and its cursor.
#[derive(Clone)]
pub struct Reading<T> {
    ring: Arc<FanoutRing<T>>,
    generation: u64,
    cursor: Cursor,
}

impl<T> fmt::Debug for Reading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reading")
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Reading<T> {
    /// The next number it reads.
    pub fn next(&self) -> u64 {
        self.cursor.next()
    }

    /// The slots of the ring it holds.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity()
    }
}

/// What a publish pushed out: the message a lap older and, if the publish
/// changed rings, the old ring; and the message that left the owner's
/// window, if one did. Drop it where dropping costs least (outside a
/// lock).
#[must_use = "drop what a publish displaced outside the publisher's lock"]
#[allow(missing_debug_implementations)] // Only ever dropped.
pub struct Displaced<T> {
    _value: Option<T>,
    _ring: Option<Arc<FanoutRing<T>>>,
    left: Option<T>,
}

impl<T> Displaced<T> {
    /// The message that left the owner's window (see
    /// [`Elastic::keeping`]): the oldest it kept, now one too many.
    pub fn left_window(&self) -> Option<&T> {
        self.left.as_ref()
    }
}

impl<T: Clone> Elastic<T> {
    /// A ring of `min` slots for `readers` readers, growing to at most
    /// `max` (both rounded up to powers of two).
    pub fn new(readers: usize, min: usize, max: usize) -> Self {
        let min = min.max(1).next_power_of_two();
        let max = max.max(min).next_power_of_two();
        Self {
            current: lock::Mutex::new(Current {
                ring: Arc::new(FanoutRing::new(min)),
                floor: 1,
                kept: 1,
                vacated: 1,
                swept: 1,
            }),
            generation: AtomicU64::new(0),
            growths: AtomicU64::new(0),
            read_to: (0..readers).map(|_| AtomicU64::new(NOT_READING)).collect(),
            wakes: Wakes::new(readers),
            min: AtomicU64::new(min as u64),
            max: max as u64,
            window: 0,
        }
    }

    /// The slots of the current ring.
    pub fn capacity(&self) -> u64 {
        self.current.lock().ring.capacity()
    }

    /// The slots it starts with and goes back to.
    pub fn least_slots(&self) -> u64 {
        // Relaxed: changed under the lock, where every decision reads it.
        self.min.load(Ordering::Relaxed)
    }

    /// How many times it has grown.
    pub fn growths(&self) -> u64 {
        // Relaxed: a figure, not a decision.
        self.growths.load(Ordering::Relaxed)
    }

    /// The last number published.
    pub fn claimed(&self) -> u64 {
        self.current.lock().ring.claimed()
    }

    /// Where `reader` starts if it joins now: after every message already
    /// published. `first`: the reader holds no [`Reading`] of this ring (it
    /// did not read it, or let go of it), so it reads from here on, and
    /// the ring takes everything before as read by it. Call it from the
    /// reader's own thread; with `first`, drop any other reading the reader
    /// kept, or the ring may drop messages that reading has not reached.
    pub fn join(&self, reader: usize, first: bool) -> Reading<T> {
        let current = self.current.lock();
        let next = current.ring.claimed() + 1;
        if first {
            self.read_to[reader].store(next, Ordering::Relaxed);
        }
        Reading {
            ring: Arc::clone(&current.ring),
            generation: self.generation.load(Ordering::Relaxed),
            cursor: Cursor::at(next),
        }
    }

    /// `reader` reads the ring no more (it dropped its [`Reading`]): it no
    /// longer holds the ring's growth or its shrinking back. From the
    /// reader's own thread.
    pub fn leave(&self, reader: usize) {
        // Release: its reads happen before any emptying of what it read.
        self.read_to[reader].store(NOT_READING, Ordering::Release);
    }

    /// Publishes the value `make` builds from its number, then raises the
    /// flag of every reader in `readers` (those with news to read: a topic
    /// names the shards with a subscriber), calling `queue` for each whose
    /// flag was clear (see `wake.rs`). Returns the number and what the
    /// publish displaced.
    pub fn publish(
        &self,
        readers: impl Iterator<Item = usize>,
        make: impl FnOnce(u64) -> T,
        queue: impl FnMut(usize),
    ) -> (u64, Displaced<T>) {
        let mut current = self.current.lock();
        let ring = self.resize(&mut current);
        let (seq, mut value) = current.ring.publish_displacing(make);
        let left = self.move_window(&mut current, seq, &mut value);
        drop(current);
        self.wakes.raise_all(readers, queue);
        let displaced = Displaced {
            _value: value,
            _ring: ring,
            left,
        };
        (seq, displaced)
    }

    /// `reader` took the ring from its queue but reads it no more.
    pub fn taken(&self, reader: usize) {
        self.wakes.lower(reader);
    }

    /// The reader's side of one wake-up: lowers `reader`'s flag, takes the
    /// current ring if it changed, then reads from `reading`'s cursor for
    /// at most `budget` steps (see [`Cursor::drain_with`]), handing `each`
    /// every message and `skipped` every run of numbers missed. If it
    /// stopped at the budget, or after a skip, there may be more: it queues
    /// the ring again (`requeue`) unless a publish already has. Returns how
    /// many messages it read.
    #[allow(clippy::too_many_arguments)] // The reader's whole step, in one place for loom.
    pub fn read(
        &self,
        reader: usize,
        reading: &mut Reading<T>,
        budget: usize,
        mut each: impl FnMut(u64, T),
        skipped: impl FnMut(Range<u64>),
        requeue: impl FnOnce(),
    ) -> usize {
        self.wakes.lower(reader);
        let mut old = None;
        if self.generation.load(Ordering::Relaxed) != reading.generation {
            let current = self.current.lock();
            old = Some(std::mem::replace(
                &mut reading.ring,
                Arc::clone(&current.ring),
            ));
            reading.generation = self.generation.load(Ordering::Relaxed);
        }
        // The last reader of an old ring frees it, outside the lock.
        drop(old);
        let mut read = 0;
        let missed = reading.cursor.drain_with(
            &reading.ring,
            budget,
            |number, value| {
                read += 1;
                each(number, value);
            },
            skipped,
        );
        // Release: see the module docs (a slot is emptied only below it).
        self.read_to[reader].store(reading.cursor.next(), Ordering::Release);
        // A spurious requeue costs one empty read, which queues nothing.
        if (read == budget || missed > 0) && self.wakes.raise(reader) {
            requeue();
        }
        read
    }
}

mod lock;
mod resize;
mod window;
pub use window::{Vacated, Window};

#[cfg(all(test, not(shardcast_loom)))]
mod tests;
