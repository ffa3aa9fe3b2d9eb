//! The simple trading protocol at `/ws`, driven as a client written against
//! its reference document would drive it: ping/pong, client ids, the
//! automatic subscription to all four streams, narrowing by subscribe and
//! symbols, unsubscribing, conflation per interval, each frame's fields,
//! and an `error` frame for each bad input with the connection still usable.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Publishes a signal for `symbol` with `price`.
async fn signal(server: &TestServer, symbol: &str, price: f64) {
    let data = json!({"signal_type": "BUY", "symbol": symbol, "price": price, "quantity": 10, "confidence": 0.85});
    server.publish("signals", data, Some(symbol)).await;
}

#[tokio::test]
async fn ping_gets_pong_and_client_ids_are_kept_or_generated() {
    let server = simple_server("", "");
    let mut named = simple(&server, "?client_id=desk-7").await;
    send_json(&mut named, json!({"type": "ping"})).await;
    let (pong, _) = next_type(&mut named, "pong").await;
    assert_eq!(pong, json!({"type": "pong"}), "exactly the documented pong");
    assert_eq!(server.client("desk-7").await["protocol"], "simple");

    let _anonymous = simple(&server, "").await;
    let (status, list) = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "simple")
        .filter_map(|c| c["clientId"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    let generated = ids.iter().find(|id| **id != "desk-7").unwrap();
    let groups: Vec<usize> = generated.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "a UUID: {generated}");
}

#[tokio::test]
async fn a_new_client_gets_all_four_streams_until_its_first_subscribe() {
    let server = simple_server("", "");
    publish_price(&server, "AAPL", 150.25).await;
    server
        .publish(
            "positions",
            json!({"symbol": "AAPL", "quantity": 10, "unrealized_pnl": 12.5}),
            Some("P-1"),
        )
        .await;
    let mut ws = simple(&server, "").await;
    // The conflated channels' state comes at once, the live ones as they happen.
    next_type(&mut ws, "price_update").await;
    next_type(&mut ws, "portfolio_update").await;
    signal(&server, "AAPL", 150.0).await;
    next_type(&mut ws, "signal").await;
    let trade = json!({"symbol": "MSFT", "side": "SELL", "quantity": 5, "price": 380.5});
    server.publish("trades", trade, Some("MSFT")).await;
    next_type(&mut ws, "trade_executed").await;

    // The first subscribe replaces the automatic set.
    send_json(&mut ws, json!({"type": "subscribe", "channel": "signals"})).await;
    let (ack, _) = next_type(&mut ws, "subscribed").await;
    assert_eq!(
        (&ack["channel"], &ack["symbols"]),
        (&json!("signals"), &Value::Null)
    );
    publish_price(&server, "AAPL", 151.0).await;
    server
        .publish(
            "trades",
            json!({"symbol": "AAPL", "side": "BUY", "quantity": 1, "price": 151.0}),
            Some("AAPL"),
        )
        .await;
    signal(&server, "MSFT", 381.0).await;
    let frames = frames_within(&mut ws, Duration::from_millis(2500)).await;
    let kinds: Vec<&Value> = frames.iter().map(|f| &f["type"]).collect();
    assert_eq!(
        kinds,
        [&json!("signal")],
        "only what it subscribed to: {frames:?}"
    );
}

