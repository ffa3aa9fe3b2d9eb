//! A frontend written against the Trading API's FastWS document, pointed at
//! shardcast unchanged: canonical topics, responses, updates, unsubscribe,
//! the 1003 rules, heartbeat and lifespan, limits, optional API keys.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Sends `<route>.<op>` with `payload` and returns the response.
async fn operation(ws: &mut Ws, kind: &str, payload: Value) -> Value {
    send_json(ws, json!({"type": kind, "payload": payload})).await;
    let response = next_frame(ws).await;
    assert_eq!(response["type"], format!("{kind}.response"), "{response}");
    response["payload"].clone()
}

/// The next update, skipping nothing.
async fn update(ws: &mut Ws) -> Value {
    next_frame(ws).await
}

#[tokio::test]
async fn every_route_answers_with_its_canonical_topic() {
    let server = TestServer::start("");
    let mut ws = server.fastws().await;
    let cases = [
        (
            "bars.subscribe",
            json!({"symbol": "AAPL", "params": {"resolution": "5"}}),
            r#"bars:{"resolution":"5","symbol":"AAPL"}"#,
        ),
        (
            "bars.subscribe",
            json!({"symbol": "AAPL", "params": {}}),
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#,
        ),
        (
            "quotes.subscribe",
            json!({"symbols": ["TSLA", "AAPL"], "fast_symbols": ["NVDA"]}),
            r#"quotes:{"fast_symbols":["NVDA"],"symbols":["TSLA","AAPL"]}"#,
        ),
        (
            "orders.subscribe",
            json!({"accountId": "TEST-001"}),
            r#"orders:{"accountId":"TEST-001"}"#,
        ),
        (
            "positions.subscribe",
            json!({"accountId": "TEST-001"}),
            r#"positions:{"accountId":"TEST-001"}"#,
        ),
        (
            "executions.subscribe",
            json!({"symbol": "AAPL", "accountId": "TEST-001"}),
            r#"executions:{"accountId":"TEST-001","symbol":"AAPL"}"#,
        ),
        (
            "equity.subscribe",
            json!({"accountId": "TEST-001"}),
            r#"equity:{"accountId":"TEST-001"}"#,
        ),
        (
            "broker-connection.subscribe",
            json!({"accountId": "TEST-001"}),
            r#"broker-connection:{"accountId":"TEST-001"}"#,
        ),
    ];
    for (kind, payload, topic) in cases {
        let response = operation(&mut ws, kind, payload.clone()).await;
        assert_eq!(response["status"], "ok", "{kind}: {response}");
        assert_eq!(response["topic"], topic);
        assert!(response["message"].as_str().unwrap().contains("Subscribed"));
        // `symbol` is echoed where the request had one.
        assert_eq!(response.get("symbol"), payload.get("symbol"), "{kind}");
    }
}

#[tokio::test]
async fn published_messages_arrive_as_updates_for_every_protocol() {
    let server = TestServer::start("");
    let mut first = server.fastws().await;
    let mut second = server.fastws().await;
    let topic = r#"orders:{"accountId":"TEST-001"}"#;
    for ws in [&mut first, &mut second] {
        let response = operation(ws, "orders.subscribe", json!({"accountId": "TEST-001"})).await;
        assert_eq!(response["topic"], topic);
    }
    let mut telemetry = server.subscriber(&[topic]).await;
    server
        .publish(topic, json!({"id": "O-1", "status": "working"}), None)
        .await;
    for ws in [&mut first, &mut second] {
        assert_eq!(
            update(ws).await,
            json!({"type": "orders.update", "payload": {"id": "O-1", "status": "working"}})
        );
    }
    let event = next_of_type(&mut telemetry, "event").await;
    assert_eq!(event["channel"], topic);

    // One leaves; the other keeps its updates.
    let response = operation(
        &mut first,
        "orders.unsubscribe",
        json!({"accountId": "TEST-001"}),
    )
    .await;
    assert_eq!(response["status"], "ok");
    assert_eq!(response["topic"], topic);
    server
        .publish(topic, json!({"id": "O-1", "status": "filled"}), None)
        .await;
    assert_eq!(update(&mut second).await["payload"]["status"], "filled");
    assert_silent(&mut first, Duration::from_millis(300)).await;

    // Unsubscribing again: an error, and the connection stays open.
    let response = operation(
        &mut first,
        "orders.unsubscribe",
        json!({"accountId": "TEST-001"}),
    )
    .await;
    assert_eq!(response["status"], "error");
    assert!(response["message"]
        .as_str()
        .unwrap()
        .contains("not subscribed"));
    let response = operation(&mut first, "equity.subscribe", json!({"accountId": "X"})).await;
    assert_eq!(response["status"], "ok");
    let client = server.client_by_protocol("fastws").await;
    assert_eq!(client["protocol"], "fastws");
    assert!(client["owner"]
        .as_str()
        .unwrap()
        .starts_with("fastws:anonymous:"));
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("shardcast_protocol_connections{protocol=\"fastws\"} 2"),
        "{metrics}"
    );
    let stats = server.stats().await;
    assert_eq!(stats["connectionsByProtocol"]["fastws"], 2);
}

