//! The telemetry protocol at /ws/telemetry, end to end.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn missing_or_invalid_key_closes_with_4401_and_missing_role_with_4403() {
    let server = TestServer::start("");
    let mut ws = server.connect("/ws/telemetry", None).await;
    assert_eq!(close_code(&mut ws).await, (4401, "VIOLATED_POLICY".into()));

    let mut ws = server.connect("/ws/telemetry", Some("not-a-key")).await;
    assert_eq!(close_code(&mut ws).await.0, 4401);

    // The query parameter works as well as the header.
    let mut ws = server
        .connect(&format!("/ws/telemetry?apiKey={SUB}"), None)
        .await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");

    // A key with only the publish role may not subscribe.
    let mut ws = server.connect("/ws/telemetry", Some(PUB)).await;
    assert_eq!(close_code(&mut ws).await.0, 4403);
}

#[tokio::test]
async fn welcome_announces_the_negotiated_settings() {
    let server = TestServer::start(
        "[telemetry]\nheartbeat_interval_seconds = 7\nheartbeat_timeout_seconds = 21\nrate_limit_per_second = 33\nreplay_limit = 4",
    );
    let mut ws = server
        .connect("/ws/telemetry?clientId=desk-7", Some(SUB))
        .await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(
        welcome,
        json!({
            "type": "welcome",
            "clientId": "desk-7",
            "heartbeatIntervalSeconds": 7,
            "heartbeatTimeoutSeconds": 21,
            "rateLimitPerSecond": 33,
            "replayLimit": 4,
        })
    );
    // Without clientId the server assigns a UUID.
    let mut ws = server.connect("/ws/telemetry", Some(SUB)).await;
    let id = next_json(&mut ws).await["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "{id}");
}

#[tokio::test]
async fn subscribe_acks_and_events_carry_channel_seq_ts_and_exact_data() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["market-data", "positions"]}),
    )
    .await;
    let ack = next_of_type(&mut ws, "ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "action": "subscribe", "channels": ["market-data", "positions"]})
    );

    // Key order and spacing of data are kept exactly.
    let raw = r#"{"channel":"market-data","key":"AAPL","data":{"z":1,  "a":{"y":[1,2]},"b":"é"}}"#;
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(raw))
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"channel": "market-data", "seq": 1}))
    );
    let text = match next_message(&mut ws).await {
        tokio_tungstenite::tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        text.ends_with(r#""data":{"z":1,  "a":{"y":[1,2]},"b":"é"}}"#),
        "{text}"
    );
    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["type"], "event");
    assert_eq!(event["channel"], "market-data");
    assert_eq!(event["seq"], 1);
    assert_eq!(event["key"], "AAPL");
    let ts = event["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    // Sequence numbers are consecutive per channel.
    for n in 2..=4 {
        assert_eq!(
            server.publish("market-data", json!({"n": n}), None).await,
            n
        );
        assert_eq!(next_of_type(&mut ws, "event").await["seq"], n);
    }
    assert_eq!(server.publish("positions", json!({}), None).await, 1);
}

#[tokio::test]
async fn an_event_reaches_every_subscriber_on_every_shard() {
    let server = TestServer::start("");
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.subscriber(&["risk-alerts"]).await);
    }
    let stats = server.stats().await;
    let per_shard: Vec<u64> = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .collect();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards hold clients: {per_shard:?}"
    );

    for seq in 1..=3 {
        server
            .publish("risk-alerts", json!({"alert": seq}), None)
            .await;
    }
    for ws in &mut clients {
        for seq in 1..=3 {
            let event = next_of_type(ws, "event").await;
            assert_eq!(
                (event["seq"].as_u64(), event["data"]["alert"].as_u64()),
                (Some(seq), Some(seq))
            );
        }
    }
    let stats = eventually_stats(&server, |s| s["messagesSent"] == 24).await;
    assert_eq!(channel(&stats, "risk-alerts")["subscribers"], 8);
}

