//! Publishing over HTTP (single and batch) and over /ws/publish.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn http_publish_answers_with_seq_and_batches_answer_per_message() {
    let server = TestServer::start("");
    let mut ws = server.subscriber(&["t1", "t2"]).await;
    assert_eq!(server.publish("t1", json!({"a": 1}), None).await, 1);

    let body = r#"{"messages":[
        {"channel":"t1","data":{"n":2}},
        {"channel":"nope","data":{}},
        {"channel":"t2","data":[1,2],"key":"k"},
        {"channel":"bad name","data":{}}
    ]}"#;
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(body))
        .await;
    assert_eq!(status, 200);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"channel": "t1", "seq": 2}));
    assert_eq!(results[1]["error"]["code"], "UNKNOWN_CHANNEL");
    assert_eq!(results[2], json!({"channel": "t2", "seq": 1}));
    assert_eq!(results[3]["error"]["code"], "INVALID_CHANNEL");

    let seqs: Vec<(String, u64)> = [
        next_of_type(&mut ws, "event").await,
        next_of_type(&mut ws, "event").await,
        next_of_type(&mut ws, "event").await,
    ]
    .iter()
    .map(|e| {
        (
            e["channel"].as_str().unwrap().to_owned(),
            e["seq"].as_u64().unwrap(),
        )
    })
    .collect();
    assert_eq!(
        seqs,
        vec![("t1".into(), 1), ("t1".into(), 2), ("t2".into(), 1)]
    );
}

#[tokio::test]
async fn http_publish_refuses_bad_requests_with_clear_errors() {
    let server = TestServer::start("max_publish_body = 1024\nmax_publish_batch = 2");
    let cases: [(&str, u16, &str); 6] = [
        (r#"{"channel":"nope","data":{}}"#, 422, "UNKNOWN_CHANNEL"),
        (r#"{"channel":"t1"}"#, 400, "INVALID_MESSAGE"),
        (
            r#"{"channel":"t1","data":{},"extra":true}"#,
            400,
            "INVALID_MESSAGE",
        ),
        ("{not json", 400, "INVALID_JSON"),
        (
            r#"{"messages":[{"channel":"t1","data":{}},{"channel":"t1","data":{}},{"channel":"t1","data":{}}]}"#,
            400,
            "LIMIT_REACHED",
        ),
        (r#"{"channel":"t1","data":{},"key":""}"#, 422, "INVALID_KEY"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = server
            .http("POST", "/api/v1/publish", Some(PUB), Some(body))
            .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let big = format!(
        r#"{{"channel":"t1","data":{{"p":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(&big))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("TOO_LARGE"))
    );

    // Roles: no key → 401, subscribe-only key → 403.
    let ok = r#"{"channel":"t1","data":{}}"#;
    assert_eq!(
        server
            .http("POST", "/api/v1/publish", None, Some(ok))
            .await
            .0,
        401
    );
    assert_eq!(
        server
            .http("POST", "/api/v1/publish", Some(SUB), Some(ok))
            .await
            .0,
        403
    );
    // Nothing above was published.
    assert_eq!(server.publish("t1", json!({"v": 1}), None).await, 1);
}

#[tokio::test]
async fn websocket_publish_is_silent_on_success_and_reports_errors() {
    let server = TestServer::start("");
    let mut sub = server.subscriber(&["t1"]).await;
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    for n in 0..50 {
        let frame = format!(
            r#"{{"action":"publish","channel":"t1","data":{{"n":{n},"pad":"{}"}}}}"#,
            "p".repeat(64)
        );
        publisher.send(Message::text(frame)).await.unwrap();
    }
    for n in 0..50u64 {
        let event = next_of_type(&mut sub, "event").await;
        assert_eq!(
            (event["seq"].as_u64(), event["data"]["n"].as_u64()),
            (Some(n + 1), Some(n))
        );
    }
    assert_silent(&mut publisher, Duration::from_millis(200)).await;

    send_text(
        &mut publisher,
        r#"{"action":"publish","channel":"nope","data":{}}"#,
    )
    .await;
    // The code an HTTP publish would get, in the frame's `code`.
    let error = next_of_type(&mut publisher, "error").await;
    assert_eq!(error["code"], "UNKNOWN_CHANNEL", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("nope"),
        "{error}"
    );
    send_text(&mut publisher, r#"{"action":"publish","channel":"t1"}"#).await;
    assert_eq!(
        next_of_type(&mut publisher, "error").await["code"],
        "INVALID_MESSAGE"
    );
    send_text(&mut publisher, "{oops").await;
    assert_eq!(
        next_of_type(&mut publisher, "error").await["code"],
        "INVALID_JSON"
    );
    send_text(
        &mut publisher,
        r#"{"action":"subscribe","channels":["t1"]}"#,
    )
    .await;
    assert_eq!(
        next_of_type(&mut publisher, "error").await["code"],
        "UNKNOWN_ACTION"
    );

    // The publisher still works after its errors.
    send_text(
        &mut publisher,
        r#"{"action":"publish","channel":"t1","key":"K","data":{"ok":true}}"#,
    )
    .await;
    let event = next_of_type(&mut sub, "event").await;
    assert_eq!(
        (event["seq"].as_u64(), event["key"].as_str()),
        (Some(51), Some("K"))
    );

    // Subscribe-only keys cannot publish.
    let mut denied = server.connect("/ws/publish", Some(SUB)).await;
    assert_eq!(close_code(&mut denied).await.0, 4403);
}

#[tokio::test]
async fn a_full_batch_on_one_channel_reaches_every_subscriber_whole() {
    // A thousand messages on one channel in one request are published in
    // one go, far more than a channel's feed holds to begin with; the
    // shard that serves the request cannot read them until it is done.
    // The feed grows instead of dropping them (they once arrived from
    // number 745 on, the first 744 counted as shard_overflow).
    const BATCH: u64 = 1000;
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.subscriber(&["t1"]).await);
    }
    for round in 0..3 {
        server.publish_batch("t1", BATCH).await;
        for ws in &mut clients {
            for seq in round * BATCH + 1..=(round + 1) * BATCH {
                let event = next_of_type(ws, "event").await;
                assert_eq!(event["seq"].as_u64(), Some(seq), "{event}");
            }
        }
    }
    let stats = eventually_stats(&server, |s| s["messagesSent"] == 4 * 3 * BATCH).await;
    assert_eq!(stats["messagesDropped"], 0, "{stats}");
    // The serving shard read nothing while it published each batch: the
    // feed grew to hold it (256 to 512 to 1024, at least once).
    let growths = channel(&stats, "t1")["feedGrowths"].as_u64().unwrap();
    assert!(growths >= 2, "{stats}");
    // Its shards have caught up, and no publish comes: the shards' topic
    // sweep (every 5 s) gives the room back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = server.stats().await;
        if channel(&stats, "t1")["feedSlots"] == 256 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the channel goes on from there.
    let seq = server.publish("t1", json!({"n": "last"}), None).await;
    for ws in &mut clients {
        assert_eq!(next_of_type(ws, "event").await["seq"].as_u64(), Some(seq));
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

use futures_util::SinkExt;
