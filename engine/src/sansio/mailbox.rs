//! The per-subscriber step of fan-out, without sockets.
//!
//! Owned by one shard thread (inside a connection's state). A [`Mailbox`]
//! is what a subscriber is to the delivery loop: a rate limiter in front of
//! an outbox, plus the connection's counters. [`Mailbox::offer`] is the whole
//! per-subscriber cost of a published message: no lock, no allocation, no
//! copy — a rate check and a `Bytes` clone pushed onto a `VecDeque`.

use bytes::Bytes;

use crate::sansio::counts::Counts;
use crate::sansio::ids::TopicId;
use crate::sansio::outbox::{Admission, DropReason, EventMeta, GapField, Outbox, OutboxLimits};
use crate::sansio::rate::{RateLimit, RateLimiter};

/// A subscriber's delivery state. Owned by one shard thread.
#[derive(Debug)]
pub struct Mailbox {
    /// Frames waiting for the socket.
    pub outbox: Outbox,
    rate: RateLimiter,
    /// Events sent, replayed and dropped for this subscriber.
    pub counts: Counts,
    closed: Option<DropReason>,
}

impl Mailbox {
    /// An empty mailbox with the given outbox limits.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            outbox: Outbox::new(limits),
            rate: RateLimiter::default(),
            counts: Counts::default(),
            closed: None,
        }
    }

    /// The same mailbox, marking gaps in its frames with `at` (the
    /// connection's format's [`crate::WireFormat::gap_field`]).
    pub fn marking_gaps_with(mut self, at: Option<GapField>) -> Self {
        self.outbox.mark_gaps_with(at);
        self
    }

    /// Refuses every later event, counted under `reason` (the connection
    /// is closing: [`DropReason::Closed`], or [`DropReason::Shutdown`] when
    /// the server is stopping).
    pub fn close(&mut self, reason: DropReason) {
        self.closed.get_or_insert(reason);
    }

    /// Why events are refused now, if they are.
    pub fn closed(&self) -> Option<DropReason> {
        self.closed
    }

    /// Offers one published event at `now_ns` (shard clock). A refusal is
    /// already counted here, under exactly one reason; the caller counts it
    /// for the topic and acts on [`Admission::Disconnect`].
    #[inline]
    pub fn offer(
        &mut self,
        frame: &Bytes,
        meta: EventMeta,
        limit: RateLimit,
        now_ns: u64,
    ) -> Admission {
        self.offer_counting(frame, meta, limit, now_ns, |_| {})
    }

    /// [`Mailbox::offer`], calling `evicted` with the topic of each queued
    /// event dropped to make room for this one (each already counted here
    /// as `outbox_full`; the caller counts it for its topic).
    #[inline]
    pub fn offer_counting(
        &mut self,
        frame: &Bytes,
        meta: EventMeta,
        limit: RateLimit,
        now_ns: u64,
        mut evicted: impl FnMut(TopicId),
    ) -> Admission {
        if let Some(reason) = self.closed {
            return self.refused(reason);
        }
        // High-priority events are never refused for rate, nor use it up.
        if !meta.is_high() && !self.rate.try_acquire(limit, now_ns) {
            self.outbox.note_gap(meta.topic, 1);
            return self.refused(DropReason::RateLimited);
        }
        match self.outbox.push_event(frame.clone(), meta) {
            Admission::Queued => Admission::Queued,
            Admission::Conflated(replaced) => {
                self.counts.conflated += u64::from(replaced);
                Admission::Conflated(replaced)
            }
            Admission::Evicted => {
                for topic in self.outbox.take_evicted() {
                    self.counts.drop_one(DropReason::OutboxFull);
                    evicted(topic);
                }
                Admission::Evicted
            }
            Admission::Dropped(reason) => self.refused(reason),
            admission @ (Admission::Disconnect | Admission::PriorityOverflow) => {
                self.counts.drop_one(DropReason::OutboxFull);
                admission
            }
        }
    }

    #[cold]
    fn refused(&mut self, reason: DropReason) -> Admission {
        self.counts.drop_one(reason);
        Admission::Dropped(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::ids::TopicId;
    use crate::sansio::outbox::SlowConsumerPolicy;
    use std::time::Instant;

    fn meta() -> EventMeta {
        EventMeta::live(TopicId::new(0, 0), Instant::now(), 0)
    }

    #[test]
    fn each_refusal_is_counted_once_under_its_reason() {
        let limits = OutboxLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
            policy: SlowConsumerPolicy::Drop,
        };
        let frame = Bytes::from_static(b"frame");
        let mut mailbox = Mailbox::new(limits);
        let limit = RateLimit::per_second(3);
        let results: Vec<_> = (0..5)
            .map(|_| mailbox.offer(&frame, meta(), limit, 0))
            .collect();
        assert_eq!(
            results,
            vec![
                Admission::Queued,
                Admission::Queued,
                Admission::Dropped(DropReason::OutboxFull),
                Admission::Dropped(DropReason::RateLimited),
                Admission::Dropped(DropReason::RateLimited),
            ]
        );
        mailbox.close(DropReason::Closed);
        assert_eq!(
            mailbox.offer(&frame, meta(), RateLimit::per_second(0), 0),
            Admission::Dropped(DropReason::Closed)
        );
        assert_eq!(mailbox.counts.dropped(DropReason::OutboxFull), 1);
        assert_eq!(mailbox.counts.dropped(DropReason::RateLimited), 2);
        assert_eq!(mailbox.counts.dropped(DropReason::Closed), 1);
        assert_eq!(mailbox.outbox.len(), 2);
    }

    #[test]
    fn a_mailbox_closed_by_shutdown_counts_what_it_refuses_as_shutdown() {
        let limits = OutboxLimits {
            max_messages: 8,
            max_bytes: 1 << 20,
            policy: SlowConsumerPolicy::Drop,
        };
        let mut mailbox = Mailbox::new(limits);
        mailbox.close(DropReason::Shutdown);
        // The first reason given stays.
        mailbox.close(DropReason::Closed);
        assert_eq!(mailbox.closed(), Some(DropReason::Shutdown));
        let frame = Bytes::from_static(b"x");
        let unlimited = RateLimit::per_second(0);
        assert_eq!(
            mailbox.offer(&frame, meta(), unlimited, 0),
            Admission::Dropped(DropReason::Shutdown)
        );
        assert_eq!(mailbox.counts.dropped(DropReason::Shutdown), 1);
    }
}
