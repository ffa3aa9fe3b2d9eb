//! A topic's memory: the last N messages and the latest message per key.
//!
//! Owned by its topic and touched only under the topic's lock. Sans-IO.
//!
//! - The ring keeps the most recent `capacity` messages in sequence order.
//! - The keyed snapshot keeps, for each key, the latest message with that key,
//!   at most `max_keys` keys; past that the key updated longest ago is evicted.
//!   `by_seq` orders the snapshot by sequence so replay is oldest-first and
//!   eviction is O(log n).
//!
//! Replay prefers the snapshot when the topic has keyed messages (the current
//! state of every key is worth more than the last N updates of a few keys),
//! otherwise the ring.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::message::Message;

/// A topic's recent messages and keyed snapshot. Owned by one topic, under its lock.
#[derive(Debug)]
pub struct History {
    ring: VecDeque<Arc<Message>>,
    capacity: usize,
    latest_by_key: HashMap<Box<str>, u64>,
    by_seq: BTreeMap<u64, Arc<Message>>,
    max_keys: usize,
}

impl History {
    /// Empty history keeping `capacity` messages and `max_keys` keys.
    pub fn new(capacity: usize, max_keys: usize) -> Self {
        Self {
            ring: VecDeque::new(),
            capacity,
            latest_by_key: HashMap::new(),
            by_seq: BTreeMap::new(),
            max_keys,
        }
    }

    /// Records `msg`, evicting the oldest message and, for a new key past the
    /// limit, the key updated longest ago.
    pub fn record(&mut self, msg: &Arc<Message>) {
        if self.capacity > 0 {
            if self.ring.len() == self.capacity {
                self.ring.pop_front();
            }
            self.ring.push_back(Arc::clone(msg));
        }
        let Some(key) = msg.key.as_deref() else {
            return;
        };
        if self.max_keys == 0 {
            return;
        }
        if let Some(old_seq) = self.latest_by_key.get_mut(key) {
            self.by_seq.remove(old_seq);
            *old_seq = msg.seq;
        } else {
            if self.latest_by_key.len() == self.max_keys {
                if let Some((_, evicted)) = self.by_seq.pop_first() {
                    let evicted_key = evicted.key.as_deref().expect("snapshot entries have keys");
                    self.latest_by_key.remove(evicted_key);
                }
            }
            self.latest_by_key.insert(key.into(), msg.seq);
        }
        self.by_seq.insert(msg.seq, Arc::clone(msg));
    }

    /// At most `limit` messages to replay, oldest first: the latest per key
    /// when the topic has keyed messages, otherwise the most recent.
    pub fn replay(&self, limit: usize) -> Vec<Arc<Message>> {
        let mut out: Vec<Arc<Message>> = if self.by_seq.is_empty() {
            self.ring.iter().rev().take(limit).cloned().collect()
        } else {
            self.by_seq.values().rev().take(limit).cloned().collect()
        };
        out.reverse();
        out
    }

    /// Keys in the snapshot.
    pub fn snapshot_len(&self) -> usize {
        self.latest_by_key.len()
    }

    /// Messages in the ring.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TopicId;
    use bytes::Bytes;

    fn msg(seq: u64, key: Option<&str>) -> Arc<Message> {
        Arc::new(Message::new(
            TopicId(0),
            "t".into(),
            seq,
            key.map(Into::into),
            Bytes::from(seq.to_string()),
        ))
    }

    fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn ring_keeps_the_last_capacity_messages_in_order() {
        let mut history = History::new(5, 10);
        for seq in 1..=12 {
            history.record(&msg(seq, None));
        }
        assert_eq!(history.ring_len(), 5);
        assert_eq!(seqs(&history.replay(50)), vec![8, 9, 10, 11, 12]);
        assert_eq!(seqs(&history.replay(2)), vec![11, 12]);
        assert!(history.replay(0).is_empty());
    }

    #[test]
    fn snapshot_keeps_the_latest_message_per_key() {
        let mut history = History::new(100, 10);
        history.record(&msg(1, Some("AAPL")));
        history.record(&msg(2, Some("MSFT")));
        history.record(&msg(3, Some("AAPL")));
        history.record(&msg(4, Some("TSLA")));
        history.record(&msg(5, Some("MSFT")));
        assert_eq!(history.snapshot_len(), 3);
        // Oldest first: AAPL@3, TSLA@4, MSFT@5.
        assert_eq!(seqs(&history.replay(50)), vec![3, 4, 5]);
        assert_eq!(seqs(&history.replay(2)), vec![4, 5]);
    }

    #[test]
    fn snapshot_evicts_the_key_updated_longest_ago() {
        let mut history = History::new(0, 2);
        history.record(&msg(1, Some("A")));
        history.record(&msg(2, Some("B")));
        history.record(&msg(3, Some("A")));
        history.record(&msg(4, Some("C")));
        assert_eq!(history.snapshot_len(), 2);
        // B was updated longest ago and is gone.
        let keys: Vec<_> = history
            .replay(10)
            .iter()
            .map(|m| m.key.clone().unwrap())
            .collect();
        assert_eq!(keys, vec!["A".into(), "C".into()] as Vec<Box<str>>);
    }

    #[test]
    fn unkeyed_messages_in_a_keyed_topic_stay_out_of_the_snapshot() {
        let mut history = History::new(10, 10);
        history.record(&msg(1, Some("A")));
        history.record(&msg(2, None));
        assert_eq!(seqs(&history.replay(10)), vec![1]);
    }
}
