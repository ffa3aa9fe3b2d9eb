//! Counters and snapshots.
//!
//! Shards count into plain `u64`s they own (no atomics on the hot path) and
//! hand out copies when asked through their command inbox. Latency is an HDR
//! histogram per shard, merged by whoever asked. Deliveries a shard lost by
//! falling a whole lap behind a topic's feed are counted by that shard too,
//! as `shard_overflow`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::registry::RetiredTotals;
use crate::sansio::census::{DepthHistogram, Disconnects};
use crate::sansio::counts::Counts;
use crate::sansio::deflate::DeflateCounts;
use crate::sansio::ids::TopicId;
use crate::topic::TopicStats;

/// One shard's event counts: totals since start, and per topic. Owned by
/// one shard thread.
///
/// Per-topic counts sit in a table indexed by the topic's slot, so counting
/// is an index, not a hash. A slot reused by a newer topic (a new
/// generation) starts from zero; the totals keep everything, so they never
/// go backwards when a topic expires.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    totals: Counts,
    by_topic: Vec<Option<(TopicId, Counts)>>,
}

impl Tally {
    /// Applies `count` to the totals and to `topic`'s counts.
    #[inline]
    pub(crate) fn count(&mut self, topic: TopicId, count: impl Fn(&mut Counts)) {
        count(&mut self.totals);
        count(self.slot(topic));
    }

    #[inline]
    fn slot(&mut self, topic: TopicId) -> &mut Counts {
        let index = topic.index();
        if index >= self.by_topic.len() {
            self.by_topic.resize(index + 1, None);
        }
        let slot = &mut self.by_topic[index];
        if slot.is_none_or(|(id, _)| id != topic) {
            *slot = Some((topic, Counts::default()));
        }
        match slot {
            Some((_, counts)) => counts,
            None => unreachable!("filled above"),
        }
    }

    pub(crate) fn totals(&self) -> Counts {
        self.totals
    }

    /// Counts of every topic this shard has counted for, by id.
    pub(crate) fn per_topic(&self) -> Vec<(TopicId, Counts)> {
        self.by_topic.iter().flatten().copied().collect()
    }
}

/// Delivery latency histogram: microseconds, 1 µs to 60 s, 3 significant digits.
pub(crate) fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// One shard's figures at one moment.
#[derive(Clone, Debug)]
pub struct ShardStats {
    /// The shard's index.
    pub index: usize,
    /// WebSocket connections it holds.
    pub connections: usize,
    /// Of those, how many speak each format, by format index.
    pub connections_by_format: Vec<usize>,
    /// Event counts of its connections (open and closed) by format index.
    pub counts_by_format: Vec<Counts>,
    /// Messages it encoded by format index: one per message, format and
    /// frame kind across all shards, whatever the number of subscribers.
    pub encodings_by_format: Vec<u64>,
    /// Compressions it performed for permessage-deflate by format index:
    /// one per message, format and frame kind across all shards, whatever
    /// the number of compressed subscribers; with bytes before and after.
    pub deflate_by_format: Vec<DeflateCounts>,
    /// Of its connections, how many negotiated permessage-deflate, by
    /// format index.
    pub deflated_connections_by_format: Vec<usize>,
    /// Connections it has accepted since start.
    pub connections_opened: u64,
    /// Totals over all its connections since start (never decrease).
    pub counts: Counts,
    /// Per live topic it has served.
    pub topics: Vec<(TopicId, Counts)>,
    /// `writev` calls made.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// The flush coalescing delay now (0 unless the shard runs hot).
    pub flush_delay: std::time::Duration,
    /// Frames waiting in its connections' outboxes now.
    pub queued_frames: usize,
    /// The most frames waiting in any one of its outboxes now.
    pub max_queue_depth: usize,
    /// Delivery latency (publish accepted → frame written), in microseconds.
    pub latency_us: Histogram<u64>,
    /// Connections it has closed since start, by reason and code.
    pub disconnects: Disconnects,
    /// Subscriptions its connections hold now, by format index.
    pub subscriptions_by_format: Vec<usize>,
    /// Client messages (commands, heartbeats) its sessions handled since
    /// start, by format index.
    pub client_messages_by_format: Vec<u64>,
    /// Of those, the ones answered with at least one error, by format index.
    pub client_errors_by_format: Vec<u64>,
    /// Its connections' outbox depths now.
    pub outbox_depth: DepthHistogram,
}

