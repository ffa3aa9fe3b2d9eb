//! Per-user tokens: a desktop UI gets a short-lived JWT per trader from its
//! backend and reads only that trader's data, until the token expires.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-shared-secret-of-32-bytes-or-more";

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn jwt_section() -> String {
    format!(
        r#"
[jwt]
hs256_secret = "{SECRET}"
rs256_public_keys = ["{}"]
es256_public_keys = ["{}"]
default_channels = ["market-data"]
"#,
        fixture("rs256-public.pem"),
        fixture("es256-public.pem")
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn trader(sub: &str, lifetime: u64) -> Value {
    json!({"sub": sub, "exp": now() + lifetime, "channels": ["positions.{sub}", "market-data"]})
}

async fn subscribe(ws: &mut Ws, channels: &[&str]) -> Value {
    send_json(ws, json!({"action": "subscribe", "channels": channels})).await;
    next_of_type(ws, "ack").await
}

#[tokio::test]
async fn a_trader_token_reads_only_that_traders_channels() {
    let server = TestServer::start_with_keys("", &jwt_section());
    let token = hs256(trader("t-17", 300));
    let mut ws = server
        .try_connect(
            "/ws/telemetry",
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await
        .unwrap();
    let welcome = next_of_type(&mut ws, "welcome").await;
    assert!(welcome["expiresAt"].is_string(), "{welcome}");
    let ack = subscribe(
        &mut ws,
        &["positions.t-17", "positions.t-18", "risk-alerts"],
    )
    .await;
    assert_eq!(ack["channels"], json!(["positions.t-17"]));
    assert_eq!(next_of_type(&mut ws, "error").await["code"], "FORBIDDEN");
    server
        .publish("positions.t-18", json!({"v": "not yours"}), None)
        .await;
    server
        .publish("positions.t-17", json!({"v": "yours"}), None)
        .await;
    assert_eq!(next_of_type(&mut ws, "event").await["data"]["v"], "yours");

    // The query form, for browsers; the clients list names the user.
    let mut browser = server
        .try_connect(&format!("/ws/telemetry?token={token}&clientId=ui-17"), &[])
        .await
        .unwrap();
    next_of_type(&mut browser, "welcome").await;
    let clients = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await
        .1;
    let ui = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "ui-17")
        .unwrap();
    assert_eq!(ui["owner"], "token:t-17");
    // Another user's ui-17 is another client: this one is untouched.
    let other = hs256(trader("t-18", 300));
    let mut theirs = server
        .try_connect(&format!("/ws/telemetry?token={other}&clientId=ui-17"), &[])
        .await
        .unwrap();
    next_of_type(&mut theirs, "welcome").await;
    send_json(&mut browser, json!({"action": "heartbeat"})).await;
    let reply = next_message(&mut browser).await.into_text().unwrap();
    assert!(reply.contains("heartbeat"), "{reply}");
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_configured_public_keys() {
    let server = TestServer::start_with_keys("", &jwt_section());
    for (alg, key) in [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-private.pem")).unwrap()),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-private.pem")).unwrap()),
        ),
    ] {
        // No channels claim: the configured default channels apply.
        let claims = json!({"sub": "desk-3", "exp": now() + 300});
        let token = encode(&Header::new(alg), &claims, &key.unwrap()).unwrap();
        let mut ws = server
            .try_connect(&format!("/ws/telemetry?token={token}"), &[])
            .await
            .unwrap();
        next_of_type(&mut ws, "welcome").await;
        let ack = subscribe(&mut ws, &["market-data", "positions"]).await;
        assert_eq!(ack["channels"], json!(["market-data"]), "{alg:?}");
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_reason() {
    let server = TestServer::start_with_keys("", &jwt_section());
    let expired = hs256(json!({"sub": "t-1", "exp": now() - 60}));
    let mut ws = server
        .try_connect(&format!("/ws/telemetry?token={expired}"), &[])
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, (4440, "TOKEN_EXPIRED".into()));
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &trader("t-1", 300),
        &EncodingKey::from_secret(b"not-the-servers-secret-not-at-all").unwrap(),
    )
    .unwrap();
    let mut ws = server
        .try_connect(&format!("/ws/telemetry?token={forged}"), &[])
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, (4401, "INVALID_TOKEN".into()));
    // A subscribe-only token cannot publish.
    let (status, body) = server
        .raw_publish_with_token(&hs256(trader("t-1", 300)))
        .await;
    assert_eq!(status, 403, "{body}");
    let publisher = hs256(
        json!({"sub": "feed", "exp": now() + 300, "roles": ["publish"], "channels": ["market-data"]}),
    );
    let (status, body) = server.raw_publish_with_token(&publisher).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_connection_closes_when_its_token_expires_unless_refreshed() {
    let server = TestServer::start_with_keys("", &jwt_section());
    let short = hs256(trader("t-9", 2));
    let mut expiring = server
        .try_connect(&format!("/ws/telemetry?token={short}"), &[])
        .await
        .unwrap();
    next_of_type(&mut expiring, "welcome").await;
    let mut refreshed = server
        .try_connect(&format!("/ws/telemetry?token={short}"), &[])
        .await
        .unwrap();
    next_of_type(&mut refreshed, "welcome").await;
    subscribe(&mut refreshed, &["positions.t-9", "market-data"]).await;
    // The refresh narrows the scope: market-data is no longer granted.
    let longer = hs256(json!({"sub": "t-9", "exp": now() + 300, "channels": ["positions.{sub}"]}));
    send_json(
        &mut refreshed,
        json!({"action": "refresh", "token": longer}),
    )
    .await;
    let ack = next_of_type(&mut refreshed, "ack").await;
    assert_eq!(ack["action"], "refresh", "{ack}");
    assert_eq!(
        ack["channels"],
        json!(["market-data"]),
        "ended by the new scope: {ack}"
    );
    // Another user's token is not a refresh.
    send_json(
        &mut refreshed,
        json!({"action": "refresh", "token": hs256(trader("t-10", 600))}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut refreshed, "error").await["code"],
        "FORBIDDEN"
    );

    let (code, reason) = tokio::time::timeout(Duration::from_secs(6), close_code(&mut expiring))
        .await
        .expect("closed when the token expired");
    assert_eq!((code, reason.as_str()), (4440, "TOKEN_EXPIRED"));
    // The refreshed connection outlives the first token.
    server
        .publish("positions.t-9", json!({"v": "after expiry"}), None)
        .await;
    assert_eq!(
        next_of_type(&mut refreshed, "event").await["data"]["v"],
        "after expiry"
    );
}

