//! The broker families, present only with an external broker (Redis, NATS):
//! whether it is reachable, what went to and came from the bus, gaps, and
//! how long the bus takes to accept a publish.

use std::sync::atomic::Ordering;

use super::text::{Exposition, Kind};
use super::BUCKETS_US;
use crate::broker::Bus;

/// Writes the broker families of `bus`.
pub(super) fn render(out: &mut Exposition, bus: &dyn Bus) {
    let h = bus.health();
    let kind = bus.kind();
    let labels = [("broker", kind), ("node", bus.node_id())];
    out.family(
        "shardcast_broker_up",
        Kind::Gauge,
        "1 while the broker is reachable; 0 while it is not (publishes are refused with 503, /health says degraded).",
    );
    out.sample("shardcast_broker_up", &labels, u8::from(h.is_connected()));
    let counters = [
        ("shardcast_broker_published_total", "Messages the bus accepted from this server (with Redis: numbered, stored, published).", &h.published),
        ("shardcast_broker_publish_errors_total", "Publishes refused because the bus could not take them (unreachable, or an error from it).", &h.publish_errors),
        ("shardcast_broker_overloaded_total", "Publishes refused because broker.queue_size messages were already waiting for the bus.", &h.overloaded),
        ("shardcast_broker_received_total", "Messages received from the bus for channels this server follows.", &h.received),
        ("shardcast_broker_malformed_total", "Messages from the bus that could not be read (dropped and logged).", &h.malformed),
        ("shardcast_broker_reconnects_total", "Connections to the bus made again after one was lost.", &h.reconnects),
        ("shardcast_broker_gaps_detected_total", "Gaps in a channel's sequence seen on the bus (with NATS: channels started on a new run after messages were lost).", &h.gaps_detected),
        ("shardcast_broker_gaps_repaired_total", "Gaps filled from the bus's history (the rest are delivered as a visible jump).", &h.gaps_repaired),
    ];
    for (name, help, counter) in counters {
        out.family(name, Kind::Counter, help);
        out.sample(name, &labels, counter.load(Ordering::Relaxed));
    }
    let gauges = [
        ("shardcast_broker_queued", "Publishes waiting for the bus now.", h.queued.load(Ordering::Relaxed)),
        ("shardcast_broker_followed_channels", "Channels this server follows on the bus now (those with local subscribers, and those left recently).", h.followed.load(Ordering::Relaxed)),
    ];
    for (name, help, value) in gauges {
        out.family(name, Kind::Gauge, help);
        out.sample(name, &labels, value);
    }
    let name = "shardcast_broker_publish_seconds";
    out.family(
        name,
        Kind::Histogram,
        "Time from a publish being queued for the bus to the bus accepting it.",
    );
    let latency = h.publish_latency_us.lock();
    let bucket = format!("{name}_bucket");
    for bound in BUCKETS_US {
        let count = if latency.is_empty() {
            0
        } else {
            latency.count_between(0, bound)
        };
        let le = (bound as f64 / 1e6).to_string();
        out.sample(&bucket, &[labels[0], labels[1], ("le", &le)], count);
    }
    out.sample(
        &bucket,
        &[labels[0], labels[1], ("le", "+Inf")],
        latency.len(),
    );
    let sum = latency.mean() * latency.len() as f64 / 1e6;
    out.sample(&format!("{name}_sum"), &labels, sum);
    out.sample(&format!("{name}_count"), &labels, latency.len());
}
