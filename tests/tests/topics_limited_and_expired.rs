//! A subscriber cannot use up the server's channels: topics are created only
//! after every check passes, creation is rate-limited and capped per key,
//! and channels nobody needs expire (their metrics series with them).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn subscribe(ws: &mut Ws, channels: &[String]) -> (Value, Vec<Value>) {
    send_json(ws, json!({"action": "subscribe", "channels": channels})).await;
    let ack = next_of_type(ws, "ack").await;
    let mut errors = Vec::new();
    // Errors, if any, follow the ack; an empty unsubscribe marks the end.
    send_json(ws, json!({"action": "unsubscribe", "channels": []})).await;
    loop {
        let value = next_json(ws).await;
        match (value["type"].as_str(), value["action"].as_str()) {
            (Some("error"), _) => errors.push(value),
            (Some("ack"), Some("unsubscribe")) => break,
            _ => panic!("unexpected {value}"),
        }
    }
    (ack, errors)
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("prices.{prefix}{i}")).collect()
}

async fn channel_count(server: &TestServer) -> u64 {
    server.stats().await["channelCount"].as_u64().unwrap()
}

#[tokio::test]
async fn a_subscribe_key_cannot_exhaust_the_channels_and_what_it_made_expires() {
    let server = TestServer::start(
        "[topics]\nmax_topics = 100\nmax_created_per_key = 20\ncreation_rate = 1000.0\nidle_expiry_seconds = 1\nhistory = 0",
    );
    let mut attackers = Vec::new();
    let mut created = 0;
    for round in 0..4 {
        let mut ws = server.connect("/ws/telemetry", Some(SUB)).await;
        next_of_type(&mut ws, "welcome").await;
        let (ack, errors) = subscribe(&mut ws, &names(&format!("r{round}x"), 0..30)).await;
        created += ack["channels"].as_array().unwrap().len();
        if round > 0 {
            assert_eq!(errors[0]["code"], "LIMIT_REACHED", "{errors:?}");
        }
        attackers.push(ws);
    }
    // The key's connections together created at most its cap.
    assert_eq!(created, 20);
    assert_eq!(channel_count(&server).await, 20);
    // Everyone else can still make channels.
    let seq = server
        .publish("prices.NEWSYM", json!({"v": 1}), Some("NEWSYM"))
        .await;
    assert_eq!(seq, 1);
    // An unkeyed message (no ring: history = 0) leaves nothing retained.
    server.publish("prices.r0x0", json!({"v": 2}), None).await;

    // Once the attacker is gone, its channels expire, and their series go.
    let metrics = server.metrics().await;
    assert!(metrics.contains("channel=\"prices.r0x0\""), "{metrics}");
    drop(attackers);
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while channel_count(&server).await > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channels never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = server.stats().await;
    assert_eq!(stats["channelsExpired"], 20, "{stats}");
    // The channel with a retained (keyed) message stays.
    assert_eq!(channel(&stats, "prices.NEWSYM")["published"], 1);
    let metrics = server.metrics().await;
    assert!(!metrics.contains("prices.r0x0"), "{metrics}");
    assert!(
        metrics.contains("shardcast_channels_expired_total 20"),
        "{metrics}"
    );
    // Totals never go backwards when channels expire.
    assert!(
        metrics.contains("shardcast_messages_published_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn channels_are_created_only_after_the_connection_limit_is_checked() {
    let server = TestServer::start("[topics]\nmax_subscriptions = 2");
    let mut ws = server.connect("/ws/telemetry", Some(SUB)).await;
    next_of_type(&mut ws, "welcome").await;
    let (ack, _) = subscribe(&mut ws, &names("a", 0..2)).await;
    assert_eq!(ack["channels"].as_array().unwrap().len(), 2);
    for round in 0..5 {
        let (ack, errors) = subscribe(&mut ws, &names(&format!("b{round}x"), 0..2)).await;
        assert_eq!(ack["channels"], json!([]));
        assert_eq!(errors[0]["code"], "LIMIT_REACHED");
    }
    assert_eq!(channel_count(&server).await, 2);
}

#[tokio::test]
async fn channel_creation_is_rate_limited_per_key_with_a_burst() {
    let server = TestServer::start("[topics]\ncreation_rate = 0.5\ncreation_burst = 3");
    let mut ws = server.connect("/ws/telemetry", Some(SUB)).await;
    next_of_type(&mut ws, "welcome").await;
    let (ack, errors) = subscribe(&mut ws, &names("c", 0..10)).await;
    assert_eq!(ack["channels"].as_array().unwrap().len(), 3);
    let message = errors[0]["message"].as_str().unwrap();
    assert_eq!(errors[0]["code"], "LIMIT_REACHED");
    assert!(message.contains("rate"), "{message}");
    // Channels that exist cost nothing: another key subscribes freely.
    let mut other = server.telemetry("").await;
    let (ack, errors) = subscribe(&mut other, &names("c", 0..3)).await;
    assert_eq!(ack["channels"].as_array().unwrap().len(), 3, "{errors:?}");
    // The publisher's own quota is separate, and shows up as 429 over HTTP.
    for i in 0..3 {
        server
            .publish(&format!("prices.p{i}"), json!({"i": i}), None)
            .await;
    }
    let (status, head, body) = server
        .http_raw(
            "POST",
            "/api/v1/publish",
            Some(PUB),
            Some(r#"{"channel":"prices.p9","data":{}}"#),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("RATE_LIMITED"), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 2"),
        "{head}"
    );
}
