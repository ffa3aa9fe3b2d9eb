//! A connection's bounded queue of complete frames waiting for the socket.
//!
//! Owned by one shard thread (it lives inside the connection's state). Sans-IO:
//! [`Outbox::push_event`] admits or refuses a frame and says why, and
//! [`Outbox::io_slices`] / [`Outbox::advance`] let the caller hand many frames
//! to one vectored write and then retire what the kernel took.
//!
//! Invariants:
//! - `queued_bytes` is the sum of the lengths of the queued frames, minus the
//!   part of the front frame already written (`head_written`).
//! - Event frames are admitted only while both limits hold (past them the
//!   event's channel policy, or else the connection's [`SlowConsumerPolicy`],
//!   decides: drop the newest, drop the oldest queued events to make room,
//!   replace the queued values of the same topic and key, or disconnect —
//!   `overflow.rs`); high-priority events go ahead of normal ones and only
//!   normal ones make room for them; an event after events of its topic that
//!   were not delivered says how many (`gaps.rs`); control frames
//!   (acks, errors, heartbeats, pongs, close) get a small fixed headroom so a
//!   full outbox can still say why it is closing, and no more, so a client that
//!   never reads cannot grow the queue without bound.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

use crate::sansio::ids::TopicId;
pub use gaps::{first_in_object, GapField};
pub use meta::{clock_origin, ClassRule, DeliveryClass, EventMeta, Priority};

/// Control frames admitted past the event limits before the connection is
/// declared a slow consumer.
const CONTROL_HEADROOM: usize = 64;

/// Bytes of control frames admitted past the event limits: room for the
/// largest replies (an ack naming 256 channels of 256 bytes, escaped, with
/// their positions, is under 200 KiB) without
/// letting a client that never reads pile up megabytes of them.
const CONTROL_HEADROOM_BYTES: usize = 1024 * 1024;

/// The most frames handed to one `writev` (Linux allows 1024; 64 frames of
/// market data already fill a typical 64 KiB socket buffer).
pub const MAX_IOVECS: usize = 64;

/// What a full outbox does with the next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Drop the new event and count it; the connection stays open
    /// (`drop_newest`).
    Drop,
    /// Drop the oldest queued, not yet written live events to make room for
    /// the new one, counting each: a client that falls behind ends with the
    /// newest data (`drop_oldest`).
    DropOldest,
    /// Close the connection with [`crate::CloseReason::SlowConsumer`].
    Disconnect,
    /// Replace every queued, not yet written value of the same topic and
    /// key by the new one (counted as conflated, not as drops), so the
    /// client ends with the latest value of every key; an event with no
    /// such value (or no key) makes room as with `DropOldest`.
    Conflate,
}

impl SlowConsumerPolicy {
    /// Its name in configuration: `drop_newest`, `drop_oldest`,
    /// `disconnect`, `conflate`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop_newest",
            Self::DropOldest => "drop_oldest",
            Self::Disconnect => "disconnect",
            Self::Conflate => "conflate",
        }
    }
}

/// Bounds on one connection's outbox. Both hold at once.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    /// Most event frames queued.
    pub max_messages: usize,
    /// Most bytes queued.
    pub max_bytes: usize,
    /// What happens when an event does not fit.
    pub policy: SlowConsumerPolicy,
}

/// Why an event was not delivered. Every drop is counted under exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The connection's outbox was full: the new event (policy
    /// `drop_newest`), or a queued one dropped to make room for it
    /// (`drop_oldest`, `conflate`).
    OutboxFull,
    /// The connection exceeded its per-second event rate.
    RateLimited,
    /// The shard fell a whole lap behind the topic's feed: the server
    /// itself was overloaded (or `ring_max_slots` too small for a burst).
    ShardOverflow,
    /// The connection closed with the event still queued.
    Closed,
    /// The server shut down with the event accepted but not yet written.
    Shutdown,
}

impl DropReason {
    /// Every reason, for metrics that list all of them.
    pub const ALL: [DropReason; 5] = [
        Self::OutboxFull,
        Self::RateLimited,
        Self::ShardOverflow,
        Self::Closed,
        Self::Shutdown,
    ];

