//! A node killed outright, its clients resumed on another: two real
//! shardcast processes joined through a `redis-server` of the test's own.
//! A client of node A has seen seq 1..N when A is killed with SIGKILL (no
//! drain, no goodbye); more is published on B; the client reconnects to B
//! and resumes from its last position by its protocol's ordinary path —
//! telemetry's `resume`, BondX's `resume_from_seq` — and gets exactly what
//! it missed, in order, with the seqs Redis gave them: no gap, no
//! duplicate, no snapshot in their place.
//!
//! Skipped, loudly, where `redis-server` is not installed (a failure when
//! `CI` is set).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{free_port, start_binary, RedisProcess, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The development key the binary accepts on loopback (every role).
const KEY: &str = "dev-api-key";

/// The nodes' `[bondx]` secret.
const BONDX_SECRET: &str = "cluster-failover-secret-of-32-bytes-at-least";

/// Messages seen on node A before it is killed, and published on B after.
const BEFORE: u64 = 6;
const AFTER: u64 = 4;

/// A node of the cluster: the process and its port.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    /// Starts the binary as node `id`, joined through `redis`.
    async fn start(redis: &RedisProcess, id: &str) -> Self {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let url = format!("redis://127.0.0.1:{}/0", redis.port);
        let (child, mut logs) = start_binary(&[
            "--listen",
            &listen,
            "--broker",
            "redis",
            "--broker-url",
            &url,
            "--node-id",
            id,
            "--channel",
            "t1",
            "--bondx-jwt-secret",
            BONDX_SECRET,
        ])
        .await;
        // Keep reading its logs, so a full pipe never stalls it.
        tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
        let node = Self { child, port };
        // Listening comes before the first connection to Redis: publishes
        // are refused (503) until that is up.
        let deadline = tokio::time::Instant::now() + WAIT;
        while !node
            .request("GET /health", "")
            .await
            .contains("\"status\":\"ok\"")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {id} never reached Redis"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    /// Sends `head` (method and path) with `body`; returns the raw answer.
    async fn request(&self, head: &str, body: &str) -> String {
        let request = format!(
            "{head} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(WAIT, tcp.read_to_string(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        answer
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the node died")
            .unwrap();
    }

    /// Publishes `{"n": n}` to `channel` over the HTTP API; returns the seq
    /// Redis gave it.
    async fn publish(&self, channel: &str, n: u64) -> u64 {
        let body = json!({"channel": channel, "data": {"n": n}}).to_string();
        let answer = self.request("POST /api/v1/publish", &body).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"));
        body["seq"].as_u64().unwrap_or_else(|| panic!("{body}"))
    }

    async fn connect(&self, path_and_query: &str) -> Ws {
        let url = format!("ws://127.0.0.1:{}{path_and_query}", self.port);
        tokio_tungstenite::connect_async(url)
            .await
            .expect("handshake")
            .0
    }
}

/// The next text frame as JSON, skipping `heartbeat`s.
async fn next_frame(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frames");
                    if frame["type"] != "heartbeat" {
                        return frame;
                    }
                }
                Some(Ok(Message::Close(close))) => panic!("closed: {close:?}"),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a frame in time")
}

/// Asserts nothing but heartbeats comes for `quiet`.
async fn assert_silent(ws: &mut Ws, quiet: Duration) {
    let more = tokio::time::timeout(quiet, next_frame(ws)).await;
    assert!(more.is_err(), "more frames: {more:?}");
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// Publishes `range` on `t1`-like `channel`, alternating between `nodes`;
/// asserts Redis numbered them `range` itself.
async fn publish_range(nodes: &[&Node], channel: &str, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        let node = nodes[n as usize % nodes.len()];
        assert_eq!(
            node.publish(channel, n).await,
            n,
            "one sequence for all nodes"
        );
    }
}

