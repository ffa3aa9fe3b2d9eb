//! A shard's reading of topic feeds: each topic with a local subscriber is
//! read at this shard's own cursor in its fan-out ring, once per wake-up.
//!
//! Owned by one shard thread (an `impl` block of [`ShardState`](super::ShardState)).
//!
//! The shard joins a topic's feed with its first local subscriber, at the
//! number the topic hands out under its lock (the one after the last
//! message the subscriber's replay holds), and leaves it with its last;
//! each subscriber keeps its own join number and is offered messages from
//! there on. A feed arrives in the inbox's queue when it has news; the
//! shard lowers its flag, reads every message from its cursor, and offers
//! each to the topic's local subscribers ([`ShardState::dispatch`]). A
//! shard that falls a whole lap behind a feed skips to the oldest message
//! still there and counts every delivery it missed as `shard_overflow`:
//! one per missed message per local subscriber that had joined by it.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::ShardState;
use crate::ring::Reading;
use crate::sansio::ids::TopicId;
use crate::sansio::message::Message;
use crate::sansio::outbox::DropReason;
use crate::topic::{Feed, Join};

/// This shard's reading of one topic's feed. Shared (`Rc`) with a read in
/// progress, so that the map of readings is not borrowed while the read
/// dispatches messages.
pub(super) struct FeedReader {
    feed: Arc<Feed>,
    reading: RefCell<Reading<Arc<Message>>>,
}

impl FeedReader {
    fn new(join: &Join) -> Rc<Self> {
        Rc::new(Self {
            feed: Arc::clone(&join.feed),
            reading: RefCell::new(join.reading.clone()),
        })
    }
}

impl ShardState {
    /// A subscription on this shard has started: reads the topic's feed
    /// from `join` if it is the shard's first subscriber of the topic;
    /// otherwise the shard reads that feed already (its cursor is then at
    /// or before the join point, and the subscriber's join number keeps
    /// what came before from it).
    pub(super) fn join_feed(&self, join: &Join) {
        let mut feeds = self.feeds.borrow_mut();
        let reading = feeds.entry(join.feed.topic());
        let reads_it =
            matches!(&reading, Entry::Occupied(r) if Arc::ptr_eq(&r.get().feed, &join.feed));
        // The topic counts this shard's subscribers and the shard keeps
        // one reading per topic while it has any: the two agree.
        debug_assert_eq!(
            join.first, !reads_it,
            "a shard's first subscriber of a topic"
        );
        let reader = match (reads_it, join.first) {
            (true, false) => return,
            (_, true) => FeedReader::new(join),
            // Should they not agree, the shard joins as a first reader,
            // which the ring then counts (from here on).
            (false, false) => FeedReader::new(&join.feed.join(self.index, true)),
        };
        match reading {
            Entry::Occupied(mut stale) => {
                stale.insert(reader);
            }
            Entry::Vacant(entry) => {
                entry.insert(reader);
            }
        }
    }

    /// The last local subscriber of `topic` has gone: stops reading its feed.
    pub(super) fn leave_feed(&self, topic: TopicId) {
        let reader = self.feeds.borrow_mut().remove(&topic);
        if let Some(reader) = reader {
            // No read of it is in progress (a read's dispatch does not
            // unsubscribe): one would store its cursor after this leave,
            // and the ring would count this shard again.
            debug_assert_eq!(Rc::strong_count(&reader), 1, "left during a read");
            reader.feed.leave(self.index);
        }
    }

    /// Stops reading every feed: the shard is stopping.
    pub(super) fn leave_all_feeds(&self) {
        let topics: Vec<TopicId> = self.feeds.borrow().keys().copied().collect();
        for topic in topics {
            self.leave_feed(topic);
        }
    }

    /// Asks each feed this shard reads at a grown size to give its room
    /// back: a topic that went quiet after a burst has no publish to do it
    /// (see `ring/elastic.rs`). Part of the topic sweep.
    pub(super) fn settle_feeds(&self) {
        let grown: Vec<Arc<Feed>> = self
            .feeds
            .borrow()
            .values()
            .filter(|reader| reader.feed.is_grown(&reader.reading.borrow()))
            .map(|reader| Arc::clone(&reader.feed))
            .collect();
        let inboxes = self.shared.fanout().inboxes;
        for feed in grown {
            drop(feed.settle(inboxes));
        }
    }

    /// Reads the feeds queued for this shard, in the order they were
    /// queued, until `budget` steps are taken or none is queued; returns
    /// the steps taken (a message read, or a feed taken from the queue). A
    /// feed with more than its share is queued again behind the others.
    pub(super) fn read_feeds(&self, budget: usize) -> usize {
        let mut steps = 0;
        while steps < budget {
            let Ok(feed) = self.inbox().ready_rx.try_recv() else {
                break;
            };
            steps += self.read_feed(&feed, budget - steps).max(1);
        }
        steps
    }

    /// Reads the feeds queued now, each to its end as it was (a lap and a
    /// skip at most), and no more: for shutdown, where a bus may still be
    /// feeding.
    pub(super) fn read_queued_feeds(&self) {
        let queued = self.inbox().ready_rx.len();
        for feed in self.inbox().ready_rx.try_iter().take(queued) {
            let lap = usize::try_from(feed.capacity()).unwrap_or(usize::MAX);
            self.read_feed(&feed, lap.saturating_add(1));
        }
    }

    /// Reads up to `budget` messages of `feed` from this shard's cursor;
    /// returns how many it read.
    fn read_feed(&self, feed: &Arc<Feed>, budget: usize) -> usize {
        let reader = self
            .feeds
            .borrow()
            .get(&feed.topic())
            .filter(|reader| Arc::ptr_eq(&reader.feed, feed))
            .cloned();
        let Some(reader) = reader else {
            // Not read here any more: nobody on this shard wants its
            // messages. Taken from the queue all the same.
            feed.taken(self.index);
            return 0;
        };
        // Only this function borrows it, and it does not run inside itself.
        let mut reading = reader.reading.borrow_mut();
        feed.read(
            self.index,
            self.inbox(),
            &mut reading,
            budget,
            |number, msg| self.dispatch(&msg, number),
            |missed| self.lapped(feed, missed),
        )
    }

    /// Counts the messages of `feed` numbered `missed`, which this shard
    /// lost by falling a lap behind: one `shard_overflow` per local
    /// subscriber that had joined by each (logged at most once a second
    /// per shard).
    #[cold]
    fn lapped(&self, feed: &Feed, missed: Range<u64>) {
        let topic = feed.topic();
        let lost: u64 = self.subscribers.borrow().get(&topic).map_or(0, |list| {
            list.iter()
                .map(|sub| missed.end.saturating_sub(missed.start.max(sub.joined)))
                .sum()
        });
        if lost == 0 {
            return;
        }
        let overflow = DropReason::ShardOverflow.index();
        self.tally
            .borrow_mut()
            .count(topic, |c| c.dropped[overflow] += lost);
        let now = Instant::now();
        if self
            .lap_logged
            .get()
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.lap_logged.set(Some(now));
            warn!(
                shard = self.index,
                topic = feed.name(),
                messages = missed.end - missed.start,
                deliveries = lost,
                "shard fell a lap behind a topic: deliveries dropped (server overloaded, or topics.ring_max_slots too small for a burst)"
            );
        }
    }
}