    /// A stable snake_case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::OutboxFull => "outbox_full",
            Self::RateLimited => "rate_limited",
            Self::ShardOverflow => "shard_overflow",
            Self::Closed => "closed",
            Self::Shutdown => "shutdown",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The outcome of offering a frame to an outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Queued for writing.
    Queued,
    /// Took the place of this many queued values of the same topic and
    /// key, which will never be written (policy `conflate`); the caller
    /// counts them.
    Conflated(u32),
    /// Queued after the oldest queued live events were dropped to make
    /// room (policies `drop_oldest` and `conflate`); their topics wait in
    /// [`Outbox::take_evicted`], for the caller to count.
    Evicted,
    /// Refused; the caller counts the drop.
    Dropped(DropReason),
    /// Refused, and the connection must close as a slow consumer.
    Disconnect,
    /// A high-priority event could not be queued even after every normal
    /// event made room: the connection must close
    /// ([`crate::CloseReason::PriorityOverflow`]) rather than miss it.
    PriorityOverflow,
}

/// A queued frame. Event frames remember their topic and publish time so the
/// writer can count deliveries and record latency.
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// The complete frame, shared with every other subscriber.
    pub bytes: Bytes,
    /// `Some` for published events; `None` for control frames.
    pub event: Option<EventMeta>,
}

/// A connection's queue of frames. Owned by one shard thread.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<OutFrame>,
    events: usize,
    queued_bytes: usize,
    /// Bytes of queued control frames (whole frames, until fully written).
    control_bytes: usize,
    head_written: usize,
    limits: OutboxLimits,
    /// What it missed, once it has missed anything: most connections never
    /// do, and every connection pays for the room inline
    /// (docs/architecture.md, *Memory per connection*).
    misses: Option<Box<Misses>>,
    /// Where this connection's format says so in a frame.
    gap_field: Option<GapField>,
}

/// What an outbox missed and has not told yet.
#[derive(Debug, Default)]
struct Misses {
    /// Topics of the events dropped to make room, until the caller takes them.
    evicted: Vec<TopicId>,
    /// Per topic, events missed that no queued event says yet (`gaps.rs`).
    gaps: Vec<(TopicId, u32)>,
}

