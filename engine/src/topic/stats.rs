//! A topic's figures, as stats and metrics report them.

use std::sync::Arc;

use super::Topic;
use crate::sansio::ids::TopicId;
use crate::sansio::outbox::DeliveryClass;

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
    /// Messages in the history's window (transient ones left out).
    pub history: usize,
    /// Keys in the keyed snapshot.
    pub snapshot_keys: usize,
    /// Bytes retained by the window and the snapshot.
    pub history_bytes: usize,
    /// Messages not retained for lack of memory (topic or engine limit).
    pub retention_refused: u64,
    /// How its messages are delivered (channel rules).
    pub class: DeliveryClass,
    /// Gaps on the bus that could not be repaired from its history: each
    /// delivered as a jump in the sequence.
    pub gaps: u64,
    /// Messages those gaps skipped.
    pub gap_skipped: u64,
    /// Slots of its feed's ring now (0 while it has none: no subscriber
    /// and nothing kept): above `topics.ring_slots` while a shard lags
    /// behind it, or while its window holds more.
    pub feed_slots: u64,
    /// Times its feed's ring grew since the feed was made (with the
    /// topic's first subscriber or first kept message): for a shard that
    /// lagged, or for its window as it filled.
    pub feed_growths: u64,
}

impl Topic {
    /// The topic's figures now.
    pub fn stats(&self) -> TopicStats {
        let state = self.state.lock();
        TopicStats {
            id: self.id,
            name: Arc::clone(&self.name),
            published: state.seq,
            subscribers: state.subscribers,
            history: state.history.window_len(),
            snapshot_keys: state.history.snapshot_len(),
            history_bytes: state.history.bytes(),
            retention_refused: state.retention_refused,
            class: self.class,
            gaps: state.gaps,
            gap_skipped: state.gap_skipped,
            feed_slots: state.feed.as_ref().map_or(0, |feed| feed.capacity()),
            feed_growths: state.feed.as_ref().map_or(0, |feed| feed.growths()),
        }
    }
}