#[tokio::test]
async fn channels_query_subscribes_on_connect_and_replay_is_bounded_by_replay_limit() {
    let server = TestServer::start("[telemetry]\nreplay_limit = 3");
    for n in 1..=10 {
        server.publish("positions", json!({"n": n}), None).await;
    }
    let mut ws = server.telemetry("?channels=positions&replay=true").await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await["channels"],
        json!(["positions"])
    );
    let replayed: Vec<u64> = [
        next_of_type(&mut ws, "event").await,
        next_of_type(&mut ws, "event").await,
        next_of_type(&mut ws, "event").await,
    ]
    .iter()
    .map(|e| e["seq"].as_u64().unwrap())
    .collect();
    assert_eq!(
        replayed,
        vec![8, 9, 10],
        "the last replayLimit messages, oldest first"
    );

    // Live messages continue right after the replay, with no gap or duplicate.
    server.publish("positions", json!({"n": 11}), None).await;
    assert_eq!(next_of_type(&mut ws, "event").await["seq"], 11);

    // Without replay, nothing from history.
    let mut quiet = server.telemetry("?channels=positions").await;
    next_of_type(&mut quiet, "ack").await;
    assert_silent(&mut quiet, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn keyed_channels_replay_the_latest_message_per_key() {
    let server = TestServer::start("");
    server
        .publish("market-data", json!({"px": 1}), Some("AAPL"))
        .await;
    server
        .publish("market-data", json!({"px": 2}), Some("MSFT"))
        .await;
    server
        .publish("market-data", json!({"px": 3}), Some("AAPL"))
        .await;
    server
        .publish("market-data", json!({"px": 4}), Some("TSLA"))
        .await;

    let mut ws = server.telemetry("").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["market-data"], "replay": true}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next_of_type(&mut ws, "event").await;
        got.push((
            e["key"].as_str().unwrap().to_owned(),
            e["data"]["px"].as_u64().unwrap(),
        ));
    }
    assert_eq!(
        got,
        vec![("MSFT".into(), 2), ("AAPL".into(), 3), ("TSLA".into(), 4)]
    );
    assert_silent(&mut ws, Duration::from_millis(200)).await;
    assert_eq!(
        channel(&server.stats().await, "market-data")["snapshotCount"],
        3
    );
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = TestServer::start("");
    let mut ws = server.subscriber(&["t1", "t2"]).await;
    send_json(
        &mut ws,
        json!({"action": "unsubscribe", "channels": ["t1"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await,
        json!({"type": "ack", "action": "unsubscribe", "channels": ["t1"]})
    );
    server.publish("t1", json!({"v": "gone"}), None).await;
    server.publish("t2", json!({"v": "kept"}), None).await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["channel"], "t2");
    assert_silent(&mut ws, Duration::from_millis(200)).await;

    // Unsubscribing from a channel not held says so.
    send_json(
        &mut ws,
        json!({"action": "unsubscribe", "channels": ["t1"]}),
    )
    .await;
    assert_eq!(next_of_type(&mut ws, "ack").await["channels"], json!([]));
    assert_eq!(
        next_of_type(&mut ws, "error").await["code"],
        "NOT_SUBSCRIBED"
    );
}

#[tokio::test]
async fn unknown_channels_get_an_error_while_known_ones_are_subscribed() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["t1", "orders", "prices.AAPL", "prices.a.b"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await["channels"],
        json!(["t1", "prices.AAPL"])
    );
    let error = next_of_type(&mut ws, "error").await;
    assert_eq!(error["code"], "UNKNOWN_CHANNEL");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("orders") && message.contains("prices.a.b"),
        "{message}"
    );

    // The pattern-declared channel works for publishing and delivery.
    server.publish("prices.AAPL", json!({"px": 1}), None).await;
    assert_eq!(
        next_of_type(&mut ws, "event").await["channel"],
        "prices.AAPL"
    );
}

