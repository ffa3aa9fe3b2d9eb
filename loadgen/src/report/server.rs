//! Measurements from outside the loadgen: the server's stats endpoint and
//! /proc (CPU time, memory) of a process.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Clock ticks per second of /proc/*/stat times (USER_HZ; 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) of process `pid`, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server's figures for channels starting with `prefix`, from its stats endpoint.
#[derive(Clone, Debug, Default)]
pub struct ServerFigures {
    pub published: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Replaced in an outbox by a newer value of their key (not drops).
    pub conflated: u64,
    /// Left out by a subscription's filter (not drops; the stats list it
    /// per channel only where the server exposes it, else 0).
    pub filtered: u64,
    pub outbox_full: u64,
    pub rate_limited: u64,
    pub shard_overflow: u64,
    pub closed: u64,
    pub connections: u64,
    pub queued_frames: u64,
    pub max_queue_depth: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl ServerFigures {
    /// The counters' change since `before` (gauges and latency as of now).
    pub fn since(&self, before: &ServerFigures) -> ServerFigures {
        ServerFigures {
            published: self.published - before.published,
            sent: self.sent - before.sent,
            dropped: self.dropped - before.dropped,
            conflated: self.conflated - before.conflated,
            filtered: self.filtered - before.filtered,
            outbox_full: self.outbox_full - before.outbox_full,
            rate_limited: self.rate_limited - before.rate_limited,
            shard_overflow: self.shard_overflow - before.shard_overflow,
            closed: self.closed - before.closed,
            ..self.clone()
        }
    }
}

pub async fn server_figures(
    server: SocketAddr,
    api_key: &str,
    prefix: &str,
) -> Option<ServerFigures> {
    let stats = get_json(server, api_key, "/api/v1/websocket/stats").await?;
    let mut figures = ServerFigures {
        connections: stats["activeConnections"].as_u64().unwrap_or(0),
        queued_frames: stats["queuedFrames"].as_u64().unwrap_or(0),
        max_queue_depth: stats["maxQueueDepth"].as_u64().unwrap_or(0),
        latency_p50_ms: stats["deliveryLatencyMs"]["p50"].as_f64().unwrap_or(0.0),
        latency_p99_ms: stats["deliveryLatencyMs"]["p99"].as_f64().unwrap_or(0.0),
        ..ServerFigures::default()
    };
    for channel in stats["channels"].as_array()? {
        if !channel["channel"]
            .as_str()
            .is_some_and(|n| n.starts_with(prefix))
        {
            continue;
        }
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        figures.published += n(&channel["published"]);
        figures.sent += n(&channel["sent"]);
        figures.dropped += n(&channel["dropped"]);
        figures.conflated += n(&channel["conflated"]);
        figures.filtered += n(&channel["filtered"]);
        let reasons = &channel["droppedByReason"];
        figures.outbox_full += n(&reasons["outboxFull"]);
        figures.rate_limited += n(&reasons["rateLimited"]);
        figures.shard_overflow += n(&reasons["shardOverflow"]);
        figures.closed += n(&reasons["closed"]);
    }
    Some(figures)
}

async fn get_json(server: SocketAddr, api_key: &str, path: &str) -> Option<Value> {
    let fetch = async {
        let mut stream = crate::net::connect(server, None).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nX-API-Key: {api_key}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let at = crate::ws::find(&response, b"\r\n\r\n")?;
        if !response.starts_with(b"HTTP/1.1 200") {
            return None;
        }
        serde_json::from_slice(&response[at + 4..]).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .ok()
        .flatten()
}
