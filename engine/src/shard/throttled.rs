//! Throttled subscriptions on one shard: holding what may not go yet,
//! releasing each round when it is due, and counting what a subscription
//! that ends was still holding.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).
//! A subscription is throttled when its channel has a `max_rate`, or its
//! client asked for one ([`crate::ConnCtx::limit_rate`]); see
//! [`crate::sansio::throttle`] for what a round holds. Rounds wait in the
//! shard's `rounds` map by due time; the dispatch loop releases the due ones
//! each turn and sleeps no later than the next.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::delivery::offer;
use super::{ShardState, Subscriber};
use crate::sansio::format::FrameKind;
use crate::sansio::ids::TopicId;
use crate::sansio::message::Message;
use crate::sansio::outbox::{DropReason, EventMeta, Priority};
use crate::sansio::throttle::{Throttle, Throttled};
use crate::stats::Tally;
use crate::topic::Topic;

/// Rounds released per turn of the dispatch loop: a bound on how long
/// throttled subscriptions can keep the shard from its connections, as
/// `FLUSH_SLICE` is for flushing.
const ROUNDS_PER_TURN: usize = 1024;

/// One round: messages in sequence order, each with the number of its
/// topic's messages it follows undelivered.
type Round = Vec<(Arc<Message>, u32)>;

impl ShardState {
    /// Offers `msg` to a throttled subscription of `conn`; `true` if it is
    /// held for a later round (the caller does not deliver it now).
    pub(super) fn hold(
        &self,
        throttle: &RefCell<Throttle>,
        conn: &Rc<Conn>,
        msg: &Arc<Message>,
        now_ns: u64,
        tally: &mut Tally,
    ) -> bool {
        let Throttled::Held {
            replaced,
            dropped,
            schedule_at,
        } = throttle.borrow_mut().offer(msg, now_ns)
        else {
            return false;
        };
        if replaced {
            conn.state.borrow_mut().mailbox.counts.conflated += 1;
            tally.count(msg.topic, |c| c.conflated += 1);
        }
        if dropped {
            let reason = DropReason::OutboxFull;
            conn.state.borrow_mut().mailbox.counts.drop_one(reason);
            tally.count(msg.topic, |c| c.drop_one(reason));
        }
        if let Some(at) = schedule_at {
            let order = self.rounds_scheduled.get();
            self.rounds_scheduled.set(order + 1);
            self.rounds
                .borrow_mut()
                .insert((at, order), (Rc::downgrade(conn), msg.topic));
        }
        true
    }

    /// Delivers the rounds due at `now`, at most [`ROUNDS_PER_TURN`] of
    /// them; says when the next one is due (`now` itself when more are due
    /// already: the caller yields to the connections first).
    pub(super) fn release_rounds(&self, now: Instant) -> Option<Instant> {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        for _ in 0..ROUNDS_PER_TURN {
            let (due, conn, topic) = {
                let mut rounds = self.rounds.borrow_mut();
                let (&(due, order), _) = rounds.first_key_value()?;
                if due > now_ns {
                    return Some(self.epoch + Duration::from_nanos(due));
                }
                let (conn, topic) = rounds.remove(&(due, order)).expect("the first entry");
                (due, conn, topic)
            };
            // A connection gone since needs nothing (its close counted it).
            let Some(conn) = conn.upgrade() else {
                continue;
            };
            let round = self.take_round(&conn, topic, due, now_ns);
            self.deliver_round(&conn, round, now, now_ns);
        }
        (!self.rounds.borrow().is_empty()).then_some(now)
    }

    /// The round of `conn`'s subscription to `topic` scheduled at `due`;
    /// empty if the subscription ended, or was throttled anew, since.
    fn take_round(&self, conn: &Conn, topic: TopicId, due: u64, now_ns: u64) -> Round {
        let slot = {
            let state = conn.state.borrow();
            let held = state.topics.iter().find(|h| h.topic.id() == topic);
            held.map(|h| h.slot.get())
        };
        slot.and_then(|slot| {
            self.with_subscriber(conn, topic, slot, |sub| {
                let mut throttle = sub.extra.as_ref()?.throttle.as_ref()?.borrow_mut();
                (throttle.due_at() == Some(due)).then(|| throttle.take_round(now_ns))
            })
        })
        .flatten()
        .unwrap_or_default()
    }

