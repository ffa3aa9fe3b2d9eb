//! A shard's subscriber lists: joining (with the replay answered under the
//! topic's lock) and leaving in O(1).
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).

use std::rc::Rc;
use std::sync::Arc;

use super::conn::{Conn, Held};
use super::{ShardState, Subscriber};
use crate::sansio::message::MessageFilter;
use crate::sansio::pattern::TopicError;
use crate::sansio::quota::TopicQuota;
use crate::sansio::replay::Replay;
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
        let mut subscribers = self.subscribers.borrow_mut();
        let list = subscribers.entry(topic.id()).or_default();
        list.push(Subscriber {
            conn: Rc::clone(conn),
            after_seq: start.position.seq,
            filter: None,
        });
        let slot = list.len() - 1;
        Ok((topic, start, slot))
    }

    /// Sets the filter of `conn`'s subscription `held` (`None`: every
    /// message).
    pub(super) fn set_filter(
        &self,
        conn: &Conn,
        held: &Held,
        filter: Option<Rc<dyn MessageFilter>>,
    ) {
        let mut subscribers = self.subscribers.borrow_mut();
        let Some(list) = subscribers.get_mut(&held.topic.id()) else {
            return;
        };
        if let Some(sub) = list
            .get_mut(held.slot.get())
            .filter(|s| s.conn.key == conn.key)
        {
            sub.filter = filter.map(Box::new);
        } else {
            debug_assert!(false, "subscriber slot out of date");
        }
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
            list.swap_remove(pos);
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
        }
    }
}
