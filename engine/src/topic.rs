//! Topics: named streams with gapless sequence numbers, history, and the
//! per-shard subscriber counts that route each message only to shards that
//! want it.
//!
//! Publishing a message (all under that topic's own lock, never a global one):
//! 1. stamp the next sequence number;
//! 2. record it in the topic's [`History`] (ring and keyed snapshot);
//! 3. offer it to the inbox of every shard with at least one subscriber.
//!
//! Step 3 happens under the lock so that every shard receives a topic's
//! messages in sequence order even when several threads publish to it.
//! Subscribing takes the same lock, so a new subscriber's replay ends exactly
//! where its live messages begin: no gap, no duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tracing::warn;

use crate::history::History;
use crate::message::Message;
use crate::shard::ShardInbox;

/// Dense index of a topic within its engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub u32);

/// Longest topic name or key accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Why a topic name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, too long, or with characters outside `A-Z a-z 0-9 . _ - :`.
    #[error("invalid channel name {0:?}: use 1-128 characters from A-Z a-z 0-9 . _ - :")]
    InvalidName(String),
    /// No channel rule declares this name.
    #[error("unknown channel {0:?}: it is not declared in the server's channel rules")]
    Undeclared(String),
    /// The engine already holds its maximum number of topics.
    #[error("channel {name:?} cannot be created: the server holds its limit of {limit} channels")]
    TooManyTopics {
        /// The name that was refused.
        name: String,
        /// The configured limit.
        limit: usize,
    },
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':')
}

