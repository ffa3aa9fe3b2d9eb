//! Admin endpoints: `/api/v1/websocket/stats`, `/api/v1/websocket/clients`,
//! and `DELETE /api/v1/websocket/clients/{clientId}`.
//!
//! Figures come from the shards through their command inboxes (each shard
//! copies its own counters), so reading them costs the delivery path nothing.

use std::time::SystemTime;

use bytes::BytesMut;
use hyper::StatusCode;
use serde_json::{json, Value};
use shardcast_engine::{write_iso8601, CloseReason, Counts, DropReason};

use crate::input::{sanitize, truncate};
use crate::App;

/// Path prefix of the per-client endpoint.
pub const CLIENTS_PREFIX: &str = "/api/v1/websocket/clients/";

/// Longest operator-supplied close reason (a close frame holds 123 bytes of text).
const MAX_REASON: usize = 120;

fn drops_by_reason(counts: &Counts) -> Value {
    let mut map = serde_json::Map::new();
    for reason in DropReason::ALL {
        map.insert(camel(reason.label()), json!(counts.dropped(reason)));
    }
    Value::Object(map)
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn iso(time: SystemTime) -> String {
    let mut out = BytesMut::with_capacity(24);
    write_iso8601(&mut out, time);
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /api/v1/websocket/stats`.
pub async fn stats(app: &App) -> Value {
    let stats = app.engine.stats().await;
    let latency = &stats.latency_us;
    let quantile_ms = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            latency.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let channels: Vec<Value> = stats
        .topics
        .iter()
        .map(|t| {
            json!({
                "channel": &*t.topic.name,
                "published": t.topic.published,
                "subscribers": t.topic.subscribers,
                "sent": t.counts.sent,
                "replayed": t.counts.replayed,
                "dropped": t.counts.dropped_total(),
                "droppedByReason": drops_by_reason(&t.counts),
                "historySize": t.topic.history,
                "historyBytes": t.topic.history_bytes,
                "retentionRefused": t.topic.retention_refused,
                "snapshotCount": t.topic.snapshot_keys,
            })
        })
        .collect();
    let shards: Vec<Value> = stats
        .shards
        .iter()
        .map(|s| {
            json!({
                "shard": s.index,
                "connections": s.connections,
                "connectionsOpened": s.connections_opened,
                "sent": s.counts.sent,
                "dropped": s.counts.dropped_total(),
                "writes": s.writes,
                "bytesWritten": s.bytes_written,
                "flushDelayMicros": s.flush_delay.as_micros() as u64,
                "queuedFrames": s.queued_frames,
                "maxQueueDepth": s.max_queue_depth,
            })
        })
        .collect();
    json!({
        "activeConnections": stats.connections(),
        "messagesPublished": stats.published,
        "messagesSent": stats.counts.sent,
        "messagesReplayed": stats.counts.replayed,
        "messagesDropped": stats.counts.dropped_total(),
        "droppedByReason": drops_by_reason(&stats.counts),
        "snapshotCount": stats.topics.iter().map(|t| t.topic.snapshot_keys).sum::<usize>(),
        "channelCount": stats.topics.len(),
        "channelsExpired": stats.retired.topics,
        "historyBytes": stats.topics.iter().map(|t| t.topic.history_bytes).sum::<usize>(),
        "historyBytesLimit": app.config.engine.max_history_bytes,
        "httpConnections": app.engine.gate().http(),
        "queuedFrames": stats.shards.iter().map(|s| s.queued_frames).sum::<usize>(),
        "maxQueueDepth": stats.shards.iter().map(|s| s.max_queue_depth).max().unwrap_or(0),
        "deliveryLatencyMs": {
            "p50": quantile_ms(0.5),
            "p90": quantile_ms(0.9),
            "p99": quantile_ms(0.99),
            "max": latency.max() as f64 / 1000.0,
        },
        "channels": channels,
        "shards": shards,
        "uptimeSeconds": app.started.elapsed().as_secs(),
    })
}

/// `GET /api/v1/websocket/clients`.
pub async fn clients(app: &App) -> Value {
    let now = SystemTime::now();
    let mut list = app.engine.clients().await;
    list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let clients: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({
                "clientId": &*c.client_id,
                "owner": &*c.owner,
                "remoteAddress": c.peer.to_string(),
                "shard": c.shard,
                "protocol": c.format,
                "channels": c.channels.iter().map(|t| &**t).collect::<Vec<_>>(),
                "connectedAt": iso(c.connected_at),
                "lastHeartbeat": iso(now.checked_sub(c.idle).unwrap_or(now)),
                "queueDepth": c.queue_depth,
                "queuedBytes": c.queued_bytes,
                "sent": c.counts.sent,
                "replayed": c.counts.replayed,
                "dropped": c.counts.dropped_total(),
                "droppedByReason": drops_by_reason(&c.counts),
            })
        })
        .collect();
    json!({ "count": clients.len(), "clients": clients })
}

/// `DELETE /api/v1/websocket/clients/{clientId}?reason=…&owner=…`.
///
/// Client ids are per principal; without `owner`, every principal's client
/// with this id is closed. The reason reaches a log line and the client's
/// close frame, so control and invisible formatting characters are
/// neutralised first (no forged log lines, no terminal escapes) and it is
/// cut to fit a close frame.
pub fn disconnect(
    app: &App,
    client_id: &str,
    owner: Option<&str>,
    reason: Option<&str>,
) -> (StatusCode, Value) {
    let reason = reason
        .map(|r| sanitize(r, MAX_REASON).into_owned())
        .unwrap_or_else(|| "DISCONNECTED_BY_ADMIN".to_owned());
    let closed = app
        .engine
        .disconnect(client_id, owner, CloseReason::Kicked(reason.clone()));
    if closed > 0 {
        let owner = owner.map(|o| sanitize(o, 128));
        tracing::info!(client = %sanitize(client_id, 128), owner = ?owner, %reason, closed, "forced disconnect");
        (
            StatusCode::OK,
            json!({ "clientId": client_id, "disconnected": true, "connections": closed, "reason": reason }),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            json!({ "error": { "code": "UNKNOWN_CLIENT", "message": format!("no connected client {:?}", truncate(client_id, 128)) } }),
        )
    }
}
