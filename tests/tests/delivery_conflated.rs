//! A client that falls behind ends with the freshest data. `slow_consumer =
//! "conflate"` (the default): for each key, newer values take the place of
//! the ones it had not yet been sent, and unkeyed events push the oldest
//! queued ones out; `drop_oldest` does the latter for every event. Either
//! way the client's last event is the last one published, and every event
//! is accounted for: sent + conflated + dropped = published.

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
        "shardcast_channel_messages_conflated_total{{channel=\"big\"}} {conflated}"
    )));
}

/// Publishes `MESSAGES` events of 60 KiB (keyed `k0`… when `keyed`) over
/// `/ws/publish` while the client `id` does not read, then reads all it is
/// sent: (events received in order as (key, n), the client's listing entry).
async fn burst(config: &str, id: &str, keyed: bool) -> (Vec<(String, u64)>, serde_json::Value) {
    let server = TestServer::start(config);
    let mut slow = server
        .telemetry(&format!("?clientId={id}&channels=big"))
        .await;
    next_of_type(&mut slow, "ack").await;
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    for n in 0..MESSAGES {
        let key = if keyed {
            format!(r#","key":"k{}""#, n % KEYS)
        } else {
            String::new()
        };
        let frame = format!(
            r#"{{"action":"publish","channel":"big"{key},"data":{{"n":{n},"pad":"{pad}"}}}}"#
        );
        publisher.send(Message::text(frame)).await.unwrap();
    }
    eventually_stats(&server, |s| channel(s, "big")["published"] == MESSAGES).await;
    let mut events = Vec::new();
    while let Ok(message) = tokio::time::timeout(Duration::from_secs(2), next_json(&mut slow)).await
    {
        if message["type"] == "event" {
            let key = message["key"].as_str().unwrap_or_default().to_owned();
            events.push((key, message["data"]["n"].as_u64().unwrap()));
        }
    }
    (events, server.client(id).await)
}

#[tokio::test]
async fn by_default_a_client_behind_a_burst_ends_with_the_last_event() {
    let config = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 8\n";
    let (events, entry) = burst(config, "behind", false).await;
    let received = events.len() as u64;
    assert!(received < MESSAGES, "nothing was dropped: {received}");
    assert_eq!(
        events.last().map(|e| e.1),
        Some(MESSAGES - 1),
        "the newest event arrives"
    );
    assert!(events.windows(2).all(|w| w[0].1 < w[1].1), "in order");
    let dropped = entry["droppedByReason"]["outboxFull"].as_u64().unwrap();
    assert_eq!(
        entry["sent"].as_u64().unwrap() + dropped,
        MESSAGES,
        "{entry}"
    );
}

#[tokio::test]
async fn by_default_a_keyed_channel_ends_with_the_latest_value_of_every_key() {
    let config = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 8\n";
    let (events, entry) = burst(config, "keyed", true).await;
    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, n) in &events {
        last.insert(key.clone(), *n);
    }
    for k in 0..KEYS {
        let latest = (0..MESSAGES).rev().find(|n| n % KEYS == k).unwrap();
        assert_eq!(last.get(&format!("k{k}")), Some(&latest), "k{k}: {entry}");
    }
    let counted = ["sent", "conflated", "dropped"].map(|f| entry[f].as_u64().unwrap());
    assert_eq!(counted.iter().sum::<u64>(), MESSAGES, "{entry}");
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_events() {
    let config = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 8\nslow_consumer = \"drop_oldest\"\n";
    let (events, entry) = burst(config, "oldest", true).await;
    assert_eq!(events.last().map(|e| e.1), Some(MESSAGES - 1), "{entry}");
    assert_eq!(entry["conflated"], 0, "drop_oldest never conflates");
}
