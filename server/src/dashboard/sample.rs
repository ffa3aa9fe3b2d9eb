//! The dashboard's `stats` frame: one engine-wide sample about once a
//! second, shared by every dashboard connected.
//!
//! Rates are the difference from the previous sample over the time between
//! them. The latency figures cover the last minute: the engine's histogram
//! counts since start, so a copy is kept every [`MARK_EVERY`] and the
//! window is the latest less the copy about a minute old.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use shardcast_engine::{ClientInfo, DropReason, EngineStats, TopicId};

use crate::protocol::common::{iso, json_frame};
use crate::App;

/// A new sample is due this long after the last. Sessions look every shard
/// tick (250 ms), so frames arrive about once a second.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(750);
/// A sample this long after the last starts afresh: rates and the latency
/// window would otherwise cover the time no dashboard was open.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// How often a copy of the latency histogram is kept for the window.
const MARK_EVERY: Duration = Duration::from_secs(5);
/// The latency window.
const WINDOW: Duration = Duration::from_secs(60);
/// Channels listed, the busiest first.
const TOP_CHANNELS: usize = 15;
/// Upper bounds of the latency chart's bars, in microseconds (then the rest).
const BARS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Counters of one channel at the last sample.
#[derive(Clone, Copy, Debug, Default)]
struct ChannelMark {
    published: u64,
    sent: u64,
    dropped: u64,
}

/// Engine-wide counters at the last sample.
#[derive(Clone, Debug, Default)]
struct Totals {
    published: u64,
    sent: u64,
    dropped: Vec<u64>,
}

/// The state between samples. Behind the dashboard's sampler mutex.
#[derive(Debug, Default)]
pub struct Sampler {
    at: Option<Instant>,
    totals: Totals,
    channels: HashMap<TopicId, ChannelMark>,
    marks: VecDeque<(Instant, Histogram<u64>)>,
}