#[tokio::test]
async fn symbols_narrow_a_channel_and_unsubscribe_takes_them_back() {
    let server = simple_server("", "");
    let mut ws = simple(&server, "").await;
    let subscribe = json!({"type": "subscribe", "channel": "signals", "symbols": ["AAPL", "MSFT"]});
    send_json(&mut ws, subscribe).await;
    let (ack, _) = next_type(&mut ws, "subscribed").await;
    assert_eq!(ack["symbols"], json!(["AAPL", "MSFT"]));
    for symbol in ["AAPL", "TSLA", "MSFT"] {
        signal(&server, symbol, 1.0).await;
    }
    let symbols = |frames: &[Value]| -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f["type"].as_str().unwrap(),
                    f["symbol"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let frames = frames_within(&mut ws, Duration::from_millis(800)).await;
    assert_eq!(symbols(&frames), ["signal:AAPL", "signal:MSFT"]);

    send_json(
        &mut ws,
        json!({"type": "unsubscribe", "channel": "signals", "symbols": ["AAPL"]}),
    )
    .await;
    let (ack, _) = next_type(&mut ws, "unsubscribed").await;
    assert_eq!(ack["symbols"], json!(["AAPL"]), "the request, echoed");
    signal(&server, "AAPL", 2.0).await;
    signal(&server, "MSFT", 2.0).await;
    let frames = frames_within(&mut ws, Duration::from_millis(800)).await;
    assert_eq!(symbols(&frames), ["signal:MSFT"]);

    send_json(
        &mut ws,
        json!({"type": "unsubscribe", "channel": "signals"}),
    )
    .await;
    let (ack, _) = next_type(&mut ws, "unsubscribed").await;
    assert_eq!(ack["symbols"], Value::Null);
    // A signal published before a trade would reach the client first.
    send_json(&mut ws, json!({"type": "subscribe", "channel": "trades"})).await;
    next_type(&mut ws, "subscribed").await;
    signal(&server, "MSFT", 3.0).await;
    let trade = json!({"symbol": "MSFT", "side": "BUY", "quantity": 1, "price": 3.0});
    server.publish("trades", trade, Some("MSFT")).await;
    let (_, before) = next_type(&mut ws, "trade_executed").await;
    assert!(before.is_empty(), "nothing of the channel left: {before:?}");
    // Unsubscribing what is not followed is an error, and nothing breaks.
    send_json(
        &mut ws,
        json!({"type": "unsubscribe", "channel": "signals"}),
    )
    .await;
    let (error, _) = next_type(&mut ws, "error").await;
    assert!(
        error["error"].as_str().unwrap().contains("Not subscribed"),
        "{error}"
    );
}

#[tokio::test]
async fn prices_are_conflated_to_the_latest_per_symbol_each_interval() {
    let server = simple_server("", "");
    let mut ws = simple(&server, "").await;
    let subscribe = json!({"type": "subscribe", "channel": "price_updates", "symbols": ["AAPL"]});
    send_json(&mut ws, subscribe).await;
    next_type(&mut ws, "subscribed").await;
    // 50 updates of one symbol (and one of another) in one request.
    let mut batch: Vec<(&str, Value, &str)> = (0..50)
        .map(|i| {
            let price = 150.0 + f64::from(i) / 100.0;
            (
                "market-data",
                json!({"symbol": "AAPL", "price": price}),
                "AAPL",
            )
        })
        .collect();
    batch.push((
        "market-data",
        json!({"symbol": "MSFT", "price": 380.0}),
        "MSFT",
    ));
    publish_all(&server, &batch).await;
    let frames = frames_within(&mut ws, Duration::from_millis(2600)).await;
    let updates: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "price_update")
        .collect();
    // One frame, or two if the batch straddled a boundary — never one per
    // update.
    assert!(
        (1..=2).contains(&updates.len()),
        "one frame per interval: {frames:?}"
    );
    let last = updates.last().unwrap();
    assert_eq!(
        last["symbols"],
        json!({"AAPL": {"symbol": "AAPL", "price": 150.49}}),
        "the latest price of the subscribed symbol only"
    );
    assert!(is_iso_time(&last["timestamp"]), "{last}");
    // Nothing changed: nothing more is sent.
    assert!(frames_within(&mut ws, Duration::from_millis(1500))
        .await
        .is_empty());
}

