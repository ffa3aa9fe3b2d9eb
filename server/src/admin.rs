//! Admin endpoints: `/api/v1/websocket/stats`, `/api/v1/websocket/clients`,
//! `DELETE /api/v1/websocket/clients/{clientId}`, `/metrics`, `/health`,
//! `/ready`.
//!
//! Registered in the route table like a protocol's endpoints (all need the
//! admin role unless listed in `open_paths`). Figures come from the shards
//! through their command inboxes (each shard copies its own counters), so
//! reading them costs the delivery path nothing.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use shardcast_engine::{CloseReason, Counts, DeflateCounts, DropReason};

use crate::auth::Role;
use crate::http::json as json_response;
use crate::input::{sanitize, truncate};
use crate::protocol::common::{iso, ApiCode};
use crate::protocol::{
    Answer, Auth, Call, Descriptor, Handler, HttpEndpoint, PathTemplate, Registry,
};
use crate::{metrics, App};

/// Registers the admin endpoints.
pub fn register(registry: &mut Registry) -> anyhow::Result<()> {
    let endpoints = [
        ("/api/v1/websocket/stats", Method::GET, Admin::Stats),
        ("/api/v1/websocket/clients", Method::GET, Admin::Clients),
        (
            "/api/v1/websocket/clients/{*clientId}",
            Method::DELETE,
            Admin::Disconnect,
        ),
        ("/metrics", Method::GET, Admin::Metrics),
        ("/health", Method::GET, Admin::Health),
        ("/ready", Method::GET, Admin::Ready),
    ];
    for (path, method, admin) in endpoints {
        registry.endpoint(Descriptor {
            protocol: "admin",
            path: PathTemplate::parse(path)?,
            auth: admin.auth(),
            role: Role::Admin,
            handler: Handler::Http(method, Arc::new(admin)),
        })?;
    }
    Ok(())
}

/// One admin endpoint. Shared by all shards.
#[derive(Clone, Copy, Debug)]
enum Admin {
    Stats,
    Clients,
    Disconnect,
    Metrics,
    Health,
    Ready,
}

impl Admin {
    /// How its callers authenticate: a scraper sends its key as a bearer
    /// token (Prometheus's `authorization` setting).
    fn auth(self) -> Auth {
        match self {
            Admin::Metrics => Auth::CredentialsOrBearerKey,
            Admin::Stats | Admin::Clients | Admin::Disconnect | Admin::Health | Admin::Ready => {
                Auth::Credentials
            }
        }
    }
}

impl HttpEndpoint for Admin {
    fn answer(&self, call: Call) -> Answer {
        let admin = *self;
        Box::pin(async move {
            let app = &call.app;
            match admin {
                Admin::Stats => json_response(StatusCode::OK, &stats(app).await),
                Admin::Clients => json_response(StatusCode::OK, &clients(app).await),
                Admin::Disconnect => {
                    let id = call.params.get("clientId").unwrap_or_default();
                    let query = &call.query;
                    let (status, body) =
                        disconnect(app, id, query.owner.as_deref(), query.reason.as_deref());
                    json_response(status, &body)
                }
                Admin::Metrics => {
                    let mut resp = Response::new(metrics::cached(app).await.into());
                    resp.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    resp
                }
                Admin::Health => {
                    let (status, mut word) = serving(app);
                    let (kind, broker) = app.broker_status();
                    // Still serving its own subscribers: degraded, not down.
                    if status == StatusCode::OK && broker != "ok" {
                        word = "degraded";
                    }
                    json_response(
                        status,
                        &json!({
                            "status": word,
                            "connections": app.engine.connections(),
                            "uptimeSeconds": app.started.elapsed().as_secs(),
                            "broker": {"type": kind, "status": broker},
                        }),
                    )
                }
                Admin::Ready => {
                    let (status, word) = serving(app);
                    let word = if status == StatusCode::OK {
                        "ready"
                    } else {
                        word
                    };
                    json_response(status, &json!({ "status": word }))
                }
            }
        })
    }
}

