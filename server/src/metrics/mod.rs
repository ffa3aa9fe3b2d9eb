//! `GET /metrics` in the Prometheus text format.
//!
//! Rendered on demand from one stats snapshot: shard counters are copied by
//! each shard (which also walks its connections for the gauges: outbox
//! depths, subscriptions), and the latency histogram is the per-shard HDR
//! histograms merged, then read at fixed bucket bounds.
//!
//! Every family sums to what it says: a family is either unlabelled (one
//! total) or fully labelled, never both, so `sum()` over any family counts
//! nothing twice. Totals that are also wanted per channel or per shard come
//! in two families (`shardcast_messages_sent_total`, and
//! `shardcast_channel_messages_sent_total{channel}`); the per-channel ones
//! are capped in size (see `channels.rs`).

mod broker;
mod channels;
mod compression;
mod config;
mod text;
mod tls;
mod upgrades;

use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use shardcast_engine::{DropReason, EngineStats, OUTBOX_DEPTH_BOUNDS, REFUSAL_LABELS};

pub use channels::OTHER;
pub use config::{MetricsConfig, RawMetrics, DEFAULT_MAX_CHANNEL_LABELS};
use text::{Exposition, Kind};
pub use upgrades::{UpgradeRefusal, Upgrades};

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

/// The whole exposition.
pub async fn render(app: &App) -> String {
    let stats = app.engine.stats().await;
    let mut out = Exposition::with_capacity(8192);
    connections(&mut out, app, &stats);
    clients(&mut out, app, &stats);
    protocols(&mut out, app, &stats);
    compression::families(&mut out, app, &stats);
    channels::render(&mut out, &stats, app.config.metrics.max_channel_labels);
    deliveries(&mut out, &stats);
    latency(&mut out, &stats);
    retention(&mut out, app, &stats);
    process(&mut out, app);
    if let Some(tls) = &app.tls {
        tls::render(&mut out, tls);
    }
    if let Some(bus) = &app.bus {
        broker::render(&mut out, &**bus);
    }
    out.finish()
}

/// Sockets and WebSocket connections: open now, attempted, refused, closed.
fn connections(out: &mut Exposition, app: &App, stats: &EngineStats) {
    out.single(
        "shardcast_active_connections",
        Kind::Gauge,
        "WebSocket connections open now.",
        stats.connections(),
    );
    let name = "shardcast_shard_connections";
    out.family(
        name,
        Kind::Gauge,
        "WebSocket connections open now, by shard.",
    );
    for shard in &stats.shards {
        out.sample(
            name,
            &[("shard", &shard.index.to_string())],
            shard.connections,
        );
    }
    let gate = app.engine.gate().stats();
    out.single(
        "shardcast_http_connections",
        Kind::Gauge,
        "Connections in their HTTP stage (requests and handshakes) now.",
        gate.http,
    );
    out.single(
        "shardcast_tcp_accepts_total",
        Kind::Counter,
        "TCP connections accepted (WebSocket or plain HTTP), the ones refused at once included.",
        gate.accepted,
    );
    let name = "shardcast_connections_refused_total";
    out.family(
        name,
        Kind::Counter,
        "Connections refused by a limit, by which limit.",
    );
    for (label, count) in REFUSAL_LABELS.iter().zip(gate.refused) {
        out.sample(name, &[("reason", label)], count);
    }
    out.single(
        "shardcast_websocket_upgrade_requests_total",
        Kind::Counter,
        "Requests to a WebSocket endpoint (upgrade attempts), the refused ones included.",
        app.upgrades.requests(),
    );
    let name = "shardcast_websocket_upgrades_refused_total";
    out.family(
        name,
        Kind::Counter,
        "Upgrade requests that did not become a connection, by reason.",
    );
    for (why, count) in app.upgrades.refused() {
        out.sample(name, &[("reason", why.label())], count);
    }
    let name = "shardcast_disconnects_total";
    out.family(
        name,
        Kind::Counter,
        "WebSocket connections closed, by reason and close code.",
    );
    for d in stats.disconnects().sorted() {
        out.sample(
            name,
            &[("reason", d.reason), ("code", &d.code.to_string())],
            d.count,
        );
    }
}

