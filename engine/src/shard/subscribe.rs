//! A shard's subscriber lists: joining (with the replay answered under the
//! topic's lock) and leaving in O(1).
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::conn::{Conn, Held};
use super::{Extra, ShardState, Subscriber};
use crate::sansio::ids::TopicId;
use crate::sansio::message::MessageFilter;
use crate::sansio::pattern::TopicError;
use crate::sansio::quota::TopicQuota;
use crate::sansio::replay::Replay;
use crate::sansio::throttle::Throttle;
use crate::topic::{SubscribeStart, Topic};

impl ShardState {
    /// Subscribes `conn` to `name`; returns the topic, where it starts, and
    /// the connection's slot in this shard's subscriber list of the topic.
    pub(super) fn subscribe(
        &self,
        conn: &Rc<Conn>,
        name: &str,
        replay: Replay,
        quota: Option<&Arc<TopicQuota>>,
    ) -> Result<(Arc<Topic>, SubscribeStart, usize), TopicError> {
        let mut topic = self.topic(name, quota)?;
        let start = loop {
            match topic.subscribe(self.index, replay) {
                Ok(start) => break start,
                // Retired since the cache saw it: a fresh lookup finds the
                // live topic or creates one (never retired at once).
                Err(_) => topic = self.topic(name, quota)?,
            }
        };
        if start.follow {
            self.shared.follow(&topic);
        }
        self.join_feed(&start.join);
        let mut subscribers = self.subscribers.borrow_mut();
        let list = subscribers.entry(topic.id()).or_default();
        // A channel with a maximum rate throttles every subscription.
        let extra = Extra {
            filter: None,
            throttle: topic
                .class()
                .max_rate
                .map(|r| RefCell::new(Throttle::new(r))),
        };
        list.push(Subscriber {
            conn: Rc::clone(conn),
            joined: start.join.reading.next(),
            extra: extra.boxed(),
        });
        let slot = list.len() - 1;
        Ok((topic, start, slot))
    }

    /// `conn`'s entry in this shard's list of `topic` at `slot`, given to
    /// `f`; `None` when the slot holds another connection's entry.
    pub(super) fn with_subscriber<R>(
        &self,
        conn: &Conn,
        topic: TopicId,
        slot: usize,
        f: impl FnOnce(&mut Subscriber) -> R,
    ) -> Option<R> {
        let mut subscribers = self.subscribers.borrow_mut();
        let sub = subscribers
            .get_mut(&topic)?
            .get_mut(slot)
            .filter(|s| s.conn.key == conn.key)?;
        Some(f(sub))
    }

    /// Sets the filter of `conn`'s subscription `held` (`None`: every
    /// message).
    pub(super) fn set_filter(
        &self,
        conn: &Conn,
        held: &Held,
        filter: Option<Rc<dyn MessageFilter>>,
    ) {
        let set = self.with_subscriber(conn, held.topic.id(), held.slot.get(), |sub| {
            sub.update_extra(|extra| extra.filter = filter)
        });
        debug_assert!(set.is_some(), "subscriber slot out of date");
    }

    /// Removes `conn`'s subscription `held` from this shard's list: a swap
    /// with the last subscriber, whose own slot is then corrected.
    pub(super) fn unsubscribe(&self, conn: &Conn, held: &Held) {
        let topic = &held.topic;
        let mut subscribers = self.subscribers.borrow_mut();
        let Some(list) = subscribers.get_mut(&topic.id()) else {
            return;
        };
        let slot = held.slot.get();
        let pos = if list.get(slot).is_some_and(|s| s.conn.key == conn.key) {
            Some(slot)
        } else {
            debug_assert!(false, "subscriber slot out of date");
            list.iter().position(|s| s.conn.key == conn.key)
        };
        if let Some(pos) = pos {
            let gone = list.swap_remove(pos);
            self.discard_round(conn, topic.id(), gone);
            if let Some(moved) = list.get(pos) {
                let state = moved.conn.state.borrow();
                if let Some(h) = state.topics.iter().find(|h| h.topic.id() == topic.id()) {
                    h.slot.set(pos);
                }
            }
            topic.unsubscribe(self.index);
            // A later subscription starts with no gap of this one's.
            conn.state
                .borrow_mut()
                .mailbox
                .outbox
                .forget_gaps(topic.id());
        }
        if list.is_empty() {
            subscribers.remove(&topic.id());
            self.leave_feed(topic.id());
        }
    }
}