/// Checks a concrete topic name (no wildcards).
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(is_name_char) {
        return Err(TopicError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Which topic names exist: exact names plus patterns where `*` stands for
/// one dot-separated segment (`prices.*` matches `prices.AAPL`, not
/// `prices.AAPL.bid`). Read-only after start-up.
#[derive(Clone, Debug, Default)]
pub struct ChannelRules {
    exact: HashSet<Box<str>>,
    patterns: Vec<Vec<Segment>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Any,
}

impl ChannelRules {
    /// Adds a rule: an exact name, or a pattern with `*` segments.
    pub fn declare(&mut self, rule: &str) -> Result<(), TopicError> {
        if !rule.contains('*') {
            validate_name(rule)?;
            self.exact.insert(rule.into());
            return Ok(());
        }
        let mut segments = Vec::new();
        for part in rule.split('.') {
            if part == "*" {
                segments.push(Segment::Any);
            } else {
                validate_name(part).map_err(|_| TopicError::InvalidName(rule.to_owned()))?;
                segments.push(Segment::Literal(part.into()));
            }
        }
        self.patterns.push(segments);
        Ok(())
    }

    /// Whether `name` is declared, exactly or by a pattern.
    pub fn allows(&self, name: &str) -> bool {
        if self.exact.contains(name) {
            return true;
        }
        self.patterns.iter().any(|pattern| {
            let mut parts = name.split('.');
            pattern.iter().all(|segment| match (segment, parts.next()) {
                (Segment::Any, Some(part)) => !part.is_empty(),
                (Segment::Literal(lit), Some(part)) => **lit == *part,
                (_, None) => false,
            }) && parts.next().is_none()
        })
    }
}

#[cold]
fn log_overflow(last: &mut Option<Instant>, topic: &str, total: u64) {
    let now = Instant::now();
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last = Some(now);
        warn!(
            topic,
            dropped_total = total,
            "shard inbox full: deliveries dropped (server overloaded)"
        );
    }
}

/// A topic. Shared by all shards; its state sits behind its own lock.
#[derive(Debug)]
pub struct Topic {
    id: TopicId,
    name: Arc<str>,
    state: Mutex<TopicState>,
}

#[derive(Debug)]
struct TopicState {
    seq: u64,
    history: History,
    /// Subscriptions per shard; a shard at 0 is never sent this topic's messages.
    shard_subscribers: Vec<u32>,
    /// Deliveries lost because a shard's inbox was full.
    overflow_dropped: u64,
    /// When overflow was last logged (logged at most once a second per topic).
    overflow_logged: Option<Instant>,
}

/// A topic's figures at one moment.
#[derive(Clone, Debug)]
pub struct TopicStats {
    /// The topic's id.
    pub id: TopicId,
    /// The topic's name.
    pub name: Arc<str>,
    /// Messages published (equal to the last sequence number).
    pub published: u64,
    /// Subscriptions across all shards.
    pub subscribers: u64,
    /// Messages in the history ring.
    pub history: usize,
    /// Keys in the keyed snapshot.
    pub snapshot_keys: usize,
    /// Deliveries lost because a shard's inbox was full (one per subscriber there).
    pub overflow_dropped: u64,
}

/// What a new subscriber starts from.
#[derive(Debug)]
pub(crate) struct SubscribeStart {
    /// Deliver only messages with a greater sequence number.
    pub after_seq: u64,
    /// Messages to replay, oldest first.
    pub replay: Vec<Arc<Message>>,
}

impl Topic {
    fn new(id: TopicId, name: Arc<str>, shards: usize, history: History) -> Self {
        Self {
            id,
            name,
            state: Mutex::new(TopicState {
                seq: 0,
                history,
                shard_subscribers: vec![0; shards],
                overflow_dropped: 0,
                overflow_logged: None,
            }),
        }
    }

    /// The topic's id.
    pub fn id(&self) -> TopicId {
        self.id
    }

    /// The topic's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Stamps, records and routes one message; returns its sequence number.
    pub(crate) fn publish(&self, key: Option<Box<str>>, data: Bytes, shards: &[ShardInbox]) -> u64 {
        // Clock reads and the allocation of the key stay outside the lock.
        let mut msg = Message::new(self.id, Arc::clone(&self.name), 0, key, data);
        let mut state = self.state.lock();
        state.seq += 1;
        msg.seq = state.seq;
        let msg = Arc::new(msg);
        state.history.record(&msg);
        let state = &mut *state;
        for (inbox, &subscribers) in shards.iter().zip(&state.shard_subscribers) {
            if subscribers > 0 && !inbox.deliver(&msg) {
                state.overflow_dropped += u64::from(subscribers);
                log_overflow(
                    &mut state.overflow_logged,
                    &self.name,
                    state.overflow_dropped,
                );
            }
        }
        msg.seq
    }

    /// Registers one subscription on `shard`; returns where it starts and, if
    /// `replay_limit` is set, what to replay.
    pub(crate) fn subscribe(&self, shard: usize, replay_limit: Option<usize>) -> SubscribeStart {
        let mut state = self.state.lock();
        state.shard_subscribers[shard] += 1;
        SubscribeStart {
            after_seq: state.seq,
            replay: replay_limit.map_or_else(Vec::new, |limit| state.history.replay(limit)),
        }
    }

    /// Removes one subscription on `shard`.
    pub(crate) fn unsubscribe(&self, shard: usize) {
        let mut state = self.state.lock();
        let count = &mut state.shard_subscribers[shard];
        debug_assert!(*count > 0, "unsubscribe without subscribe");
        *count = count.saturating_sub(1);
    }

    /// The topic's figures now.
    pub fn stats(&self) -> TopicStats {
        let state = self.state.lock();
        TopicStats {
            id: self.id,
            name: Arc::clone(&self.name),
            published: state.seq,
            subscribers: state.shard_subscribers.iter().map(|&n| u64::from(n)).sum(),
            history: state.history.ring_len(),
            snapshot_keys: state.history.snapshot_len(),
            overflow_dropped: state.overflow_dropped,
        }
    }
}

/// All topics of an engine, by name and by id. Shared by all shards.
///
/// Read-mostly: the write lock is taken only to create a topic. The publish
/// path does not come here per message; shards and publishers keep
/// `Arc<Topic>` handles.
#[derive(Debug)]
pub struct TopicRegistry {
    rules: ChannelRules,
    max_topics: usize,
    shards: usize,
    history_capacity: usize,
    max_keys: usize,
    topics: RwLock<Topics>,
}

#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<Arc<str>, Arc<Topic>>,
    by_id: Vec<Arc<Topic>>,
}

