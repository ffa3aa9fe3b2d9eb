//! Delivery on one shard: messages into outboxes, outboxes onto sockets.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).
//!
//! Delivery of one message (see [`ShardState::dispatch`]):
//! 1. find the topic's local subscriber list; none means no work;
//! 2. take the message's frame for each wire format used, plain or
//!    compressed as each subscriber negotiated (encoded, and compressed,
//!    once per message across all shards, then a refcount clone);
//! 3. per subscriber: skip messages from before it subscribed (by the
//!    message's number in the topic's feed) and messages
//!    its filter leaves out (counted as `filtered`; its session is woken
//!    when the filter asks, [`crate::MessageFilter::wakes_session`]), and
//!    offer the frame to its [`crate::Mailbox`] (rate limit, outbox); a
//!    refusal is counted once per view (connection and topic) with its
//!    reason;
//! 4. connections that got frames wait in FIFO order for the flush, which
//!    writes each one when its oldest frame has waited the pacer's delay.
//!
//! No lock, allocation or serialization happens per subscriber.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use crate::sansio::close::CloseReason;
use crate::sansio::encoder::Encoder;
use crate::sansio::format::{Formats, FrameKind, Variant};
use crate::sansio::message::Message;
use crate::sansio::outbox::{Admission, DropReason, EventMeta, MAX_IOVECS};
use crate::sansio::pacer;
use crate::shard::conn::Conn;
use crate::shard::ShardState;
use crate::stats::Tally;

/// Connections written per flush slice before the shard goes back to its
/// inbox and its connections' reads. A bound on how long one turn can keep the
/// shard from reading, not a tuning knob: slices of 128 raised CPU at 1M
/// deliveries/s from 68% to 93% (fewer frames per write) for 10% lower p99.
const FLUSH_SLICE: usize = 1024;

/// What the dispatch loop should do about flushing next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flush {
    /// Nothing is waiting.
    Idle,
    /// The next connection is due then.
    At(Instant),
    /// Connections are due now beyond this slice.
    Backlog,
}

impl Flush {
    /// This, or waking at `at` if that comes first.
    pub(super) fn or_at(self, at: Option<Instant>) -> Self {
        match (self, at) {
            (Flush::Idle, Some(at)) => Flush::At(at),
            (Flush::At(flush), Some(at)) => Flush::At(flush.min(at)),
            (flush, _) => flush,
        }
    }
}

/// The live frame of each format, plain and compressed, for the message
/// being dispatched: one slot per registered format and compression,
/// filled on first use and emptied after the message, so each subscriber's
/// frame is an index, never a lock or a lookup in the message's cache.
/// Owned by one shard thread.
pub(super) struct LiveFrames {
    slots: Vec<Option<Bytes>>,
    used: Vec<usize>,
    /// What this shard encoded and compressed, by format index.
    encoder: Encoder,
}

impl LiveFrames {
    /// Room for `formats` formats.
    pub(super) fn new(formats: usize) -> Self {
        Self {
            slots: vec![None; 2 * formats],
            used: Vec::new(),
            encoder: Encoder::new(formats),
        }
    }

    #[inline]
    fn get(&mut self, msg: &Message, variant: Variant, formats: &Formats) -> &Bytes {
        let index = 2 * variant.format.index() + usize::from(variant.deflated);
        let slot = &mut self.slots[index];
        if slot.is_none() {
            *slot = Some(msg.frame_counted(variant, formats, &mut self.encoder));
            self.used.push(index);
        }
        slot.as_ref().expect("filled above")
    }

    /// What this shard encoded and compressed.
    pub(super) fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The encoder, for frames encoded outside a dispatch (replays).
    pub(super) fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Drops the frames of the message just dispatched.
    #[inline]
    fn clear(&mut self) {
        for index in self.used.drain(..) {
            self.slots[index] = None;
        }
    }
}

/// Offers one event's `frame` to `conn`, counting a refusal for its topic,
/// queuing the connection for the flush, or closing it as its admission
/// says. The per-subscriber step of [`ShardState::dispatch`].
#[inline]
pub(super) fn offer(
    conn: &Rc<Conn>,
    frame: &Bytes,
    meta: EventMeta,
    now: Instant,
    now_ns: u64,
    tally: &mut Tally,
    dirty: &mut VecDeque<(Instant, Rc<Conn>)>,
) {
    let mut state = conn.state.borrow_mut();
    let admission =
        state
            .mailbox
            .offer_counting(frame, meta, conn.delivery.rate_limit, now_ns, |topic| {
                tally.count(topic, |c| c.drop_one(DropReason::OutboxFull))
            });
    match admission {
        Admission::Conflated(replaced) => {
            tally.count(meta.topic, |c| c.conflated += u64::from(replaced))
        }
        Admission::Queued | Admission::Evicted => {
            if !state.dirty {
                state.dirty = true;
                dirty.push_back((now, Rc::clone(conn)));
            }
        }
        Admission::Dropped(reason) => tally.count(meta.topic, |c| c.drop_one(reason)),
        Admission::Disconnect | Admission::PriorityOverflow => {
            tally.count(meta.topic, |c| c.drop_one(DropReason::OutboxFull));
            drop(state);
            conn.request_close(if admission == Admission::Disconnect {
                CloseReason::SlowConsumer
            } else {
                CloseReason::PriorityOverflow
            });
        }
    }
}

