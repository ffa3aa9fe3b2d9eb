//! Resuming a telemetry subscription from a position: every event after it,
//! in order and exactly once, or an explicit `RESUME_FAILED` saying why —
//! never a silent gap. Malformed positions get a clear error and leave the
//! connection usable.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Subscribes with positions shown; returns the ack.
async fn subscribe(ws: &mut Ws, command: Value) -> Value {
    send_json(ws, command).await;
    next_of_type(ws, "ack").await
}

fn position(ack: &Value, channel: &str) -> (String, u64) {
    let at = &ack["positions"][channel];
    (
        at["epoch"].as_str().unwrap().to_owned(),
        at["seq"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_client_resumes_exactly_where_it_left_off() {
    let server = TestServer::start("");
    let mut first = server.telemetry("").await;
    let ack = subscribe(
        &mut first,
        json!({"action": "subscribe", "channels": ["t1"], "positions": true}),
    )
    .await;
    let (epoch, seq) = position(&ack, "t1");
    assert_eq!((epoch.len(), seq), (16, 0), "{ack}");
    for n in 1..=5 {
        server.publish("t1", json!({"n": n}), None).await;
    }
    for n in 1..=3 {
        assert_eq!(next_of_type(&mut first, "event").await["seq"], n);
    }
    drop(first); // gone after seq 3, with 4 and 5 unread
    server.publish("t1", json!({"n": 6}), None).await;

    let mut second = server.telemetry("").await;
    let ack = subscribe(
        &mut second,
        json!({"action": "subscribe", "channels": ["t1", "t2"],
               "resume": {"t1": {"epoch": epoch, "seq": 3}}}),
    )
    .await;
    // Positions are shown with a resume: where live delivery begins.
    assert_eq!(position(&ack, "t1"), (epoch.clone(), 6));
    assert_eq!(position(&ack, "t2").1, 0);
    server.publish("t1", json!({"n": 7}), None).await;
    for n in 4..=7u64 {
        let event = next_of_type(&mut second, "event").await;
        assert_eq!(
            (event["seq"].as_u64(), &event["data"]),
            (Some(n), &json!({"n": n}))
        );
    }
    // Resuming from the very end replays nothing and fails nothing.
    let mut third = server.telemetry("").await;
    subscribe(
        &mut third,
        json!({"action": "subscribe", "channels": ["t1"],
               "resume": {"t1": {"epoch": epoch, "seq": 7}}}),
    )
    .await;
    server.publish("t1", json!({"n": 8}), None).await;
    let event = next_json(&mut third).await;
    assert_eq!(
        (event["type"].as_str(), event["seq"].as_u64()),
        (Some("event"), Some(8))
    );
}

#[tokio::test]
async fn positions_that_cannot_be_resumed_are_refused_clearly_and_the_connection_lives() {
    let server = TestServer::start("[topics]\nhistory = 4\n[telemetry]\nreplay_limit = 4");
    let mut ws = server.telemetry("").await;
    let ack = subscribe(
        &mut ws,
        json!({"action": "subscribe", "channels": ["t2"], "positions": true}),
    )
    .await;
    let (epoch, _) = position(&ack, "t2");
    for n in 1..=10 {
        server.publish("t1", json!({"n": n}), None).await;
    }
    let resume =
        |at: Value| json!({"action": "subscribe", "channels": ["t1"], "resume": {"t1": at}});

    // Malformed: the command is refused whole, nothing is subscribed.
    for bad in [
        json!({"epoch": epoch, "seq": -1}),
        json!({"epoch": epoch, "seq": "x"}),
        json!({"epoch": "not-an-epoch", "seq": 1}),
        json!({"seq": 1}),
    ] {
        send_json(&mut ws, resume(bad.clone())).await;
        let error = next_of_type(&mut ws, "error").await;
        assert_eq!(error["code"], "INVALID_MESSAGE", "{bad}: {error}");
    }
    let long = format!("t{}", "x".repeat(300));
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": [long], "resume": {long.clone(): {"epoch": epoch, "seq": 0}}}),
    )
    .await;
    assert_eq!(next_of_type(&mut ws, "ack").await["channels"], json!([]));
    assert_eq!(
        next_of_type(&mut ws, "error").await["code"],
        "UNKNOWN_CHANNEL"
    );

    // Well-formed but not answerable: subscribed, with RESUME_FAILED saying why.
    let t1_epoch = {
        let mut probe = server.telemetry("").await;
        let ack = subscribe(
            &mut probe,
            json!({"action": "subscribe", "channels": ["t1"], "positions": true}),
        )
        .await;
        position(&ack, "t1").0
    };
    let other_epoch = if t1_epoch == "0000000000000000" {
        "0000000000000001"
    } else {
        "0000000000000000"
    };
    let cases = [
        (json!({"epoch": t1_epoch, "seq": 11}), "ahead"),
        (json!({"epoch": t1_epoch, "seq": 2}), "no longer held"),
        (json!({"epoch": other_epoch, "seq": 9}), "epoch"),
    ];
    for (at, why) in cases {
        let ack = subscribe(&mut ws, resume(at.clone())).await;
        assert_eq!(ack["channels"], json!(["t1"]));
        let error = next_of_type(&mut ws, "error").await;
        assert_eq!(
            (error["code"].as_str(), error["channel"].as_str()),
            (Some("RESUME_FAILED"), Some("t1"))
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(why), "{at}: {message}");
        // Leave it, to resume afresh.
        send_json(
            &mut ws,
            json!({"action": "unsubscribe", "channels": ["t1"]}),
        )
        .await;
        next_of_type(&mut ws, "ack").await;
    }
    // Still usable: a resume from the ring's edge works on this connection.
    subscribe(&mut ws, resume(json!({"epoch": t1_epoch, "seq": 6}))).await;
    for n in 7..=10 {
        assert_eq!(next_of_type(&mut ws, "event").await["seq"], n);
    }
    let again = subscribe(&mut ws, resume(json!({"epoch": t1_epoch, "seq": 6}))).await;
    assert_eq!(again["channels"], json!(["t1"]));
    let error = next_of_type(&mut ws, "error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already subscribed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_channel_created_again_has_a_new_epoch_and_old_positions_fail() {
    let server = TestServer::start(
        "[topics]\nhistory = 0\nmax_keys = 0\nidle_expiry_seconds = 1\n[telemetry]\nreplay_limit = 0",
    );
    let mut ws = server.telemetry("").await;
    let show = json!({"action": "subscribe", "channels": ["t1"], "positions": true});
    let (before, _) = position(&subscribe(&mut ws, show.clone()).await, "t1");
    server.publish("t1", json!({"n": 1}), None).await;
    next_of_type(&mut ws, "event").await;
    send_json(
        &mut ws,
        json!({"action": "unsubscribe", "channels": ["t1"]}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    // Nobody holds it and it retains nothing: it expires (swept every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = server.stats().await;
        let channels = stats["channels"].as_array().unwrap();
        if channels.iter().all(|c| c["channel"] != "t1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let command = json!({"action": "subscribe", "channels": ["t1"],
                         "resume": {"t1": {"epoch": before, "seq": 1}}});
    let (after, seq) = position(&subscribe(&mut ws, command).await, "t1");
    assert_ne!(after, before);
    assert_eq!(seq, 0);
    let error = next_of_type(&mut ws, "error").await;
    assert_eq!(error["code"], "RESUME_FAILED", "{error}");
}

#[tokio::test]
async fn a_resume_longer_than_the_outbox_ends_cleanly_and_continues_from_there() {
    let server = TestServer::start("[outbox]\nmax_messages = 8\n[topics]\nhistory = 64");
    let mut ws = server.telemetry("").await;
    server.publish_batch("t1", 20).await;
    let epoch = {
        let mut probe = server.telemetry("").await;
        let show = json!({"action": "subscribe", "channels": ["t1"], "positions": true});
        position(&subscribe(&mut probe, show).await, "t1").0
    };
    let mut from = 0;
    let mut seen = Vec::new();
    while seen.len() < 20 {
        assert!(from < 20, "no progress");
        let command = json!({"action": "subscribe", "channels": ["t1", "t1"],
                             "resume": {"t1": {"epoch": epoch, "seq": from}}});
        let ack = subscribe(&mut ws, command).await;
        // Named twice: subscribed (and listed) twice, resumed once.
        assert_eq!(ack["channels"], json!(["t1", "t1"]));
        while seen.len() < 20 {
            let frame = next_json(&mut ws).await;
            match frame["type"].as_str() {
                Some("event") => seen.push(frame["seq"].as_u64().unwrap()),
                Some("error") => {
                    assert_eq!(frame["code"], "RESUME_FAILED", "{frame}");
                    let message = frame["message"].as_str().unwrap();
                    let through = seen.len();
                    assert!(
                        message.contains(&format!("after seq {through}")),
                        "{message}"
                    );
                    from = through as u64;
                    break;
                }
                _ => panic!("unexpected {frame}"),
            }
        }
    }
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
    // The last resume completed: the channel is held and live.
    server.publish("t1", json!({"n": 21}), None).await;
    assert_eq!(next_of_type(&mut ws, "event").await["seq"], 21);
}
