//! What a full outbox does with a new event. The overflow path only
//! (`#[cold]`); owned by the connection's shard like the outbox itself.
//!
//! A high-priority event is never conflated and never refused while normal
//! events are queued: the oldest normal events go until it fits, and when
//! none are left the connection must close ([`Admission::PriorityOverflow`]).
//!
//! A normal event meets its channel's policy, or the connection's:
//! - `drop_newest`: it is refused;
//! - `drop_oldest`: the oldest queued normal live events go until it fits
//!   ([`Outbox::take_evicted`] names their topics for the counts);
//! - `conflate`: it replaces every queued value of its topic and key, or
//!   makes room as `drop_oldest` does;
//! - `disconnect`: the connection must close.
//!
//! Never touched: control frames, the frame being written, replayed events,
//! high-priority events. Every event that does not reach the client leaves
//! a gap its topic's next event reports (`gaps.rs`).

use bytes::Bytes;

use super::{Admission, DropReason, EventMeta, OutFrame, Outbox, SlowConsumerPolicy};
use crate::sansio::ids::TopicId;

impl Outbox {
    #[cold]
    pub(super) fn refuse(&mut self, bytes: Bytes, meta: EventMeta) -> Admission {
        if meta.is_replay() {
            // A replay never pushes live data out; the caller stops it.
            return Admission::Dropped(DropReason::OutboxFull);
        }
        if meta.is_high() {
            return self
                .evict_for(bytes, meta)
                .unwrap_or(Admission::PriorityOverflow);
        }
        let policy = meta.policy().unwrap_or(self.limits.policy);
        // Larger than the whole outbox: nothing queued could make room.
        if bytes.len() > self.limits.max_bytes {
            return match policy {
                SlowConsumerPolicy::Disconnect => Admission::Disconnect,
                _ => self.dropped(meta),
            };
        }
        match policy {
            SlowConsumerPolicy::Drop => self.dropped(meta),
            SlowConsumerPolicy::Disconnect => Admission::Disconnect,
            SlowConsumerPolicy::DropOldest => self
                .evict_for(bytes, meta)
                .unwrap_or_else(|| self.dropped(meta)),
            SlowConsumerPolicy::Conflate => match self.conflate(bytes, meta) {
                Ok(replaced) => Admission::Conflated(replaced),
                Err(bytes) => self
                    .evict_for(bytes, meta)
                    .unwrap_or_else(|| self.dropped(meta)),
            },
        }
    }

    /// The new event is refused: its topic's next event says so.
    fn dropped(&mut self, meta: EventMeta) -> Admission {
        self.note_gap(meta.topic, 1);
        Admission::Dropped(DropReason::OutboxFull)
    }

    /// Whether the queued `frame` at `index` may be dropped to make room:
    /// a normal live event not being written.
    fn evictable(&self, index: usize, frame: &OutFrame) -> bool {
        frame.event.is_some_and(|e| !e.is_replay() && !e.is_high())
            && !(index == 0 && self.head_written > 0)
    }

    /// Drops the oldest evictable events until the new one fits, and queues
    /// it; `None`, changing nothing, when even that would not make room. A
    /// scan from the front, on the overflow path only; usually the front
    /// frames go.
    fn evict_for(&mut self, bytes: Bytes, meta: EventMeta) -> Option<Admission> {
        let limits = self.limits;
        let fits = |events: usize, queued: usize| {
            events < limits.max_messages && queued + bytes.len() <= limits.max_bytes
        };
        // What an earlier caller did not take is not this event's.
        if let Some(misses) = &mut self.misses {
            misses.evicted.clear();
        }
        let (mut events, mut queued, mut victims) = (self.events, self.queued_bytes, 0);
        for (i, frame) in self.queue.iter().enumerate() {
            if fits(events, queued) {
                break;
            }
            if self.evictable(i, frame) {
                events -= 1;
                queued -= frame.bytes.len();
                victims += 1;
            }
        }
        if !fits(events, queued) {
            return None;
        }
        let mut i = 0;
        while victims > 0 {
            if self.evictable(i, &self.queue[i]) {
                let frame = self.queue.remove(i).expect("index within the queue");
                let victim = frame.event.expect("evictable frames are events");
                self.events -= 1;
                self.queued_bytes -= frame.bytes.len();
                self.misses().evicted.push(victim.topic);
                self.carry_gap(i, victim);
                victims -= 1;
            } else {
                i += 1;
            }
        }
        self.enqueue(bytes, meta);
        Some(Admission::Evicted)
    }

    /// The topics of the events dropped to make room for the last event
    /// admitted as [`Admission::Evicted`]: take them before the next push.
    /// They are taken as the iterator runs (the next eviction forgets any
    /// left).
    pub fn take_evicted(&mut self) -> impl Iterator<Item = TopicId> + '_ {
        self.misses
            .iter_mut()
            .flat_map(|misses| misses.evicted.drain(..))
    }

    /// Replaces every queued, not yet written value of the same topic and
    /// key by the new one, which goes to the back of the queue: a topic's
    /// events stay in sequence order, a key's values only get newer, and a
    /// client behind holds at most one value per key once conflating (its
    /// backlog is bounded by its keys, not by the outbox). Returns how many
    /// it replaced; gives `bytes` back, changing nothing, when there is no
    /// such value (none queued, or only one being written or replayed) or
    /// the new frame would break the byte limit. A scan of the queue, on the
    /// overflow path only.
    fn conflate(&mut self, bytes: Bytes, meta: EventMeta) -> Result<u32, Bytes> {
        if meta.key() == 0 {
            return Err(bytes);
        }
        let same = |frame: &OutFrame| {
            frame
                .event
                .is_some_and(|e| e.key() == meta.key() && e.topic == meta.topic)
        };
        let (mut replaced, mut freed) = (0u32, 0usize);
        for (i, frame) in self.queue.iter().enumerate() {
            if same(frame) && self.evictable(i, frame) {
                replaced += 1;
                freed += frame.bytes.len();
            }
        }
        if replaced == 0 || self.queued_bytes - freed + bytes.len() > self.limits.max_bytes {
            return Err(bytes);
        }
        // From the back, so each removal leaves the indexes before it alone.
        for i in (0..self.queue.len()).rev() {
            if same(&self.queue[i]) && self.evictable(i, &self.queue[i]) {
                let old = self.queue.remove(i).expect("index within the queue");
                let value = old.event.expect("an event of the key");
                self.events -= 1;
                self.queued_bytes -= old.bytes.len();
                self.carry_gap(i, value);
            }
        }
        self.enqueue(bytes, meta);
        Ok(replaced)
    }
}
