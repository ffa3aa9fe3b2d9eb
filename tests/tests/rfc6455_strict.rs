//! RFC 6455 as written: close frames with codes a client may not send, a
//! 1-byte body or a reason that is not UTF-8, lengths not in their shortest
//! form, and malformed handshakes are refused with the codes the RFC names.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

async fn close_reply(server: &TestServer, wire: &[u8]) -> (u16, String) {
    let mut stream = raw_websocket(server).await;
    stream.write_all(wire).await.unwrap();
    raw_close(&mut stream).await
}

fn close_frame(body: &[u8]) -> Vec<u8> {
    client_frame(0x88, body)
}

#[tokio::test]
async fn close_codes_a_client_may_not_send_get_1002() {
    let server = TestServer::start("");
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        let (reply, _) = close_reply(&server, &close_frame(&code.to_be_bytes())).await;
        assert_eq!(reply, 1002, "close code {code}");
    }
    // A 1-byte body cannot hold a code.
    assert_eq!(close_reply(&server, &close_frame(&[0x03])).await.0, 1002);
}

#[tokio::test]
async fn valid_close_codes_are_echoed_and_an_empty_close_gets_1000() {
    let server = TestServer::start("");
    for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        assert_eq!(close_reply(&server, &close_frame(&body)).await.0, code);
    }
    assert_eq!(close_reply(&server, &close_frame(b"")).await.0, 1000);
}

#[tokio::test]
async fn a_close_reason_that_is_not_utf8_gets_1007() {
    let server = TestServer::start("");
    let body = [0x03, 0xE8, 0xFF, 0xFE, b'x'];
    assert_eq!(close_reply(&server, &close_frame(&body)).await.0, 1007);
}

#[tokio::test]
async fn lengths_not_in_their_shortest_form_get_1002() {
    let server = TestServer::start("");
    // 5 bytes announced in the 16-bit form.
    let mut wire = vec![0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0];
    wire.extend_from_slice(b"hello");
    assert_eq!(close_reply(&server, &wire).await.0, 1002);
    // 200 bytes announced in the 64-bit form.
    let mut wire = vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0, 0];
    wire.extend_from_slice(&[b'x'; 200]);
    assert_eq!(close_reply(&server, &wire).await.0, 1002);
    // A 64-bit length with its top bit set.
    let wire = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(close_reply(&server, &wire).await.0, 1002);
}

fn handshake(version: &str, key: &str, ws_version: &str) -> String {
    format!(
        "GET /ws/telemetry {version}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {ws_version}\r\nX-API-Key: {ADMIN}\r\n\r\n"
    )
}

#[tokio::test]
async fn malformed_handshakes_are_refused_over_http() {
    let server = TestServer::start("");
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let (status, _, _) = server
        .raw_request(handshake("HTTP/1.0", good_key, "13").as_bytes())
        .await;
    assert_eq!(status, 400, "HTTP/1.0");
    for key in [
        "",
        "short",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "c2hvcnQ=",
    ] {
        let (status, _, body) = server
            .raw_request(handshake("HTTP/1.1", key, "13").as_bytes())
            .await;
        assert_eq!(status, 400, "key {key:?}: {body}");
        assert!(body.contains("BAD_HANDSHAKE"), "{body}");
    }
    let (status, head, _) = server
        .raw_request(handshake("HTTP/1.1", good_key, "8").as_bytes())
        .await;
    assert_eq!(status, 426);
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
}
