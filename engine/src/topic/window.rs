//! A topic's history and its feed's window: recording a message and
//! writing it into the ring whose newest numbers the history replays
//! (`sansio/history.rs`, `ring/elastic.rs`), and keeping both in bounds.

use std::sync::Arc;

use super::{Feed, Topic, TopicState};
use crate::ring::Displaced;
use crate::sansio::budget::MemoryBudget;
use crate::sansio::history::{Retention, Ring};
use crate::sansio::message::Message;
use crate::shard::ShardInbox;

impl TopicState {
    /// The ring of its feed, if it has one.
    pub(super) fn ring(&self) -> Option<&Ring> {
        self.feed.as_deref().map(Feed::ring)
    }

    /// Empties its history's window (the snapshot keeps its entries).
    pub(super) fn clear_window(&mut self, budget: &MemoryBudget) {
        let Self { history, feed, .. } = self;
        history.clear_window(feed.as_deref().map(Feed::ring), budget);
    }

    /// Drops its whole history, window and snapshot.
    pub(super) fn clear_history(&mut self, budget: &MemoryBudget) {
        let Self { history, feed, .. } = self;
        history.clear(budget, feed.as_deref().map(Feed::ring));
    }
}

impl Topic {
    /// Its feed, made now if it has none.
    pub(super) fn feed<'s>(&self, state: &'s mut TopicState) -> &'s Arc<Feed> {
        let shards = state.shard_subscribers.len();
        let window = state.history.limits().capacity;
        state.feed.get_or_insert_with(|| {
            Feed::new(
                self.id,
                Arc::clone(&self.name),
                shards,
                self.ring_slots,
                window,
            )
        })
    }

    /// Records `msg` (the topic's next message) in the history and writes
    /// it into the feed, if it keeps a window or anybody reads it; returns
    /// what the feed displaced, to be dropped after the lock.
    pub(super) fn append(
        &self,
        state: &mut TopicState,
        msg: &Arc<Message>,
        inboxes: &[ShardInbox],
    ) -> Option<Displaced<Arc<Message>>> {
        if state.history.limits().capacity > 0 {
            self.feed(state);
        }
        let TopicState {
            history,
            feed,
            shard_subscribers,
            ..
        } = &mut *state;
        let ring = feed.as_deref().map(Feed::ring);
        let publish = || {
            let feed = feed.as_ref()?;
            Some(feed.publish(msg, shard_subscribers, inboxes))
        };
        let (retention, displaced) = history.record(msg, &self.budget, ring, publish);
        match retention {
            // Held state is what the charge was waiting for: it ends now.
            Retention::Kept => drop(state.charge.take()),
            Retention::NotApplicable => {}
            Retention::Refused => state.retention_refused += 1,
        }
        displaced
    }

    /// Evicts this topic's oldest retained messages down to `max_bytes`.
    pub(crate) fn trim_history(&self, max_bytes: usize) {
        let mut state = self.state.lock();
        if state.history.bytes() > max_bytes {
            let TopicState { history, feed, .. } = &mut *state;
            let ring = feed.as_deref().map(Feed::ring);
            history.trim_to(max_bytes, &self.budget, ring);
        }
    }

    /// Empties the slots of messages its window let go of and its shards
    /// have read (see [`crate::ring::Elastic::tidy`]): for the periodic
    /// sweep, so that a topic nobody reads holds only its window.
    pub(crate) fn tidy(&self) {
        let feed = self.state.lock().feed.clone();
        if let Some(feed) = feed {
            drop(feed.ring().tidy());
        }
    }
}
