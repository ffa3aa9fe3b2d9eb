//! BondX clients, written against the platform's own document, pointed at
//! shardcast unchanged: tokens, the envelope, snapshot then deltas, alerts,
//! subscribing by message, resume, and every refusal.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Expects the refusal of a BondX upgrade: an `AUTH_REQUIRED` error
/// envelope as the very first frame, then close 4401.
async fn assert_refused(ws: &mut Ws, why: &str) {
    let first = next_frame(ws).await;
    assert_envelope(&first, "error");
    assert_eq!(first["code"], "AUTH_REQUIRED", "{why}: {first}");
    assert_eq!(first["payload"]["code"], "AUTH_REQUIRED", "{why}");
    assert!(first["error"].is_string() && first["timestamp"].is_string());
    assert_eq!(close_code(ws).await.0, 4401, "{why}");
}

#[tokio::test]
async fn market_stream_starts_with_a_snapshot_then_deltas_continue_its_seq() {
    let server = bondx_server("", "");
    server
        .publish("prices.IN0001", json!({"bid": 99.1}), Some("L1"))
        .await;
    server
        .publish("prices.IN0001", json!({"bid": 99.2}), Some("L2"))
        .await;
    server
        .publish("prices.IN0001", json!({"bid": 99.3}), Some("L1"))
        .await;
    let token = user_token("alice");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/IN0001", &token).await;
    let snapshot = next_frame(&mut ws).await;
    assert_envelope(&snapshot, "snapshot");
    assert_eq!(snapshot["topic"], "prices.IN0001");
    assert_eq!(snapshot["seq"], 3);
    assert_eq!(
        snapshot["payload"],
        json!({"L2": {"bid": 99.2}, "L1": {"bid": 99.3}})
    );
    assert_eq!(snapshot["meta"]["epoch"].as_str().unwrap().len(), 16);
    assert_eq!(snapshot["correlation_id"], Value::Null);

    // One publish reaches BondX and telemetry subscribers with one seq.
    let mut telemetry = server.subscriber(&["prices.IN0001"]).await;
    let seq = server
        .publish("prices.IN0001", json!({"bid": 99.4}), Some("L2"))
        .await;
    assert_eq!(seq, 4);
    let delta = next_frame(&mut ws).await;
    assert_envelope(&delta, "delta");
    assert_eq!(delta["seq"], 4);
    assert_eq!(delta["payload"], json!({"bid": 99.4}));
    // The epoch on every delta: the snapshot's, until the topic restarts.
    assert_eq!(
        delta["meta"],
        json!({"key": "L2", "epoch": snapshot["meta"]["epoch"]})
    );
    let event = next_of_type(&mut telemetry, "event").await;
    assert_eq!(event["seq"], 4);
}

#[tokio::test]
async fn every_endpoint_class_subscribes_to_its_topics_with_a_header_token() {
    let server = bondx_server("", "");
    server
        .publish("portfolio.u7", json!({"cash": 10}), None)
        .await;
    let token = user_token("u7");
    for (path, topics) in [
        ("/api/v1/ws/auction/A-1", vec!["auctions.A-1"]),
        ("/api/v1/ws/trading/u7", vec!["trading.u7", "portfolio.u7"]),
        ("/api/v1/ws/risk/u7", vec!["risk.u7", "risk.u7.alerts"]),
        ("/api/v1/ws/mobile/u7", vec!["mobile.u7"]),
    ] {
        let mut ws = bondx_by_header(&server, path, &token, &[]).await;
        for topic in topics {
            let snapshot = next_frame(&mut ws).await;
            assert_envelope(&snapshot, "snapshot");
            assert_eq!(snapshot["topic"], topic, "{path}");
            if topic == "portfolio.u7" {
                // Not keyed: the latest data itself.
                assert_eq!(snapshot["payload"], json!({"cash": 10}));
                assert_eq!(snapshot["seq"], 1);
            } else {
                assert_eq!(snapshot["payload"], Value::Null, "{path}: empty topic");
                assert_eq!(snapshot["seq"], 0);
            }
        }
    }
}

#[tokio::test]
async fn alerts_arrive_as_alerts() {
    let server = bondx_server("", "");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/risk/r1", &user_token("r1")).await;
    next_frame(&mut ws).await;
    next_frame(&mut ws).await;
    let body =
        json!({"channel": "risk.r1.alerts", "data": {"rule": "MAX_DRAWDOWN"}, "kind": "alert"});
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/publish",
            Some(PUB),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 200);
    let alert = next_frame(&mut ws).await;
    assert_envelope(&alert, "alert");
    assert_eq!(alert["topic"], "risk.r1.alerts");
    assert_eq!(alert["payload"]["rule"], "MAX_DRAWDOWN");
    // Over the WebSocket publish API too.
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let frame =
        json!({"action": "publish", "channel": "risk.r1", "data": {"v": 1}, "kind": "alert"});
    send_json(&mut publisher, frame).await;
    assert_eq!(next_frame(&mut ws).await["type"], "alert");
    server.publish("risk.r1", json!({"v": 2}), None).await;
    assert_eq!(next_frame(&mut ws).await["type"], "delta");
}

