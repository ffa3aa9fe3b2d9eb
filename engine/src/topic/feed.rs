//! A topic's feed: the fan-out ring its messages reach the shards through.
//!
//! Shared by the topic (which publishes into it under its lock) and every
//! shard with a subscriber (which reads it at its own cursor). A publish
//! writes the message into the ring once, whatever the number of shards,
//! and puts the feed in a shard's queue only when it is not already there
//! (`ring/wake.rs`): a shard is woken once per topic per turn, then reads every
//! message that arrived meanwhile.
//!
//! The ring is an [`Elastic`] one: it starts at `topics.ring_slots` and
//! grows, up to `topics.ring_max_slots`, while a shard with a subscriber
//! has not read the message a publish would displace, so a burst (a batch
//! publish of a thousand messages, say) reaches every subscriber whole
//! even when its shard cannot read until the burst is over; it gives the
//! room back once the shards have caught up.
//!
//! The ring is also the topic's replay window: it keeps its newest
//! `history.capacity` numbers for the history (`sansio/history.rs`),
//! whatever its readers do, and a subscriber's replay is read from the
//! same slots as its live messages. So a topic has a feed while it has
//! subscribers or keeps messages: made for the first subscriber (of
//! `ring_slots` slots) or the first message kept (of a few, which the
//! window doubles as it fills); a topic that keeps none loses it with its
//! last subscriber. The ring carries live and kept messages, transient
//! ones (live only, and only while somebody reads the topic: the sweep
//! empties their slots once read) and those a bus's catch-up brings back
//! for replay only, which the shards pass over (a shard a whole lap behind
//! counts them among the numbers it missed, as it counts every one).
//!
//! The ring's numbers are the feed's own: with a broker, messages carry the
//! bus's sequence numbers, which may jump; the ring's never do, so a shard
//! that falls a whole lap behind knows exactly how many it missed.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::ring::{Displaced, Elastic, Reading};
use crate::sansio::history::Ring;
use crate::sansio::ids::TopicId;
use crate::sansio::message::Message;
use crate::shard::ShardInbox;

/// A topic's ring of messages and its shards' wake-up flags.
pub(crate) struct Feed {
    topic: TopicId,
    name: Arc<str>,
    ring: Elastic<Arc<Message>>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("topic", &self.name)
            .field("slots", &self.ring.capacity())
            .finish_non_exhaustive()
    }
}

/// Where a subscriber joins a feed: the feed and the first number it is
/// offered, which is where its shard starts reading if it does not read
/// the feed yet.
pub(crate) struct Join {
    pub(crate) feed: Arc<Feed>,
    pub(crate) reading: Reading<Arc<Message>>,
    /// The subscriber is its shard's first of the topic: the shard reads
    /// the feed from `reading` on, and holds no other reading of it (the
    /// ring counts on that when it decides what the shard has read).
    pub(crate) first: bool,
}

impl fmt::Debug for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("feed", &self.feed)
            .field("next", &self.reading.next())
            .finish()
    }
}

impl Feed {
    /// A feed of `slots` messages, growing to `max_slots` (both rounded up
    /// to powers of two; the most raised to hold `window`), for `shards`
    /// shards, keeping its newest `window` numbers for the topic's history.
    pub(crate) fn new(
        topic: TopicId,
        name: Arc<str>,
        shards: usize,
        (slots, max_slots): (usize, usize),
        window: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            topic,
            name,
            ring: Elastic::new(shards, slots, max_slots).keeping(window as u64),
        })
    }

    /// Its ring, whose window the topic's history reads.
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The topic it carries.
    pub(crate) fn topic(&self) -> TopicId {
        self.topic
    }

    /// The topic's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The slots of its ring now.
    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// How many times its ring has grown since the feed was made.
    pub(crate) fn growths(&self) -> u64 {
        self.ring.growths()
    }

    /// Where a subscriber on `shard` joining now starts: after every
    /// message already in the ring. Taken under the topic's lock, with the
    /// subscriber's position, so live delivery begins exactly where the
    /// replay ends. `first`: the shard has no other subscriber of the
    /// topic, so it does not read the feed yet.
    pub(crate) fn join(self: &Arc<Self>, shard: usize, first: bool) -> Join {
        Join {
            feed: Arc::clone(self),
            reading: self.ring.join(shard, first),
            first,
        }
    }

    /// Writes `msg` into the ring and queues the feed on every shard with a
    /// subscriber (by `shard_subscribers`) that does not have it queued;
    /// returns what it displaced: the message a lap older, a ring it
    /// outgrew, and the message that left the window. Called under the
    /// topic's lock, so the ring holds the topic's messages in order; the
    /// caller drops what comes back after letting go of the lock.
    pub(crate) fn publish(
        self: &Arc<Self>,
        msg: &Arc<Message>,
        shard_subscribers: &[u32],
        inboxes: &[ShardInbox],
    ) -> Displaced<Arc<Message>> {
        let wanted = shard_subscribers
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(shard, _)| shard);
        let queue = |shard: usize| inboxes[shard].queue(Arc::clone(self));
        self.ring.publish(wanted, |_| Arc::clone(msg), queue).1
    }

    /// Shard `shard` took the feed from its queue but reads it no more.
    pub(crate) fn taken(&self, shard: usize) {
        self.ring.taken(shard);
    }

    /// Shard `shard` dropped its reading: it reads the feed no more.
    pub(crate) fn leave(&self, shard: usize) {
        self.ring.leave(shard);
    }

    /// Whether `reading` holds a ring grown past the feed's starting size.
    pub(crate) fn is_grown(&self, reading: &Reading<Arc<Message>>) -> bool {
        reading.capacity() > self.ring.least_slots()
    }

    /// Gives a grown ring's room back if every shard reading it has caught
    /// up, and wakes them to let go of it (see `ring/elastic.rs`); for a
    /// topic that went quiet after a burst. Returns the grown ring, to be
    /// dropped by the caller.
    pub(crate) fn settle(
        self: &Arc<Self>,
        inboxes: &[ShardInbox],
    ) -> Option<Displaced<Arc<Message>>> {
        self.ring
            .settle(|shard| inboxes[shard].queue(Arc::clone(self)))
    }

    /// Shard `shard` took the feed from its queue: reads at most `budget`
    /// messages from `reading`, handing each live one to `each` with its
    /// number in the ring (one a catch-up brought back for replay only is
    /// passed over) and each run of numbers missed to `skipped`, and queues
    /// the feed on `inbox` again if there may be more (see `ring/wake.rs`).
    /// Returns how many it read.
    pub(crate) fn read(
        self: &Arc<Self>,
        shard: usize,
        inbox: &ShardInbox,
        reading: &mut Reading<Arc<Message>>,
        budget: usize,
        mut each: impl FnMut(u64, Arc<Message>),
        skipped: impl FnMut(Range<u64>),
    ) -> usize {
        let requeue = || inbox.queue(Arc::clone(self));
        let each = |number, msg: Arc<Message>| {
            if msg.is_live() {
                each(number, msg);
            }
        };
        self.ring
            .read(shard, reading, budget, each, skipped, requeue)
    }
}
