//! permessage-deflate families: connections using it, and the compressions
//! performed with their bytes before and after, by protocol.
//!
//! Rendered with the other families from the same stats snapshot. A
//! compression is counted once per message, format and frame kind (the
//! shard that compressed it counts it), so `compressions_total` over
//! `encodings_total` is the share of encoded messages big enough to
//! compress, and neither grows with the subscriber count.

use shardcast_engine::{DeflateCounts, EngineStats};

use super::by_protocol;
use super::text::{Exposition, Kind};
use crate::App;

/// The permessage-deflate families.
pub(super) fn families(out: &mut Exposition, app: &App, stats: &EngineStats) {
    let connections: Vec<u64> = stats
        .deflated_connections_by_format()
        .into_iter()
        .map(|n| n as u64)
        .collect();
    let counts = stats.deflate_by_format();
    let of = |f: fn(&DeflateCounts) -> u64| counts.iter().map(f).collect::<Vec<u64>>();
    let families = [
        (
            "shardcast_protocol_deflate_connections",
            Kind::Gauge,
            "WebSocket connections open now that negotiated permessage-deflate, by wire format.",
            connections,
        ),
        (
            "shardcast_protocol_deflate_compressions_total",
            Kind::Counter,
            "Messages compressed for permessage-deflate: one per message and frame kind, whatever the subscriber count.",
            of(|c| c.messages),
        ),
        (
            "shardcast_protocol_deflate_input_bytes_total",
            Kind::Counter,
            "Payload bytes of the messages compressed, before compression.",
            of(|c| c.bytes_in),
        ),
        (
            "shardcast_protocol_deflate_output_bytes_total",
            Kind::Counter,
            "Payload bytes of the frames sent for them, after compression.",
            of(|c| c.bytes_out),
        ),
    ];
    for (name, kind, help, values) in families {
        by_protocol(out, app, name, kind, help, &values);
    }
}