/// What clients hold and send: subscriptions, messages, errors, outboxes.
fn clients(out: &mut Exposition, app: &App, stats: &EngineStats) {
    let per_protocol: [(&str, Kind, &str, Vec<u64>); 3] = [
        (
            "shardcast_subscriptions",
            Kind::Gauge,
            "Subscriptions held now, by the wire format of the client.",
            stats
                .subscriptions_by_format()
                .into_iter()
                .map(|n| n as u64)
                .collect(),
        ),
        (
            "shardcast_client_commands_total",
            Kind::Counter,
            "Messages received from clients (commands, heartbeats), by wire format.",
            stats.client_messages_by_format(),
        ),
        (
            "shardcast_client_errors_total",
            Kind::Counter,
            "Client messages answered with an error, by wire format.",
            stats.client_errors_by_format(),
        ),
    ];
    for (name, kind, help, values) in per_protocol {
        by_protocol(out, app, name, kind, help, &values);
    }
    let depths = stats.outbox_depth();
    let name = "shardcast_outbox_depth";
    out.family(
        name,
        Kind::Histogram,
        "Frames waiting in each connection's outbox now: connections by depth.",
    );
    let bucket = format!("{name}_bucket");
    for (bound, count) in OUTBOX_DEPTH_BOUNDS.iter().zip(depths.cumulative()) {
        out.sample(&bucket, &[("le", &bound.to_string())], count);
    }
    out.sample(&bucket, &[("le", "+Inf")], depths.count());
    out.sample(&format!("{name}_sum"), &[], depths.sum);
    out.sample(&format!("{name}_count"), &[], depths.count());
}

/// A family of one series per wire format, `values` by format index.
fn by_protocol(
    out: &mut Exposition,
    app: &App,
    name: &str,
    kind: Kind,
    help: &str,
    values: &[u64],
) {
    out.family(name, kind, help);
    for (i, (_, format)) in app.engine.formats().iter().enumerate() {
        let value = values.get(i).copied().unwrap_or(0);
        out.sample(name, &[("protocol", format.name())], value);
    }
}

/// Connections and their events by the wire format they speak.
fn protocols(out: &mut Exposition, app: &App, stats: &EngineStats) {
    let connections: Vec<u64> = stats
        .connections_by_format()
        .into_iter()
        .map(|n| n as u64)
        .collect();
    let counts = stats.counts_by_format();
    let of = |f: fn(&shardcast_engine::Counts) -> u64| counts.iter().map(f).collect::<Vec<u64>>();
    let families = [
        (
            "shardcast_protocol_connections",
            Kind::Gauge,
            "WebSocket connections open now, by the wire format they speak.",
            connections,
        ),
        (
            "shardcast_protocol_messages_sent_total",
            Kind::Counter,
            "Events written to client sockets, by the wire format of the client.",
            of(|c| c.sent),
        ),
        (
            "shardcast_protocol_messages_dropped_total",
            Kind::Counter,
            "Events not delivered (every reason), by the wire format of the client.",
            of(|c| c.dropped_total()),
        ),
        (
            "shardcast_protocol_messages_conflated_total",
            Kind::Counter,
            "Events replaced in an outbox by a newer one of the same key, by wire format.",
            of(|c| c.conflated),
        ),
        (
            "shardcast_protocol_messages_filtered_total",
            Kind::Counter,
            "Events a subscription's symbol filter left out, by wire format.",
            of(|c| c.filtered),
        ),
        (
            "shardcast_protocol_encodings_total",
            Kind::Counter,
            "Messages encoded into frames: one per message and wire format, whatever the subscriber count.",
            stats.encodings_by_format(),
        ),
    ];
    for (name, kind, help, values) in families {
        by_protocol(out, app, name, kind, help, &values);
    }
}