    /// Offers a round's messages to `conn`, each telling the gap before it.
    fn deliver_round(&self, conn: &Rc<Conn>, round: Round, now: Instant, now_ns: u64) {
        if round.is_empty() {
            return;
        }
        let formats = self.shared().formats();
        let variant = conn.delivery.variant(FrameKind::Live);
        let mut frames = self.live_frames.borrow_mut();
        let mut tally = self.tally.borrow_mut();
        let mut dirty = self.dirty.borrow_mut();
        for (msg, skipped) in round {
            let frame = msg.frame_counted(variant, formats, frames.encoder_mut());
            if skipped > 0 {
                let mut state = conn.state.borrow_mut();
                state.mailbox.outbox.note_gap(msg.topic, skipped);
            }
            let meta =
                EventMeta::live(msg.topic, msg.accepted_at, msg.key_hash()).with_class(msg.class);
            offer(conn, &frame, meta, now, now_ns, &mut tally, &mut dirty);
        }
    }

    /// Counts what subscription `gone` (of `conn` to `topic`, just removed)
    /// was holding: dropped, as `closed` (`shutdown` when the server is
    /// stopping).
    pub(super) fn discard_round(&self, conn: &Conn, topic: TopicId, gone: Subscriber) {
        let Some(throttle) = gone.extra.and_then(|e| e.throttle) else {
            return;
        };
        let held = throttle.borrow().held();
        if held == 0 {
            return;
        }
        let mut state = conn.state.borrow_mut();
        let reason = state.mailbox.closed().unwrap_or(DropReason::Closed);
        for _ in 0..held {
            state.mailbox.counts.drop_one(reason);
        }
        self.tally.borrow_mut().count(topic, |c| {
            for _ in 0..held {
                c.drop_one(reason);
            }
        });
    }

    /// The rate `conn`'s subscription to `topic` (in `slot`) is throttled
    /// to, if it is.
    pub(super) fn rate_of(&self, conn: &Conn, topic: TopicId, slot: usize) -> Option<NonZeroU32> {
        self.with_subscriber(conn, topic, slot, |sub| {
            let throttle = sub.extra.as_ref()?.throttle.as_ref()?;
            let rate = throttle.borrow().per_second();
            Some(rate)
        })
        .flatten()
    }

    /// Throttles `conn`'s subscription to `topic` (in `slot`) to `asked`
    /// rounds a second, or not at all with `None`, within the channel's own
    /// `max_rate`; returns the rate in force. Unthrottled, what it held goes
    /// out now.
    pub(super) fn set_rate(
        &self,
        conn: &Rc<Conn>,
        topic: &Topic,
        slot: usize,
        asked: Option<NonZeroU32>,
    ) -> Option<NonZeroU32> {
        let class = topic.class();
        let rate = match (asked, class.max_rate) {
            // A high-priority topic's messages are never held or conflated.
            _ if class.priority == Priority::High => None,
            (Some(asked), Some(ceiling)) => Some(asked.min(ceiling)),
            (asked, ceiling) => asked.or(ceiling),
        };
        let now = self.now();
        let now_ns = self.now_ns();
        let round = self.with_subscriber(conn, topic.id(), slot, |sub| {
            sub.update_extra(|extra| match (extra.throttle.take(), rate) {
                (Some(throttle), Some(rate)) => {
                    throttle.borrow_mut().set_rate(rate);
                    extra.throttle = Some(throttle);
                    Round::new()
                }
                (None, Some(rate)) => {
                    extra.throttle = Some(RefCell::new(Throttle::new(rate)));
                    Round::new()
                }
                (Some(throttle), None) => throttle.borrow_mut().take_round(now_ns),
                (None, None) => Round::new(),
            })
        });
        debug_assert!(round.is_some(), "subscriber slot out of date");
        let round = round.unwrap_or_default();
        if !round.is_empty() {
            self.deliver_round(conn, round, now, now_ns);
            self.flush(conn);
        }
        rate
    }
}
