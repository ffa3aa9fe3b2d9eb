//! Measurements from outside the loadgen: the server's stats endpoint and
//! /proc (CPU time, memory) of a process.
//!
//! With several nodes (`--urls`, nodes.rs) the server is all of them: each
//! distinct node's stats are read, one after another, and combined
//! ([`ServerFigures::combine`]); the `--server-pid`s' CPU time and memory
//! are summed. With one node both are that node's figures, unchanged.

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

/// CPU seconds of all of `pids` together, each process once; `None`
/// without pids or when one cannot be read (a partial sum would pass for
/// the whole).
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    distinct(pids).map(cpu_seconds).sum()
}

/// Resident set size of all of `pids` together, each process once, in KiB;
/// `None` as for [`cpu_seconds_of`].
pub fn rss_kib_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    distinct(pids).map(rss_kib).sum()
}

/// `pids` without repeats, in order.
fn distinct(pids: &[u32]) -> impl Iterator<Item = u32> + '_ {
    let repeat = |at: usize, pid: &u32| pids[..at].contains(pid);
    pids.iter()
        .enumerate()
        .filter(move |&(at, pid)| !repeat(at, pid))
        .map(|(_, &pid)| pid)
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

    /// The figures of a server made of `nodes`, the publishing node first:
    /// what each node counts for its own subscribers (sent, drops by
    /// reason, connections, queued frames) summed, the deepest queue the
    /// deepest of any, and what is about publishing — messages published,
    /// and the latency from publish to write, comparable with the loadgen's
    /// only for the publishing node's subscribers — the publishing node's.
    /// `None` without nodes.
    pub fn combine(nodes: &[ServerFigures]) -> Option<ServerFigures> {
        let (publishing, _) = nodes.split_first()?;
        let sum = |f: fn(&ServerFigures) -> u64| nodes.iter().map(f).sum();
        Some(ServerFigures {
            published: publishing.published,
            sent: sum(|n| n.sent),
            dropped: sum(|n| n.dropped),
            conflated: sum(|n| n.conflated),
            filtered: sum(|n| n.filtered),
            outbox_full: sum(|n| n.outbox_full),
            rate_limited: sum(|n| n.rate_limited),
            shard_overflow: sum(|n| n.shard_overflow),
            closed: sum(|n| n.closed),
            connections: sum(|n| n.connections),
            queued_frames: sum(|n| n.queued_frames),
            max_queue_depth: nodes.iter().map(|n| n.max_queue_depth).max().unwrap_or(0),
            latency_p50_ms: publishing.latency_p50_ms,
            latency_p99_ms: publishing.latency_p99_ms,
        })
    }
}

/// The figures of the server made of `nodes` (distinct addresses, the
/// publishing node first), combined; `None` when any node's stats cannot
/// be read, since a partial sum would unbalance the accounting.
pub async fn server_figures(
    nodes: &[SocketAddr],
    api_key: &str,
    prefix: &str,
) -> Option<ServerFigures> {
    let mut each = Vec::with_capacity(nodes.len());
    for &node in nodes {
        each.push(node_figures(node, api_key, prefix).await?);
    }
    ServerFigures::combine(&each)
}

/// One node's figures for channels starting with `prefix`.
async fn node_figures(server: SocketAddr, api_key: &str, prefix: &str) -> Option<ServerFigures> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(published: u64, sent: u64, depth: u64, p99: f64) -> ServerFigures {
        ServerFigures {
            published,
            sent,
            dropped: 1,
            outbox_full: 1,
            connections: 10,
            queued_frames: 2,
            max_queue_depth: depth,
            latency_p50_ms: p99 / 2.0,
            latency_p99_ms: p99,
            ..ServerFigures::default()
        }
    }

    #[test]
    fn counts_are_summed_and_publishing_figures_are_the_first_nodes() {
        let all = ServerFigures::combine(&[node(100, 500, 3, 1.0), node(100, 700, 9, 4.0)])
            .expect("two nodes");
        assert_eq!((all.sent, all.dropped, all.outbox_full), (1200, 2, 2));
        assert_eq!((all.connections, all.queued_frames), (20, 4));
        assert_eq!(all.max_queue_depth, 9);
        assert_eq!(all.published, 100, "published once, not once per node");
        assert_eq!((all.latency_p50_ms, all.latency_p99_ms), (0.5, 1.0));
        // One node: its own figures.
        let one = ServerFigures::combine(&[node(7, 8, 2, 3.0)]).unwrap();
        assert_eq!((one.published, one.sent, one.max_queue_depth), (7, 8, 2));
        assert!(ServerFigures::combine(&[]).is_none());
    }

    #[test]
    fn pids_add_up_and_none_is_not_zero() {
        assert_eq!(cpu_seconds_of(&[]), None);
        assert_eq!(rss_kib_of(&[]), None);
        let me = std::process::id();
        let one = rss_kib_of(&[me]).expect("our own /proc");
        assert!(one > 0);
        let twice = rss_kib_of(&[me, me]).unwrap();
        assert!(
            twice < one * 3 / 2,
            "{twice} KiB: one process, counted once"
        );
        let cpu = cpu_seconds_of(&[me]).unwrap();
        assert!(cpu_seconds_of(&[me, me]).unwrap() < cpu * 1.5 + 0.5);
        assert_eq!(rss_kib_of(&[me, u32::MAX]), None, "one unreadable pid");
        assert_eq!(distinct(&[3, 1, 3, 2, 1]).collect::<Vec<_>>(), [3, 1, 2]);
    }
}