#[tokio::test]
async fn every_server_message_has_the_documented_fields() {
    let server = simple_server("", "");
    let mut ws = simple(&server, "").await;
    signal(&server, "AAPL", 150.25).await;
    let (signal, _) = next_type(&mut ws, "signal").await;
    for (field, want) in [
        ("signal_type", json!("BUY")),
        ("symbol", json!("AAPL")),
        ("price", json!(150.25)),
        ("quantity", json!(10)),
        ("confidence", json!(0.85)),
    ] {
        assert_eq!(signal[field], want, "{field}: {signal}");
    }
    assert!(is_iso_time(&signal["timestamp"]), "{signal}");

    let trade = json!({"symbol": "AAPL", "side": "BUY", "quantity": 10, "price": 150.25});
    server.publish("trades", trade, None).await;
    let (trade, _) = next_type(&mut ws, "trade_executed").await;
    assert_eq!(
        (
            &trade["symbol"],
            &trade["side"],
            &trade["quantity"],
            &trade["price"]
        ),
        (&json!("AAPL"), &json!("BUY"), &json!(10), &json!(150.25))
    );
    assert!(is_iso_time(&trade["timestamp"]), "{trade}");

    let position = json!({"symbol": "AAPL", "quantity": 10, "average_price": 150.25, "market_price": 151.5, "unrealized_pnl": 12.5, "unrealized_pnl_pct": 0.83});
    server
        .publish("positions", position.clone(), Some("AAPL"))
        .await;
    let (portfolio, _) = next_type(&mut ws, "portfolio_update").await;
    assert_eq!(portfolio["channel"], "portfolio");
    assert!(is_iso_time(&portfolio["timestamp"]), "{portfolio}");
    assert_eq!(
        portfolio["data"],
        json!({"positions": {"AAPL": position}, "total_pnl": 12.5, "position_count": 1})
    );

    server
        .publish(
            "market-data",
            json!({"symbol": "MSFT", "price": 380.5, "change_pct": -0.31}),
            Some("MSFT"),
        )
        .await;
    let (prices, _) = next_type(&mut ws, "price_update").await;
    assert_eq!(prices["symbols"]["MSFT"]["change_pct"], -0.31);
}

