//! Unit tests of `registry.rs`.

use super::*;
use crate::sansio::ids::Epoch;
use crate::sansio::message::{Message, Publication, Stamp};
use crate::sansio::quota::{QuotaError, QuotaLimits};
use crate::sansio::replay::Replay;
use crate::shard::ShardInbox;
use bytes::Bytes;

fn registry(list: &[&str], max_topics: usize, shards: usize) -> TopicRegistry {
    TopicRegistry::new(RegistryConfig {
        rules: ChannelRules::of(list),
        max_topics,
        shards,
        history: HistoryLimits {
            capacity: 8,
            max_keys: 8,
            max_bytes: 1 << 20,
            floor: 0,
        },
        max_history_bytes: 1 << 20,
        idle_expiry: Duration::from_secs(60),
        followed: false,
        ring_slots: (1024, 1024),
    })
}

/// Publishes through the fan-out, as the engine does; returns the seq.
fn route(topic: &Topic, data: Bytes, inboxes: &[ShardInbox], registry: &TopicRegistry) -> u64 {
    let fanout = crate::broker::Fanout {
        inboxes,
        topics: registry,
    };
    fanout.deliver(topic, Publication::new(None, data)).unwrap()
}

fn data() -> Bytes {
    Bytes::from_static(b"1")
}

#[test]
fn registry_creates_declared_topics_once_and_enforces_the_limit() {
    let registry = registry(&["a", "b", "p.*"], 2, 1);
    let a = registry.resolve("a", None).unwrap();
    assert!(Arc::ptr_eq(&a, &registry.resolve("a", None).unwrap()));
    assert_eq!(
        registry.resolve("zzz", None).unwrap_err(),
        TopicError::Undeclared("zzz".into())
    );
    registry.resolve("p.x", None).unwrap();
    assert!(matches!(
        registry.resolve("b", None),
        Err(TopicError::TooManyTopics { limit: 2, .. })
    ));
    assert_eq!(registry.all().len(), 2);
}

#[test]
fn subscribe_starts_after_the_last_published_message() {
    let registry = registry(&["t"], 10, 2);
    let topic = registry.resolve("t", None).unwrap();
    let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new()).collect();
    for _ in 0..3 {
        route(&topic, data(), &inboxes, &registry);
    }
    let start = topic.subscribe(1, Replay::Last(2)).unwrap();
    inboxes[1].join(&start.join);
    assert_eq!(start.position.seq, 3);
    assert_eq!(start.position.epoch, topic.epoch());
    assert_eq!(
        start
            .replay
            .unwrap()
            .messages
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    // Only shard 1 has a subscriber, so only it is sent the next message.
    assert_eq!(route(&topic, data(), &inboxes, &registry), 4);
    assert_eq!(inboxes[0].drain(0).len(), 0);
    assert_eq!(inboxes[1].drain(1).len(), 1);
    assert_eq!(topic.stats().subscribers, 1);
}

#[test]
fn a_topic_of_transient_messages_holds_nothing_and_expires() {
    let registry = registry(&["p.*"], 10, 1);
    let inboxes = [ShardInbox::new()];
    let topic = registry.resolve("p.generated", None).unwrap();
    let fanout = crate::broker::Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    for _ in 0..3 {
        fanout
            .deliver(&topic, Publication::new(None, data()).transient())
            .unwrap();
    }
    let stats = topic.stats();
    assert_eq!(
        (stats.published, stats.history, stats.history_bytes),
        (3, 0, 0)
    );
    assert_eq!(
        registry.expire_idle(Instant::now() + Duration::from_secs(61)),
        1
    );
    assert!(topic.is_retired());
}

#[test]
fn idle_topics_without_state_expire_and_their_slot_gets_a_new_generation() {
    let registry = registry(&["p.*"], 10, 1);
    let inboxes = [ShardInbox::new()];
    let now = Instant::now();
    let later = now + Duration::from_secs(61);
    let quiet = registry.resolve("p.quiet", None).unwrap();
    let held = registry.resolve("p.held", None).unwrap();
    held.subscribe(0, Replay::None).unwrap();
    let kept = registry.resolve("p.kept", None).unwrap();
    route(&kept, data(), &inboxes, &registry);
    assert_eq!(registry.expire_idle(now), 0, "not idle long enough");
    assert_eq!(registry.expire_idle(later), 1);
    assert!(quiet.is_retired());
    assert!(!held.is_retired() && !kept.is_retired());
    // The stale handle refuses; the name resolves to a fresh topic.
    assert!(quiet.publish(Publication::new(None, data())).is_err());
    assert!(quiet.subscribe(0, Replay::None).is_err());
    let again = registry.resolve("p.quiet", None).unwrap();
    assert_eq!(again.id().index(), quiet.id().index());
    assert_ne!(again.id(), quiet.id());
    // Publishing through the stale handle reaches the live topic.
    let fanout = crate::broker::Fanout {
        inboxes: &inboxes,
        topics: &registry,
    };
    assert_eq!(
        fanout
            .deliver(&quiet, Publication::new(None, data()))
            .unwrap(),
        1
    );
    assert_eq!(again.stats().published, 1);
    assert_eq!(registry.len(), 3);
    assert_eq!(registry.retired().topics, 1);
    // A topic whose last subscriber left is idle from that moment.
    held.unsubscribe(0);
    assert_eq!(registry.expire_idle(Instant::now()), 0);
    // (`again` now holds a message, so only `held` goes.)
    assert_eq!(
        registry.expire_idle(Instant::now() + Duration::from_secs(61)),
        1
    );
}

