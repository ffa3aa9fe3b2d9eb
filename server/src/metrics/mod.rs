//! `GET /metrics` in the Prometheus text format.
//!
//! Rendered on demand from one stats snapshot: shard counters are copied by
//! each shard, and the latency histogram is the per-shard HDR histograms
//! merged, then read at fixed bucket bounds.
//!
//! The `_total` families carry one unlabeled series (the total) plus one
//! series per channel; aggregate per-channel series with `{channel!=""}`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardcast_engine::{DropReason, TopicSummary, REFUSAL_LABELS};

use crate::App;

/// How long one exposition is served again (Prometheus scrapes every 15 s
/// or so; a second is invisible to it).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The exposition, rendered at most once a second: scrapes within a second
/// share it, so a busy scraper (the path is open by default) cannot make
/// every shard walk its connections per request.
pub async fn cached(app: &App) -> Bytes {
    let cached = app
        .metrics_cache
        .lock()
        .clone()
        .filter(|(at, _)| at.elapsed() < CACHE_FOR);
    if let Some((_, text)) = cached {
        return text;
    }
    let text = Bytes::from(render(app).await);
    *app.metrics_cache.lock() = Some((Instant::now(), text.clone()));
    text
}

/// Bucket upper bounds of `shardcast_delivery_latency_seconds`, in microseconds.
const BUCKETS_US: [u64; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter family: the unlabeled total, then one series per channel.
fn per_channel(
    out: &mut String,
    name: &str,
    help: &str,
    total: u64,
    topics: &[TopicSummary],
    value: impl Fn(&TopicSummary) -> u64,
) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {total}");
    for t in topics {
        let channel = LabelValue(&t.topic.name);
        let _ = writeln!(out, "{name}{{channel=\"{channel}\"}} {}", value(t));
    }
}

