//! Clients that fall behind.

use super::{next_json, TestServer, Ws, ADMIN, PUB};

/// A telemetry client `id` subscribed to `big` that never reads, after
/// 24 MB were published there: its socket buffers are full, and its outbox.
pub async fn stuck_client(server: &TestServer, id: &str) -> Ws {
    let mut stuck = server
        .connect(
            &format!("/ws/telemetry?clientId={id}&channels=big"),
            Some(ADMIN),
        )
        .await;
    let _welcome = next_json(&mut stuck).await;
    let _ack = next_json(&mut stuck).await;
    let payload = "x".repeat(60_000);
    for _ in 0..400 {
        server
            .publish("big", serde_json::json!({ "p": payload }), Some(PUB))
            .await;
    }
    stuck
}
