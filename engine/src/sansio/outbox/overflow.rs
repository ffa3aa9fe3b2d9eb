//! What a full outbox does with a new event: the connection's
//! [`SlowConsumerPolicy`]. The overflow path only (`#[cold]`); owned by the
//! connection's shard like the outbox itself.
//!
//! - `drop_newest`: the new event is refused.
//! - `drop_oldest`: the oldest queued live events go until it fits
//!   ([`Outbox::take_evicted`] names their topics for the counts).
//! - `conflate`: it replaces the newest queued event of its topic and key,
//!   or makes room as `drop_oldest` does.
//! - `disconnect`: the connection must close.
//!
//! Never touched: control frames, the frame being written, replayed events.

use bytes::Bytes;

use super::{Admission, DropReason, EventMeta, OutFrame, Outbox, SlowConsumerPolicy};
use crate::sansio::ids::TopicId;

impl Outbox {
    #[cold]
    pub(super) fn refuse(&mut self, bytes: Bytes, meta: EventMeta) -> Admission {
        // Larger than the whole outbox: nothing queued could make room.
        if bytes.len() > self.limits.max_bytes {
            return match self.limits.policy {
                SlowConsumerPolicy::Disconnect => Admission::Disconnect,
                _ => Admission::Dropped(DropReason::OutboxFull),
            };
        }
        match self.limits.policy {
            SlowConsumerPolicy::Drop => Admission::Dropped(DropReason::OutboxFull),
            SlowConsumerPolicy::Disconnect => Admission::Disconnect,
            SlowConsumerPolicy::DropOldest => self.evict_for(bytes, meta),
            SlowConsumerPolicy::Conflate => {
                if self.conflate(bytes.clone(), meta) {
                    Admission::Conflated
                } else {
                    self.evict_for(bytes, meta)
                }
            }
        }
    }

    /// Drops the oldest queued live events (never one being written, never
    /// a replayed one) until the new one fits, and queues it; refuses it,
    /// changing nothing, when even that would not make room or it is itself
    /// replayed (a replay never pushes live data out). A scan from the
    /// front, on the overflow path only; usually the front frames go.
    fn evict_for(&mut self, bytes: Bytes, meta: EventMeta) -> Admission {
        let fits = |events: usize, queued: usize| {
            events < self.limits.max_messages && queued + bytes.len() <= self.limits.max_bytes
        };
        let evictable = |i: usize, frame: &OutFrame, head_written: usize| {
            frame.event.is_some_and(|e| !e.is_replay()) && !(i == 0 && head_written > 0)
        };
        if meta.is_replay() {
            return Admission::Dropped(DropReason::OutboxFull);
        }
        // What an earlier caller did not take is not this event's.
        self.evicted.clear();
        let (mut events, mut queued, mut victims) = (self.events, self.queued_bytes, 0);
        for (i, frame) in self.queue.iter().enumerate() {
            if fits(events, queued) {
                break;
            }
            if evictable(i, frame, self.head_written) {
                events -= 1;
                queued -= frame.bytes.len();
                victims += 1;
            }
        }
        if !fits(events, queued) {
            return Admission::Dropped(DropReason::OutboxFull);
        }
        let mut i = 0;
        while victims > 0 {
            if evictable(i, &self.queue[i], self.head_written) {
                let frame = self.queue.remove(i).expect("index within the queue");
                self.events -= 1;
                self.queued_bytes -= frame.bytes.len();
                self.evicted.extend(frame.event.map(|e| e.topic));
                victims -= 1;
            } else {
                i += 1;
            }
        }
        self.events += 1;
        self.queued_bytes += bytes.len();
        self.queue.push_back(OutFrame {
            bytes,
            event: Some(meta),
        });
        Admission::Evicted
    }

    /// The topics of the events dropped to make room for the last event
    /// admitted as [`Admission::Evicted`]: take them before the next push.
    pub fn take_evicted(&mut self) -> std::vec::Drain<'_, TopicId> {
        self.evicted.drain(..)
    }

    /// Replaces the newest queued event of the same topic and key by the
    /// new one, which goes to the back of the queue: a topic's events stay in
    /// sequence order and a key's values only get newer. `false` (nothing
    /// changes) when there is no such event, when it is a replayed one (a
    /// replay is delivered whole), when it has begun to be written, or when
    /// the new frame would break the byte limit. A scan of the queue, on the
    /// overflow path only.
    fn conflate(&mut self, bytes: Bytes, meta: EventMeta) -> bool {
        if meta.key() == 0 || meta.is_replay() {
            return false;
        }
        let found = self.queue.iter().rposition(|f| {
            f.event
                .is_some_and(|e| e.key() == meta.key() && e.topic == meta.topic)
        });
        let Some(index) = found else {
            return false;
        };
        let old = &self.queue[index];
        // The front frame may be partly written: it can no longer change.
        let writing = index == 0 && self.head_written > 0;
        let after = self.queued_bytes - old.bytes.len() + bytes.len();
        if writing || old.event.is_some_and(EventMeta::is_replay) || after > self.limits.max_bytes {
            return false;
        }
        self.queue.remove(index);
        self.queue.push_back(OutFrame {
            bytes,
            event: Some(meta),
        });
        self.queued_bytes = after;
        true
    }
}