/// A label value as the text format writes it: `\`, `"` and line feeds
/// escaped (channel names may hold quotes and backslashes).
struct LabelValue<'a>(&'a str);

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The whole exposition.
pub async fn render(app: &App) -> String {
    let stats = app.engine.stats().await;
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "shardcast_active_connections",
        "gauge",
        "WebSocket connections open now.",
    );
    let _ = writeln!(out, "shardcast_active_connections {}", stats.connections());
    for shard in &stats.shards {
        let _ = writeln!(
            out,
            "shardcast_active_connections{{shard=\"{}\"}} {}",
            shard.index, shard.connections
        );
    }

    family(
        &mut out,
        "shardcast_protocol_connections",
        "gauge",
        "WebSocket connections open now, by the wire format they speak.",
    );
    let by_format = stats.connections_by_format();
    for ((_, format), n) in app.engine.formats().iter().zip(by_format) {
        let _ = writeln!(
            out,
            "shardcast_protocol_connections{{protocol=\"{}\"}} {n}",
            format.name()
        );
    }
    let counts = stats.counts_by_format();
    let encodings = stats.encodings_by_format();
    let of = |f: fn(&shardcast_engine::Counts) -> u64| counts.iter().map(f).collect::<Vec<u64>>();
    let per_protocol = [
        (
            "shardcast_protocol_messages_sent_total",
            "Events written to client sockets, by the wire format of the client.",
            of(|c| c.sent),
        ),
        (
            "shardcast_protocol_messages_dropped_total",
            "Events not delivered (every reason), by the wire format of the client.",
            of(|c| c.dropped_total()),
        ),
        (
            "shardcast_protocol_messages_conflated_total",
            "Events replaced in an outbox by a newer one of the same key, by wire format.",
            of(|c| c.conflated),
        ),
        (
            "shardcast_protocol_messages_filtered_total",
            "Events a subscription's symbol filter left out, by wire format.",
            of(|c| c.filtered),
        ),
        (
            "shardcast_protocol_encodings_total",
            "Messages encoded into frames: one per message and wire format, whatever the subscriber count.",
            encodings,
        ),
    ];
    for (name, help, values) in per_protocol {
        family(&mut out, name, "counter", help);
        for (i, (_, format)) in app.engine.formats().iter().enumerate() {
            let value = values.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {value}", format.name());
        }
    }

    per_channel(
        &mut out,
        "shardcast_messages_published_total",
        "Messages accepted by publish.",
        stats.published,
        &stats.topics,
        |t| t.topic.published,
    );
    per_channel(
        &mut out,
        "shardcast_messages_sent_total",
        "Events written to client sockets (replays excluded).",
        stats.counts.sent,
        &stats.topics,
        |t| t.counts.sent,
    );

    family(
        &mut out,
        "shardcast_messages_replayed_total",
        "counter",
        "Replayed events written to client sockets.",
    );
    let _ = writeln!(
        out,
        "shardcast_messages_replayed_total {}",
        stats.counts.replayed
    );

    per_channel(
        &mut out,
        "shardcast_messages_conflated_total",
        "Events replaced in a full outbox by a newer one of the same channel and key (slow_consumer = conflate), by channel.",
        stats.counts.conflated,
        &stats.topics,
        |t| t.counts.conflated,
    );

    per_channel(
        &mut out,
        "shardcast_messages_dropped_total",
        "Events not delivered to a subscriber, by channel.",
        stats.counts.dropped_total(),
        &stats.topics,
        |t| t.counts.dropped_total(),
    );

    family(
        &mut out,
        "shardcast_messages_dropped_by_reason_total",
        "counter",
        "Events not delivered, by reason.",
    );
    for reason in DropReason::ALL {
        let _ = writeln!(
            out,
            "shardcast_messages_dropped_by_reason_total{{reason=\"{}\"}} {}",
            reason.label(),
            stats.counts.dropped(reason)
        );
    }

    family(
        &mut out,
        "shardcast_socket_writes_total",
        "counter",
        "writev calls made by the shards.",
    );
    let _ = writeln!(
        out,
        "shardcast_socket_writes_total {}",
        stats.shards.iter().map(|s| s.writes).sum::<u64>()
    );
    family(
        &mut out,
        "shardcast_socket_written_bytes_total",
        "counter",
        "Bytes written to client sockets.",
    );
    let _ = writeln!(
        out,
        "shardcast_socket_written_bytes_total {}",
        stats.shards.iter().map(|s| s.bytes_written).sum::<u64>()
    );

    family(
        &mut out,
        "shardcast_flush_delay_seconds",
        "gauge",
        "Coalescing delay of each shard's writes (0 unless it runs hot).",
    );
    for shard in &stats.shards {
        let _ = writeln!(
            out,
            "shardcast_flush_delay_seconds{{shard=\"{}\"}} {}",
            shard.index,
            shard.flush_delay.as_secs_f64()
        );
    }

    family(
        &mut out,
        "shardcast_delivery_latency_seconds",
        "histogram",
        "Time from publish accepted to the event's frame written to the socket.",
    );
    let h = &stats.latency_us;
    for bound in BUCKETS_US {
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, bound)
        };
        let _ = writeln!(
            out,
            "shardcast_delivery_latency_seconds_bucket{{le=\"{}\"}} {count}",
            bound as f64 / 1e6
        );
    }
    let _ = writeln!(
        out,
        "shardcast_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
        h.len()
    );
    let _ = writeln!(
        out,
        "shardcast_delivery_latency_seconds_sum {}",
        h.mean() * h.len() as f64 / 1e6
    );
    let _ = writeln!(out, "shardcast_delivery_latency_seconds_count {}", h.len());

    let gate = app.engine.gate().stats();
    family(
        &mut out,
        "shardcast_http_connections",
        "gauge",
        "Connections in their HTTP stage (requests and handshakes) now.",
    );
    let _ = writeln!(out, "shardcast_http_connections {}", gate.http);
    family(
        &mut out,
        "shardcast_connections_refused_total",
        "counter",
        "Connections refused by a limit, by which limit.",
    );
    for (label, count) in REFUSAL_LABELS.iter().zip(gate.refused) {
        let _ = writeln!(
            out,
            "shardcast_connections_refused_total{{reason=\"{label}\"}} {count}"
        );
    }

    let topics = app.engine.topics();
    family(
        &mut out,
        "shardcast_channels",
        "gauge",
        "Channels alive now.",
    );
    let _ = writeln!(out, "shardcast_channels {}", stats.topics.len());
    family(
        &mut out,
        "shardcast_channels_expired_total",
        "counter",
        "Channels retired after sitting idle with no subscriber and no retained state.",
    );
    let _ = writeln!(
        out,
        "shardcast_channels_expired_total {}",
        stats.retired.topics
    );
    family(
        &mut out,
        "shardcast_history_bytes",
        "gauge",
        "Bytes retained by channel histories and snapshots, all channels.",
    );
    let _ = writeln!(
        out,
        "shardcast_history_bytes {}",
        stats
            .topics
            .iter()
            .map(|t| t.topic.history_bytes)
            .sum::<usize>()
    );
    family(
        &mut out,
        "shardcast_history_limit_bytes",
        "gauge",
        "topics.max_total_bytes.",
    );
    let _ = writeln!(
        out,
        "shardcast_history_limit_bytes {}",
        topics.budget().limit()
    );
    family(
        &mut out,
        "shardcast_history_refused_total",
        "counter",
        "Messages delivered but not retained for replay: over the channel's or the server's byte limit.",
    );
    let refused: u64 = stats
        .topics
        .iter()
        .map(|t| t.topic.retention_refused)
        .sum::<u64>()
        + stats.retired.retention_refused;
    let _ = writeln!(out, "shardcast_history_refused_total {refused}");

    family(
        &mut out,
        "shardcast_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(
        out,
        "shardcast_uptime_seconds {}",
        app.started.elapsed().as_secs()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_quotes_backslashes_and_line_feeds() {
        let shown = LabelValue(r#"bars:{"s":"A\B"}"#).to_string();
        assert_eq!(shown, r#"bars:{\"s\":\"A\\B\"}"#);
        assert_eq!(LabelValue("a\nb").to_string(), "a\\nb");
        assert_eq!(LabelValue("é").to_string(), "é");
    }
}
