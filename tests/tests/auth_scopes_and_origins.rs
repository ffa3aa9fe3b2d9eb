//! Credentials mean what they say: keys are scoped to channels, client ids
//! belong to the key that opened them, a credential comes from exactly one
//! place, and web pages from other origins cannot use them.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// A key that may read market data and prices only, and one that may
/// publish prices only.
const SCOPED: &str = r#"
[[api_keys]]
key = "desk-key-0000"
name = "desk"
roles = ["subscribe"]
subscribe = ["market-data", "prices.*"]

[[api_keys]]
key = "pricer-key-0000"
name = "pricer"
roles = ["publish"]
publish = ["prices.*"]
"#;

#[tokio::test]
async fn a_scoped_key_reads_and_writes_only_its_channels() {
    let server = TestServer::start_with_keys("", SCOPED);
    let mut desk = server.connect("/ws/telemetry", Some("desk-key-0000")).await;
    next_of_type(&mut desk, "welcome").await;
    send_json(
        &mut desk,
        json!({"action": "subscribe", "channels": ["prices.AAPL", "positions", "risk-alerts"]}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut desk, "ack").await["channels"],
        json!(["prices.AAPL"])
    );
    let error = next_of_type(&mut desk, "error").await;
    assert_eq!(error["code"], "FORBIDDEN", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("positions"),
        "{error}"
    );
    // The same holds for channels asked for in the query.
    let mut query = server
        .connect(
            "/ws/telemetry?channels=positions,market-data",
            Some("desk-key-0000"),
        )
        .await;
    next_of_type(&mut query, "welcome").await;
    assert_eq!(
        next_of_type(&mut query, "ack").await["channels"],
        json!(["market-data"])
    );
    assert_eq!(next_of_type(&mut query, "error").await["code"], "FORBIDDEN");

    let publish = |channel: &str| format!(r#"{{"channel":"{channel}","data":{{"v":1}}}}"#);
    let (status, answer) = server
        .http(
            "POST",
            "/api/v1/publish",
            Some("pricer-key-0000"),
            Some(&publish("prices.AAPL")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        next_of_type(&mut desk, "event").await["channel"],
        "prices.AAPL"
    );
    let (status, answer) = server
        .http(
            "POST",
            "/api/v1/publish",
            Some("pricer-key-0000"),
            Some(&publish("risk-alerts")),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "FORBIDDEN");
    // In a batch, per message.
    let batch = r#"{"messages":[{"channel":"risk-alerts","data":{"v":1}},{"channel":"prices.MSFT","data":{"v":2}}]}"#;
    let (_, answer) = server
        .http(
            "POST",
            "/api/v1/publish",
            Some("pricer-key-0000"),
            Some(batch),
        )
        .await;
    assert_eq!(
        answer["results"][0]["error"]["code"], "FORBIDDEN",
        "{answer}"
    );
    assert_eq!(answer["results"][1]["seq"], 1, "{answer}");
    // Over /ws/publish too.
    let mut publisher = server.connect("/ws/publish", Some("pricer-key-0000")).await;
    send_json(
        &mut publisher,
        json!({"action": "publish", "channel": "positions", "data": {"v": 1}}),
    )
    .await;
    let error = next_of_type(&mut publisher, "error").await;
    assert_eq!(error["code"], "FORBIDDEN", "{error}");
}

#[tokio::test]
async fn client_ids_are_per_key_so_no_key_can_take_over_or_squat_anothers() {
    let server = TestServer::start("");
    let mut admin = server
        .connect("/ws/telemetry?clientId=desk-1&channels=t1", Some(ADMIN))
        .await;
    next_of_type(&mut admin, "welcome").await;
    next_of_type(&mut admin, "ack").await;
    // Another key's desk-1 is another client: the admin's is untouched.
    let mut other = server
        .connect("/ws/telemetry?clientId=desk-1&channels=t1", Some(SUB))
        .await;
    next_of_type(&mut other, "welcome").await;
    next_of_type(&mut other, "ack").await;
    server.publish("t1", json!({"v": "both"}), None).await;
    assert_eq!(next_of_type(&mut admin, "event").await["data"]["v"], "both");
    assert_eq!(next_of_type(&mut other, "event").await["data"]["v"], "both");
    let clients = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await
        .1;
    let owners: Vec<&str> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 2, "{clients}");
    assert!(owners.iter().all(|o| o.starts_with("key:")), "{clients}");
    assert_ne!(owners[0], owners[1]);
    // An operator can close one principal's client by owner.
    let sub_owner = format!("key:{}", shardcast_server::auth::default_key_name(SUB));
    assert!(owners.contains(&sub_owner.as_str()), "{clients}");
    let (status, body) = server
        .http(
            "DELETE",
            &format!("/api/v1/websocket/clients/desk-1?owner={sub_owner}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections"], 1, "{body}");
    assert_eq!(close_code(&mut other).await.0, 4000);
    // The same key may take its own id over: the old connection is replaced.
    let mut again = server
        .connect("/ws/telemetry?clientId=desk-1", Some(ADMIN))
        .await;
    next_of_type(&mut again, "welcome").await;
    assert_eq!(
        close_code(&mut admin).await,
        (4409, "CLIENT_REPLACED".into())
    );
}

#[tokio::test]
async fn credentials_come_from_exactly_one_place() {
    let server = TestServer::start("");
    // A repeated apiKey is refused, whichever copy is valid.
    let twice = format!("/ws/telemetry?apiKey={SUB}&apiKey={ADMIN}");
    assert_eq!(server.try_connect(&twice, &[]).await.err(), Some(400));
    // Header and query together: refused after the handshake, with a reason.
    let mut both = server
        .try_connect(
            &format!("/ws/telemetry?apiKey={SUB}"),
            &[("X-API-Key", SUB)],
        )
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut both).await,
        (4401, "AMBIGUOUS_CREDENTIALS".into())
    );
    // A header that is not text never falls back to the query key.
    let request = format!(
        "GET /ws/telemetry?apiKey={ADMIN} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    let mut raw = request.into_bytes();
    raw.extend_from_slice(b"X-API-Key: caf\xe9\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &raw)
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("INVALID_CREDENTIALS") {
        let n = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read(&mut stream, &mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(n > 0, "closed without a close frame: {got:?}");
        got.extend_from_slice(&answer[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("INVALID_CREDENTIALS"), "{text}");
    // Keys in the query of a plain HTTP request are refused.
    let (status, body) = server
        .http(
            "GET",
            &format!("/api/v1/websocket/stats?apiKey={ADMIN}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn pages_from_other_origins_cannot_use_credentials() {
    let server = TestServer::start("");
    let host = server.addr.to_string();
    // Cross-site upgrade: refused before the handshake.
    let evil = server
        .try_connect(
            "/ws/telemetry",
            &[("X-API-Key", PUB), ("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(evil.err(), Some(403));
    let publish = format!("/ws/publish?apiKey={PUB}");
    assert_eq!(
        server
            .try_connect(&publish, &[("Origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    // A page served by the server itself may.
    let same = format!("http://{host}");
    let mut ws = server
        .try_connect(&publish, &[("Origin", same.as_str())])
        .await
        .unwrap();
    send_json(&mut ws, json!({"action": "heartbeat"})).await;
    let reply = next_message(&mut ws).await.into_text().unwrap();
    assert!(reply.contains("\"heartbeat\""), "{reply}");

    // The cross-site "simple request" publish: text/plain and no preflight.
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nX-API-Key: {PUB}\r\nConnection: close\r\nContent-Length: 37\r\n\r\n{{\"channel\":\"risk-alerts\",\"data\":\"x\"}}"
    );
    let (status, _, body) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 403, "{body}");
    // Without an origin, a body not declared as JSON is refused all the same.
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nX-API-Key: {PUB}\r\nConnection: close\r\nContent-Length: 37\r\n\r\n{{\"channel\":\"risk-alerts\",\"data\":\"x\"}}"
    );
    let (status, _, body) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 415, "{body}");
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nX-API-Key: {PUB}\r\nConnection: close\r\nContent-Length: 37\r\n\r\n{{\"channel\":\"risk-alerts\",\"data\":\"x\"}}"
    );
    let (status, _, body) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 403, "{body}");
    // Preflights from origins not listed are refused.
    let request = format!(
        "OPTIONS /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(server.raw_request(request.as_bytes()).await.0, 403);
    let stats = server.stats().await;
    assert_eq!(stats["messagesPublished"], 0, "{stats}");
}

#[tokio::test]
async fn listed_origins_may_connect_and_get_cors_answers() {
    let server = TestServer::start("allowed_origins = [\"https://desk.example.com\"]");
    let host = server.addr.to_string();
    let mut ws = server
        .try_connect(
            &format!("/ws/telemetry?apiKey={SUB}"),
            &[("Origin", "https://desk.example.com")],
        )
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let request = format!(
        "OPTIONS /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nOrigin: https://desk.example.com\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    );
    let (status, head, _) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 204);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: https://desk.example.com"),
        "{head}"
    );
    assert!(head.contains("x-api-key"), "{head}");
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: {host}\r\nOrigin: https://desk.example.com\r\nContent-Type: application/json\r\nX-API-Key: {PUB}\r\nConnection: close\r\nContent-Length: 31\r\n\r\n{{\"channel\":\"t1\",\"data\":{{\"v\":1}}}}"
    );
    let (status, head, body) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://desk.example.com"),
        "{head}"
    );
}

/// Log lines written by the server in this test binary.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_admin_reason_cannot_forge_log_lines_or_send_escapes() {
    let logs = captured_logs();
    let server = TestServer::start("");
    let mut ws = server
        .connect("/ws/telemetry?clientId=victim", Some(SUB))
        .await;
    next_of_type(&mut ws, "welcome").await;
    let forged = "bye%0D%0A2026-01-01T00:00:00Z%20INFO%20forged%20admin%20login%1B%5B2J";
    let (status, body) = server
        .http(
            "DELETE",
            &format!("/api/v1/websocket/clients/victim?reason={forged}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, reason) = loop {
        match ws.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
                break (u16::from(frame.code), frame.reason.to_string())
            }
            _ => continue,
        }
    };
    assert_eq!(code, 4000);
    assert!(!reason.contains(['\r', '\n', '\x1b']), "{reason:?}");
    assert!(reason.starts_with("bye??2026"), "{reason:?}");
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(text.contains("forced disconnect"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line reached the log:\n{text}"
    );
    assert!(!text.contains('\x1b'), "an escape reached the log");
    let _ = std::io::stdout().flush();
}
