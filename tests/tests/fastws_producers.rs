//! Reference-counted producers: the first FastWS subscriber of a bars or
//! quotes topic starts the simulated feed of that topic (any symbol, any
//! resolution), the last one to leave stops it; topics fed from outside do
//! not care who comes and goes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn subscribe(ws: &mut Ws, kind: &str, payload: Value) -> String {
    send_json(ws, json!({"type": kind, "payload": payload})).await;
    let response = next_frame(ws).await;
    assert_eq!(response["payload"]["status"], "ok", "{response}");
    response["payload"]["topic"].as_str().unwrap().to_owned()
}

/// The producers the stats list now: topic → subscribers (running feeds
/// only; see `stopped`).
async fn producers(server: &TestServer) -> Vec<(String, u64)> {
    let stats = server.stats().await;
    stats["producers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["producing"] == true)
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_owned(),
                p["subscribers"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Topics whose feed stopped because another publisher feeds them.
async fn stopped(server: &TestServer) -> Vec<String> {
    let stats = server.stats().await;
    stats["producers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["producing"] == false)
        .map(|p| p["topic"].as_str().unwrap().to_owned())
        .collect()
}

async fn eventually_producers(server: &TestServer, want: Vec<(String, u64)>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = producers(server).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "producers {now:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_first_subscriber_starts_a_feed_and_the_last_stops_it() {
    let server = TestServer::start("demo = true");
    let bars = json!({"symbol": "QQQX", "params": {"resolution": "1"}});
    let mut first = server.fastws().await;
    let topic = subscribe(&mut first, "bars.subscribe", bars.clone()).await;
    assert_eq!(producers(&server).await, [(topic.clone(), 1)]);
    // A bar of a symbol nobody configured, within a few seconds.
    let update = next_frame(&mut first).await;
    assert_eq!(update["type"], "bars.update");
    for field in ["time", "open", "high", "low", "close", "volume"] {
        assert!(update["payload"][field].is_number(), "{field}: {update}");
    }
    let bar = &update["payload"];
    assert!(
        bar["low"].as_f64() <= bar["close"].as_f64()
            && bar["close"].as_f64() <= bar["high"].as_f64()
    );
    assert_eq!(
        bar["time"].as_u64().unwrap() % 60_000,
        0,
        "a 1-minute bar starts on the minute"
    );

    let mut second = server.fastws().await;
    subscribe(&mut second, "bars.subscribe", bars.clone()).await;
    // Subscribing again on the same connection (the document's keep-alive) adds nothing.
    subscribe(&mut second, "bars.subscribe", bars.clone()).await;
    assert_eq!(producers(&server).await, [(topic.clone(), 2)]);
    send_json(
        &mut first,
        json!({"type": "bars.unsubscribe", "payload": bars}),
    )
    .await;
    loop {
        // Updates may come before the answer.
        if next_frame(&mut first).await["type"] == "bars.unsubscribe.response" {
            break;
        }
    }
    assert_eq!(producers(&server).await, [(topic.clone(), 1)]);
    drop(second);
    eventually_producers(&server, Vec::new()).await;
    // Broker routes have no simulated feed.
    subscribe(&mut first, "orders.subscribe", json!({"accountId": "A"})).await;
    assert!(producers(&server).await.is_empty());
}

#[tokio::test]
async fn quotes_come_for_any_symbol_fast_ones_more_often() {
    let server = TestServer::start("demo = true");
    let mut ws = server.fastws().await;
    let payload = json!({"symbols": ["SLOWQ"], "fast_symbols": ["FASTQ"]});
    subscribe(&mut ws, "quotes.subscribe", payload).await;
    let (mut fast, mut slow) = (0, 0);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let update = next_frame(&mut ws).await;
        assert_eq!(update["type"], "quotes.update");
        match update["payload"]["symbol"].as_str() {
            Some("FASTQ") => fast += 1,
            Some("SLOWQ") => slow += 1,
            other => panic!("{other:?}"),
        }
        assert!(update["payload"]["bid"].as_f64() < update["payload"]["ask"].as_f64());
    }
    assert!(slow >= 1 && fast >= 2 * slow, "fast {fast}, slow {slow}");
}

#[tokio::test]
async fn a_topic_fed_from_outside_does_not_depend_on_subscribers() {
    // No simulated market: no producer ever starts.
    let server = TestServer::start("");
    let mut ws = server.fastws().await;
    let bars = json!({"symbol": "EXT", "params": {"resolution": "D"}});
    let topic = subscribe(&mut ws, "bars.subscribe", bars.clone()).await;
    assert!(producers(&server).await.is_empty());
    let bar = json!({"time": 1, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10});
    server.publish(&topic, bar.clone(), None).await;
    assert_eq!(
        next_frame(&mut ws).await,
        json!({"type": "bars.update", "payload": bar})
    );
    send_json(
        &mut ws,
        json!({"type": "bars.unsubscribe", "payload": bars.clone()}),
    )
    .await;
    next_frame(&mut ws).await;
    // The publisher goes on regardless; a new subscriber picks it up.
    server.publish(&topic, bar.clone(), None).await;
    let mut again = server.fastws().await;
    subscribe(&mut again, "bars.subscribe", bars).await;
    server.publish(&topic, bar.clone(), None).await;
    assert_eq!(next_frame(&mut again).await["payload"], bar);
}

#[tokio::test]
async fn simulated_topics_hold_nothing_and_expire_after_their_last_subscriber() {
    let server = TestServer::start("demo = true\n[topics]\nidle_expiry_seconds = 1");
    let mut ws = server.fastws().await;
    for n in 0..5 {
        let bars = json!({"symbol": format!("GONE{n}"), "params": {"resolution": "1"}});
        let topic = subscribe(&mut ws, "bars.subscribe", bars.clone()).await;
        // Its first bar arrives, and nothing of it is kept.
        assert_eq!(next_frame(&mut ws).await["type"], "bars.update");
        let stats = server.stats().await;
        assert_eq!(channel(&stats, &topic)["historySize"], 0, "{stats}");
        send_json(
            &mut ws,
            json!({"type": "bars.unsubscribe", "payload": bars}),
        )
        .await;
        while next_frame(&mut ws).await["type"] != "bars.unsubscribe.response" {}
    }
    // Every simulated topic expires (the demo feed's own topics stay).
    eventually_stats(&server, |s| {
        let channels = s["channels"].as_array().unwrap();
        !channels
            .iter()
            .any(|c| c["channel"].as_str().unwrap().starts_with("bars:"))
            && s["channelsExpired"].as_u64() >= Some(5)
    })
    .await;
}

#[tokio::test]
async fn a_topic_another_publisher_feeds_gets_no_simulated_messages() {
    let server = TestServer::start("demo = true");
    let real = json!({"time": 7, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1});
    // Fed before anyone subscribes: no feed starts.
    let fed = json!({"symbol": "REAL", "params": {"resolution": "1"}});
    let topic = r#"bars:{"resolution":"1","symbol":"REAL"}"#;
    server.publish(topic, real.clone(), None).await;
    let mut ws = server.fastws().await;
    subscribe(&mut ws, "bars.subscribe", fed).await;
    let deadline = Instant::now() + WAIT;
    while stopped(&server).await != [topic] {
        assert!(Instant::now() < deadline, "the feed never stopped");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_silent(&mut ws, Duration::from_millis(1500)).await;
    server.publish(topic, real.clone(), None).await;
    assert_eq!(next_frame(&mut ws).await["payload"], real);

    // Fed while its feed runs: the feed stops.
    let bars = json!({"symbol": "LATER", "params": {"resolution": "1"}});
    let topic = subscribe(&mut ws, "bars.subscribe", bars).await;
    assert_eq!(next_frame(&mut ws).await["type"], "bars.update");
    server.publish(&topic, real.clone(), None).await;
    let deadline = Instant::now() + WAIT;
    while !stopped(&server).await.contains(&topic) {
        assert!(Instant::now() < deadline, "the feed never stopped");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // After the outside message, nothing simulated.
    while next_frame(&mut ws).await["payload"] != real {}
    assert_silent(&mut ws, Duration::from_millis(1500)).await;
}
