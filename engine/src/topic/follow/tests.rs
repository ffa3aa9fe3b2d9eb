//! Unit tests of `follow.rs`: a topic numbered on a bus takes each message
//! once, in order, and never delivers across a gap unseen.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{Ingested, Numbered, Waiter};
use crate::broker::Fanout;
use crate::registry::{RegistryConfig, TopicRegistry};
use crate::sansio::history::HistoryLimits;
use crate::sansio::ids::{ConnKey, Epoch};
use crate::sansio::message::MessageKind;
use crate::sansio::pattern::ChannelRules;
use crate::sansio::replay::{Position, Replay};
use crate::shard::ShardInbox;

/// A connection waiting for a catch-up.
const WAITER: Waiter = (
    0,
    ConnKey {
        index: 0,
        generation: 0,
    },
);

/// One shard's inbox, and a registry whose topics are numbered on a bus.
struct Bus {
    registry: TopicRegistry,
    inbox: [ShardInbox; 1],
}

impl Bus {
    fn new() -> Self {
        Self::keeping(0)
    }

    /// With a keyed snapshot of `max_keys` keys per topic.
    fn keeping(max_keys: usize) -> Self {
        Self {
            registry: followed_registry(max_keys),
            inbox: [ShardInbox::new()],
        }
    }

    fn fanout(&self) -> Fanout<'_> {
        Fanout {
            inboxes: &self.inbox,
            topics: &self.registry,
        }
    }
}

fn followed_registry(max_keys: usize) -> TopicRegistry {
    TopicRegistry::new(RegistryConfig {
        rules: ChannelRules::of(&["t"]),
        max_topics: 10,
        shards: 1,
        history: HistoryLimits {
            capacity: 4,
            max_keys,
            max_bytes: 1 << 20,
            floor: 0,
        },
        max_history_bytes: 1 << 20,
        idle_expiry: Duration::from_secs(60),
        followed: true,
        ring_slots: (64, 64),
    })
}

fn numbered(epoch: u64, seq: u64) -> Numbered {
    Numbered {
        epoch: Epoch::from_u64(epoch),
        seq,
        key: None,
        data: Bytes::from(seq.to_string()),
        kind: MessageKind::Event,
        timestamp: SystemTime::now(),
        transient: false,
    }
}

fn seqs(inbox: &ShardInbox) -> Vec<u64> {
    inbox.drain(0).iter().map(|m| m.seq).collect()
}

#[test]
fn a_cold_topic_waits_for_its_catch_up_then_resumes_from_the_bus_history() {
    let bus = Bus::new();
    let fanout = bus.fanout();
    let topic = bus.registry.resolve("t", None).unwrap();
    let waiter = WAITER;
    assert_eq!(topic.want(waiter), Err(true), "the first asks to follow");
    assert_eq!(topic.want(waiter), Err(false), "then waits");
    // Not caught up: nothing is taken from the bus yet.
    assert_eq!(topic.ingest(numbered(7, 1), &fanout), Ingested::NotFollowed);
    let history = (3..=9).map(|seq| numbered(7, seq)).collect();
    assert_eq!(
        topic.catch_up(Epoch::from_u64(7), 9, history, &fanout),
        (vec![waiter], 0)
    );
    assert_eq!(topic.want(waiter), Ok(()));
    // The ring keeps the last 4: a resume after 5 is served, after 4 is not.
    let start = topic
        .subscribe(
            0,
            Replay::After(Position {
                epoch: Epoch::from_u64(7),
                seq: 5,
            }),
        )
        .unwrap();
    let replayed: Vec<u64> = start
        .replay
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!((start.position.seq, replayed), (9, vec![6, 7, 8, 9]));
    assert!(topic
        .peek(Replay::After(Position {
            epoch: Epoch::from_u64(7),
            seq: 4
        }))
        .1
        .is_err());
}

/// A subscriber that did not wait for the first catch-up starts after it:
/// the bus's history comes into the topic's feed for replay only (its
/// window is the feed's ring), and its shard passes over it.
#[test]
fn a_first_catch_up_is_kept_for_replay_and_not_delivered_live() {
    let bus = Bus::new();
    let fanout = bus.fanout();
    let topic = bus.registry.resolve("t", None).unwrap();
    let early = topic.subscribe(0, Replay::None).unwrap();
    assert!(early.follow, "the subscriber makes the topic followed");
    bus.inbox[0].join(&early.join);
    let history = (1..=6).map(|seq| numbered(7, seq)).collect();
    assert_eq!(topic.catch_up(Epoch::from_u64(7), 6, history, &fanout).1, 0);
    assert_eq!(seqs(&bus.inbox[0]), Vec::<u64>::new(), "not live");
    let (position, replay) = topic.peek(Replay::Last(10));
    let replayed: Vec<u64> = replay.unwrap().messages.iter().map(|m| m.seq).collect();
    assert_eq!((position.seq, replayed), (6, vec![3, 4, 5, 6]));
    assert_eq!(topic.ingest(numbered(7, 7), &fanout), Ingested::Delivered);
    assert_eq!(seqs(&bus.inbox[0]), vec![7]);
    let (_, replay) = topic.peek(Replay::Last(10));
    let replayed: Vec<u64> = replay.unwrap().messages.iter().map(|m| m.seq).collect();
    assert_eq!(replayed, vec![4, 5, 6, 7]);
}