/// 200 `ok` while serving; 503 `draining` once a shutdown has begun, so
/// that a load balancer sends new clients elsewhere.
fn serving(app: &App) -> (StatusCode, &'static str) {
    if app.is_draining() || app.engine.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    }
}

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
                "priority": t.topic.class.priority.name(),
                "overflow": t.topic.class.overflow.map(|p| p.name()),
                "maxRate": t.topic.class.max_rate.map(|r| r.get()),
                "published": t.topic.published,
                "subscribers": t.topic.subscribers,
                "sent": t.counts.sent,
                "replayed": t.counts.replayed,
                "conflated": t.counts.conflated,
                "dropped": t.counts.dropped_total(),
                "droppedByReason": drops_by_reason(&t.counts),
                "historySize": t.topic.history,
                "historyBytes": t.topic.history_bytes,
                "retentionRefused": t.topic.retention_refused,
                "snapshotCount": t.topic.snapshot_keys,
                "feedSlots": t.topic.feed_slots,
                "feedGrowths": t.topic.feed_growths,
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
    let connections = stats.connections_by_format();
    let by_protocol: serde_json::Map<String, Value> = app
        .engine
        .formats()
        .iter()
        .zip(connections.iter().copied())
        .map(|((_, format), n)| (format.name().to_owned(), n.into()))
        .collect();
    let (counts, encodings) = (stats.counts_by_format(), stats.encodings_by_format());
    let (deflate, deflated) = (
        stats.deflate_by_format(),
        stats.deflated_connections_by_format(),
    );
    let protocols: serde_json::Map<String, Value> = app
        .engine
        .formats()
        .iter()
        .enumerate()
        .map(|(i, (_, format))| {
            let c = counts.get(i).copied().unwrap_or_default();
            let figures = json!({
                "connections": connections.get(i).copied().unwrap_or(0),
                "sent": c.sent,
                "dropped": c.dropped_total(),
                "conflated": c.conflated,
                "filtered": c.filtered,
                "encodings": encodings.get(i).copied().unwrap_or(0),
                "deflate": deflate_figures(
                    deflated.get(i).copied().unwrap_or(0),
                    deflate.get(i).copied().unwrap_or_default(),
                ),
            });
            (format.name().to_owned(), figures)
        })
        .collect();
    // The simulated market's on-demand feeds, with their subscribers.
    let producers: Vec<Value> = app
        .producers
        .as_ref()
        .map(|p| p.active())
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, refs, producing)| {
            json!({"topic": topic, "subscribers": refs, "producing": producing})
        })
        .collect();
    json!({
        "producers": producers,
        "activeConnections": stats.connections(),
        "connectionsByProtocol": by_protocol,
        "protocols": protocols,
        "messagesPublished": stats.published,
        "messagesSent": stats.counts.sent,
        "messagesReplayed": stats.counts.replayed,
        "messagesConflated": stats.counts.conflated,
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
                "details": c.details.iter().map(|(k, v)| ((*k).to_owned(), Value::from(&**v))).collect::<serde_json::Map<_, _>>(),
                "channels": c.channels.iter().map(|t| &**t).collect::<Vec<_>>(),
                "connectedAt": iso(c.connected_at),
                "lastHeartbeat": iso(now.checked_sub(c.idle).unwrap_or(now)),
                "queueDepth": c.queue_depth,
                "queuedBytes": c.queued_bytes,
                "sent": c.counts.sent,
                "replayed": c.counts.replayed,
                "conflated": c.counts.conflated,
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
            json!({ "error": { "code": ApiCode::UnknownClient, "message": format!("no connected client {:?}", truncate(client_id, 128)) } }),
        )
    }
}

/// A protocol's permessage-deflate figures in the stats.
fn deflate_figures(connections: usize, counts: DeflateCounts) -> Value {
    json!({
        "connections": connections,
        "compressions": counts.messages,
        "bytesIn": counts.bytes_in,
        "bytesOut": counts.bytes_out,
    })
}