/// Expects a frame of `kind` for each seq of `range`, its data `{"n": seq}`.
async fn expect_run(ws: &mut Ws, kind: &str, range: std::ops::RangeInclusive<u64>) {
    for seq in range {
        let frame = next_frame(ws).await;
        let data = if kind == "event" {
            &frame["data"]
        } else {
            &frame["payload"]
        };
        assert_eq!(
            (frame["type"].as_str(), frame["seq"].as_u64(), data),
            (Some(kind), Some(seq), &json!({"n": seq})),
            "{frame}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_client_of_a_killed_node_resumes_on_another_with_exactly_what_it_missed() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let mut a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut first = a.connect(&format!("/ws/telemetry?apiKey={KEY}")).await;
    assert_eq!(next_frame(&mut first).await["type"], "welcome");
    send(
        &mut first,
        json!({"action": "subscribe", "channels": ["t1"], "positions": true}),
    )
    .await;
    let ack = next_frame(&mut first).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let epoch = ack["positions"]["t1"]["epoch"].as_str().unwrap().to_owned();
    publish_range(&[&a, &b], "t1", 1..=BEFORE).await;
    expect_run(&mut first, "event", 1..=BEFORE).await;

    a.kill().await;
    publish_range(&[&b], "t1", BEFORE + 1..=BEFORE + AFTER).await;
    // Node b has never served t1: it catches up from Redis first.
    let mut second = b.connect(&format!("/ws/telemetry?apiKey={KEY}")).await;
    assert_eq!(next_frame(&mut second).await["type"], "welcome");
    send(
        &mut second,
        json!({"action": "subscribe", "channels": ["t1"],
               "resume": {"t1": {"epoch": epoch, "seq": BEFORE}}}),
    )
    .await;
    let ack = next_frame(&mut second).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        (
            ack["positions"]["t1"]["epoch"].as_str(),
            ack["positions"]["t1"]["seq"].as_u64()
        ),
        (Some(epoch.as_str()), Some(BEFORE + AFTER)),
        "{ack}"
    );
    publish_range(&[&b], "t1", BEFORE + AFTER + 1..=BEFORE + AFTER + 1).await;
    expect_run(&mut second, "event", BEFORE + 1..=BEFORE + AFTER + 1).await;
    assert_silent(&mut second, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bondx_client_of_a_killed_node_resumes_from_seq_on_another_with_exactly_what_it_missed() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let mut a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let token = bondx_token("u1");
    let mut first = a
        .connect(&format!("/api/v1/ws/market/FAIL?token={token}"))
        .await;
    let snapshot = next_frame(&mut first).await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(0)),
        "{snapshot}"
    );
    let epoch = snapshot["meta"]["epoch"].as_str().unwrap().to_owned();
    publish_range(&[&a, &b], "prices.FAIL", 1..=BEFORE).await;
    expect_run(&mut first, "delta", 1..=BEFORE).await;

    a.kill().await;
    publish_range(&[&b], "prices.FAIL", BEFORE + 1..=BEFORE + AFTER).await;
    // Another endpoint's path, so prices.FAIL is subscribed by message,
    // with the position the client had.
    let mut second = b
        .connect(&format!("/api/v1/ws/market/OTHER?token={token}"))
        .await;
    assert_eq!(next_frame(&mut second).await["topic"], "prices.OTHER");
    send(
        &mut second,
        json!({"type": "subscribe", "topic": "prices.FAIL",
               "resume_from_seq": BEFORE, "resume_epoch": epoch}),
    )
    .await;
    let ack = next_frame(&mut second).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(BEFORE + AFTER)),
        "{ack}"
    );
    assert_eq!(ack["meta"]["epoch"], epoch.as_str(), "{ack}");
    publish_range(
        &[&b],
        "prices.FAIL",
        BEFORE + AFTER + 1..=BEFORE + AFTER + 1,
    )
    .await;
    // Deltas, not a snapshot: the resume succeeded.
    expect_run(&mut second, "delta", BEFORE + 1..=BEFORE + AFTER + 1).await;
    assert_silent(&mut second, Duration::from_millis(300)).await;
}

/// An HS256 token for BondX user `sub`, valid for an hour.
fn bondx_token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(BONDX_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}
