//! Deeply nested JSON is refused with a clear error and harms no one: one
//! 20 KB frame of brackets used to overflow a shard's stack and abort the
//! whole process.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn brackets(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn a_command_of_ten_thousand_brackets_is_refused_and_every_shard_keeps_serving() {
    let server = TestServer::start("");
    // Bystanders on both shards (connections are spread by load).
    let mut bystanders = Vec::new();
    for _ in 0..4 {
        bystanders.push(server.subscriber(&["t1"]).await);
    }
    let mut attacker = server.connect("/ws/telemetry", Some(SUB)).await;
    next_of_type(&mut attacker, "welcome").await;
    attacker
        .send(Message::text(brackets(10_000)))
        .await
        .unwrap();
    let error = next_of_type(&mut attacker, "error").await;
    assert_eq!(error["code"], "TOO_DEEP", "{error}");
    assert!(error["message"].as_str().unwrap().contains("64"), "{error}");
    // Objects too, and nesting hidden in an otherwise valid command.
    let objects = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    attacker.send(Message::text(objects)).await.unwrap();
    assert_eq!(
        next_of_type(&mut attacker, "error").await["code"],
        "TOO_DEEP"
    );
    let hidden = format!(
        r#"{{"action":"subscribe","channels":["t1"],"x":{}}}"#,
        brackets(65)
    );
    attacker.send(Message::text(hidden)).await.unwrap();
    assert_eq!(
        next_of_type(&mut attacker, "error").await["code"],
        "TOO_DEEP"
    );
    // The attacker's connection still works, and so does everyone else's.
    send_json(
        &mut attacker,
        json!({"action": "subscribe", "channels": ["t1"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut attacker, "ack").await["channels"],
        json!(["t1"])
    );
    server.publish("t1", json!({"v": "alive"}), None).await;
    for ws in bystanders.iter_mut().chain(std::iter::once(&mut attacker)) {
        assert_eq!(next_of_type(ws, "event").await["data"]["v"], "alive");
    }
}

#[tokio::test]
async fn published_data_deeper_than_100_levels_is_refused_over_http_and_websocket() {
    let server = TestServer::start("");
    let mut subscriber = server.subscriber(&["t1"]).await;
    let deep = brackets(101);
    let body = format!(r#"{{"channel":"t1","data":{deep}}}"#);
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "TOO_DEEP", "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("100"),
        "{answer}"
    );
    // In a batch, only the deep item is refused.
    let batch = format!(
        r#"{{"messages":[{{"channel":"t1","data":{}}},{{"channel":"t1","data":{{"v":"ok"}}}}]}}"#,
        brackets(200)
    );
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&batch))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["results"][0]["error"]["code"], "TOO_DEEP",
        "{answer}"
    );
    assert_eq!(answer["results"][1]["seq"], 1, "{answer}");
    assert_eq!(
        next_of_type(&mut subscriber, "event").await["data"]["v"],
        "ok"
    );
    // 100 levels are fine: with the event around them, 101, which every
    // common JSON parser reads (this client, serde_json, stops at 128).
    let ok = format!(r#"{{"channel":"t1","data":{}}}"#, brackets(100));
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&ok))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(next_of_type(&mut subscriber, "event").await["seq"], 2);

    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let frame = format!(
        r#"{{"action":"publish","channel":"t1","data":{}}}"#,
        brackets(10_000)
    );
    publisher.send(Message::text(frame)).await.unwrap();
    let error = next_of_type(&mut publisher, "error").await;
    assert_eq!(error["code"], "TOO_DEEP", "{error}");
    let frame = format!(
        r#"{{"action":"publish","channel":"t1","data":{}}}"#,
        brackets(101)
    );
    publisher.send(Message::text(frame)).await.unwrap();
    assert_eq!(
        next_of_type(&mut publisher, "error").await["code"],
        "TOO_DEEP"
    );
    let frame = format!(
        r#"{{"action":"publish","channel":"t1","data":{}}}"#,
        brackets(100)
    );
    publisher.send(Message::text(frame)).await.unwrap();
    assert_eq!(next_of_type(&mut subscriber, "event").await["seq"], 3);
    send_json(
        &mut publisher,
        json!({"action": "publish", "channel": "t1", "data": {"v": "still publishing"}}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut subscriber, "event").await["data"]["v"],
        "still publishing"
    );
}