impl TopicRegistry {
    pub(crate) fn new(
        rules: ChannelRules,
        max_topics: usize,
        shards: usize,
        history_capacity: usize,
        max_keys: usize,
    ) -> Self {
        Self {
            rules,
            max_topics,
            shards,
            history_capacity,
            max_keys,
            topics: RwLock::default(),
        }
    }

    /// The topic called `name`, created on first use if a rule declares it.
    pub fn resolve(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.read().by_name.get(name) {
            return Ok(Arc::clone(topic));
        }
        self.create(name)
    }

    #[cold]
    fn create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        validate_name(name)?;
        if !self.rules.allows(name) {
            return Err(TopicError::Undeclared(name.to_owned()));
        }
        let mut topics = self.topics.write();
        if let Some(topic) = topics.by_name.get(name) {
            return Ok(Arc::clone(topic));
        }
        if topics.by_id.len() >= self.max_topics {
            return Err(TopicError::TooManyTopics {
                name: name.to_owned(),
                limit: self.max_topics,
            });
        }
        let id = TopicId(topics.by_id.len() as u32);
        let name: Arc<str> = name.into();
        let history = History::new(self.history_capacity, self.max_keys);
        let topic = Arc::new(Topic::new(id, Arc::clone(&name), self.shards, history));
        topics.by_name.insert(name, Arc::clone(&topic));
        topics.by_id.push(Arc::clone(&topic));
        Ok(topic)
    }

    /// Every topic, in creation order.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().by_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> ChannelRules {
        let mut rules = ChannelRules::default();
        for rule in list {
            rules.declare(rule).unwrap();
        }
        rules
    }

    #[test]
    fn patterns_match_exactly_one_segment_per_star() {
        let rules = rules(&["market-data", "prices.*", "fx.*.spot"]);
        assert!(rules.allows("market-data"));
        assert!(rules.allows("prices.AAPL"));
        assert!(rules.allows("fx.EURUSD.spot"));
        assert!(!rules.allows("prices"));
        assert!(!rules.allows("prices."));
        assert!(!rules.allows("prices.AAPL.bid"));
        assert!(!rules.allows("fx.EURUSD.fwd"));
        assert!(!rules.allows("market-data.x"));
    }

    #[test]
    fn names_with_unsafe_characters_are_refused() {
        for bad in ["", "a b", "quote\"d", "back\\slash", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name("prices.US0378331005:bid_1-2").is_ok());
        let mut rules = ChannelRules::default();
        assert!(rules.declare("pri ces.*").is_err());
    }

    #[test]
    fn registry_creates_declared_topics_once_and_enforces_the_limit() {
        let registry = TopicRegistry::new(rules(&["a", "b", "p.*"]), 2, 1, 8, 8);
        let a = registry.resolve("a").unwrap();
        assert!(Arc::ptr_eq(&a, &registry.resolve("a").unwrap()));
        assert_eq!(
            registry.resolve("zzz").unwrap_err(),
            TopicError::Undeclared("zzz".into())
        );
        registry.resolve("p.x").unwrap();
        assert!(matches!(
            registry.resolve("b"),
            Err(TopicError::TooManyTopics { limit: 2, .. })
        ));
        assert_eq!(registry.all().len(), 2);
    }

    #[test]
    fn subscribe_starts_after_the_last_published_message() {
        let registry = TopicRegistry::new(rules(&["t"]), 10, 2, 8, 8);
        let topic = registry.resolve("t").unwrap();
        let inboxes: Vec<ShardInbox> = (0..2).map(|_| ShardInbox::new(16)).collect();
        for _ in 0..3 {
            topic.publish(None, Bytes::from_static(b"1"), &inboxes);
        }
        let start = topic.subscribe(1, Some(2));
        assert_eq!(start.after_seq, 3);
        assert_eq!(
            start.replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // Only shard 1 has a subscriber, so only it is sent the next message.
        assert_eq!(topic.publish(None, Bytes::from_static(b"2"), &inboxes), 4);
        assert_eq!(inboxes[0].pending(), 0);
        assert_eq!(inboxes[1].pending(), 1);
        assert_eq!(topic.stats().subscribers, 1);
    }
}