#[tokio::test]
async fn each_message_the_protocol_cannot_act_on_closes_with_its_reason() {
    let server = TestServer::start("");
    let cases: [(Message, &str); 6] = [
        (Message::text("not json"), "Unsupported Data"),
        (Message::text("[1,2]"), "Unsupported Data"),
        (Message::binary(vec![1u8, 2, 3]), "Unsupported Data"),
        (
            Message::text(r#"{"type":"unknown.operation","payload":{}}"#),
            "No matching type",
        ),
        (
            Message::text(r#"{"type":"bars.subscribe","payload":{"params":{}}}"#),
            "Could not validate payload",
        ),
        (
            Message::text(
                r#"{"type":"bars.subscribe","payload":{"symbol":"A","params":{"resolution":"7"}}}"#,
            ),
            "Could not validate payload",
        ),
    ];
    for (message, reason) in cases {
        let mut ws = server.fastws().await;
        ws.send(message.clone()).await.unwrap();
        assert_eq!(
            close_code(&mut ws).await,
            (1003, reason.to_owned()),
            "{message:?}"
        );
    }
    // Past max_frame_size: 1009.
    let mut ws = server.fastws().await;
    ws.send(Message::text("x".repeat(70_000))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1009);
}

#[tokio::test]
async fn silence_and_old_age_close_with_the_configured_values() {
    let server = TestServer::start(
        "[fastws]\nheartbeat_interval_seconds = 1.0\nmax_connection_lifespan_seconds = 3.0",
    );
    let reason =
        "Connection timed out. Heartbeat interval 1.0. Max connection lifespan 3.0".to_owned();
    // Silent: closed after the heartbeat interval.
    let mut silent = server.fastws().await;
    let opened = Instant::now();
    assert_eq!(close_code(&mut silent).await, (1003, reason.clone()));
    assert!(opened.elapsed() >= Duration::from_millis(900));
    // Busy (an operation every 400 ms, as the document advises): closed at
    // its lifespan, not before.
    let mut busy = server.fastws().await;
    let opened = Instant::now();
    let payload = json!({"symbol": "AAPL", "params": {"resolution": "1"}});
    let closed = loop {
        send_json(
            &mut busy,
            json!({"type": "bars.subscribe", "payload": payload}),
        )
        .await;
        let next = tokio::time::timeout(Duration::from_millis(400), next_message(&mut busy));
        if let Ok(Message::Close(Some(frame))) = next.await {
            break (u16::from(frame.code), frame.reason.to_string());
        }
        assert!(opened.elapsed() < Duration::from_secs(6), "never closed");
    };
    assert_eq!(closed, (1003, reason));
    assert!(
        opened.elapsed() >= Duration::from_millis(2800),
        "{:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn the_subscription_limit_is_an_error_response() {
    let server = TestServer::start("[topics]\nmax_subscriptions = 2");
    let mut ws = server.fastws().await;
    for account in ["A", "B"] {
        let response = operation(&mut ws, "orders.subscribe", json!({"accountId": account})).await;
        assert_eq!(response["status"], "ok");
    }
    let response = operation(&mut ws, "orders.subscribe", json!({"accountId": "C"})).await;
    assert_eq!(response["status"], "error");
    assert!(
        response["message"].as_str().unwrap().contains("limit of 2"),
        "{response}"
    );
    // Still usable.
    let response = operation(&mut ws, "orders.unsubscribe", json!({"accountId": "A"})).await;
    assert_eq!(response["status"], "ok");
}

#[tokio::test]
async fn api_keys_can_be_required() {
    let server = TestServer::start("[fastws]\nrequire_api_key = true");
    let mut ws = server.fastws().await;
    assert_eq!(close_code(&mut ws).await.0, 4401);
    let mut ws = server
        .try_connect("/api/v1/ws", &[("X-API-Key", SUB)])
        .await
        .unwrap();
    let response = operation(&mut ws, "orders.subscribe", json!({"accountId": "A"})).await;
    assert_eq!(response["status"], "ok");
    let mut ws = server
        .try_connect("/api/v1/ws", &[("X-API-Key", PUB)])
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await.0, 4403);
}

#[tokio::test]
async fn anonymous_clients_cannot_take_over_each_others_ids() {
    let server = TestServer::start("");
    let mut first = server
        .try_connect("/api/v1/ws?clientId=desk-1", &[])
        .await
        .unwrap();
    let mut second = server
        .try_connect("/api/v1/ws?clientId=desk-1", &[])
        .await
        .unwrap();
    for ws in [&mut first, &mut second] {
        let response = operation(ws, "orders.subscribe", json!({"accountId": "A"})).await;
        assert_eq!(response["status"], "ok");
    }
}

#[tokio::test]
async fn with_keys_required_a_token_connection_ends_when_its_token_does() {
    let secret = "a-fastws-test-secret-of-32-bytes-or-more";
    let jwt = format!("[jwt]\nhs256_secret = \"{secret}\"\ndefault_channels = [\"orders:*\"]");
    let server = TestServer::start_with_keys("[fastws]\nrequire_api_key = true", &jwt);
    let exp = unix_now() + 2;
    let token = signed(json!({"sub": "trader-9", "exp": exp}), secret);
    let bearer = format!("Bearer {token}");
    let mut ws = server
        .try_connect("/api/v1/ws", &[("Authorization", bearer.as_str())])
        .await
        .unwrap();
    let response = operation(&mut ws, "orders.subscribe", json!({"accountId": "A"})).await;
    assert_eq!(response["status"], "ok");
    // Outside the token's scope: an error response, not a subscription.
    let response = operation(&mut ws, "equity.subscribe", json!({"accountId": "A"})).await;
    assert_eq!(response["status"], "error");
    // Keep it busy so only the token can end it.
    let closed = loop {
        send_json(
            &mut ws,
            json!({"type": "orders.subscribe", "payload": {"accountId": "A"}}),
        )
        .await;
        let next = tokio::time::timeout(Duration::from_millis(300), next_message(&mut ws));
        if let Ok(Message::Close(Some(frame))) = next.await {
            break u16::from(frame.code);
        }
    };
    assert_eq!(closed, 4440);
}
