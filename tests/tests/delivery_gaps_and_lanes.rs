//! What a client that falls behind is told, and what it is never denied.
//!
//! - Gaps are visible: an event after events of its channel that did not
//!   reach the client carries how many (`skipped` in telemetry, BondX
//!   `meta.skipped`), and it always equals the jump in `seq` less one.
//! - Priority lanes: `risk-alerts` (high priority by default) goes ahead of
//!   queued ticks and is never dropped for them; when an alert still cannot
//!   be queued the client is closed (4429 `PRIORITY_OVERFLOW`), never left
//!   without it.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const BIG: u64 = 400;
const CONFIG: &str =
    "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 8\n";

/// Publishes `count` events of 60 KiB to `channel` (numbered from `from`,
/// `kind` `event` or `alert`) over one `/ws/publish` connection, in order.
async fn flood(server: &TestServer, channel: &str, from: u64, count: u64, kind: &str) {
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    let channel = serde_json::to_string(channel).unwrap();
    for n in from..from + count {
        let frame = format!(
            r#"{{"action":"publish","channel":{channel},"kind":"{kind}","data":{{"n":{n},"pad":"{pad}"}}}}"#
        );
        publisher.send(Message::text(frame)).await.unwrap();
    }
    publisher.close(None).await.unwrap();
}

/// Asserts each event's `skipped` (read by `skipped`) is exactly its jump
/// in `seq` less one; returns the events missed in all.
fn assert_gaps_told(events: &[&Value], skipped: impl Fn(&Value) -> u64) -> u64 {
    let mut last = 0;
    let mut missed = 0;
    for event in events {
        let seq = event["seq"].as_u64().unwrap();
        assert_eq!(
            skipped(event),
            seq - last - 1,
            "after seq {last}: {event:.200}"
        );
        missed += seq - last - 1;
        last = seq;
    }
    missed
}

#[tokio::test]
async fn telemetry_events_after_a_gap_say_exactly_how_many_were_skipped() {
    let server = TestServer::start(CONFIG);
    let mut slow = server.telemetry("?clientId=slow&channels=big").await;
    next_of_type(&mut slow, "ack").await;
    flood(&server, "big", 0, BIG, "event").await;
    eventually_stats(&server, |s| channel(s, "big")["published"] == BIG).await;

    let frames = drain(&mut slow).await;
    let events: Vec<_> = frames.iter().filter(|f| f["type"] == "event").collect();
    let missed = assert_gaps_told(&events, |e| e["skipped"].as_u64().unwrap_or(0));
    assert!(missed > 0, "nothing was dropped");
    assert_eq!(
        events.last().unwrap()["seq"],
        BIG,
        "the newest event arrives"
    );
    let entry = server.client("slow").await;
    assert_eq!(
        entry["sent"].as_u64().unwrap() + missed,
        BIG,
        "what the client was told it missed is what was counted: {entry}"
    );
}