#[tokio::test]
async fn every_bad_credential_is_refused_before_any_data() {
    let server = bondx_server("", "");
    server.publish("prices.IN9", json!({"v": 1}), None).await;
    let now = unix_now();
    let cases = [
        ("missing", None),
        ("malformed", Some("not-a-jwt".to_owned())),
        (
            "badly signed",
            Some(signed(
                json!({"sub": "u1", "exp": now + 60}),
                "some-other-secret-that-is-long-enough",
            )),
        ),
        (
            "expired",
            Some(signed(json!({"sub": "u1", "exp": now - 600}), BONDX_SECRET)),
        ),
        (
            "not yet valid",
            Some(signed(
                json!({"sub": "u1", "exp": now + 900, "nbf": now + 600}),
                BONDX_SECRET,
            )),
        ),
    ];
    for (why, token) in cases {
        let path = match &token {
            Some(token) => format!("/api/v1/ws/market/IN9?token={token}"),
            None => "/api/v1/ws/market/IN9".to_owned(),
        };
        let mut ws = server.try_connect(&path, &[]).await.expect("handshake");
        assert_refused(&mut ws, why).await;
    }
    // Another user's stream, by query and by header.
    let bob = user_token("bob");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/trading/alice", &bob).await;
    assert_refused(&mut ws, "another user (query)").await;
    let mut ws = bondx_by_header(&server, "/api/v1/ws/risk/alice", &bob, &[]).await;
    assert_refused(&mut ws, "another user (header)").await;
    // Credentials that cannot be read: the same refusal, in BondX's words.
    let good = user_token("u1");
    let path = format!("/api/v1/ws/market/IN9?token={good}");
    let bearer = format!("Bearer {good}");
    let mut ws = server
        .try_connect(&path, &[("Authorization", bearer.as_str())])
        .await
        .unwrap();
    assert_refused(&mut ws, "token twice").await;
    let mut ws = server
        .try_connect("/api/v1/ws/market/IN9", &[("Authorization", "Basic dTpw")])
        .await
        .unwrap();
    assert_refused(&mut ws, "another scheme").await;
    // An API key is not a BondX credential.
    let mut ws = server
        .try_connect("/api/v1/ws/market/IN9", &[("X-API-Key", ADMIN)])
        .await
        .unwrap();
    assert_refused(&mut ws, "api key").await;
}

#[tokio::test]
async fn without_a_secret_every_connection_is_refused() {
    let server = TestServer::start("");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/X1", &user_token("u")).await;
    assert_refused(&mut ws, "no secret configured").await;
}

