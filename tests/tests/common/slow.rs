//! Clients that fall behind.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{next_json, TestServer, Ws, ADMIN, PUB};

/// Publishes 400 messages of 60 KiB into `big` over `/ws/publish`: about
/// 24 MB, more than any loopback socket buffers hold, so a subscriber that
/// does not read ends with a full outbox. Returns the publisher.
pub async fn flood_big(server: &TestServer) -> Ws {
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    for n in 0..400 {
        let frame =
            format!(r#"{{"action":"publish","channel":"big","data":{{"n":{n},"pad":"{pad}"}}}}"#);
        publisher.send(Message::text(frame)).await.unwrap();
    }
    publisher
}

/// A telemetry client `id` subscribed to `big` that never reads, after
/// [`flood_big`]: its socket buffers are full, and its outbox.
pub async fn stuck_client(server: &TestServer, id: &str) -> Ws {
    let mut stuck = server
        .connect(
            &format!("/ws/telemetry?clientId={id}&channels=big"),
            Some(ADMIN),
        )
        .await;
    let _welcome = next_json(&mut stuck).await;
    let _ack = next_json(&mut stuck).await;
    let _publisher = flood_big(server).await;
    stuck
}