#[tokio::test]
async fn a_publisher_token_expires_on_the_publish_socket_too() {
    let server = TestServer::start_with_keys("", &jwt_section());
    let feed = |lifetime: u64| {
        hs256(
            json!({"sub": "feed-1", "exp": now() + lifetime, "roles": ["publish"], "channels": ["market-data"]}),
        )
    };
    let mut expiring = server
        .try_connect(&format!("/ws/publish?token={}", feed(2)), &[])
        .await
        .unwrap();
    let mut refreshed = server
        .try_connect(&format!("/ws/publish?token={}", feed(2)), &[])
        .await
        .unwrap();
    send_json(
        &mut refreshed,
        json!({"action": "refresh", "token": feed(300)}),
    )
    .await;
    let ack = next_of_type(&mut refreshed, "ack").await;
    assert_eq!(ack["action"], "refresh", "{ack}");
    let (code, reason) = tokio::time::timeout(Duration::from_secs(6), close_code(&mut expiring))
        .await
        .expect("closed when the token expired");
    assert_eq!((code, reason.as_str()), (4440, "TOKEN_EXPIRED"));
    let mut subscriber = server.subscriber(&["market-data"]).await;
    send_json(
        &mut refreshed,
        json!({"action": "publish", "channel": "market-data", "data": {"v": "still publishing"}}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut subscriber, "event").await["data"]["v"],
        "still publishing"
    );
}

trait TokenPublish {
    async fn raw_publish_with_token(&self, token: &str) -> (u16, String);
}

impl TokenPublish for TestServer {
    async fn raw_publish_with_token(&self, token: &str) -> (u16, String) {
        let body = r#"{"channel":"market-data","data":{"v":1}}"#;
        let request = format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, _, body) = self.raw_request(request.as_bytes()).await;
        (status, body)
    }
}
