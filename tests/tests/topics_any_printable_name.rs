//! Channel names may hold any printable character: the canonical topics of
//! parameterised subscriptions (`bars:{"resolution":"1","symbol":"AAPL"}`)
//! are ordinary channels, declared by prefix rules, published over HTTP and
//! received over `/ws/telemetry` exactly as named, in valid JSON.

mod common;

use common::*;
use serde_json::json;

const BARS: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
const EXECUTIONS: &str = r#"executions:{"accountId":"A-1","symbol":"AAPL"}"#;
const ESCAPES: &str = r#"notes:{"path":"C:\\desk","who":"Zoë","q":"\"x\""}"#;

fn server() -> TestServer {
    TestServer::start_declaring(&["bars:*", "executions:*", "notes:*"], "", "")
}

#[tokio::test]
async fn canonical_topic_names_are_published_over_http_and_received_over_telemetry() {
    let server = server();
    let names = [BARS, EXECUTIONS, ESCAPES];
    let mut ws = server.subscriber(&names).await;

    for (n, name) in names.iter().enumerate() {
        let key = format!("k\"\\{n}é");
        let seq = server
            .publish(name, json!({"n": n, "px": 189.5}), Some(&key))
            .await;
        assert_eq!(seq, 1);
        // The frame is valid JSON (next_of_type parses it) and names the
        // channel and key exactly as published.
        let event = next_of_type(&mut ws, "event").await;
        assert_eq!(event["channel"], *name, "{event}");
        assert_eq!(event["key"], key.as_str(), "{event}");
        assert_eq!(event["data"], json!({"n": n, "px": 189.5}));
    }

    // The name is the whole identity: another parameter set is another channel.
    let other = r#"bars:{"resolution":"5","symbol":"AAPL"}"#;
    assert_eq!(server.publish(other, json!({"v": 1}), None).await, 1);
    assert_eq!(server.publish(BARS, json!({"v": 2}), None).await, 2);
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(
        (event["channel"].as_str(), event["seq"].as_u64()),
        (Some(BARS), Some(2))
    );

    // Metrics quote the names as the text format requires.
    let metrics = server.metrics().await;
    let escaped = r#"channel="bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}""#;
    assert!(metrics.contains(escaped), "{metrics}");
    let stats = server.stats().await;
    assert_eq!(channel(&stats, ESCAPES)["published"], 1);
}

#[tokio::test]
async fn names_outside_the_rules_or_the_limit_are_refused_clearly() {
    let server = server();
    let long = format!("bars:{}", "x".repeat(252));
    assert_eq!(long.len(), 257);
    let body = json!({"messages": [
        {"channel": r#"trades:{"symbol":"AAPL"}"#, "data": {}},
        {"channel": long, "data": {}},
        {"channel": "bars:{\"a\": 1}", "data": {}},
        {"channel": "bars:", "data": {}},
    ]})
    .to_string();
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
    let codes: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "UNKNOWN_CHANNEL",
            "INVALID_CHANNEL",
            "INVALID_CHANNEL",
            "UNKNOWN_CHANNEL"
        ]
    );

    // The same over the WebSocket; the connection stays usable.
    let mut ws = server.telemetry("").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": [long, "bars:{\"a\":\t1}", BARS]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await["channels"],
        json!([BARS])
    );
    let error = next_of_type(&mut ws, "error").await;
    assert_eq!(error["code"], "UNKNOWN_CHANNEL", "{error}");
    server.publish(BARS, json!({"v": 1}), None).await;
    assert_eq!(next_of_type(&mut ws, "event").await["channel"], BARS);
}
