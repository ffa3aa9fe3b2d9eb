//! Unit tests of `topic.rs`: order across concurrent publishers, and the
//! boundary between a new subscriber's replay and its live messages.

use std::time::Duration;

use bytes::Bytes;

use crate::broker::Fanout;
use crate::registry::{RegistryConfig, TopicRegistry};
use crate::sansio::history::HistoryLimits;
use crate::sansio::message::Publication;
use crate::sansio::pattern::ChannelRules;
use crate::sansio::replay::{Position, Replay, ReplayError};
use crate::shard::ShardInbox;

fn registry(capacity: usize) -> TopicRegistry {
    TopicRegistry::new(config(capacity))
}

fn config(capacity: usize) -> RegistryConfig {
    RegistryConfig {
        rules: ChannelRules::of(&["t"]),
        max_topics: 10,
        shards: 2,
        history: HistoryLimits {
            capacity,
            max_keys: 0,
            max_bytes: 1 << 24,
            floor: 0,
        },
        max_history_bytes: 1 << 24,
        idle_expiry: Duration::from_secs(60),
        followed: false,
        ring_slots: (1 << 15, 1 << 15),
    }
}

/// A registry whose topics keep `capacity` messages for replay in feeds
/// of `slots` slots.
fn registry_of(capacity: usize, slots: usize) -> TopicRegistry {
    TopicRegistry::new(RegistryConfig {
        ring_slots: (slots, slots),
        ..config(capacity)
    })
}

/// Topic "t" of `registry`, with a subscriber on shard 0 (of two).
fn subscribed_on_shard_0(
    registry: &TopicRegistry,
) -> (std::sync::Arc<crate::topic::Topic>, Vec<ShardInbox>) {
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    inboxes[0].join(&topic.subscribe(0, Replay::None).unwrap().join);
    (topic, inboxes)
}

/// Publishes `count` kept messages into `topic`.
fn publish(fanout: &Fanout<'_>, topic: &crate::topic::Topic, count: usize) {
    for _ in 0..count {
        fanout
            .deliver(topic, Publication::new(None, Bytes::from_static(b"1")))
            .unwrap();
    }
}

/// What shard `shard` reads of its queued feeds, by seq.
fn seqs(inboxes: &[ShardInbox], shard: usize) -> Vec<u64> {
    inboxes[shard].drain(shard).iter().map(|m| m.seq).collect()
}

#[test]
fn every_shard_receives_a_topic_in_sequence_order_whoever_publishes() {
    let registry = registry(0);
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    for (shard, inbox) in inboxes.iter().enumerate() {
        inbox.join(&topic.subscribe(shard, Replay::None).unwrap().join);
    }
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    fanout
                        .deliver(&topic, Publication::new(None, Bytes::from_static(b"1")))
                        .unwrap();
                }
            });
        }
    });
    let expected: Vec<u64> = (1..=20_000).collect();
    assert_eq!(seqs(&inboxes, 0), expected);
    assert_eq!(seqs(&inboxes, 1), expected);
}

#[test]
fn a_subscriber_joining_mid_stream_gets_every_message_exactly_once() {
    let registry = registry(100_000);
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    // Shard 0 reads the feed from the start; shard 1 joins it mid-stream.
    inboxes[0].join(&topic.subscribe(0, Replay::None).unwrap().join);
    let start = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            for _ in 0..20_000 {
                fanout
                    .deliver(&topic, Publication::new(None, Bytes::from_static(b"1")))
                    .unwrap();
            }
        });
        // Join while the publisher runs; the replay asks for everything.
        while topic.position().seq < 5_000 {
            std::thread::yield_now();
        }
        let position = Position {
            epoch: topic.epoch(),
            seq: 0,
        };
        let start = topic.subscribe(1, Replay::After(position)).unwrap();
        inboxes[1].join(&start.join);
        publisher.join().unwrap();
        start
    });
    let replayed: Vec<u64> = start
        .replay
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(replayed.last().copied(), Some(start.position.seq));
    // Live delivery: all shard 1 reads of the feed from its join point,
    // with no filter of its own.
    let mut all = replayed;
    all.extend(seqs(&inboxes, 1));
    let every: Vec<u64> = (1..=20_000).collect();
    assert_eq!(all, every);
    assert_eq!(seqs(&inboxes, 0), every);
}

#[test]
fn a_resume_of_another_epoch_fails_even_at_the_same_seq() {
    let one = registry(16);
    let other = registry(16);
    let first = one.resolve("t", None).unwrap();
    let second = other.resolve("t", None).unwrap();
    assert_ne!(first.epoch(), second.epoch());
    let stale = Position {
        epoch: second.epoch(),
        seq: 0,
    };
    let answer = first.subscribe(0, Replay::After(stale)).unwrap().replay;
    assert!(matches!(answer, Err(ReplayError::EpochMismatch { .. })));
    // The subscription holds anyway: the protocol decides what to say.
    assert_eq!(first.stats().subscribers, 1);
}

