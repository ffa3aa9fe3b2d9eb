//! Helpers for the BondX endpoints: tokens signed as a BondX backend signs
//! them, connections by query or header, frames as JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{next_message, TestServer, Ws};
use tokio_tungstenite::tungstenite::Message;

/// The `[bondx]` secret of the test servers.
pub const BONDX_SECRET: &str = "bondx-test-secret-of-at-least-32-bytes";

/// `[bondx]` with the test secret and `extra` lines.
pub fn bondx_section(extra: &str) -> String {
    format!("[bondx]\njwt_secret = \"{BONDX_SECRET}\"\n{extra}\n")
}

/// A server with BondX enabled; `extra` goes into `[bondx]`, `top` before it.
pub fn bondx_server(top: &str, extra: &str) -> TestServer {
    TestServer::start(&format!("{top}\n{}", bondx_section(extra)))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token for `sub` valid for an hour.
pub fn user_token(sub: &str) -> String {
    signed(json!({"sub": sub, "exp": unix_now() + 3600}), BONDX_SECRET)
}

/// `claims` signed with HS256 and `secret`.
pub fn signed(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Connects to `path` with `?token=`.
pub async fn bondx_by_query(server: &TestServer, path: &str, token: &str) -> Ws {
    server
        .try_connect(&format!("{path}?token={token}"), &[])
        .await
        .expect("handshake")
}

/// Connects to `path` with `Authorization: Bearer` and `headers`.
pub async fn bondx_by_header(
    server: &TestServer,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> Ws {
    let bearer = format!("Bearer {token}");
    let mut all = vec![("Authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    server.try_connect(path, &all).await.expect("handshake")
}

/// The next text frame as JSON, heartbeats included.
pub async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frames"),
            Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
            _ => {}
        }
    }
}

/// Asserts `frame` has every envelope field, with `type` `kind`.
pub fn assert_envelope(frame: &Value, kind: &str) {
    assert_eq!(frame["type"], kind, "{frame}");
    for field in ["topic", "seq", "ts", "payload", "meta", "correlation_id"] {
        assert!(frame.get(field).is_some(), "{field} missing: {frame}");
    }
    assert!(frame["seq"].is_u64(), "{frame}");
    assert!(frame["meta"].is_object(), "{frame}");
    let ts = frame["ts"].as_str().expect("ts is a string");
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{ts}"
    );
}
