//! permessage-deflate on the wire, read and written by hand: compressed
//! subscribers get one byte-identical frame with RSV1 set, plain ones the
//! same event uncompressed; events below `compression.min_size` go plain;
//! a client's compressed commands are inflated, a decompression bomb closes
//! its connection with 1009 and nobody else notices, RSV1 without the
//! extension is 1002; and with `enabled = false` no offer is answered.

mod common;

use common::*;
use flate2::{Decompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A telemetry client by hand, offering the extension or not; returns it
/// with the answer's head.
async fn client(server: &TestServer, offer: bool) -> (TcpStream, String) {
    let headers = format!("X-API-Key: {ADMIN}\r\n{}", if offer { OFFER } else { "" });
    raw_upgrade_head(server, "/ws/telemetry", &headers).await
}

/// The next server frame: its first byte and payload.
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        let len = match head[1] {
            126 => stream.read_u16().await.unwrap() as usize,
            127 => stream.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame in time")
}

/// The next frame as JSON (inflated when RSV1 is set), with its first byte.
async fn next_event(stream: &mut TcpStream, kind: &str) -> (u8, Vec<u8>, Value) {
    loop {
        let (first, payload) = read_frame(stream).await;
        let text = if first & 0x40 != 0 {
            inflate(&payload)
        } else {
            payload.clone()
        };
        let value: Value = serde_json::from_slice(&text).unwrap();
        if value["type"] == kind {
            return (first, payload, value);
        }
    }
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Subscribes `stream` to `channel`, the command compressed when `deflated`.
async fn subscribe(stream: &mut TcpStream, channel: &str, deflated: bool) {
    let command = json!({"action": "subscribe", "channels": [channel]}).to_string();
    let frame = if deflated {
        client_frame(0x81 | 0x40, &deflate(command.as_bytes()))
    } else {
        client_frame(0x81, command.as_bytes())
    };
    stream.write_all(&frame).await.unwrap();
    let (first, _, ack) = next_event(stream, "ack").await;
    assert_eq!(first, 0x81, "replies go plain");
    assert_eq!(ack["channels"], json!([channel]));
}

fn big_data() -> Value {
    let note: String = (0..40)
        .map(|i| format!("bid {i} at {}.5; ", 90 + i))
        .collect();
    json!({"symbol": "MSFT", "note": note})
}

#[tokio::test]
async fn compressed_subscribers_share_one_frame_and_plain_ones_are_unaffected() {
    let server = TestServer::start("");
    let mut compressed = Vec::new();
    for i in 0..3 {
        let (mut stream, head) = client(&server, true).await;
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
            "{head}"
        );
        // One of them sends its command compressed.
        subscribe(&mut stream, "trades", i == 0).await;
        compressed.push(stream);
    }
    let (mut plain, head) = client(&server, false).await;
    assert!(!head
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    subscribe(&mut plain, "trades", false).await;
    let before = server.stats().await["protocols"]["telemetry"]["deflate"].clone();

    let data = big_data();
    server.publish("trades", data.clone(), None).await;
    let mut wire = Vec::new();
    for stream in &mut compressed {
        let (first, payload, event) = next_event(stream, "event").await;
        assert_eq!(first, 0xC1, "FIN, RSV1, text");
        assert_eq!(event["data"], data);
        wire.push(payload);
    }
    assert!(wire.iter().all(|p| *p == wire[0]), "byte-identical frames");
    let (first, payload, event) = next_event(&mut plain, "event").await;
    assert_eq!(first, 0x81);
    assert_eq!(event["data"], data);
    assert_eq!(payload, inflate(&wire[0]));
    assert!(wire[0].len() < payload.len() / 2);

    // Below compression.min_size (256 bytes): plain for everyone.
    server.publish("trades", json!({"n": 1}), None).await;
    for stream in compressed.iter_mut().chain([&mut plain]) {
        let (first, _, event) = next_event(stream, "event").await;
        assert_eq!((first, &event["data"]), (0x81, &json!({"n": 1})));
    }

    let stats = server.stats().await["protocols"]["telemetry"].clone();
    let after = &stats["deflate"];
    let delta = |f: &str| after[f].as_u64().unwrap() - before[f].as_u64().unwrap();
    assert_eq!(delta("compressions"), 1, "{stats}");
    assert_eq!(delta("bytesOut"), wire[0].len() as u64);
    assert_eq!(delta("bytesIn"), payload.len() as u64);
    assert_eq!(after["connections"], 3);
    let metrics = Exposition::parse(&server.metrics().await);
    let telemetry = [("protocol", "telemetry")];
    assert_eq!(
        metrics.get("shardcast_protocol_deflate_connections", &telemetry),
        3.0
    );
}

#[tokio::test]
async fn a_decompression_bomb_closes_1009_and_harms_no_one_else() {
    let server = TestServer::start("");
    let (mut other, _) = client(&server, true).await;
    subscribe(&mut other, "trades", false).await;
    let (mut bomber, _) = client(&server, true).await;
    subscribe(&mut bomber, "trades", true).await;
    // 16 MiB of one byte: a few KiB compressed, far past max_frame_size.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 60_000, "{}", bomb.len());
    bomber
        .write_all(&client_frame(0x81 | 0x40, &bomb))
        .await
        .unwrap();
    assert_eq!(raw_close(&mut bomber).await.0, 1009);

    let data = big_data();
    server.publish("trades", data.clone(), None).await;
    let (first, _, event) = next_event(&mut other, "event").await;
    assert_eq!((first, &event["data"]), (0xC1, &data));
}

#[tokio::test]
async fn rsv1_without_the_extension_is_a_protocol_error() {
    let server = TestServer::start("");
    let (mut stream, _) = client(&server, false).await;
    let command = deflate(br#"{"action":"subscribe","channels":["trades"]}"#);
    stream
        .write_all(&client_frame(0x81 | 0x40, &command))
        .await
        .unwrap();
    assert_eq!(raw_close(&mut stream).await.0, 1002);
}

#[tokio::test]
async fn with_compression_disabled_no_offer_is_answered() {
    let server = TestServer::start("[compression]\nenabled = false");
    let (mut stream, head) = client(&server, true).await;
    assert!(!head
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    subscribe(&mut stream, "trades", false).await;
    server.publish("trades", big_data(), None).await;
    let (first, _, event) = next_event(&mut stream, "event").await;
    assert_eq!((first, &event["data"]), (0x81, &big_data()));
}