#[tokio::test]
async fn subscribing_by_message_reaches_public_and_own_topics_only() {
    let server = bondx_server("", "");
    server
        .publish("auctions.A9", json!({"bids": 3}), None)
        .await;
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/M1", &user_token("carol")).await;
    next_frame(&mut ws).await;
    let request = json!({
        "type": "subscribe", "topic": "auctions.A9", "correlation_id": "c-1",
        "subtopics": {"levels": "L1,L2", "trades": true}, "compression": true, "batch_size": 100,
    });
    send_json(&mut ws, request).await;
    let ack = next_frame(&mut ws).await;
    assert_envelope(&ack, "ack");
    assert_eq!(ack["correlation_id"], "c-1");
    assert_eq!(ack["payload"]["status"], "ok");
    assert_eq!(
        ack["payload"]["subtopics"],
        json!({"levels": "L1,L2", "trades": true})
    );
    assert_eq!(ack["payload"]["batch_size"], 100);
    let snapshot = next_frame(&mut ws).await;
    assert_envelope(&snapshot, "snapshot");
    assert_eq!(snapshot["payload"], json!({"bids": 3}));
    assert_eq!(snapshot["correlation_id"], "c-1");

    send_json(
        &mut ws,
        json!({"type": "subscribe", "topic": "trading.carol"}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["type"], "ack");
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");

    let request = json!({"type": "subscribe", "topic": "trading.dave", "correlation_id": 9});
    send_json(&mut ws, request).await;
    let refused = next_frame(&mut ws).await;
    assert_envelope(&refused, "error");
    assert_eq!(refused["code"], "FORBIDDEN");
    assert_eq!(refused["correlation_id"], 9);
    // Still open; ping answers with the envelope and the id.
    send_json(&mut ws, json!({"type": "ping", "correlation_id": "p-1"})).await;
    let pong = next_frame(&mut ws).await;
    assert_envelope(&pong, "pong");
    assert_eq!(pong["correlation_id"], "p-1");
    // And dave's topic got nothing from carol's attempt.
    server.publish("trading.dave", json!({"v": 1}), None).await;
    server
        .publish("auctions.A9", json!({"bids": 4}), None)
        .await;
    assert_eq!(next_frame(&mut ws).await["topic"], "auctions.A9");
}

#[tokio::test]
async fn subtopics_are_echoed_exactly_as_sent() {
    let server = bondx_server("", "");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/E1", &user_token("e")).await;
    next_frame(&mut ws).await;
    // A key some JSON libraries give a meaning of their own: still just a key.
    let sent = r#"{"type":"subscribe","topic":"prices.E2","subtopics":{"$serde_json::private::RawValue":true,"levels":"L1"}}"#;
    ws.send(Message::text(sent)).await.unwrap();
    let Message::Text(ack) = next_message(&mut ws).await else {
        panic!("a text frame");
    };
    assert!(ack.contains(r#""type":"ack""#), "{ack}");
    assert!(
        ack.contains(r#""subtopics":{"$serde_json::private::RawValue":true,"levels":"L1"}"#),
        "{ack}"
    );
}

#[tokio::test]
async fn unsubscribe_stops_deltas() {
    let server = bondx_server("", "");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/U1", &user_token("u")).await;
    next_frame(&mut ws).await;
    let request = json!({"type": "unsubscribe", "topic": "prices.U1", "correlation_id": "x"});
    send_json(&mut ws, request).await;
    let ack = next_frame(&mut ws).await;
    assert_envelope(&ack, "ack");
    assert_eq!(ack["payload"]["action"], "unsubscribe");
    assert_eq!(ack["correlation_id"], "x");
    server.publish("prices.U1", json!({"v": 1}), None).await;
    assert_silent(&mut ws, Duration::from_millis(300)).await;
    send_json(
        &mut ws,
        json!({"type": "unsubscribe", "topic": "prices.U1"}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["code"], "NOT_SUBSCRIBED");
}

#[tokio::test]
async fn batch_size_is_bounded_and_deltas_stay_in_order() {
    let server = bondx_server("", "");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/B0", &user_token("b")).await;
    next_frame(&mut ws).await;
    for size in [json!(0), json!(1001), json!(-1), json!("10")] {
        let request = json!({"type": "subscribe", "topic": "prices.B1", "batch_size": size});
        send_json(&mut ws, request).await;
        let error = next_frame(&mut ws).await;
        assert_eq!(error["code"], "INVALID_MESSAGE", "{size}");
        assert!(error["error"].as_str().unwrap().contains("batch_size"));
    }
    let request = json!({"type": "subscribe", "topic": "prices.B1", "batch_size": 1000});
    send_json(&mut ws, request).await;
    assert_eq!(next_frame(&mut ws).await["payload"]["batch_size"], 1000);
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");
    server.publish_batch("prices.B1", 50).await;
    for seq in 1..=50 {
        let delta = next_frame(&mut ws).await;
        assert_eq!(delta["seq"], seq);
        assert_eq!(delta["payload"], json!({"n": seq - 1}));
    }
}

#[tokio::test]
async fn bad_input_gets_a_named_error_and_the_connection_stays_usable() {
    let server = bondx_server("max_frame_size = 4096", "");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/BAD", &user_token("b")).await;
    next_frame(&mut ws).await;
    let cases = [
        ("{not json", "JSON"),
        ("[1,2]", "object"),
        ("\"text\"", "object"),
        (r#"{"type":"dance"}"#, "unknown type"),
        (r#"{"type":7}"#, "type"),
        (r#"{"type":"subscribe","topic":["a"]}"#, "topic"),
        (
            r#"{"type":"subscribe","topic":"prices.X","resume_from_seq":-5}"#,
            "resume_from_seq",
        ),
        (
            r#"{"type":"subscribe","topic":"prices.X","resume_from_seq":"5"}"#,
            "resume_from_seq",
        ),
        (
            r#"{"type":"subscribe","topic":"prices.X","batch_size":5000}"#,
            "batch_size",
        ),
        (r#"{"type":"background_mode","enabled":"yes"}"#, "enabled"),
    ];
    for (text, names) in cases {
        ws.send(Message::text(text)).await.unwrap();
        let error = next_frame(&mut ws).await;
        assert_envelope(&error, "error");
        assert_eq!(error["code"], "INVALID_MESSAGE", "{text}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(names), "{text}: {message}");
    }
    send_json(
        &mut ws,
        json!({"type": "subscribe", "topic": "nothing.here"}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["code"], "FORBIDDEN");
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "pong");
    // Past max_frame_size: 1009.
    ws.send(Message::text("x".repeat(8192))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1009);
}

use futures_util::SinkExt;
