//! The simple protocol's operational side: `GET /websocket/status` (fields,
//! intervals, connection count, stream health going false when a feed
//! stops), `[simple] max_connections`, `enabled = false`, and API keys when
//! `require_api_key` is on.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn status(server: &TestServer) -> Value {
    // Served without credentials (an open path by default).
    let (status, body) = server.http("GET", "/websocket/status", None, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn status_reports_settings_connections_and_stream_health() {
    let server = simple_server(
        "",
        "ping_interval_seconds = 20\nmax_connections = 50\nstale_after_intervals = 2",
    );
    let _a = simple_ready(&server, "").await;
    let _b = simple_ready(&server, "").await;
    publish_price(&server, "AAPL", 1.0).await;
    let body = status(&server).await;
    assert_eq!(body["enabled"], true);
    assert_eq!(body["active_connections"], 2);
    assert_eq!(body["max_connections"], 50);
    assert_eq!(body["ping_interval"], 20);
    assert_eq!(body["price_update_interval"], 1);
    assert_eq!(body["portfolio_update_interval"], 1);
    let prices = &body["stream_health"]["price_updates"];
    assert_eq!(prices["is_healthy"], true, "{body}");
    assert!(is_iso_time(&prices["last_update"]), "{prices}");
    assert!(is_iso_time(&prices["started_at"]), "{prices}");
    assert_eq!(
        (&prices["error_count"], &prices["recovery_attempts"]),
        (&json!(0), &json!(0))
    );
    // Nothing ever published to signals: not healthy, no last update.
    let signals = &body["stream_health"]["signals"];
    assert_eq!(
        (&signals["is_healthy"], &signals["last_update"]),
        (&json!(false), &Value::Null)
    );

    // The feed stops: after two intervals (and a margin) the stream is unhealthy.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let body = status(&server).await;
    let prices = &body["stream_health"]["price_updates"];
    assert_eq!(prices["is_healthy"], false, "{body}");
    assert_eq!(prices["error_count"], 1);
    // It comes back: healthy again, one recovery counted.
    publish_price(&server, "AAPL", 2.0).await;
    let prices = status(&server).await["stream_health"]["price_updates"].clone();
    assert_eq!(
        (&prices["is_healthy"], &prices["recovery_attempts"]),
        (&json!(true), &json!(1))
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_told_to_try_again_later() {
    let server = simple_server("", "max_connections = 1");
    let mut first = simple_ready(&server, "").await;
    let mut second = simple(&server, "").await;
    let (code, reason) = close_code(&mut second).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("too many connections"), "{reason}");
    // The first is unaffected, and its slot frees when it goes.
    send_json(&mut first, json!({"type": "ping"})).await;
    next_type(&mut first, "pong").await;
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while status(&server).await["active_connections"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut third = simple(&server, "").await;
    send_json(&mut third, json!({"type": "ping"})).await;
    next_type(&mut third, "pong").await;
}

#[tokio::test]
async fn a_disabled_endpoint_is_not_found_and_says_so_in_its_status() {
    let server = simple_server("", "enabled = false");
    let refused = server.try_connect("/ws", &[]).await;
    assert_eq!(refused.err(), Some(404));
    assert_eq!(status(&server).await["enabled"], false);
}

#[tokio::test]
async fn api_keys_can_be_required() {
    let server = simple_server("", "require_api_key = true");
    let mut anonymous = simple(&server, "").await;
    let (code, _) = close_code(&mut anonymous).await;
    assert_eq!(code, 4401);
    let mut keyed = server
        .try_connect("/ws", &[("X-API-Key", SUB)])
        .await
        .expect("handshake");
    send_json(&mut keyed, json!({"type": "ping"})).await;
    next_type(&mut keyed, "pong").await;
}

#[tokio::test]
async fn silent_clients_are_pinged_and_stay_open_by_answering() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = simple_server("", "ping_interval_seconds = 1");
    let mut ws = simple(&server, "").await;
    // Silent for several ping intervals (the client library answers each
    // ping with a pong by itself): pinged each time, never closed.
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(4500);
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await {
        match frame.expect("stream open").expect("frame read") {
            Message::Ping(_) => pings += 1,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
    assert!(pings >= 2, "{pings} pings in 4.5 s of silence");
    send_json(&mut ws, json!({"type": "ping"})).await;
    next_type(&mut ws, "pong").await;
}

#[tokio::test]
async fn a_key_reads_only_the_channels_its_scope_allows() {
    let keys = "[[api_keys]]\nkey = \"narrow-key-000\"\nroles = [\"subscribe\"]\nsubscribe = [\"signals\"]\n";
    let server = TestServer::start_with_keys(
        "[simple]\nrequire_api_key = true\nprice_update_interval_seconds = 1\n",
        keys,
    );
    publish_price(&server, "AAPL", 1.0).await;
    let mut ws = server
        .try_connect("/ws", &[("X-API-Key", "narrow-key-000")])
        .await
        .expect("handshake");
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "portfolio"}),
    )
    .await;
    let (error, before) = next_type(&mut ws, "error").await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("may not read portfolio"),
        "{error}"
    );
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates"}),
    )
    .await;
    next_type(&mut ws, "error").await;
    // Automatically followed: signals only, never the prices it may not read.
    let frames = frames_within(&mut ws, Duration::from_millis(1500)).await;
    let kinds: Vec<&Value> = before.iter().chain(&frames).map(|f| &f["type"]).collect();
    assert!(kinds.iter().all(|k| *k != "price_update"), "{kinds:?}");
}