impl Sampler {
    /// The `stats` frame of `stats` and `slowest`.
    pub fn record(&mut self, app: &App, stats: &EngineStats, slowest: &[ClientInfo]) -> Bytes {
        let now = Instant::now();
        if self
            .at
            .is_some_and(|at| now.duration_since(at) >= STALE_AFTER)
        {
            *self = Self::default();
        }
        let seconds = self
            .at
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        let rate = |now: u64, before: u64| {
            if seconds > 0.0 {
                now.saturating_sub(before) as f64 / seconds
            } else {
                0.0
            }
        };
        let dropped: Vec<u64> = DropReason::ALL
            .iter()
            .map(|r| stats.counts.dropped(*r))
            .collect();
        let drop_rates: serde_json::Map<String, Value> = DropReason::ALL
            .iter()
            .zip(&dropped)
            .enumerate()
            .map(|(i, (reason, now))| {
                let before = self.totals.dropped.get(i).copied().unwrap_or(*now);
                (reason.label().to_owned(), rate(*now, before).into())
            })
            .collect();
        let rates = json!({
            "published": rate(stats.published, self.totals.published),
            "sent": rate(stats.counts.sent, self.totals.sent),
            "dropped": drop_rates,
        });

        // Ranked on numbers; only the busiest few become JSON.
        let mut ranked: Vec<(f64, u64, usize)> = Vec::with_capacity(stats.topics.len());
        let mut marks = HashMap::with_capacity(stats.topics.len());
        for (i, t) in stats.topics.iter().enumerate() {
            let mark = ChannelMark {
                published: t.topic.published,
                sent: t.counts.sent,
                dropped: t.counts.dropped_total(),
            };
            let before = self.channels.get(&t.topic.id).copied().unwrap_or(mark);
            ranked.push((
                rate(mark.published, before.published),
                t.topic.subscribers,
                i,
            ));
            marks.insert(t.topic.id, mark);
        }
        let busiest =
            |a: &(f64, u64, usize), b: &(f64, u64, usize)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));
        if ranked.len() > TOP_CHANNELS {
            ranked.select_nth_unstable_by(TOP_CHANNELS, busiest);
            ranked.truncate(TOP_CHANNELS);
        }
        ranked.sort_unstable_by(busiest);
        let channels: Vec<Value> = ranked
            .iter()
            .map(|&(publish_rate, _, i)| {
                let t = &stats.topics[i];
                let mark = marks[&t.topic.id];
                let before = self.channels.get(&t.topic.id).copied().unwrap_or(mark);
                json!({
                    "name": &*t.topic.name,
                    "subscribers": t.topic.subscribers,
                    "publishRate": publish_rate,
                    "sendRate": rate(mark.sent, before.sent),
                    "dropRate": rate(mark.dropped, before.dropped),
                    "published": mark.published,
                    "dropped": mark.dropped,
                    "historySize": t.topic.history,
                    "historyBytes": t.topic.history_bytes,
                    "priority": t.topic.class.priority.name(),
                })
            })
            .collect();

        let formats = app.engine.formats();
        let by_protocol: serde_json::Map<String, Value> = formats
            .iter()
            .zip(stats.connections_by_format())
            .map(|((_, format), n)| (format.name().to_owned(), n.into()))
            .collect();
        let frame = json!({
            "type": "stats",
            "at": iso(SystemTime::now()),
            "uptimeSeconds": app.started.elapsed().as_secs(),
            "draining": app.is_draining(),
            "connections": {
                "total": stats.connections(),
                "byProtocol": by_protocol,
                "byShard": stats.shards.iter().map(|s| s.connections).collect::<Vec<_>>(),
                "http": app.engine.gate().stats().http,
            },
            "rates": rates,
            "totals": {
                "published": stats.published,
                "sent": stats.counts.sent,
                "dropped": stats.counts.dropped_total(),
                "conflated": stats.counts.conflated,
            },
            "latency": self.latency(now, &stats.latency_us),
            "channelCount": stats.topics.len(),
            "channels": channels,
            "slowest": slowest.iter().map(client).collect::<Vec<_>>(),
        });

        self.at = Some(now);
        self.totals = Totals {
            published: stats.published,
            sent: stats.counts.sent,
            dropped,
        };
        self.channels = marks;
        json_frame(&frame)
    }

    /// Delivery latency over about the last minute: quantiles in
    /// milliseconds and the counts per bar of the chart.
    fn latency(&mut self, now: Instant, total: &Histogram<u64>) -> Value {
        if self
            .marks
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= MARK_EVERY)
        {
            self.marks.push_back((now, total.clone()));
        }
        while self.marks.len() > 1 && now.duration_since(self.marks[1].0) >= WINDOW {
            self.marks.pop_front();
        }
        let mut window = total.clone();
        let since = match self.marks.front() {
            Some((at, old)) if window.subtract(old).is_ok() => now.duration_since(*at),
            _ => Duration::ZERO,
        };
        let quantile = |q: f64| {
            if window.is_empty() {
                Value::Null
            } else {
                (window.value_at_quantile(q) as f64 / 1000.0).into()
            }
        };
        let mut below = 0;
        let mut bars: Vec<Value> = BARS_US
            .iter()
            .map(|&bound| {
                let upto = if window.is_empty() {
                    0
                } else {
                    window.count_between(0, bound)
                };
                let bar = json!({"le": bound as f64 / 1000.0, "count": upto - below});
                below = upto;
                bar
            })
            .collect();
        bars.push(json!({"le": null, "count": window.len().saturating_sub(below)}));
        json!({
            "seconds": since.as_secs(),
            "count": window.len(),
            "p50": quantile(0.5),
            "p99": quantile(0.99),
            "p999": quantile(0.999),
            "bars": bars,
        })
    }
}

/// One of the slowest clients.
fn client(c: &ClientInfo) -> Value {
    json!({
        "clientId": &*c.client_id,
        "owner": &*c.owner,
        "protocol": c.format,
        "shard": c.shard,
        "peer": c.peer.to_string(),
        "queueDepth": c.queue_depth,
        "queuedBytes": c.queued_bytes,
        "dropped": c.counts.dropped_total(),
        "conflated": c.counts.conflated,
        "sent": c.counts.sent,
        "connectedAt": iso(c.connected_at),
    })
}
