//! A subscription's maximum rate: the client asks (telemetry `maxRate`,
//! BondX `max_rate`), a channel rule may cap it (`max_rate`), and the client
//! receives at most that many updates a second of each key — always ending
//! with the latest value, every update it did not get counted as conflated
//! and told as `skipped`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const UPDATES: u64 = 100;

/// Publishes `UPDATES` values of key `A` to `channel`, 10 ms apart (100 a
/// second); returns how long publishing took.
async fn hundred_a_second(server: &TestServer, channel: &str) -> Duration {
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let started = Instant::now();
    for n in 0..UPDATES {
        let frame = json!({"action": "publish", "channel": channel, "key": "A", "data": {"n": n}});
        publisher
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Asserts `events` (with `n` in data, or payload) respect `rate` over
/// `publishing`: at most one round per interval while publishing went on,
/// plus the first and the last; the last value delivered; each gap told.
fn assert_paced(
    events: &[&Value],
    rate: u64,
    publishing: Duration,
    skipped: impl Fn(&Value) -> u64,
) {
    // The server may read the last publishes a little after they were
    // sent: half a second of slack, far below the 100 updates unthrottled.
    let rounds = 2 + (publishing.as_millis() as u64 + 500) * rate / 1000;
    assert!(
        (events.len() as u64) <= rounds,
        "{} events in {publishing:?} at {rate}/s",
        events.len()
    );
    assert!(events.len() >= 2, "{events:?}");
    let mut last = 0;
    for event in events {
        let seq = event["seq"].as_u64().unwrap();
        assert_eq!(skipped(event), seq - last - 1, "{event}");
        last = seq;
    }
    assert_eq!(last, UPDATES, "the latest value arrives");
}

#[tokio::test]
async fn a_telemetry_client_asking_for_ten_a_second_gets_at_most_that_and_the_latest() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("?clientId=paced").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["market-data"], "maxRate": 10}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    let publishing = hundred_a_second(&server, "market-data").await;
    let frames = drain(&mut ws).await;
    let events: Vec<_> = frames.iter().filter(|f| f["type"] == "event").collect();
    assert_paced(&events, 10, publishing, |e| {
        e["skipped"].as_u64().unwrap_or(0)
    });
    assert_eq!(events.last().unwrap()["data"]["n"], UPDATES - 1);

    let entry = server.client("paced").await;
    let sent = entry["sent"].as_u64().unwrap();
    assert_eq!(sent, events.len() as u64, "{entry}");
    assert_eq!(
        sent + entry["conflated"].as_u64().unwrap(),
        UPDATES,
        "{entry}"
    );
}

#[tokio::test]
async fn a_bad_max_rate_is_refused_and_changes_nothing() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("?clientId=bad").await;
    for rate in [json!(0), json!(-1), json!(2.5), json!("10"), json!(10_001)] {
        send_json(
            &mut ws,
            json!({"action": "subscribe", "channels": ["market-data"], "maxRate": rate}),
        )
        .await;
        let error = next_of_type(&mut ws, "error").await;
        assert_eq!(error["code"], "INVALID_MESSAGE", "{rate}: {error}");
        assert!(error["message"].as_str().unwrap().contains("maxRate"));
    }
    assert_eq!(server.client("bad").await["channels"], json!([]));
}

#[tokio::test]
async fn a_channel_max_rate_caps_every_subscription_in_every_protocol() {
    let top = "[[channel_rules]]\npattern = \"prices.**\"\nmax_rate = 5\n";
    let server = bondx_server(top, "");
    // BondX asks for 50 a second: the channel's 5 wins, and the ack says so.
    let token = user_token("paced");
    let mut bondx = bondx_by_query(&server, "/api/v1/ws/market/M1", &token).await;
    assert_eq!(next_json(&mut bondx).await["type"], "snapshot");
    send_json(
        &mut bondx,
        json!({"type": "subscribe", "topic": "prices.CAP1", "max_rate": 50, "correlation_id": "c"}),
    )
    .await;
    let ack = next_json(&mut bondx).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["payload"]["max_rate"], 5, "{ack}");
    assert_eq!(next_json(&mut bondx).await["type"], "snapshot");
    // Another topic, slower than the ceiling; subscribed again without
    // max_rate, the ack tells the rate still in force.
    for asked in [json!(2), Value::Null] {
        let mut request = json!({"type": "subscribe", "topic": "prices.CAP2"});
        if !asked.is_null() {
            request["max_rate"] = asked;
        }
        send_json(&mut bondx, request).await;
        let ack = next_json(&mut bondx).await;
        assert_eq!(ack["payload"]["max_rate"], 2, "{ack}");
        if ack["payload"]["already_subscribed"] != true {
            assert_eq!(next_json(&mut bondx).await["type"], "snapshot");
        }
    }
    // A telemetry client that asks for nothing is capped too.
    let mut telemetry = server.subscriber(&["prices.CAP1"]).await;

    let publishing = hundred_a_second(&server, "prices.CAP1").await;
    let frames = drain(&mut bondx).await;
    let deltas: Vec<_> = frames.iter().filter(|f| f["type"] == "delta").collect();
    assert_paced(&deltas, 5, publishing, |d| {
        d["meta"]["skipped"].as_u64().unwrap_or(0)
    });
    assert_eq!(deltas.last().unwrap()["payload"]["n"], UPDATES - 1);
    let frames = drain(&mut telemetry).await;
    let events: Vec<_> = frames.iter().filter(|f| f["type"] == "event").collect();
    assert_paced(&events, 5, publishing, |e| {
        e["skipped"].as_u64().unwrap_or(0)
    });
}

#[tokio::test]
async fn what_a_throttled_subscription_still_holds_when_it_ends_is_counted() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("?clientId=leaving").await;
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["market-data"], "maxRate": 1}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    // The first goes at once; the next four wait for the round a second
    // later, each replacing the one before (one key).
    for n in 0..5 {
        server
            .publish("market-data", json!({"n": n}), Some("A"))
            .await;
    }
    let first = next_of_type(&mut ws, "event").await;
    assert_eq!(first["data"]["n"], 0);
    send_json(
        &mut ws,
        json!({"action": "unsubscribe", "channels": ["market-data"]}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    let entry = server.client("leaving").await;
    assert_eq!(entry["sent"], 1, "{entry}");
    assert_eq!(entry["conflated"], 3, "{entry}");
    assert_eq!(entry["droppedByReason"]["closed"], 1, "{entry}");
    let stats = server.stats().await;
    let channel = channel(&stats, "market-data");
    assert_eq!(channel["conflated"], 3, "{channel}");
    // Nothing more arrives for it.
    assert_silent(&mut ws, Duration::from_millis(1500)).await;
}