impl ShardState {
    /// Offers `msg`, number `number` of its topic's feed, to every local
    /// subscriber of its topic that joined the feed by then.
    pub(super) fn dispatch(&self, msg: &Arc<Message>, number: u64) {
        let subscribers = self.subscribers.borrow();
        let Some(list) = subscribers.get(&msg.topic) else {
            return;
        };
        let formats = self.shared().formats();
        let now_ns = self.now_ns();
        let meta =
            EventMeta::live(msg.topic, msg.accepted_at, msg.key_hash()).with_class(msg.class);
        let mut frames = self.live_frames.borrow_mut();
        let mut tally = self.tally.borrow_mut();
        let mut dirty = self.dirty.borrow_mut();
        let now = self.now();
        let mut filtered = 0;
        for sub in list {
            if number < sub.joined {
                continue;
            }
            let conn = &sub.conn;
            if let Some(extra) = &sub.extra {
                if let Some(filter) = extra.filter.as_ref().filter(|f| !f.admits(msg)) {
                    let mut state = conn.state.borrow_mut();
                    state.mailbox.counts.filtered += 1;
                    filtered += 1;
                    if filter.wakes_session() && !std::mem::replace(&mut state.woken, true) {
                        drop(state);
                        conn.notify();
                    }
                    continue;
                }
                if let Some(throttle) = &extra.throttle {
                    if self.hold(throttle, conn, msg, now_ns, &mut tally) {
                        continue;
                    }
                }
            }
            let frame = frames.get(msg, conn.delivery.variant(FrameKind::Live), formats);
            offer(conn, frame, meta, now, now_ns, &mut tally, &mut dirty);
        }
        if filtered > 0 {
            tally.count(msg.topic, |c| c.filtered += filtered);
        }
        frames.clear();
    }

    /// Writes connections whose oldest unflushed event has waited the
    /// pacer's delay, at most [`FLUSH_SLICE`] of them; says what is next.
    ///
    /// The slice bounds a turn: flushing thousands of connections at once
    /// lets messages pile up meanwhile, and the next turn dirties them all at
    /// the same instant so they come due together again.
    pub(super) fn flush_due(&self, now: Instant) -> Flush {
        let delay = self.pacer.borrow().delay();
        for _ in 0..FLUSH_SLICE {
            let entry = {
                let mut dirty = self.dirty.borrow_mut();
                match dirty.front() {
                    Some(&(since, _)) if since + delay > now => return Flush::At(since + delay),
                    Some(_) => dirty.pop_front(),
                    None => return Flush::Idle,
                }
            };
            if let Some((_, conn)) = entry {
                conn.state.borrow_mut().dirty = false;
                self.flush(&conn);
            }
        }
        match self.dirty.borrow().front() {
            Some(&(since, _)) if since + delay > now => Flush::At(since + delay),
            Some(_) => Flush::Backlog,
            None => Flush::Idle,
        }
    }

    /// Queues `conn`, which has frames to write that are not events (a
    /// heartbeat), for the next flush.
    pub(super) fn queue_flush(&self, conn: &Rc<Conn>, now: Instant) {
        let mut state = conn.state.borrow_mut();
        if !state.dirty {
            state.dirty = true;
            self.dirty.borrow_mut().push_back((now, Rc::clone(conn)));
        }
    }

    /// Writes every connection with unflushed events, now.
    pub(super) fn flush_dirty(&self) {
        let list = std::mem::take(&mut *self.dirty.borrow_mut());
        for (_, conn) in list {
            conn.state.borrow_mut().dirty = false;
            self.flush(&conn);
        }
    }

    /// Feeds the pacer once per window with this thread's CPU use.
    pub(super) fn pace(&self, now: Instant) {
        let (since, cpu_then) = self.pace_window.get();
        let wall = now.saturating_duration_since(since);
        if wall < pacer::WINDOW {
            return;
        }
        let cpu_now = pacer::thread_cpu_time();
        if let (Some(then), Some(cpu)) = (cpu_then, cpu_now) {
            let before = self.pacer.borrow().delay();
            let after = self
                .pacer
                .borrow_mut()
                .observe(cpu.saturating_sub(then), wall);
            if before.is_zero() != after.is_zero() {
                debug!(
                    shard = self.index(),
                    delay_us = after.as_micros() as u64,
                    "flush coalescing changed"
                );
            }
        }
        self.pace_window.set((now, cpu_now));
    }