/// A first catch-up's entries older than the window count for the keyed
/// snapshot alone, once each; the newest go into the window.
#[test]
fn a_first_catch_up_keeps_older_keyed_entries_in_the_snapshot_alone() {
    let bus = Bus::keeping(10);
    let fanout = bus.fanout();
    let topic = bus.registry.resolve("t", None).unwrap();
    assert_eq!(topic.want(WAITER), Err(true));
    let history: Vec<Numbered> = (1..=10)
        .map(|seq| Numbered {
            key: Some(format!("k{}", seq % 3).into()),
            ..numbered(7, seq)
        })
        .collect();
    let cost: usize = history
        .iter()
        .filter(|n| n.seq >= 7)
        .map(|n| {
            let msg = crate::sansio::message::Message::new(
                topic.id(),
                "t".into(),
                n.epoch,
                n.seq,
                n.key.clone(),
                n.data.clone(),
                crate::sansio::message::Stamp::now(),
            );
            msg.retained_cost()
        })
        .sum();
    topic.catch_up(Epoch::from_u64(7), 10, history, &fanout);
    let seqs = |replay: Replay| -> Vec<u64> {
        let replayed = topic.peek(replay).1.unwrap().messages;
        replayed.iter().map(|m| m.seq).collect()
    };
    // The window keeps the last 4 (7..=10); the snapshot the last per key.
    assert_eq!(seqs(Replay::Last(10)), vec![7, 8, 9, 10]);
    assert_eq!(seqs(Replay::Snapshot(10)), vec![8, 9, 10]);
    // 8, 9 and 10 are in both, counted once; 7 in the window alone.
    let stats = topic.stats();
    assert_eq!((stats.history, stats.snapshot_keys), (4, 3));
    assert_eq!(stats.history_bytes, cost);
}

#[test]
fn numbered_messages_are_taken_once_in_order_and_a_gap_is_reported() {
    let bus = Bus::new();
    let fanout = bus.fanout();
    let topic = bus.registry.resolve("t", None).unwrap();
    let _ = topic.want(WAITER);
    topic.catch_up(Epoch::from_u64(1), 0, Vec::new(), &fanout);
    bus.inbox[0].join(&topic.subscribe(0, Replay::None).unwrap().join);
    assert_eq!(topic.ingest(numbered(1, 1), &fanout), Ingested::Delivered);
    assert_eq!(topic.ingest(numbered(1, 1), &fanout), Ingested::Duplicate);
    assert_eq!(topic.ingest(numbered(1, 2), &fanout), Ingested::Delivered);
    let gap = topic.ingest(numbered(1, 5), &fanout);
    assert_eq!(
        gap,
        Ingested::Gap {
            expected: 3,
            new_epoch: false
        }
    );
    assert_eq!(seqs(&bus.inbox[0]), [1, 2]);

    // Repaired from the bus's history: 3 and 4 come as live messages.
    let history = (1..=5).map(|seq| numbered(1, seq)).collect();
    assert_eq!(topic.catch_up(Epoch::from_u64(1), 5, history, &fanout).1, 0);
    assert_eq!(seqs(&bus.inbox[0]), [3, 4, 5]);
    assert_eq!(topic.stats().gaps, 0);

    // Beyond the history: a counted jump, then delivery goes on.
    assert_eq!(
        topic.ingest(numbered(1, 9), &fanout),
        Ingested::Gap {
            expected: 6,
            new_epoch: false
        }
    );
    let skipped = topic
        .catch_up(Epoch::from_u64(1), 9, vec![numbered(1, 9)], &fanout)
        .1;
    assert_eq!((skipped, seqs(&bus.inbox[0])), (3, vec![9]));
    let stats = topic.stats();
    assert_eq!((stats.gaps, stats.gap_skipped), (1, 3));

    // A new epoch (the bus lost its state) is a gap too.
    let other = topic.ingest(numbered(2, 1), &fanout);
    assert_eq!(
        other,
        Ingested::Gap {
            expected: 10,
            new_epoch: true
        }
    );
    assert_eq!(topic.skip_to(Epoch::from_u64(2), 1), Some(0));
    assert_eq!(topic.ingest(numbered(2, 1), &fanout), Ingested::Delivered);
    assert_eq!(topic.epoch(), Epoch::from_u64(2));
}

#[test]
fn a_new_run_starts_the_keyed_snapshot_afresh() {
    let bus = Bus::keeping(8);
    let fanout = bus.fanout();
    let topic = bus.registry.resolve("t", None).unwrap();
    let _ = topic.want(WAITER);
    topic.catch_up(Epoch::from_u64(1), 0, Vec::new(), &fanout);
    topic.subscribe(0, Replay::None).unwrap();
    let keyed = |epoch, seq, key: &str| Numbered {
        key: Some(key.into()),
        ..numbered(epoch, seq)
    };
    for (seq, key) in [(1, "A"), (2, "B"), (3, "C")] {
        assert_eq!(
            topic.ingest(keyed(1, seq, key), &fanout),
            Ingested::Delivered
        );
    }
    let old_run = topic.stats().history_bytes;
    // A new run (the bus lost its state, or NATS's connection was lost):
    // its seqs start again, so nothing of the old run may stay beside them.
    topic.catch_up(Epoch::from_u64(2), 0, Vec::new(), &fanout);
    assert_eq!(topic.ingest(keyed(2, 1, "D"), &fanout), Ingested::Delivered);
    let (position, state) = topic.peek(Replay::State(8));
    let keys: Vec<_> = state
        .unwrap()
        .messages
        .iter()
        .map(|m| (m.epoch.as_u64(), m.seq, m.key.clone().unwrap()))
        .collect();
    assert_eq!(position.epoch, Epoch::from_u64(2));
    assert_eq!(keys, [(2, 1, "D".into())]);
    // The old run's bytes were let go: one message of three is held.
    let stats = topic.stats();
    assert_eq!((stats.snapshot_keys, stats.history), (1, 1));
    assert!(
        stats.history_bytes * 2 < old_run,
        "{} of {old_run}",
        stats.history_bytes
    );
}