#[test]
fn a_shard_joining_a_busy_feed_reads_from_its_subscriber_on_and_lets_go_with_the_last() {
    let registry = registry(0);
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    let publish = || {
        fanout
            .deliver(&topic, Publication::new(None, Bytes::from_static(b"1")))
            .unwrap()
    };
    let first = topic.subscribe(1, Replay::None).unwrap();
    for _ in 0..10 {
        publish();
    }
    // Shard 0 joins the feed shard 1 reads: after its tenth message, where
    // its subscriber's position is, not at the feed's start.
    let joined = topic.subscribe(0, Replay::None).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first.join.feed, &joined.join.feed));
    assert_eq!(joined.position.seq, 10);
    assert_eq!(joined.join.reading.next(), 11);
    inboxes[0].join(&joined.join);
    publish();
    let read: Vec<u64> = inboxes[0].drain(0).iter().map(|m| m.seq).collect();
    assert_eq!(read, [11]);
    // With the last subscriber gone the feed goes; the next has a new one.
    topic.unsubscribe(0);
    topic.unsubscribe(1);
    let again = topic.subscribe(0, Replay::None).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first.join.feed, &again.join.feed));
    assert_eq!(again.join.reading.next(), 1);
}

/// The history holds no copy of its newest messages: a replay reads them
/// from the topic's feed, the ring its shards read live messages from.
#[test]
fn a_replay_is_read_from_the_feed_which_holds_the_only_reference() {
    let registry = registry(8);
    let (topic, inboxes) = subscribed_on_shard_0(&registry);
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    publish(&fanout, &topic, 3);
    let (_, replay) = topic.peek(Replay::Last(8));
    let messages = replay.unwrap().messages;
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for msg in &messages {
        // The feed's slot, and this replay.
        assert_eq!(std::sync::Arc::strong_count(msg), 2, "seq {}", msg.seq);
    }
}

/// A message that left the window stays in its slot only until every shard
/// has read it and the sweep tidies the ring: the ring holds no more than
/// the window's messages for a topic nobody still reads, and the history's
/// bytes count the window alone.
#[test]
fn a_message_the_window_let_go_is_freed_once_no_shard_needs_it() {
    let registry = registry_of(2, 8);
    let (topic, inboxes) = subscribed_on_shard_0(&registry);
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    publish(&fanout, &topic, 5);
    let read: Vec<std::sync::Weak<_>> = inboxes[0]
        .drain(0)
        .iter()
        .map(std::sync::Arc::downgrade)
        .collect();
    assert_eq!(read.len(), 5);
    topic.unsubscribe(0);
    let alive = || {
        read.iter()
            .map(|m| m.strong_count() > 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(alive(), [true; 5], "in their slots until the sweep");
    topic.tidy(&inboxes);
    assert_eq!(alive(), [false, false, false, true, true]);
    let stats = topic.stats();
    assert_eq!(stats.history, 2);
    let one = read[3].upgrade().unwrap().retained_cost();
    assert_eq!(stats.history_bytes, 2 * one);
}

/// A topic nobody reads holds no ring for transient messages, and a ring
/// of a few slots for the first message it keeps; transient messages stay
/// out of it while nobody reads them.
#[test]
fn a_topic_nobody_reads_holds_only_what_it_keeps() {
    let registry = registry(256);
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    let data = Bytes::from_static(b"1");
    let transient = || Publication::new(None, data.clone()).transient();
    for _ in 0..3 {
        fanout.deliver(&topic, transient()).unwrap();
    }
    assert_eq!(
        topic.stats().feed_slots,
        0,
        "no ring for transient messages"
    );
    fanout
        .deliver(&topic, Publication::new(None, data.clone()))
        .unwrap();
    fanout.deliver(&topic, transient()).unwrap();
    let stats = topic.stats();
    assert_eq!((stats.feed_slots, stats.history), (8, 1), "{stats:?}");
    let feed = topic.state.lock().feed.clone().unwrap();
    assert_eq!(feed.ring().claimed(), 1, "the kept message alone went in");
    let (_, replay) = topic.peek(Replay::Last(10));
    let seqs: Vec<u64> = replay.unwrap().messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [4]);
    // A subscriber's shard reads it now: the feed takes `ring_slots`, and
    // keeps them as its least, whatever its window holds.
    drop(topic.subscribe(0, Replay::None).unwrap());
    let stats = topic.stats();
    assert_eq!((stats.feed_slots, stats.history), (1 << 15, 1), "{stats:?}");
    assert_eq!(feed.ring().least_slots(), 1 << 15);
}

/// A ring grown for a shard that lagged gives its room back at the sweep
/// once nobody reads the topic, and the transient messages its window
/// holds are let go of once read.
#[test]
fn the_sweep_shrinks_a_grown_ring_nobody_reads_and_empties_transient_slots() {
    let registry = TopicRegistry::new(RegistryConfig {
        ring_slots: (8, 64),
        ..config(4)
    });
    let (topic, inboxes) = subscribed_on_shard_0(&registry);
    let fanout = Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    let data = Bytes::from_static(b"1");
    publish(&fanout, &topic, 40);
    let last = Publication::new(None, data.clone()).transient();
    fanout.deliver(&topic, last).unwrap();
    assert_eq!(topic.stats().feed_slots, 64, "grown for the shard");
    let read = inboxes[0].drain(0);
    assert_eq!(read.len(), 41);
    let transient = std::sync::Arc::downgrade(&read[40]);
    drop(read);
    topic.unsubscribe(0);
    topic.tidy(&inboxes);
    assert_eq!(topic.stats().feed_slots, 8, "back to its least");
    // Woken by the settle, the shard lets go of the grown ring.
    assert!(inboxes[0].drain(0).is_empty());
    assert_eq!(transient.strong_count(), 0, "its slot was emptied");
    let (_, replay) = topic.peek(Replay::Last(10));
    let seqs: Vec<u64> = replay.unwrap().messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [38, 39, 40]);
}