impl Outbox {
    /// An empty outbox; it allocates on first use.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            queue: VecDeque::new(),
            events: 0,
            queued_bytes: 0,
            control_bytes: 0,
            head_written: 0,
            limits,
            misses: None,
            gap_field: None,
        }
    }

    /// Offers an event frame.
    #[inline]
    pub fn push_event(&mut self, bytes: Bytes, meta: EventMeta) -> Admission {
        if !self.fits(bytes.len()) {
            return self.refuse(bytes, meta);
        }
        if self.has_gaps() || meta.is_high() {
            self.enqueue(bytes, meta);
            return Admission::Queued;
        }
        self.events += 1;
        self.queued_bytes += bytes.len();
        self.push_back(OutFrame {
            bytes,
            event: Some(meta),
        });
        Admission::Queued
    }

    /// Queues `frame` last. An empty queue makes room for one frame
    /// (64 bytes), not the four a `VecDeque` would (256): most connections
    /// hold one at a time, and [`Outbox::advance`] frees that room as soon
    /// as the frame is written.
    #[inline]
    fn push_back(&mut self, frame: OutFrame) {
        self.room_for_one();
        self.queue.push_back(frame);
    }

    /// Room for one frame in a queue that has none (see `push_back`).
    #[inline]
    fn room_for_one(&mut self) {
        if self.queue.capacity() == 0 {
            self.queue.reserve_exact(1);
        }
    }

    /// Whether one more event of `len` bytes is within both limits.
    #[inline]
    fn fits(&self, len: usize) -> bool {
        self.events < self.limits.max_messages && self.queued_bytes + len <= self.limits.max_bytes
    }

    /// Queues an event known to fit: marked with the gap before it, if
    /// any, and, if it is high priority, ahead of the normal events of other
    /// topics queued after the last control frame, high event or event of
    /// its own topic (so replies, alerts and a topic's own order all hold).
    #[cold]
    pub(super) fn enqueue(&mut self, bytes: Bytes, meta: EventMeta) {
        let missed = if meta.is_replay() {
            0
        } else {
            self.take_gap(meta.topic)
        };
        let (bytes, meta) = if missed > 0 {
            self.marked(bytes, meta, missed)
        } else {
            (bytes, meta)
        };
        self.events += 1;
        self.queued_bytes += bytes.len();
        let frame = OutFrame {
            bytes,
            event: Some(meta),
        };
        if !meta.is_high() {
            self.push_back(frame);
            return;
        }
        // It overtakes only normal events of other topics: never a control
        // frame (the ack that starts its subscription comes first), another
        // high event, anything of its own topic (its replay or snapshot), or
        // the frame being written.
        let barrier = self
            .queue
            .iter()
            .rposition(|f| f.event.is_none_or(|e| e.is_high() || e.topic == meta.topic));
        let written = usize::from(self.head_written > 0);
        let at = barrier.map_or(0, |i| i + 1).max(written);
        self.room_for_one();
        self.queue.insert(at, frame);
    }

    /// Offers a control frame (ack, error, heartbeat, pong, close). These are
    /// never dropped silently: past the headroom (in frames or in bytes) the
    /// connection must close.
    pub fn push_control(&mut self, bytes: Bytes) -> Admission {
        let control = self.queue.len() - self.events;
        if control >= CONTROL_HEADROOM || self.control_bytes + bytes.len() > CONTROL_HEADROOM_BYTES
        {
            return Admission::Disconnect;
        }
        self.control_bytes += bytes.len();
        self.queued_bytes += bytes.len();
        self.push_back(OutFrame { bytes, event: None });
        Admission::Queued
    }

    /// Queues the final close frame, past every limit: nothing follows it.
    pub fn push_close(&mut self, bytes: Bytes) {
        self.control_bytes += bytes.len();
        self.queued_bytes += bytes.len();
        self.push_back(OutFrame { bytes, event: None });
    }

    /// Whether nothing is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Frames waiting (events and control).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Control frames waiting (acks, errors, pongs, heartbeats).
    pub fn control_frames(&self) -> usize {
        self.queue.len() - self.events
    }

    /// Whether the control frames waiting fill half of their headroom, in
    /// frames or in bytes: time to write them before queuing more.
    pub fn control_half_full(&self) -> bool {
        self.control_frames() >= CONTROL_HEADROOM / 2
            || self.control_bytes >= CONTROL_HEADROOM_BYTES / 2
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Fills `out` with the unwritten bytes of the first frames; returns how many slices.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, frame) in self.queue.iter().take(out.len()).enumerate() {
            let bytes = if i == 0 {
                &frame.bytes[self.head_written..]
            } else {
                &frame.bytes[..]
            };
            out[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Retires `written` bytes from the front; calls `on_done` for every
    /// frame completely written.
    pub fn advance(&mut self, mut written: usize, mut on_done: impl FnMut(&OutFrame)) {
        self.queued_bytes -= written;
        while written > 0 {
            let Some(front) = self.queue.front() else {
                debug_assert!(false, "advanced past the queue");
                return;
            };
            let rest = front.bytes.len() - self.head_written;
            if written < rest {
                self.head_written += written;
                return;
            }
            written -= rest;
            self.head_written = 0;
            let frame = self.queue.pop_front().expect("front exists");
            if frame.event.is_some() {
                self.events -= 1;
            } else {
                self.control_bytes -= frame.bytes.len();
            }
            on_done(&frame);
        }
        // A queue that never held more than one frame goes with it: a
        // connection that gets a frame now and then holds none between.
        if self.queue.is_empty() && self.queue.capacity() == 1 {
            self.queue = VecDeque::new();
        }
    }

    /// Empties the queue, returning the events that will never be written.
    pub fn clear(&mut self) -> impl Iterator<Item = OutFrame> + '_ {
        self.events = 0;
        self.queued_bytes = 0;
        self.control_bytes = 0;
        self.head_written = 0;
        self.queue.drain(..).filter(|f| f.event.is_some())
    }

    /// Frees the queue's memory once it is empty. Called from the shard's
    /// tick: a queue that grew past one frame is not freed after each write
    /// (a busy connection frees and grows its queue at most once per tick,
    /// four times a second, whatever its message rate), and an idle
    /// connection holds none (a queue of 4 frames is 256 bytes, a quarter
    /// of what a connection costs).
    pub fn shrink_if_idle(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        if self
            .misses
            .as_ref()
            .is_some_and(|m| m.evicted.is_empty() && m.gaps.is_empty())
        {
            self.misses = None;
        }
    }

    /// Whether some topic's next event must say how many were missed.
    #[inline]
    fn has_gaps(&self) -> bool {
        self.misses.as_ref().is_some_and(|m| !m.gaps.is_empty())
    }

    /// What it missed, made room for.
    #[cold]
    fn misses(&mut self) -> &mut Misses {
        self.misses.get_or_insert_with(Box::default)
    }
}

mod gaps;
#[cfg(test)]
mod lanes_tests;
mod meta;
mod overflow;
#[cfg(test)]
mod tests;
