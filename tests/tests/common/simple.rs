//! Helpers for the simple trading protocol at `/ws`: a server with short
//! intervals, connections, and reading frames by type.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{TestServer, Ws, WAIT};

/// A server whose conflated channels go out every second; `extra` goes
/// into `[simple]`, `top` before it.
pub fn simple_server(top: &str, extra: &str) -> TestServer {
    TestServer::start(&format!(
        "{top}\n[simple]\nprice_update_interval_seconds = 1\nportfolio_update_interval_seconds = 1\n{extra}\n"
    ))
}

/// Connects to `/ws` with `query` (no credential).
pub async fn simple(server: &TestServer, query: &str) -> Ws {
    server
        .try_connect(&format!("/ws{query}"), &[])
        .await
        .expect("handshake")
}

/// Connects to `/ws` with `query` and waits until its session runs (a
/// ping answered: the connection is admitted and auto-subscribed).
pub async fn simple_ready(server: &TestServer, query: &str) -> Ws {
    let mut ws = simple(server, query).await;
    super::send_json(&mut ws, serde_json::json!({"type": "ping"})).await;
    next_type(&mut ws, "pong").await;
    ws
}

/// Publishes `messages` (`(channel, data, key)`) in one HTTP batch.
pub async fn publish_all(server: &TestServer, messages: &[(&str, Value, &str)]) {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(channel, data, key)| serde_json::json!({"channel": channel, "data": data, "key": key}))
        .collect();
    let body = serde_json::json!({ "messages": messages }).to_string();
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(super::PUB), Some(&body))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Every text frame that arrives within `window`, as JSON.
pub async fn frames_within(ws: &mut Ws, window: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return out,
            Ok(Some(Ok(Message::Text(text)))) => {
                out.push(serde_json::from_str(&text).expect("JSON frames"));
            }
            Ok(Some(Ok(Message::Close(frame)))) => panic!("closed: {frame:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("stream ended: {other:?}"),
        }
    }
}

/// The next text frame whose `type` is `kind`, skipping others (returned
/// as the second element, in order).
pub async fn next_type(ws: &mut Ws, kind: &str) -> (Value, Vec<Value>) {
    let (_, value, skipped) = next_matching(ws, kind).await;
    (value, skipped)
}

/// The next text frame as raw text whose `type` is `kind`.
pub async fn next_text_of_type(ws: &mut Ws, kind: &str) -> String {
    next_matching(ws, kind).await.0
}

async fn next_matching(ws: &mut Ws, kind: &str) -> (String, Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let mut skipped = Vec::new();
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} in time; got {skipped:?}"))
            .expect("stream open")
            .expect("frame read");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON frames");
            if value["type"] == kind {
                return (text.to_string(), value, skipped);
            }
            skipped.push(value);
        }
    }
}

/// Publishes a price of `symbol` to `market-data`, keyed by the symbol.
pub async fn publish_price(server: &TestServer, symbol: &str, price: f64) {
    let data = serde_json::json!({"symbol": symbol, "price": price});
    server.publish("market-data", data, Some(symbol)).await;
}

/// Whether `text` is an ISO-8601 UTC time such as `2024-12-19T12:00:00.000Z`.
pub fn is_iso_time(text: &Value) -> bool {
    text.as_str()
        .is_some_and(|t| t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T")
}