#[test]
fn rebalancing_gives_late_topics_room_once_the_budget_is_spent() {
    let mut config = RegistryConfig {
        rules: ChannelRules::of(&["p.*"]),
        max_topics: 10,
        shards: 1,
        history: HistoryLimits {
            capacity: 1000,
            max_keys: 8,
            max_bytes: 1 << 30,
            floor: 0,
        },
        max_history_bytes: 0,
        idle_expiry: Duration::from_secs(60),
        followed: false,
        ring_slots: (1024, 1024),
    };
    let one = Message::new(
        TopicId::new(0, 0),
        "p.a".into(),
        Epoch::from_u64(1),
        1,
        None,
        Bytes::from(vec![0; 1000]),
        Stamp::now(),
    )
    .retained_cost();
    config.max_history_bytes = 100 * one;
    let registry = TopicRegistry::new(config);
    let inboxes = [ShardInbox::new()];
    let data = Bytes::from(vec![b'1'; 1000]);
    let early = registry.resolve("p.early", None).unwrap();
    for _ in 0..100 {
        route(&early, data.clone(), &inboxes, &registry);
    }
    // A late topic keeps only its floor (2.5 messages' worth) while the
    // early one holds the shared budget.
    let late = registry.resolve("p.late", None).unwrap();
    for _ in 0..10 {
        route(&late, data.clone(), &inboxes, &registry);
    }
    assert!(late.stats().history < 5, "{:?}", late.stats());
    assert!(registry.rebalance() > 0);
    let share = (75.0 * one as f64 * TARGET) as usize / 2 + registry.config.history.floor;
    assert!(early.stats().history_bytes <= share);
    for _ in 0..10 {
        route(&late, data.clone(), &inboxes, &registry);
    }
    assert!(late.stats().history >= 10, "room again: {:?}", late.stats());
    assert_eq!(registry.rebalance(), 0, "no pressure now");
}

#[test]
fn creation_is_charged_to_the_quota_until_the_topic_holds_state() {
    let registry = registry(&["p.*"], 100, 1);
    let inboxes = [ShardInbox::new()];
    let quota = Arc::new(TopicQuota::new(QuotaLimits {
        rate_per_second: 1000.0,
        burst: 100,
        max_live: 2,
    }));
    let a = registry.resolve("p.a", Some(&quota)).unwrap();
    registry.resolve("p.b", Some(&quota)).unwrap();
    assert!(matches!(
        registry.resolve("p.c", Some(&quota)),
        Err(TopicError::Quota {
            quota: QuotaError::Live { limit: 2 },
            ..
        })
    ));
    // Existing topics cost nothing more.
    registry.resolve("p.a", Some(&quota)).unwrap();
    // A topic that gains retained state stops counting against its creator.
    route(&a, data(), &inboxes, &registry);
    assert_eq!(quota.live(), 1);
    registry.resolve("p.c", Some(&quota)).unwrap();
    // Expiry ends the charge too.
    registry.expire_idle(Instant::now() + Duration::from_secs(61));
    assert_eq!(quota.live(), 0);
    assert_eq!(registry.unclaimed.load(Ordering::Relaxed), 0);
}

#[test]
fn subscribers_together_hold_at_most_half_the_topics() {
    let registry = registry(&["p.*"], 10, 1);
    let quotas: Vec<_> = (0..4)
        .map(|_| Arc::new(TopicQuota::new(QuotaLimits::UNLIMITED)))
        .collect();
    let mut created = 0;
    for i in 0..20 {
        if registry
            .resolve(&format!("p.s{i}"), Some(&quotas[i % 4]))
            .is_ok()
        {
            created += 1;
        }
    }
    assert_eq!(created, 5);
    assert!(matches!(
        registry.resolve("p.more", Some(&quotas[0])),
        Err(TopicError::TooManyUnclaimed { limit: 5, .. })
    ));
    // Publishers (and the embedding program) still have the other half.
    for i in 0..5 {
        registry.resolve(&format!("p.pub{i}"), None).unwrap();
    }
}
