//! `GET /websocket/status`: the simple endpoint's settings, its connection
//! count, and the health of each stream.
//!
//! Shared by all shards; the health counters are atomics touched only when
//! the status is read. A stream is healthy when its feed topic's latest
//! kept message is at most `[simple] stale_after_intervals` of the
//! stream's interval old (the price interval for signals and trades).
//! `last_update` is that message's time (`null`: the topic holds none).
//! `error_count` counts the reads that found a stream unhealthy after one
//! had found it healthy (its feed went silent), `recovery_attempts` those
//! that found it healthy again after that; a feed never published counts
//! neither. `started_at` is when the server began serving the stream.
//! Beyond the reference document's fields, `conflated_frames_built` counts
//! the conflated frames built at interval boundaries (once per shard,
//! interval and distinct subscription, however many clients share each).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};
use shardcast_engine::Replay;

use super::message::Channel;
use super::Shared;
use crate::http::Body;
use crate::protocol::common::iso;
use crate::protocol::{Answer, Call, HttpEndpoint};

/// What the last status read found of a stream (0: no read yet).
const HEALTHY: u8 = 1;
const DOWN: u8 = 2;

/// One stream's health counters. Shared by all shards.
#[derive(Debug, Default)]
struct StreamHealth {
    /// [`HEALTHY`] or [`DOWN`] as the last read found it; 0 before any.
    last: AtomicU8,
    errors: AtomicU64,
    recoveries: AtomicU64,
}

/// The health counters of the four streams. Shared by all shards.
#[derive(Debug, Default)]
pub struct Health([StreamHealth; 4]);

/// `/websocket/status`. Shared by all shards.
pub struct Status(pub std::sync::Arc<Shared>);

impl HttpEndpoint for Status {
    fn answer(&self, call: Call) -> Answer {
        let body = status(&self.0, &call.app, SystemTime::now());
        let mut resp = Response::new(Body::new(Bytes::from(body.to_string())));
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Box::pin(async move { resp })
    }
}

fn status(shared: &Shared, app: &crate::App, now: SystemTime) -> Value {
    let config = &shared.config;
    let mut streams = Map::new();
    for (index, channel) in Channel::ALL.into_iter().enumerate() {
        let last_update = app
            .engine
            .topics()
            .get(shared.feed(channel))
            .and_then(|topic| topic.peek(Replay::Last(1)).1.ok())
            .and_then(|replayed| replayed.messages.last().map(|m| m.timestamp));
        let stale_after = shared.interval(channel) * config.stale_after_intervals;
        let healthy =
            last_update.is_some_and(|at| now.duration_since(at).unwrap_or_default() <= stale_after);
        let health = &shared.health.0[index];
        let now_found = if healthy { HEALTHY } else { DOWN };
        match (health.last.swap(now_found, Ordering::Relaxed), now_found) {
            (HEALTHY, DOWN) => {
                health.errors.fetch_add(1, Ordering::Relaxed);
            }
            (DOWN, HEALTHY) => {
                health.recoveries.fetch_add(1, Ordering::Relaxed);
            }
            // The first read, or no change.
            _ => {}
        }
        streams.insert(
            channel.name().into(),
            json!({
                "feed": shared.feed(channel),
                "last_update": last_update.map(iso),
                "error_count": health.errors.load(Ordering::Relaxed),
                "recovery_attempts": health.recoveries.load(Ordering::Relaxed),
                "is_healthy": healthy,
                "started_at": iso(shared.started_at),
            }),
        );
    }
    json!({
        "enabled": config.enabled,
        "active_connections": shared.connections.load(Ordering::Relaxed),
        "max_connections": config.max_connections,
        "ping_interval": config.ping_interval.as_secs(),
        "price_update_interval": config.price_update_interval.as_secs(),
        "portfolio_update_interval": config.portfolio_update_interval.as_secs(),
        "stream_health": streams,
        "conflated_frames_built": shared.frames_built.load(Ordering::Relaxed),
    })
}
