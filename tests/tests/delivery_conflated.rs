//! `slow_consumer = "conflate"`: a client that falls behind gets, for each
//! key, newer values in place of the ones it had not yet been sent; every
//! event is accounted for: sent + conflated + dropped = published.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: u64 = 400;
const KEYS: u64 = 4;
const CONFIG: &str = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 8\nslow_consumer = \"conflate\"\n";

#[tokio::test]
async fn a_slow_client_gets_newer_values_per_key_and_every_event_is_counted() {
    let server = TestServer::start(CONFIG);
    let mut slow = server.telemetry("?clientId=slow&channels=big").await;
    next_of_type(&mut slow, "ack").await;

    // About 24 MB for a client that does not read: its socket buffers fill,
    // then its outbox, and from then on events are conflated by key.
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    for n in 0..MESSAGES {
        let key = format!("k{}", n % KEYS);
        let frame = format!(
            r#"{{"action":"publish","channel":"big","key":"{key}","data":{{"n":{n},"pad":"{pad}"}}}}"#
        );
        publisher.send(Message::text(frame)).await.unwrap();
    }
    eventually_stats(&server, |s| channel(s, "big")["published"] == MESSAGES).await;

    // Read everything the slow client is sent: per key, values only ever
    // get newer (a conflated event replaces its predecessor).
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut received = 0u64;
    let mut last_seq = 0;
    while let Ok(message) = tokio::time::timeout(Duration::from_secs(2), next_json(&mut slow)).await
    {
        if message["type"] != "event" {
            continue;
        }
        received += 1;
        // The channel's order holds too: the newer value goes last.
        let seq = message["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
        let key = message["key"].as_str().unwrap().to_owned();
        let n = message["data"]["n"].as_u64().unwrap();
        if let Some(&before) = last.get(&key) {
            assert!(n > before, "{key}: {n} after {before}");
        }
        last.insert(key, n);
    }
    assert!(received < MESSAGES, "nothing was conflated: {received}");

    let entry = server.client("slow").await;
    let sent = entry["sent"].as_u64().unwrap();
    let conflated = entry["conflated"].as_u64().unwrap();
    let dropped = entry["dropped"].as_u64().unwrap();
    assert_eq!(sent, received, "{entry}");
    assert!(conflated > 0, "{entry}");
    assert_eq!(sent + conflated + dropped, MESSAGES, "{entry}");
    let stats = server.stats().await;
    assert_eq!(channel(&stats, "big")["conflated"], conflated);
    assert!(server.metrics().await.contains(&format!(
        "shardcast_messages_conflated_total{{channel=\"big\"}} {conflated}"
    )));
}