#[tokio::test]
async fn events_refused_by_the_rate_limit_are_told_by_the_next_one() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 5\n");
    let mut ws = server
        .telemetry("?clientId=limited&channels=market-data")
        .await;
    next_of_type(&mut ws, "ack").await;
    // A one-second burst of 5 is let through; the other 5 are refused.
    let batch: Vec<Value> = (1..=10)
        .map(|n| json!({"channel": "market-data", "data": {"n": n}}))
        .collect();
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/publish",
            Some(PUB),
            Some(&json!({"messages": batch}).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    for seq in 1..=5 {
        let event = next_of_type(&mut ws, "event").await;
        assert_eq!(event["seq"], seq);
        assert!(event.get("skipped").is_none(), "{event}");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.publish("market-data", json!({"n": 11}), None).await;
    let event = next_of_type(&mut ws, "event").await;
    assert_eq!(event["seq"], 11);
    assert_eq!(event["skipped"], 5, "{event}");
    assert_eq!(event["data"], json!({"n": 11}));
    let entry = server.client("limited").await;
    assert_eq!(entry["droppedByReason"]["rateLimited"], 5, "{entry}");
}

#[tokio::test]
async fn bondx_deltas_after_a_gap_carry_meta_skipped() {
    let top =
        format!("{CONFIG}[[channel_rules]]\npattern = \"prices.**\"\noverflow = \"drop_oldest\"\n");
    let server = bondx_server(&top, "");
    let token = user_token("slow");
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/GAP1", &token).await;
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    flood(&server, "prices.GAP1", 0, BIG, "event").await;
    eventually_stats(&server, |s| channel(s, "prices.GAP1")["published"] == BIG).await;

    let frames = drain(&mut ws).await;
    let deltas: Vec<_> = frames.iter().filter(|f| f["type"] == "delta").collect();
    let missed = assert_gaps_told(&deltas, |d| d["meta"]["skipped"].as_u64().unwrap_or(0));
    assert!(missed > 0, "nothing was dropped");
    assert_eq!(
        deltas.last().unwrap()["seq"],
        BIG,
        "the newest delta arrives"
    );
    let told = deltas.iter().find(|d| d["meta"].get("skipped").is_some());
    let told = told.expect("a delta after a gap");
    assert!(
        told["meta"]["epoch"].is_string(),
        "meta keeps its fields: {told:.300}"
    );
}

/// The events among `frames`, and the index of each alert among them.
fn events_and_alerts(frames: &[Value]) -> (Vec<&Value>, Vec<usize>) {
    let events: Vec<_> = frames.iter().filter(|f| f["type"] == "event").collect();
    let alerts = (0..events.len())
        .filter(|&i| events[i]["channel"] == "risk-alerts")
        .collect();
    (events, alerts)
}

/// Publishes ticks of 60 KiB to `big` (numbered from `*ticks`) until the
/// client `desk`, which is not reading, has half its outbox queued (how much
/// the kernel takes first varies).
async fn fill_outbox(server: &TestServer, ticks: &mut u64) {
    let start = *ticks;
    while *ticks == start || server.client("desk").await["queueDepth"].as_u64() < Some(4) {
        assert!(*ticks < start + 10 * BIG, "the outbox never filled");
        flood(server, "big", *ticks, BIG, "event").await;
        *ticks += BIG;
        let published = *ticks;
        eventually_stats(server, |s| channel(s, "big")["published"] == published).await;
    }
}

/// On one publisher connection, in this order: `before` ticks, alert
/// number `alert`, `after` ticks (numbered on from `*ticks`).
async fn alert_among_ticks(
    server: &TestServer,
    ticks: &mut u64,
    before: u64,
    alert: u64,
    after: u64,
) {
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    let pad = "x".repeat(60 * 1024);
    let tick =
        |n: u64| json!({"action": "publish", "channel": "big", "data": {"n": n, "pad": pad}});
    for _ in 0..before {
        publisher
            .send(Message::text(tick(*ticks).to_string()))
            .await
            .unwrap();
        *ticks += 1;
    }
    let frame = json!({"action": "publish", "channel": "risk-alerts", "kind": "alert", "data": {"n": alert}});
    publisher
        .send(Message::text(frame.to_string()))
        .await
        .unwrap();
    for _ in 0..after {
        publisher
            .send(Message::text(tick(*ticks).to_string()))
            .await
            .unwrap();
        *ticks += 1;
    }
    let (published, alerts) = (*ticks, alert + 1);
    eventually_stats(server, |s| {
        channel(s, "big")["published"] == published
            && channel(s, "risk-alerts")["published"] == alerts
    })
    .await;
}

#[tokio::test]
async fn an_alert_goes_ahead_of_queued_ticks_and_is_never_dropped_for_them() {
    let server = TestServer::start(CONFIG);
    let mut ws = server
        .telemetry("?clientId=desk&channels=big,risk-alerts")
        .await;
    next_of_type(&mut ws, "ack").await;

    // The outbox full of ticks, more ticks and at once an alert: it finds
    // the newest ticks queued, and goes ahead of them.
    let mut ticks = 0;
    fill_outbox(&server, &mut ticks).await;
    alert_among_ticks(&server, &mut ticks, 16, 0, 0).await;
    let frames = drain(&mut ws).await;
    let (events, alerts) = events_and_alerts(&frames);
    assert_eq!(alerts.len(), 1, "the alert arrives once");
    let overtaken = events.len() - alerts[0] - 1;
    assert!(overtaken > 0, "the alert waited behind the ticks");
    assert_eq!(events.last().unwrap()["data"]["n"], ticks - 1);

    // The outbox full again, an alert, then a flood of ticks that has to
    // drop queued events to get in: never the alert.
    fill_outbox(&server, &mut ticks).await;
    let dropped_before = server.client("desk").await["droppedByReason"]["outboxFull"].clone();
    alert_among_ticks(&server, &mut ticks, 0, 1, BIG).await;
    let entry = server.client("desk").await;
    assert_ne!(
        entry["droppedByReason"]["outboxFull"], dropped_before,
        "{entry}"
    );
    let frames = drain(&mut ws).await;
    let (events, alerts) = events_and_alerts(&frames);
    assert_eq!(alerts.len(), 1, "the alert arrives once");
    assert_eq!(events[alerts[0]]["data"]["n"], 1);
    assert_eq!(events.last().unwrap()["data"]["n"], ticks - 1);

    let stats = server.stats().await;
    let alerts = channel(&stats, "risk-alerts");
    assert_eq!(alerts["dropped"], 0, "{alerts}");
    assert_eq!(alerts["priority"], "high", "{alerts}");
    assert_eq!(channel(&stats, "big")["priority"], "normal");
}

#[tokio::test]
async fn a_client_that_cannot_take_an_alert_is_closed_rather_than_left_without_it() {
    let config = "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n[outbox]\nmax_messages = 4\n";
    let server = TestServer::start(config);
    let mut ws = server
        .telemetry("?clientId=alerted&channels=risk-alerts")
        .await;
    next_of_type(&mut ws, "ack").await;
    flood(&server, "risk-alerts", 0, BIG, "alert").await;
    eventually_stats(&server, |s| channel(s, "risk-alerts")["published"] == BIG).await;

    // Every alert before the close arrives, in order, none skipped.
    let mut expected = 1;
    let (code, reason) = loop {
        match ws.next().await.expect("a frame or the close") {
            Ok(Message::Text(text)) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "event" {
                    assert_eq!(event["seq"], expected);
                    assert!(event.get("skipped").is_none());
                    expected += 1;
                }
            }
            Ok(Message::Close(Some(frame))) => break (u16::from(frame.code), frame.reason),
            Ok(_) => {}
            Err(e) => panic!("error before the close frame: {e}"),
        }
    };
    assert_eq!((code, reason.as_str()), (4429, "PRIORITY_OVERFLOW"));
    assert!(expected > 1, "alerts were sent before the close");
}