    /// The pacer's current coalescing delay.
    pub(super) fn flush_delay(&self) -> Duration {
        self.pacer.borrow().delay()
    }

    /// Writes as much of `conn`'s outbox as the socket takes now, many
    /// frames per `writev`. On `WouldBlock` the connection waits for its
    /// socket's next writable event, and its owner calls this again. A TLS
    /// connection takes the frames into its session, sealed into records,
    /// and each turn of the loop first writes the records the last one
    /// made (see `transport.rs`).
    pub(super) fn flush(&self, conn: &Conn) {
        let mut state = conn.state.borrow_mut();
        if state.write_blocked || state.broken {
            return;
        }
        loop {
            let result = match conn.transport.push() {
                Ok(()) if state.mailbox.outbox.is_empty() => break,
                Ok(()) => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let n = state.mailbox.outbox.io_slices(&mut slices);
                    conn.transport.write_vectored(&slices[..n])
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(0) => {
                    state.broken = true;
                    drop(state);
                    conn.request_close(CloseReason::ConnectionLost);
                    return;
                }
                Ok(written) => {
                    let now = Instant::now();
                    let mut counters = self.write_counters.borrow_mut();
                    counters.writes += 1;
                    counters.bytes += written as u64;
                    let mut latency = self.latency_us.borrow_mut();
                    let mut tally = self.tally.borrow_mut();
                    let mailbox = &mut state.mailbox;
                    let counts = &mut mailbox.counts;
                    mailbox.outbox.advance(written, |frame| {
                        let Some(meta) = frame.event else { return };
                        if meta.is_replay() {
                            counts.replayed += 1;
                            tally.count(meta.topic, |c| c.replayed += 1);
                        } else {
                            counts.sent += 1;
                            tally.count(meta.topic, |c| c.sent += 1);
                            let micros = now.duration_since(meta.accepted_at()).as_micros() as u64;
                            latency.saturating_record(micros.max(1));
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket's next writable event brings the driver
                    // (or the closing task) back (`poller.rs`).
                    state.write_blocked = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    info!(client = %conn.client_id, peer = %conn.peer(), error = %e, "write failed");
                    state.broken = true;
                    drop(state);
                    conn.request_close(CloseReason::ConnectionLost);
                    return;
                }
            }
        }
        if state.closing.is_some() {
            drop(state);
            conn.notify();
        }
    }

    /// Counts the events a closing connection will never send, under the
    /// reason its mailbox was closed for.
    pub(super) fn count_undelivered(&self, conn: &Conn) {
        let mut state = conn.state.borrow_mut();
        let mailbox = &mut state.mailbox;
        let reason = mailbox.closed().unwrap_or(DropReason::Closed);
        let mut tally = self.tally.borrow_mut();
        for frame in mailbox.outbox.clear() {
            let Some(meta) = frame.event else { continue };
            if meta.is_replay() {
                continue;
            }
            mailbox.counts.drop_one(reason);
            tally.count(meta.topic, |c| c.drop_one(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::format::WireFormat;
    use crate::sansio::ids::{Epoch, TopicId};
    use crate::sansio::message::Stamp;
    use std::time::SystemTime;

    struct Named(&'static str);

    impl WireFormat for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn encode_event(&self, msg: &Message, _: FrameKind) -> Bytes {
            Bytes::from(format!("{}:{}", self.0, msg.seq))
        }
        fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
            None
        }
    }

    #[test]
    fn each_format_gets_its_own_frame_of_the_current_message_only() {
        let mut formats = Formats::default();
        let ids: Vec<crate::FormatId> = ["a", "b", "c", "d", "e", "f"]
            .into_iter()
            .map(|name| formats.register(Arc::new(Named(name))).unwrap())
            .collect();
        let message = |seq| {
            let stamp = Stamp::now();
            Message::new(
                TopicId::new(0, 0),
                "t".into(),
                Epoch::from_u64(1),
                seq,
                None,
                Bytes::new(),
                stamp,
            )
        };
        let mut frames = LiveFrames::new(formats.len());
        for seq in 1..=2 {
            let msg = message(seq);
            for &id in ids.iter().rev().chain(&ids) {
                let want = format!("{}:{seq}", formats.get(id).name());
                let live = id.variant(FrameKind::Live);
                assert_eq!(&frames.get(&msg, live, &formats)[..], want.as_bytes());
            }
            frames.clear();
            assert!(frames.slots.iter().all(Option::is_none));
        }
    }
}
