//! Reference-counted producers: the first FastWS subscriber of a bars or
//! quotes topic starts the simulated feed of that topic (any symbol, any
//! resolution), the last one to leave stops it; topics fed from outside do
//! not care who comes and goes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn fastws(server: &TestServer) -> Ws {
    server
        .try_connect("/api/v1/ws", &[])
        .await
        .expect("handshake")
}

async fn subscribe(ws: &mut Ws, kind: &str, payload: Value) -> String {
    send_json(ws, json!({"type": kind, "payload": payload})).await;
    let response = next_frame(ws).await;
    assert_eq!(response["payload"]["status"], "ok", "{response}");
    response["payload"]["topic"].as_str().unwrap().to_owned()
}

/// The producers the stats list now: topic → subscribers.
async fn producers(server: &TestServer) -> Vec<(String, u64)> {
    let stats = server.stats().await;
    stats["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_owned(),
                p["subscribers"].as_u64().unwrap(),
            )
        })
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
    let mut first = fastws(&server).await;
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

    let mut second = fastws(&server).await;
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
    let mut ws = fastws(&server).await;
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
    let mut ws = fastws(&server).await;
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
    let mut again = fastws(&server).await;
    subscribe(&mut again, "bars.subscribe", bars).await;
    server.publish(&topic, bar.clone(), None).await;
    assert_eq!(next_frame(&mut again).await["payload"], bar);
}
