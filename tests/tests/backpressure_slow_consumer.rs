//! A client that never reads must not delay anyone, and every message it
//! misses is counted: delivered + dropped = published × subscribers.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Enough data (about 24 MB) to fill any loopback socket buffers several times over.
const MESSAGES: u64 = 400;
const BURST: u64 = 20;
const CONFIG: &str = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 32\n";

/// Publishes in bursts; after each burst the fast client reads it all, so
/// the fast client is never behind by more than a burst. The slow one never reads.
async fn flood_while_reading(server: &TestServer, fast: &mut Ws) {
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    let mut next_seq = 1;
    for burst in 0..MESSAGES / BURST {
        for n in 0..BURST {
            let n = burst * BURST + n;
            let frame = format!(
                r#"{{"action":"publish","channel":"big","data":{{"n":{n},"pad":"{pad}"}}}}"#
            );
            publisher.send(Message::text(frame)).await.unwrap();
        }
        for _ in 0..BURST {
            let event = next_of_type(fast, "event").await;
            assert_eq!(event["seq"].as_u64(), Some(next_seq));
            next_seq += 1;
        }
    }
}

#[tokio::test]
async fn a_client_that_never_reads_drops_its_own_messages_only() {
    never_reading_client_drops_its_own(&TestServer::start(CONFIG)).await;
}

#[tokio::test]
async fn over_tls_too_a_client_that_never_reads_drops_its_own_only() {
    // The TLS session takes at most 64 KiB beyond the socket; the outbox's
    // limits and accounting hold as on plain TCP.
    let cert = TestCert::new();
    never_reading_client_drops_its_own(&TestServer::start_tls(CONFIG, "", &cert)).await;
}

async fn never_reading_client_drops_its_own(server: &TestServer) {
    let mut fast = server.subscriber(&["big"]).await;
    let slow = server.telemetry("?clientId=slow&channels=big").await; // never read again
    flood_while_reading(server, &mut fast).await;

    // The slow client's drops are counted on it and on the channel.
    let (_, list) = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await;
    let entry = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "slow")
        .unwrap()
        .clone();
    let dropped = entry["droppedByReason"]["outboxFull"].as_u64().unwrap();
    assert!(dropped > 0, "{entry}");
    assert!(entry["queueDepth"].as_u64().unwrap() <= 32 + 2, "{entry}");
    let fast_entry = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] != "slow")
        .unwrap()
        .clone();
    assert_eq!(fast_entry["dropped"], 0, "{fast_entry}");
    assert_eq!(fast_entry["sent"], MESSAGES);

    // Once it goes away, its queue counts as dropped too, and the books balance exactly.
    drop(slow);
    let stats = eventually_stats(server, |s| s["activeConnections"] == 1).await; // the publisher left too
    let big = channel(&stats, "big");
    assert_eq!(big["published"], MESSAGES);
    assert_eq!(
        big["sent"].as_u64().unwrap() + big["dropped"].as_u64().unwrap(),
        MESSAGES * 2,
        "{big}"
    );
    assert_eq!(
        big["droppedByReason"]["outboxFull"].as_u64().unwrap(),
        dropped
    );
}

#[tokio::test]
async fn the_disconnect_policy_closes_a_slow_client_and_spares_the_rest() {
    let server = TestServer::start(&format!("{CONFIG}slow_consumer = \"disconnect\""));
    let mut fast = server.subscriber(&["big"]).await;
    let _slow = server.telemetry("?clientId=slow&channels=big").await;
    flood_while_reading(&server, &mut fast).await;

    // Only the fast client is left (the publisher has gone as well).
    let stats = eventually_stats(&server, |s| s["activeConnections"] == 1).await;
    let big = channel(&stats, "big");
    assert!(
        big["droppedByReason"]["outboxFull"].as_u64().unwrap() >= 1,
        "{big}"
    );
    assert_eq!(big["subscribers"], 1);
    let (_, list) = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await;
    let clients = list["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{list}");
    assert_eq!(
        (clients[0]["sent"].as_u64(), clients[0]["dropped"].as_u64()),
        (Some(MESSAGES), Some(0))
    );
}

#[tokio::test]
async fn stats_balance_for_many_subscribers_across_shards() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(server.subscriber(&["t1"]).await);
    }
    server.publish_batch("t1", 100).await;
    for ws in &mut clients {
        for seq in 1..=100u64 {
            assert_eq!(next_of_type(ws, "event").await["seq"].as_u64(), Some(seq));
        }
    }
    let stats = eventually_stats(&server, |s| s["messagesSent"] == 1000).await;
    assert_eq!(stats["messagesDropped"], 0);
}
