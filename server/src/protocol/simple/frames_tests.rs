//! Unit tests of `frames.rs`: symbols, the filter, and each frame's shape.

use super::*;
use bytes::Bytes;
use shardcast_engine::{Epoch, Stamp, TopicId};
use std::time::{Duration, UNIX_EPOCH};

fn message(seq: u64, key: Option<&str>, data: &str) -> Arc<Message> {
    Arc::new(Message::new(
        TopicId::new(0, 0),
        "t".into(),
        Epoch::from_u64(1),
        seq,
        key.map(Into::into),
        Bytes::copy_from_slice(data.as_bytes()),
        Stamp {
            wall: UNIX_EPOCH + Duration::from_secs(1_734_609_600),
            mono: std::time::Instant::now(),
        },
    ))
}

fn payload(frame: &Bytes) -> serde_json::Value {
    let len = usize::from(frame[1] & 0x7f);
    let start = match len {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    serde_json::from_slice(&frame[start..]).unwrap()
}

fn only(symbols: &[&str]) -> Symbols {
    Symbols::Only(symbols.iter().map(|s| s.to_string()).collect())
}

#[test]
fn a_symbol_is_the_data_field_else_the_key() {
    let by_field = message(1, Some("P-1"), r#"{"symbol":"AAPL","q":1}"#);
    assert_eq!(symbol_of(&by_field).as_deref(), Some("AAPL"));
    let by_key = message(2, Some("MSFT"), r#"{"price":1}"#);
    assert_eq!(symbol_of(&by_key).as_deref(), Some("MSFT"));
    let neither = message(3, None, "[1,2]");
    assert_eq!(symbol_of(&neither), None);
}

#[test]
fn symbol_sets_grow_shrink_and_invert() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut set = only(&["AAPL"]);
    set.add(Some(&names(&["MSFT"])), 2).unwrap();
    assert_eq!(set, only(&["AAPL", "MSFT"]));
    assert_eq!(set.add(Some(&names(&["TSLA"])), 2), Err(TooMany(2)));
    assert_eq!(set, only(&["AAPL", "MSFT"]), "unchanged by a refusal");
    assert_eq!(set.remove(Some(&names(&["AAPL"])), 2), Ok(true));
    assert_eq!(set.remove(Some(&names(&["MSFT"])), 2), Ok(false), "empty");

    let mut all = Symbols::All;
    assert_eq!(all.remove(Some(&names(&["AAPL"])), 5), Ok(true));
    assert!(!all.admits(Some("AAPL")) && all.admits(Some("MSFT")));
    all.add(Some(&names(&["AAPL"])), 5).unwrap();
    assert_eq!(all, Symbols::All);
    assert!(!only(&["AAPL"]).admits(None), "no symbol: only for all");
    assert_eq!(all.remove(None, 5), Ok(false));
}

#[test]
fn the_filter_reads_each_message_symbol() {
    let filter = SymbolFilter(only(&["AAPL"]));
    let aapl = message(1, None, r#"{"symbol":"AAPL"}"#);
    let msft = message(2, Some("MSFT"), r#"{}"#);
    assert!(filter.admits(&aapl));
    assert!(!filter.admits(&msft));
    assert!(filter.admits(&aapl), "the memo follows the message");
}

#[test]
fn live_events_merge_type_symbol_and_timestamp_into_the_data() {
    let signal = live_event(
        "signal",
        &message(
            1,
            Some("AAPL"),
            r#"{"signal_type":"BUY","type":"x","price":150.25}"#,
        ),
    );
    let value = payload(&signal);
    assert_eq!(value["type"], "signal");
    assert_eq!(value["signal_type"], "BUY");
    assert_eq!(value["symbol"], "AAPL", "from the key");
    assert_eq!(value["timestamp"], "2024-12-19T12:00:00.000Z");
    let own_time = live_event(
        "trade_executed",
        &message(2, None, r#"{"symbol":"MSFT","timestamp":"then"}"#),
    );
    let value = payload(&own_time);
    assert_eq!(
        (value["symbol"].as_str(), value["timestamp"].as_str()),
        (Some("MSFT"), Some("then"))
    );
    let scalar = payload(&live_event("signal", &message(3, None, "42")));
    assert_eq!(scalar["data"], 42);
}

#[test]
fn a_price_update_holds_the_latest_of_each_wanted_symbol_that_changed() {
    let state = annotate(vec![
        message(3, Some("AAPL"), r#"{"price":1.5}"#),
        message(7, Some("MSFT"), r#"{"price":2.5}"#),
        message(9, Some("TSLA"), r#"{"price":3.5}"#),
    ]);
    let now = UNIX_EPOCH;
    let since = Some(Position {
        epoch: Epoch::from_u64(1),
        seq: 5,
    });
    let frame = price_update(&state, since, &Symbols::All, now).unwrap();
    let value = payload(&frame);
    assert_eq!(value["type"], "price_update");
    assert_eq!(
        value["symbols"],
        serde_json::json!({"MSFT":{"price":2.5},"TSLA":{"price":3.5}})
    );
    assert_eq!(value["timestamp"], "1970-01-01T00:00:00.000Z");
    let aapl = price_update(&state, None, &only(&["AAPL"]), now).unwrap();
    assert_eq!(
        payload(&aapl)["symbols"],
        serde_json::json!({"AAPL":{"price":1.5}})
    );
    assert!(price_update(&state, since, &only(&["AAPL"]), now).is_none());
    let other_epoch = Some(Position {
        epoch: Epoch::from_u64(2),
        seq: 100,
    });
    assert!(price_update(&state, other_epoch, &only(&["AAPL"]), now).is_some());
}

#[test]
fn a_portfolio_update_has_the_documented_shape() {
    let state = annotate(vec![
        message(1, Some("P-1"), r#"{"symbol":"AAPL","unrealized_pnl":12.5}"#),
        message(2, Some("P-2"), r#"{"symbol":"MSFT","unrealizedPnl":-2.25}"#),
    ]);
    let value = payload(&portfolio_update(&state, &Symbols::All, UNIX_EPOCH));
    assert_eq!(value["type"], "portfolio_update");
    assert_eq!(value["channel"], "portfolio");
    assert_eq!(value["data"]["position_count"], 2);
    assert_eq!(value["data"]["total_pnl"], 10.25);
    assert_eq!(value["data"]["positions"]["AAPL"]["symbol"], "AAPL");
    let narrowed = payload(&portfolio_update(&state, &only(&["MSFT"]), UNIX_EPOCH));
    assert_eq!(narrowed["data"]["position_count"], 1);

    let whole = annotate(vec![message(
        4,
        None,
        r#"{"positions":{"AAPL":{"unrealized_pnl":1},"MSFT":{"unrealized_pnl":2}},"total_pnl":3}"#,
    )]);
    let value = payload(&portfolio_update(&whole, &only(&["AAPL"]), UNIX_EPOCH));
    assert_eq!(value["data"]["position_count"], 1);
    assert_eq!(value["data"]["total_pnl"], 1.0);
}

#[test]
fn a_gap_is_marked_first_unless_the_data_has_a_skipped_of_its_own() {
    let format = crate::protocol::simple::SimpleFormat {
        signals: "signals".into(),
        trades: "trades".into(),
    };
    let at = shardcast_engine::WireFormat::gap_field(&format).expect("simple marks gaps");
    let plain = live_event("signal", &message(1, None, r#"{"symbol":"AAPL"}"#));
    assert_eq!(at(&plain[2..]), Some(1));
    let own = live_event("signal", &message(1, None, r#"{"skipped":true}"#));
    assert_eq!(at(&own[2..]), None, "a frame never holds a key twice");
}