#[tokio::test]
async fn each_bad_input_gets_an_error_and_the_connection_stays_usable() {
    let server = simple_server("", "");
    let mut ws = simple(&server, "").await;
    let cases = [
        ("{not json", "Invalid message format"),
        (r#"{"type":"dance"}"#, "Unknown message type"),
        (
            r#"{"type":"subscribe","channel":"news"}"#,
            "Unknown channel",
        ),
        (
            r#"{"type":"subscribe","channel":["signals"]}"#,
            "channel must be a string",
        ),
        (
            r#"{"type":"subscribe","channel":"signals","symbols":"AAPL"}"#,
            "array of strings",
        ),
        (
            r#"{"type":"subscribe","channel":"signals","symbols":[7]}"#,
            "array of strings",
        ),
        (r#"{"type":42}"#, "type must be a string"),
        ("[]", "JSON object"),
    ];
    for (input, says) in cases {
        ws.send(Message::text(input)).await.unwrap();
        let (error, _) = next_type(&mut ws, "error").await;
        let text = error["error"].as_str().unwrap_or_default();
        assert!(text.contains(says), "{input} → {error}");
        assert!(is_iso_time(&error["timestamp"]), "{error}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    next_type(&mut ws, "error").await;
    send_json(&mut ws, json!({"type": "ping"})).await;
    next_type(&mut ws, "pong").await;
    // Still auto-subscribed: bad input changed nothing.
    signal(&server, "AAPL", 1.0).await;
    next_type(&mut ws, "signal").await;
}

#[tokio::test]
async fn symbols_added_to_a_conflated_channel_get_their_state_at_once() {
    let server = TestServer::start("[simple]\nprice_update_interval_seconds = 30");
    let prices = [("AAPL", 150.0), ("MSFT", 380.0)];
    let batch: Vec<(&str, Value, &str)> = prices
        .iter()
        .map(|(s, p)| ("market-data", json!({"symbol": s, "price": p}), *s))
        .collect();
    publish_all(&server, &batch).await;
    let mut ws = simple(&server, "").await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates", "symbols": ["AAPL"]}),
    )
    .await;
    let (_, before) = next_type(&mut ws, "subscribed").await;
    let (state, _) = next_type(&mut ws, "price_update").await;
    assert_eq!(
        state["symbols"],
        json!({"AAPL": {"symbol": "AAPL", "price": 150.0}}),
        "{before:?}"
    );
    // MSFT has not changed since, and the interval is long: its state comes
    // now because the subscription grew.
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates", "symbols": ["MSFT"]}),
    )
    .await;
    next_type(&mut ws, "subscribed").await;
    let (state, _) = next_type(&mut ws, "price_update").await;
    assert_eq!(state["symbols"]["MSFT"]["price"], 380.0, "{state}");
}

#[tokio::test]
async fn the_first_subscribe_replaces_the_automatic_set_even_after_an_unsubscribe() {
    let server = simple_server("", "");
    let mut ws = simple_ready(&server, "").await;
    send_json(&mut ws, json!({"type": "unsubscribe", "channel": "trades"})).await;
    next_type(&mut ws, "unsubscribed").await;
    // A bad subscribe changes nothing: still following signals.
    send_json(&mut ws, json!({"type": "subscribe", "channel": "news"})).await;
    next_type(&mut ws, "error").await;
    signal(&server, "AAPL", 1.0).await;
    next_type(&mut ws, "signal").await;
    // The first good subscribe: prices of AAPL only, nothing else.
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates", "symbols": ["AAPL"]}),
    )
    .await;
    next_type(&mut ws, "subscribed").await;
    signal(&server, "AAPL", 2.0).await;
    let batch = [
        (
            "market-data",
            json!({"symbol": "MSFT", "price": 1.0}),
            "MSFT",
        ),
        (
            "market-data",
            json!({"symbol": "AAPL", "price": 2.0}),
            "AAPL",
        ),
    ];
    publish_all(&server, &batch).await;
    let (update, skipped) = next_type(&mut ws, "price_update").await;
    assert_eq!(
        update["symbols"],
        json!({"AAPL": {"symbol": "AAPL", "price": 2.0}})
    );
    assert!(skipped.iter().all(|f| f["type"] != "signal"), "{skipped:?}");
}

#[tokio::test]
async fn a_flood_of_messages_is_limited_with_one_error() {
    let server = simple_server("", "messages_per_second = 5");
    let mut ws = simple_ready(&server, "").await;
    for _ in 0..30 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    let frames = frames_within(&mut ws, Duration::from_millis(1500)).await;
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    let errors: Vec<&Value> = frames.iter().filter(|f| f["type"] == "error").collect();
    assert!(
        pongs <= 11,
        "a burst of twice the rate, then the rate: {pongs}"
    );
    // One error per run of refused messages (a slow sender may see the
    // bucket refill once or twice in between).
    assert!((1..=3).contains(&errors.len()), "{frames:?}");
    assert!(
        pongs + errors.len() < 30,
        "refused messages are not all answered"
    );
    assert!(
        errors[0]["error"].as_str().unwrap().contains("Rate limit"),
        "{frames:?}"
    );
}

#[tokio::test]
async fn clients_with_one_subscription_share_each_conflated_frame() {
    let server = simple_server("", "");
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut ws = simple_ready(&server, "").await;
        let subscribe =
            json!({"type": "subscribe", "channel": "price_updates", "symbols": ["AAPL"]});
        send_json(&mut ws, subscribe).await;
        next_type(&mut ws, "subscribed").await;
        clients.push(ws);
    }
    let built = |status: &Value| status["conflated_frames_built"].as_u64().unwrap();
    let (_, before) = server.http("GET", "/websocket/status", None, None).await;
    // Three intervals with a change in each: every client gets a frame per
    // interval, and each interval's frame is built once per shard (two).
    for i in 0..3 {
        publish_price(&server, "AAPL", 100.0 + f64::from(i)).await;
        for ws in &mut clients {
            let (update, _) = next_type(ws, "price_update").await;
            assert_eq!(update["symbols"]["AAPL"]["price"], 100.0 + f64::from(i));
        }
    }
    let (_, after) = server.http("GET", "/websocket/status", None, None).await;
    let frames = built(&after) - built(&before);
    assert!(
        (3..=8).contains(&frames),
        "{frames} frames built for 8 clients over 3 intervals on 2 shards"
    );
}