#[tokio::test]
async fn client_heartbeat_is_answered_and_silence_closes_with_4408() {
    let server = TestServer::start(
        "[telemetry]\nheartbeat_interval_seconds = 1\nheartbeat_timeout_seconds = 2",
    );
    let mut ws = server.telemetry("").await;
    send_json(&mut ws, json!({"action": "heartbeat"})).await;
    let reply = loop {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = next_message(&mut ws).await {
            break serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
    };
    assert_eq!(reply["type"], "heartbeat");

    // A client that keeps sending stays connected past the timeout.
    let mut alive = server.telemetry("").await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_json(&mut alive, json!({"action": "heartbeat"})).await;
    }
    // The silent one has been closed; server ticks arrived meanwhile.
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4408, "HEARTBEAT_TIMEOUT"));
    send_json(
        &mut alive,
        json!({"action": "subscribe", "channels": ["t1"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut alive, "ack").await["channels"],
        json!(["t1"])
    );
}

#[tokio::test]
async fn a_second_connection_with_a_live_client_id_replaces_the_first() {
    let server = TestServer::start("");
    let mut first = server.telemetry("?clientId=desk-1&channels=t1").await;
    next_of_type(&mut first, "ack").await;
    let mut second = server.telemetry("?clientId=desk-1&channels=t1").await;
    next_of_type(&mut second, "ack").await;
    assert_eq!(
        close_code(&mut first).await,
        (4409, "CLIENT_REPLACED".into())
    );
    server.publish("t1", json!({"v": 1}), None).await;
    assert_eq!(next_of_type(&mut second, "event").await["seq"], 1);
    let (_, clients) = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await;
    assert_eq!(clients["count"], 1);
}

#[tokio::test]
async fn rate_limit_drops_are_counted_in_stats_and_metrics() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 5");
    let mut ws = server.subscriber(&["t1"]).await;
    let batch: Vec<_> = (0..40)
        .map(|n| json!({"channel": "t1", "data": {"n": n}}))
        .collect();
    let body = json!({"messages": batch}).to_string();
    let (status, _) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
        .await;
    assert_eq!(status, 200);

    let mut received = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    {
        if msg.is_text() {
            received += 1;
        }
    }
    assert_eq!(received, 5, "a burst of one second's worth");
    let stats = eventually_stats(&server, |s| s["messagesDropped"] == 35).await;
    assert_eq!(stats["droppedByReason"]["rateLimited"], 35);
    assert_eq!(channel(&stats, "t1")["dropped"], 35);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("shardcast_messages_dropped_total 35\n"),
        "{metrics}"
    );
    assert!(metrics.contains("shardcast_channel_messages_dropped_total{channel=\"t1\"} 35\n"));
    assert!(metrics
        .contains("shardcast_messages_dropped_by_reason_total{reason=\"rate_limited\"} 35\n"));
}

#[tokio::test]
async fn a_client_answering_every_heartbeat_does_not_start_a_heartbeat_storm() {
    let server = TestServer::start(
        "[telemetry]\nheartbeat_interval_seconds = 1\nheartbeat_timeout_seconds = 3",
    );
    let mut ws = server.telemetry("").await;
    let mut heartbeats = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "heartbeat" {
                heartbeats += 1;
                // A naive client: answer every heartbeat at once.
                send_json(&mut ws, json!({"action": "heartbeat"})).await;
            }
        }
    }
    // About three ticks, each answered once; an echo loop would run to thousands.
    assert!(
        (3..=10).contains(&heartbeats),
        "{heartbeats} heartbeats in 3.5 s"
    );
}

#[tokio::test]
async fn leaving_in_any_order_leaves_exactly_the_others_subscribed() {
    let server = TestServer::start("");
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(server.subscriber(&["t1", "t2"]).await);
    }
    // Leave t1 from the middle, the end and the start of the subscriber list,
    // and close one connection outright.
    for i in [2usize, 5, 0] {
        send_json(
            &mut clients[i],
            json!({"action": "unsubscribe", "channels": ["t1"]}),
        )
        .await;
        next_of_type(&mut clients[i], "ack").await;
    }
    let closed = clients.remove(3);
    drop(closed);
    eventually_stats(&server, |s| s["activeConnections"] == 5).await;
    server.publish("t1", json!({"v": "t1 only"}), None).await;
    server.publish("t2", json!({"v": "t2"}), None).await;
    // Now indices: 0,1,2 were 0,1,2; 3,4 were 4,5.
    for (i, ws) in clients.iter_mut().enumerate() {
        let still_on_t1 = matches!(i, 1 | 3);
        let first = next_of_type(ws, "event").await;
        if still_on_t1 {
            assert_eq!(first["data"]["v"], "t1 only", "client {i}");
            assert_eq!(
                next_of_type(ws, "event").await["data"]["v"],
                "t2",
                "client {i}"
            );
        } else {
            assert_eq!(first["data"]["v"], "t2", "client {i}");
        }
    }
    let stats = server.stats().await;
    assert_eq!(channel(&stats, "t1")["subscribers"], 2, "{stats}");
    assert_eq!(channel(&stats, "t2")["subscribers"], 5, "{stats}");
}
