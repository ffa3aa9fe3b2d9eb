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

/// Slots of a feed made for a message to keep, before any subscriber.
const KEEPING_SLOTS: usize = 8;

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
    /// Its feed, made now if it has none: for a subscriber (`reader`), of
    /// `topics.ring_slots` slots to begin with (a feed made smaller for
    /// its messages is raised to them); for a message to keep, of a few,
    /// which the window doubles as it fills (a topic that keeps one
    /// message and that nobody reads holds a ring of a few slots).
    pub(super) fn feed<'s>(&self, state: &'s mut TopicState, reader: bool) -> &'s Arc<Feed> {
        let shards = state.shard_subscribers.len();
        let window = state.history.limits().capacity;
        let (slots, max_slots) = self.ring_slots;
        if let (true, Some(feed)) = (reader, &state.feed) {
            // The ring it grows from is let go of by its last reader.
            drop(feed.ring().raise_least(slots));
        }
        let slots = if reader {
            slots
        } else {
            slots.min(KEEPING_SLOTS)
        };
        state.feed.get_or_insert_with(|| {
            Feed::new(
                self.id,
                Arc::clone(&self.name),
                shards,
                (slots, max_slots),
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
        if state.history.limits().capacity > 0 && msg.is_replayed() {
            self.feed(state, false);
        }
        let TopicState {
            history,
            feed,
            shard_subscribers,
            subscribers,
            ..
        } = &mut *state;
        let ring = feed.as_deref().map(Feed::ring);
        let publish = |retention| {
            // A message not kept, with nobody to read it, stays out of the
            // ring: it would only wait there, outside the byte budgets.
            if retention != Retention::Kept && *subscribers == 0 {
                return None;
            }
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

    /// For the periodic sweep, so that a topic nobody reads holds only its
    /// window's kept messages: gives back the room of a ring grown past
    /// what its window and shards need (see [`Feed::settle`]), and empties
    /// the slots of messages its window let go of, or does not keep
    /// (transient ones), once its shards have read them (see
    /// [`crate::ring::Elastic::tidy`]).
    pub(crate) fn tidy(&self, inboxes: &[ShardInbox]) {
        let feed = self.state.lock().feed.clone();
        if let Some(feed) = feed {
            drop(feed.settle(inboxes));
            drop(feed.ring().tidy(|msg| msg.is_replayed()));
        }
    }
}
