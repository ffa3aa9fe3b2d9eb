//! Bad client input gets a clear error frame or a documented close code,
//! and never disturbs other clients.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn malformed_commands_get_error_frames_and_the_connection_stays_usable() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("").await;
    let cases = [
        ("{\"action\":", "INVALID_JSON"),
        ("[]", "INVALID_MESSAGE"),
        ("\"subscribe\"", "INVALID_MESSAGE"),
        (r#"{"action":"subscribe"}"#, "INVALID_MESSAGE"),
        (
            r#"{"action":"subscribe","channels":"t1"}"#,
            "INVALID_MESSAGE",
        ),
        (
            r#"{"action":"subscribe","channels":[1,2]}"#,
            "INVALID_MESSAGE",
        ),
        (
            r#"{"action":"subscribe","channels":["t1"],"replay":"yes"}"#,
            "INVALID_MESSAGE",
        ),
        (r#"{"action":"launch"}"#, "UNKNOWN_ACTION"),
        (r#"{"action":null}"#, "INVALID_MESSAGE"),
    ];
    for (text, code) in cases {
        ws.send(Message::text(text)).await.unwrap();
        let error = next_of_type(&mut ws, "error").await;
        assert_eq!(error["code"], code, "{text}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    send_json(&mut ws, json!({"action": "subscribe", "channels": ["t1"]})).await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await["channels"],
        json!(["t1"])
    );
}

#[tokio::test]
async fn too_many_channels_in_one_request_is_refused() {
    let server = TestServer::start("[topics]\nmax_subscriptions = 2");
    let mut ws = server.telemetry("").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["t1", "t2", "positions"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut ws, "error").await["code"],
        "LIMIT_REACHED"
    );
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["t1", "t2"]}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["positions"]}),
    )
    .await;
    assert_eq!(next_of_type(&mut ws, "ack").await["channels"], json!([]));
    assert_eq!(
        next_of_type(&mut ws, "error").await["code"],
        "LIMIT_REACHED"
    );
}

#[tokio::test]
async fn binary_and_oversized_frames_close_with_1003_and_1009_without_harming_others() {
    let server = TestServer::start("max_frame_size = 1024");
    let mut bystander = server.subscriber(&["t1"]).await;

    let mut binary = server.telemetry("").await;
    binary.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        close_code(&mut binary).await,
        (1003, "BINARY_NOT_SUPPORTED".into())
    );

    let mut big = server.telemetry("").await;
    big.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(close_code(&mut big).await, (1009, "MESSAGE_TOO_BIG".into()));

    server.publish("t1", json!({"v": "still here"}), None).await;
    assert_eq!(
        next_of_type(&mut bystander, "event").await["data"]["v"],
        "still here"
    );
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_bad_utf8_with_1007() {
    let server = TestServer::start("");
    // Unmasked client frame.
    let mut stream = raw_websocket(&server).await;
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(raw_close(&mut stream).await.0, 1002);

    // Reserved opcode 0x3.
    let mut stream = raw_websocket(&server).await;
    stream.write_all(&[0x83, 0x80, 0, 0, 0, 0]).await.unwrap();
    assert_eq!(raw_close(&mut stream).await.0, 1002);

    // Text frame with invalid UTF-8 (mask of zeros leaves bytes as sent).
    let mut stream = raw_websocket(&server).await;
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28])
        .await
        .unwrap();
    assert_eq!(raw_close(&mut stream).await.0, 1007);

    // A command split over fragments and over several TCP writes is reassembled.
    let mut stream = raw_websocket(&server).await;
    let command = br#"{"action":"subscribe","channels":["t1"]}"#;
    let (a, b) = command.split_at(10);
    let mut wire = vec![0x01, 0x80 | a.len() as u8, 0, 0, 0, 0];
    wire.extend_from_slice(a);
    wire.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]); // a ping between the fragments
    wire.extend_from_slice(&[0x80, 0x80 | b.len() as u8, 0, 0, 0, 0]);
    wire.extend_from_slice(b);
    for piece in wire.chunks(7) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"type\":\"ack\"") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains(r#""channels":["t1"]"#), "{text}");
    // The ping was answered with a pong (opcode 0xA, empty payload).
    assert!(
        seen.windows(2).any(|w| w == [0x8A, 0x00]),
        "pong in {seen:?}"
    );
}

#[tokio::test]
async fn garbage_after_the_upgrade_closes_only_that_connection() {
    let server = TestServer::start("");
    let mut bystander = server.subscriber(&["t1"]).await;
    let mut seed: u64 = 0xDEAD_BEEF_CAFE_F00D;
    for _ in 0..20 {
        let mut stream = raw_websocket(&server).await;
        let garbage: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = stream.write_all(&garbage).await;
        // The server ends the connection (close frame or reset), never hangs.
        let mut sink = [0u8; 4096];
        let ended = tokio::time::timeout(WAIT, async {
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the server kept a garbage-sending connection open"
        );
    }
    server.publish("t1", json!({"v": "unharmed"}), None).await;
    assert_eq!(
        next_of_type(&mut bystander, "event").await["data"]["v"],
        "unharmed"
    );
    eventually_stats(&server, |s| s["activeConnections"] == 1).await;
}