/// The whole engine at one moment.
#[derive(Clone, Debug)]
pub struct EngineStats {
    /// Per shard.
    pub shards: Vec<ShardStats>,
    /// Per live topic, with per-topic delivery counts merged over shards.
    pub topics: Vec<TopicSummary>,
    /// Totals over all shards, expired topics included.
    pub counts: Counts,
    /// Messages published over all topics, expired ones included.
    pub published: u64,
    /// Figures of expired topics.
    pub retired: RetiredTotals,
    /// Delivery latency merged over shards, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// One topic's figures.
#[derive(Clone, Debug)]
pub struct TopicSummary {
    /// Sequence, subscriber and history figures.
    pub topic: TopicStats,
    /// Deliveries and drops over all shards.
    pub counts: Counts,
}

impl EngineStats {
    pub(crate) fn merge(
        shards: Vec<ShardStats>,
        topics: Vec<TopicStats>,
        retired: RetiredTotals,
    ) -> Self {
        let mut counts = Counts::default();
        let mut latency_us = new_latency_histogram();
        let mut per_topic = vec![Counts::default(); topics.len()];
        let position: std::collections::HashMap<TopicId, usize> =
            topics.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        for shard in &shards {
            counts.add(&shard.counts);
            // Both histograms share bounds, so adding cannot fail.
            let _ = latency_us.add(&shard.latency_us);
            for (id, c) in &shard.topics {
                if let Some(&i) = position.get(id) {
                    per_topic[i].add(c);
                }
            }
        }
        let published = topics.iter().map(|t| t.published).sum::<u64>() + retired.published;
        let topics = topics
            .into_iter()
            .zip(per_topic)
            .map(|(topic, counts)| TopicSummary { topic, counts })
            .collect();
        Self {
            shards,
            topics,
            counts,
            published,
            retired,
            latency_us,
        }
    }

    /// WebSocket connections over all shards.
    pub fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.connections).sum()
    }

    /// WebSocket connections over all shards per format, by format index.
    pub fn connections_by_format(&self) -> Vec<usize> {
        self.sum_by_format(|s| &s.connections_by_format, |sum, n| *sum += n)
    }

    /// Event counts over all shards per format, by format index.
    pub fn counts_by_format(&self) -> Vec<Counts> {
        self.sum_by_format(|s| &s.counts_by_format, Counts::add)
    }

    /// Messages encoded over all shards per format, by format index.
    pub fn encodings_by_format(&self) -> Vec<u64> {
        self.sum_by_format(|s| &s.encodings_by_format, |sum, n| *sum += n)
    }

    /// Compressions over all shards per format, by format index.
    pub fn deflate_by_format(&self) -> Vec<DeflateCounts> {
        self.sum_by_format(|s| &s.deflate_by_format, DeflateCounts::add)
    }

    /// Connections using permessage-deflate over all shards per format, by
    /// format index.
    pub fn deflated_connections_by_format(&self) -> Vec<usize> {
        self.sum_by_format(|s| &s.deflated_connections_by_format, |sum, n| *sum += n)
    }

    /// Subscriptions held now over all shards per format, by format index.
    pub fn subscriptions_by_format(&self) -> Vec<usize> {
        self.sum_by_format(|s| &s.subscriptions_by_format, |sum, n| *sum += n)
    }

    /// Client messages handled over all shards per format, by format index.
    pub fn client_messages_by_format(&self) -> Vec<u64> {
        self.sum_by_format(|s| &s.client_messages_by_format, |sum, n| *sum += n)
    }

    /// Client messages answered with an error over all shards per format,
    /// by format index.
    pub fn client_errors_by_format(&self) -> Vec<u64> {
        self.sum_by_format(|s| &s.client_errors_by_format, |sum, n| *sum += n)
    }

    /// Connections closed over all shards, by reason and code.
    pub fn disconnects(&self) -> Disconnects {
        let mut all = Disconnects::default();
        for shard in &self.shards {
            all.add(&shard.disconnects);
        }
        all
    }

    /// Outbox depths over all shards.
    pub fn outbox_depth(&self) -> DepthHistogram {
        let mut all = DepthHistogram::default();
        for shard in &self.shards {
            all.add(&shard.outbox_depth);
        }
        all
    }

    /// A per-format figure of every shard, summed format by format.
    fn sum_by_format<T: Clone + Default>(
        &self,
        of: impl Fn(&ShardStats) -> &Vec<T>,
        add: impl Fn(&mut T, &T),
    ) -> Vec<T> {
        let mut total: Vec<T> = Vec::new();
        for shard in &self.shards {
            let figures = of(shard);
            if figures.len() > total.len() {
                total.resize(figures.len(), T::default());
            }
            for (sum, figure) in total.iter_mut().zip(figures) {
                add(sum, figure);
            }
        }
        total
    }
}

/// How many clients [`Engine::slowest_clients`](crate::Engine::slowest_clients)
/// lists (per shard, then in all).
pub const SLOWEST: usize = 10;

/// One connected client, as the admin API lists it.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client's id.
    pub client_id: Arc<str>,
    /// The principal it authenticated as.
    pub owner: Arc<str>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The shard that owns it.
    pub shard: usize,
    /// The wire format it speaks.
    pub format: &'static str,
    /// What its protocol recorded about it (see [`crate::Attachment::details`]).
    pub details: crate::Details,
    /// Topics it is subscribed to.
    pub channels: Vec<Arc<str>>,
    /// When it connected, to the millisecond.
    pub connected_at: SystemTime,
    /// How long ago it last sent anything.
    pub idle: Duration,
    /// Frames waiting in its outbox.
    pub queue_depth: usize,
    /// Bytes waiting in its outbox.
    pub queued_bytes: usize,
    /// Its event counts.
    pub counts: Counts,
}