/// Replays, drops by reason, and what the shards wrote.
fn deliveries(out: &mut Exposition, stats: &EngineStats) {
    out.single(
        "shardcast_messages_replayed_total",
        Kind::Counter,
        "Replayed events written to client sockets.",
        stats.counts.replayed,
    );
    let name = "shardcast_messages_dropped_by_reason_total";
    out.family(name, Kind::Counter, "Events not delivered, by reason.");
    for reason in DropReason::ALL {
        out.sample(
            name,
            &[("reason", reason.label())],
            stats.counts.dropped(reason),
        );
    }
    out.single(
        "shardcast_socket_writes_total",
        Kind::Counter,
        "writev calls made by the shards.",
        stats.shards.iter().map(|s| s.writes).sum::<u64>(),
    );
    out.single(
        "shardcast_socket_written_bytes_total",
        Kind::Counter,
        "Bytes written to client sockets.",
        stats.shards.iter().map(|s| s.bytes_written).sum::<u64>(),
    );
    let name = "shardcast_flush_delay_seconds";
    out.family(
        name,
        Kind::Gauge,
        "Coalescing delay of each shard's writes (0 unless it runs hot).",
    );
    for shard in &stats.shards {
        out.sample(
            name,
            &[("shard", &shard.index.to_string())],
            shard.flush_delay.as_secs_f64(),
        );
    }
}

/// `shardcast_delivery_latency_seconds`.
fn latency(out: &mut Exposition, stats: &EngineStats) {
    let name = "shardcast_delivery_latency_seconds";
    out.family(
        name,
        Kind::Histogram,
        "Time from publish accepted to the event's frame written to the socket.",
    );
    let h = &stats.latency_us;
    let bucket = format!("{name}_bucket");
    for bound in BUCKETS_US {
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, bound)
        };
        let le = (bound as f64 / 1e6).to_string();
        out.sample(&bucket, &[("le", &le)], count);
    }
    out.sample(&bucket, &[("le", "+Inf")], h.len());
    out.sample(&format!("{name}_sum"), &[], h.mean() * h.len() as f64 / 1e6);
    out.sample(&format!("{name}_count"), &[], h.len());
}

/// Channels and what they retain for replay.
fn retention(out: &mut Exposition, app: &App, stats: &EngineStats) {
    out.single(
        "shardcast_channels",
        Kind::Gauge,
        "Channels alive now.",
        stats.topics.len(),
    );
    out.single(
        "shardcast_channels_expired_total",
        Kind::Counter,
        "Channels retired after sitting idle with no subscriber and no retained state.",
        stats.retired.topics,
    );
    out.single(
        "shardcast_history_bytes",
        Kind::Gauge,
        "Bytes retained by channel histories and snapshots, all channels.",
        stats
            .topics
            .iter()
            .map(|t| t.topic.history_bytes)
            .sum::<usize>(),
    );
    out.single(
        "shardcast_feed_slots",
        Kind::Gauge,
        "Slots of the channels' feeds (the rings shards read, whose newest messages are the channels' history), all channels: topics.ring_slots per channel with subscribers, a few for one that only keeps messages, more while a shard lags behind a burst or a window fills.",
        stats.topics.iter().map(|t| t.topic.feed_slots).sum::<u64>(),
    );
    out.single(
        "shardcast_history_limit_bytes",
        Kind::Gauge,
        "topics.max_total_bytes.",
        app.engine.topics().budget().limit(),
    );
    let refused: u64 = stats
        .topics
        .iter()
        .map(|t| t.topic.retention_refused)
        .sum::<u64>()
        + stats.retired.retention_refused;
    out.single(
        "shardcast_history_refused_total",
        Kind::Counter,
        "Messages delivered but not retained for replay: over the channel's or the server's byte limit.",
        refused,
    );
}

/// The process: when it started, how long ago, which build.
fn process(out: &mut Exposition, app: &App) {
    out.single(
        "shardcast_uptime_seconds",
        Kind::Gauge,
        "Seconds since the server started.",
        app.started.elapsed().as_secs(),
    );
    let since_epoch = app
        .started_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    out.single(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        since_epoch.as_secs(),
    );
    let name = "shardcast_build_info";
    out.family(
        name,
        Kind::Gauge,
        "Always 1; the version of the running server is its label.",
    );
    out.sample(name, &[("version", env!("CARGO_PKG_VERSION"))], 1);
}
