//! The dashboard's page and its admin stream: tickets, `stats` frames, the
//! live tail, the slowest clients.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn ticket(server: &TestServer, key: &str) -> (u16, Value) {
    server
        .http("POST", "/api/v1/dashboard/ticket", Some(key), None)
        .await
}

async fn open_stream(server: &TestServer) -> Ws {
    let (status, body) = ticket(server, ADMIN).await;
    assert_eq!(status, 200, "{body}");
    let ticket = body["ticket"].as_str().unwrap();
    let mut ws = server
        .connect(&format!("/api/v1/dashboard/ws?token={ticket}"), None)
        .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    ws
}

/// The next `stats` frame satisfying `check`, skipping others.
async fn stats_until(ws: &mut Ws, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stats frame as expected"
        );
        let frame = next_json(ws).await;
        if frame["type"] == "stats" && check(&frame) {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_without_credentials_and_holds_no_data() {
    let server = TestServer::start("");
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let (status, head, body) = server.http_raw("GET", path, None, None).await;
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.to_ascii_lowercase().contains(kind), "{path}: {head}");
        assert!(head.contains("content-security-policy"), "{head}");
        assert!(!body.contains(ADMIN));
    }
    let (status, _) = server.http("GET", "/nothing-here", None, None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_for_admins_once_and_the_stream_needs_one() {
    let server = TestServer::start("");
    assert_eq!(ticket(&server, SUB).await.0, 403);
    assert_eq!(
        server
            .http("POST", "/api/v1/dashboard/ticket", None, None)
            .await
            .0,
        401
    );
    // A page of another origin may not get one, nor use an admin key on the
    // stream.
    let foreign = format!(
        "POST /api/v1/dashboard/ticket HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\nX-API-Key: {ADMIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    assert_eq!(server.raw_request(foreign.as_bytes()).await.0, 403);
    let with_key = format!("/api/v1/dashboard/ws?apiKey={ADMIN}");
    assert_eq!(
        server
            .try_connect(&with_key, &[("Origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    // No ticket, or a made-up one: the stream closes with 4401.
    for query in ["", "?token=0123456789abcdef0123456789abcdef"] {
        let mut ws = server
            .connect(&format!("/api/v1/dashboard/ws{query}"), None)
            .await;
        assert_eq!(close_code(&mut ws).await, (4401, "INVALID_TICKET".into()));
    }
    // A ticket opens one stream only.
    let (_, body) = ticket(&server, ADMIN).await;
    let path = format!(
        "/api/v1/dashboard/ws?token={}",
        body["ticket"].as_str().unwrap()
    );
    let mut first = server.connect(&path, None).await;
    assert_eq!(next_json(&mut first).await["type"], "hello");
    let mut again = server.connect(&path, None).await;
    assert_eq!(close_code(&mut again).await.0, 4401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_frames_follow_the_traffic_every_second() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let _subscriber = server.subscriber(&["t1"]).await;
    let mut ws = open_stream(&server).await;
    let first = stats_until(&mut ws, |_| true).await;
    for n in 0..5 {
        server.publish("t1", json!({"n": n}), Some(PUB)).await;
    }
    let later = stats_until(&mut ws, |s| s["totals"]["published"].as_u64() >= Some(5)).await;
    // The dashboard's own connection and the subscriber.
    assert_eq!(later["connections"]["total"], 2, "{later}");
    assert_eq!(later["connections"]["byShard"].as_array().unwrap().len(), 2);
    let t1 = later["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "t1")
        .unwrap_or_else(|| panic!("t1 listed: {later}"));
    assert_eq!(t1["subscribers"], 1);
    assert_eq!(t1["published"], 5);
    assert!(later["latency"]["count"].as_u64() >= Some(5), "{later}");
    assert!(later["latency"]["p99"].as_f64().is_some(), "{later}");
    let bars: u64 = later["latency"]["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(bars), later["latency"]["count"].as_u64());
    assert!(first["at"] != later["at"]);
    // Frames keep coming with nothing happening: about one a second.
    let a = stats_until(&mut ws, |_| true).await;
    let b = stats_until(&mut ws, |_| true).await;
    assert_ne!(a["at"], b["at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_shows_recent_then_live_events_of_one_channel() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    server.publish("t1", json!({"n": 1}), Some(PUB)).await;
    let mut ws = open_stream(&server).await;
    send_json(&mut ws, json!({"action": "tail", "channel": "nope"})).await;
    let refused = next_of_type_skipping_stats(&mut ws, "error").await;
    assert_eq!(refused["code"], "UNKNOWN_CHANNEL", "{refused}");
    send_json(&mut ws, json!({"action": "tail", "channel": "t1"})).await;
    assert_eq!(
        next_of_type_skipping_stats(&mut ws, "tail").await["channel"],
        "t1"
    );
    let replayed = next_of_type_skipping_stats(&mut ws, "event").await;
    assert_eq!(
        (replayed["seq"].as_u64(), &replayed["data"]),
        (Some(1), &json!({"n": 1}))
    );
    server.publish("t1", json!({"n": 2}), Some(PUB)).await;
    server
        .publish("t2", json!({"other": true}), Some(PUB))
        .await;
    let live = next_of_type_skipping_stats(&mut ws, "event").await;
    assert_eq!(
        (live["channel"].as_str(), live["seq"].as_u64()),
        (Some("t1"), Some(2))
    );
    send_json(&mut ws, json!({"action": "untail"})).await;
    assert_eq!(
        next_of_type_skipping_stats(&mut ws, "tail").await["channel"],
        Value::Null
    );
    send_json(&mut ws, json!({"action": "publish"})).await;
    let bad = next_of_type_skipping_stats(&mut ws, "error").await;
    assert_eq!(bad["code"], "INVALID_MESSAGE", "{bad}");
    // Four commands, two refused: counted like every protocol's.
    let metrics = Exposition::parse(&server.metrics().await);
    let of = |name| metrics.get(name, &[("protocol", "telemetry")]);
    assert_eq!(of("shardcast_client_commands_total"), 4.0);
    assert_eq!(of("shardcast_client_errors_total"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_a_channel_takes_the_right_to_subscribe_to_it() {
    let keys = "[[api_keys]]\nkey = \"ops-key-0000\"\nroles = [\"admin\"]";
    let server = TestServer::start_with_keys("", keys);
    server.publish("t1", json!({"n": 1}), Some(PUB)).await;
    let (status, body) = ticket(&server, "ops-key-0000").await;
    assert_eq!(status, 200, "{body}");
    let path = format!(
        "/api/v1/dashboard/ws?token={}",
        body["ticket"].as_str().unwrap()
    );
    let mut ws = server.connect(&path, None).await;
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    send_json(&mut ws, json!({"action": "tail", "channel": "t1"})).await;
    let refused = next_of_type_skipping_stats(&mut ws, "error").await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stopped_reading_is_listed_among_the_slowest() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let stuck = stuck_client(&server, "stuck-1").await;
    let mut ws = open_stream(&server).await;
    let frame = stats_until(&mut ws, |s| {
        s["slowest"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["clientId"] == "stuck-1"))
    })
    .await;
    let listed = &frame["slowest"][0];
    assert_eq!(listed["clientId"], "stuck-1", "{frame}");
    assert_eq!(listed["protocol"], "telemetry");
    assert!(
        listed["queueDepth"].as_u64() > Some(0) || listed["dropped"].as_u64() > Some(0),
        "{listed}"
    );
    drop(stuck);
}

/// The next frame of `kind`, skipping `stats` frames (which arrive any time).
async fn next_of_type_skipping_stats(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "stats" {
            continue;
        }
        assert_eq!(value["type"], kind, "{value}");
        return value;
    }
}