#[tokio::test]
async fn fastws_updates_after_a_gap_say_how_many_were_skipped() {
    let server = TestServer::start(CONFIG);
    let mut ws = server.fastws().await;
    let topic = r#"orders:{"accountId":"GAP-1"}"#;
    send_json(
        &mut ws,
        json!({"type": "orders.subscribe", "payload": {"accountId": "GAP-1"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["type"],
        "orders.subscribe.response"
    );
    flood(&server, topic, 0, BIG, "event").await;
    eventually_stats(&server, |s| channel(s, topic)["published"] == BIG).await;

    // FastWS updates carry no seq: what the client counts, received plus
    // told skipped, is everything published, and the last one arrives.
    let frames = drain(&mut ws).await;
    let updates: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "orders.update")
        .collect();
    let skipped: u64 = updates
        .iter()
        .map(|u| u["skipped"].as_u64().unwrap_or(0))
        .sum();
    assert!(skipped > 0, "nothing was dropped");
    assert_eq!(updates.len() as u64 + skipped, BIG);
    assert_eq!(updates.last().unwrap()["payload"]["n"], BIG - 1);
}

#[tokio::test]
async fn simple_protocol_signals_after_a_gap_say_how_many_were_skipped() {
    let server = simple_server(CONFIG, "");
    let mut ws = simple_ready(&server, "?client_id=behind").await;
    flood(&server, "signals", 0, BIG, "event").await;
    eventually_stats(&server, |s| channel(s, "signals")["published"] == BIG).await;

    let frames = drain(&mut ws).await;
    let signals: Vec<_> = frames.iter().filter(|f| f["type"] == "signal").collect();
    let skipped: u64 = signals
        .iter()
        .map(|s| s["skipped"].as_u64().unwrap_or(0))
        .sum();
    assert!(skipped > 0, "nothing was dropped");
    assert_eq!(signals.len() as u64 + skipped, BIG);
    assert_eq!(
        signals.last().unwrap()["n"],
        BIG - 1,
        "data merged, newest last"
    );
}
