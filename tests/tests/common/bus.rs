//! Shardcast nodes joined through the bus processes of `bus_process.rs`,
//! and what the tests of several nodes read off them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{next_of_type, send_json, TestServer, Ws};

impl TestServer {
    /// Asserts `/health` says degraded (still 200) because the `kind`
    /// broker is unreachable.
    pub async fn assert_bus_down(&self, kind: &str) {
        let (status, health) = self.http("GET", "/health", None, None).await;
        assert_eq!(
            (status, &health["status"]),
            (200, &json!("degraded")),
            "{health}"
        );
        assert_eq!(
            health["broker"],
            json!({"type": kind, "status": "unreachable"})
        );
    }

    /// Waits until the server's broker is connected (`/health` says ok).
    pub async fn bus_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, health) = self.http("GET", "/health", None, None).await;
            if health["status"] == "ok" {
                return;
            }
            assert!(Instant::now() < deadline, "the broker is not up: {health}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node joined to the others through Redis at `url`, named `node`, once
/// connected (a publish before that is refused: the bus is not up yet).
pub async fn node(url: &str, node: &str, extra: &str) -> TestServer {
    let server = node_starting(url, node, extra);
    server.bus_up().await;
    server
}

/// As [`node`], not waiting for the bus (which may be down).
pub fn node_starting(url: &str, node: &str, extra: &str) -> TestServer {
    TestServer::start(&redis_section(url, node, extra))
}

/// As [`node`], following a channel for `linger` after it was last wanted.
pub async fn node_lingering(url: &str, node: &str, extra: &str, linger: Duration) -> TestServer {
    let server = TestServer::start_adjusted(&[], &redis_section(url, node, extra), "", |config| {
        config.engine.follow_linger = linger;
    });
    server.bus_up().await;
    server
}

fn redis_section(url: &str, node: &str, extra: &str) -> String {
    format!(
        "{extra}\n[broker]\nkind = \"redis\"\nurl = \"{url}\"\nnode_id = \"{node}\"\ntimeout_ms = 500\n"
    )
}

/// A node joined to the others through the Redis Cluster `seeds`, once
/// connected.
pub async fn cluster_node(seeds: &[String], node: &str) -> TestServer {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("{s:?}")).collect();
    let server = TestServer::start(&format!(
        "[broker]\nkind = \"redis\"\ncluster = [{}]\nnode_id = \"{node}\"\ntimeout_ms = 1000\n",
        seeds.join(", ")
    ));
    server.bus_up().await;
    server
}

/// A node joined to the others through NATS at `url`, named `node`.
pub fn nats_node_starting(url: &str, node: &str) -> TestServer {
    TestServer::start(&format!(
        "[broker]\nkind = \"nats\"\nurl = \"{url}\"\nnode_id = \"{node}\"\ntimeout_ms = 500\n"
    ))
}

/// As [`nats_node_starting`], once connected.
pub async fn nats_node(url: &str, node: &str) -> TestServer {
    let server = nats_node_starting(url, node);
    server.bus_up().await;
    server
}

/// The next `n` events on `ws`.
pub async fn events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_of_type(ws, "event").await);
    }
    out
}

/// The seqs of `events`.
pub fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// A metric's value (the first sample of that name).
pub fn metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{exposition}"))
}

/// Subscribes `ws` to `channel` asking for positions; returns its epoch.
pub async fn subscribe_at(ws: &mut Ws, channel: &str) -> String {
    send_json(
        ws,
        json!({"action": "subscribe", "channels": [channel], "positions": true}),
    )
    .await;
    let ack = next_of_type(ws, "ack").await;
    ack["positions"][channel]["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch in {ack}"))
        .to_owned()
}

/// Subscribes `ws` to `channel` resuming after `(epoch, seq)`; returns the
/// ack.
pub async fn resume(ws: &mut Ws, channel: &str, epoch: &str, seq: u64) -> Value {
    send_json(
        ws,
        json!({"action": "subscribe", "channels": [channel],
               "resume": {channel: {"epoch": epoch, "seq": seq}}}),
    )
    .await;
    next_of_type(ws, "ack").await
}
