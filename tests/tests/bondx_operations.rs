//! BondX mobile and operations behaviour: background mode, rate limits on
//! client messages, heartbeats and silence, the health and topic
//! endpoints, the client listing, metrics (also on a second port).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn publish_keyed(server: &TestServer, topic: &str, key: &str, data: Value) {
    server.publish(topic, data, Some(key)).await;
}

#[tokio::test]
async fn background_mode_sends_only_the_latest_state_once_per_interval() {
    let server = bondx_server("", "background_interval_seconds = 1");
    let mut ws = bondx_by_header(&server, "/api/v1/ws/mobile/m1", &user_token("m1"), &[]).await;
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");
    let request = json!({"type": "background_mode", "enabled": true, "correlation_id": "bg"});
    send_json(&mut ws, request).await;
    let ack = next_frame(&mut ws).await;
    assert_envelope(&ack, "ack");
    assert_eq!(ack["correlation_id"], "bg");
    let enabled = Instant::now();
    for n in 1..=20 {
        let key = if n % 2 == 0 { "AAPL" } else { "MSFT" };
        publish_keyed(&server, "mobile.m1", key, json!({"px": n})).await;
    }
    // No stream: one conflated state, no sooner than the interval.
    let state = next_frame(&mut ws).await;
    assert_envelope(&state, "snapshot");
    assert!(
        enabled.elapsed() >= Duration::from_millis(700),
        "{:?}",
        enabled.elapsed()
    );
    assert_eq!(state["meta"]["background"], true);
    assert_eq!(state["seq"], 20);
    assert_eq!(
        state["payload"],
        json!({"MSFT": {"px": 19}, "AAPL": {"px": 20}})
    );
    // Nothing changed: nothing more is sent.
    assert_silent(&mut ws, Duration::from_millis(1500)).await;

    // Disabling: a fresh snapshot first, then the live stream.
    publish_keyed(&server, "mobile.m1", "AAPL", json!({"px": 21})).await;
    send_json(
        &mut ws,
        json!({"type": "background_mode", "enabled": false}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["type"], "ack");
    let snapshot = next_frame(&mut ws).await;
    assert_envelope(&snapshot, "snapshot");
    assert_eq!(snapshot["seq"], 21);
    assert_eq!(snapshot["payload"]["AAPL"], json!({"px": 21}));
    assert_eq!(snapshot["meta"].get("background"), None);
    publish_keyed(&server, "mobile.m1", "MSFT", json!({"px": 22})).await;
    let delta = next_frame(&mut ws).await;
    assert_eq!(
        (delta["type"].as_str(), delta["seq"].as_u64()),
        (Some("delta"), Some(22))
    );
}

#[tokio::test]
async fn the_background_header_starts_in_background_and_devices_are_listed() {
    let server = bondx_server("", "background_interval_seconds = 1");
    publish_keyed(&server, "mobile.m2", "K", json!({"v": 1})).await;
    let headers = [
        ("x-device-type", "mobile"),
        ("x-client-version", "1.0.0"),
        ("x-background-mode", "true"),
    ];
    let path = "/api/v1/ws/mobile/m2?clientId=phone-1";
    let mut ws = bondx_by_header(&server, path, &user_token("m2"), &headers).await;
    // The state at once, marked as background; no live deltas after it.
    let state = next_frame(&mut ws).await;
    let first_at = Instant::now();
    assert_eq!(state["meta"]["background"], true);
    assert_eq!(state["payload"], json!({"K": {"v": 1}}));
    publish_keyed(&server, "mobile.m2", "K", json!({"v": 2})).await;
    let next = next_frame(&mut ws).await;
    assert_eq!(next["meta"]["background"], true, "{next}");
    // The next state waits for the interval (1 s) after the first.
    assert!(first_at.elapsed() >= Duration::from_millis(700));

    let client = server.client("phone-1").await;
    assert_eq!(client["protocol"], "bondx");
    assert_eq!(client["owner"], "bondx:m2");
    assert_eq!(client["details"]["deviceType"], "mobile");
    assert_eq!(client["details"]["clientVersion"], "1.0.0");
    let stats = server.stats().await;
    assert_eq!(stats["connectionsByProtocol"]["bondx"], 1, "{stats}");
    assert_eq!(stats["connectionsByProtocol"]["telemetry"], 0, "{stats}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("shardcast_protocol_connections{protocol=\"bondx\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_messages_past_the_class_limit_are_refused_not_acted_on() {
    let limits = "[bondx.rate_limits.market]\nburst = 3\nper_minute = 1";
    let server = bondx_server("", limits);
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/RL1", &user_token("r")).await;
    next_frame(&mut ws).await;
    for n in 0..3 {
        let request = json!({"type": "unsubscribe", "topic": "prices.none", "correlation_id": n});
        send_json(&mut ws, request).await;
        assert_eq!(next_frame(&mut ws).await["code"], "NOT_SUBSCRIBED");
    }
    // Pings have their own limit: a keep-alive is never refused.
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "pong");
    // Past the burst: not acted on (no subscription, no reply), one refusal.
    send_json(&mut ws, json!({"type": "subscribe", "topic": "prices.RL2"})).await;
    for _ in 0..20 {
        send_json(
            &mut ws,
            json!({"type": "unsubscribe", "topic": "prices.none"}),
        )
        .await;
    }
    let refusal = next_frame(&mut ws).await;
    assert_envelope(&refusal, "error");
    assert_eq!(refusal["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(refusal["error"], "Rate limit exceeded");
    assert_eq!(refusal["details"]["topic"], "prices.RL1");
    assert_eq!(refusal["details"]["limit"], "1 per minute");
    // 21 refused, one reply: no amplification.
    assert_silent(&mut ws, Duration::from_millis(400)).await;
    // A ping flood is refused the same way (once the one-per-second reply
    // limit lets the next refusal out).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..30 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut refusals = 0;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(300), next_frame(&mut ws)).await {
            Ok(frame) if frame["type"] == "pong" => pongs += 1,
            Ok(frame) => {
                assert_eq!(frame["code"], "RATE_LIMIT_EXCEEDED", "{frame}");
                assert_eq!(frame["details"]["limit"], "5 pings per second");
                refusals += 1;
            }
            Err(_) => break,
        }
    }
    assert!(
        pongs <= 6 && refusals == 1,
        "{pongs} pongs, {refusals} refusals"
    );
    server.publish("prices.RL2", json!({"v": 1}), None).await;
    assert_silent(&mut ws, Duration::from_millis(300)).await;
    // Other classes have their own limits.
    let mut other = bondx_by_query(&server, "/api/v1/ws/auction/A1", &user_token("r")).await;
    next_frame(&mut other).await;
    send_json(&mut other, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut other).await["type"], "pong");
}

#[tokio::test]
async fn heartbeats_keep_listening_clients_alive_and_silence_closes() {
    let server = bondx_server(
        "",
        "heartbeat_interval_seconds = 1\nconnection_timeout_seconds = 2",
    );
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/HB", &user_token("h")).await;
    next_frame(&mut ws).await;
    let beat = next_frame(&mut ws).await;
    assert_envelope(&beat, "heartbeat");
    // The telemetry protocol keeps its own interval (15 s): none here.
    let mut telemetry = server.subscriber(&["prices.HB"]).await;
    assert_silent(&mut telemetry, Duration::from_millis(1200)).await;
    // A client that only listens answers the server's pings (its library
    // does, as browsers do): still open well past the timeout.
    let listened = Instant::now();
    while listened.elapsed() < Duration::from_secs(4) {
        assert_eq!(next_frame(&mut ws).await["type"], "heartbeat");
    }
    // One that answers nothing at all is closed after the timeout.
    let path = format!("/api/v1/ws/market/HB?token={}", user_token("h"));
    let mut raw = raw_upgrade(&server, &path, "").await;
    assert_eq!(raw_close(&mut raw).await.0, 4408);
}

#[tokio::test]
async fn health_and_topics_for_operators() {
    let server = bondx_server("", "");
    let (status, health) = server.http("GET", "/api/v1/ws/health", None, None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["broker"]["status"], "ok");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/trading/t1", &user_token("t1")).await;
    next_frame(&mut ws).await;
    next_frame(&mut ws).await;
    let (_, health) = server.http("GET", "/api/v1/ws/health", None, None).await;
    assert_eq!(health["connections"], 1);
    assert!(health["topics"].as_u64().unwrap() >= 2);
    // The topic list names users: admins only unless opened.
    let (status, _) = server.http("GET", "/api/v1/ws/topics", None, None).await;
    assert_eq!(status, 401);
    let (status, topics) = server
        .http("GET", "/api/v1/ws/topics", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let list = topics["topics"].as_array().unwrap();
    let trading = list.iter().find(|t| t["topic"] == "trading.t1").unwrap();
    assert_eq!(trading["subscribers"], 1);
}

#[tokio::test]
async fn metrics_are_also_served_on_their_own_port() {
    let server = bondx_server("metrics_listen = \"127.0.0.1:0\"", "");
    let addr = server.server().metrics_addr().expect("a metrics listener");
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let (status, _, body) = raw_request_to(addr, &get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("shardcast_active_connections"));
    // Nothing else is served there.
    let (status, _, _) = raw_request_to(addr, &get("/api/v1/websocket/stats")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_client_a_whole_outbox_behind_is_closed_not_left_with_a_hole() {
    let server = bondx_server("[outbox]\nmax_messages = 16", "");
    let path = format!("/api/v1/ws/market/SLOW?token={}", user_token("s"));
    // A client that reads nothing until the end.
    let mut raw = raw_upgrade(&server, &path, "").await;
    let big = "x".repeat(50_000);
    for _ in 0..12 {
        let messages: Vec<Value> = (0..20)
            .map(|_| json!({"channel": "prices.SLOW", "data": {"pad": big}}))
            .collect();
        let body = json!({ "messages": messages }).to_string();
        let (status, _) = server
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        assert_eq!(status, 200);
    }
    let (code, reason) = raw_close(&mut raw).await;
    assert_eq!((code, reason.as_str()), (4429, "SLOW_CONSUMER"));
}
