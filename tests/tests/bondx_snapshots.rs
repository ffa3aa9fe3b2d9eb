//! BondX snapshots and resume: nothing missed or repeated between a
//! snapshot and the deltas after it, even while publishing goes on; a
//! resume re-sends what was missed, or says why it cannot.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn snapshot_and_deltas_miss_nothing_while_publishing_goes_on() {
    // A burst of 2000 messages in about 80 ms, while clients connect to a
    // debug build: the channel's feed grows to hold what its shards have
    // not read yet, so every subscriber sees every delta after its
    // snapshot. (With a feed of 256 slots that did not grow, this burst
    // lapped a shard: a gap, answered with a `resync` snapshot.)
    let server = bondx_server("", "");
    let publisher = {
        let url = server.ws_url("/ws/publish");
        tokio::spawn(async move {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                    .unwrap();
            request
                .headers_mut()
                .insert("X-API-Key", PUB.parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            for n in 1..=2000u64 {
                let frame = json!({"action": "publish", "channel": "prices.RUN", "data": {"n": n}});
                send_json(&mut ws, frame).await;
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            ws
        })
    };
    let token = user_token("watcher");
    let mut clients = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        clients.push(bondx_by_query(&server, "/api/v1/ws/market/RUN", &token).await);
    }
    let _publisher = publisher.await.unwrap();
    for mut ws in clients {
        let snapshot = next_frame(&mut ws).await;
        assert_eq!(snapshot["type"], "snapshot");
        let start = snapshot["seq"].as_u64().unwrap();
        // Unkeyed: the snapshot is the latest data, which here holds its seq.
        if start > 0 {
            assert_eq!(snapshot["payload"], json!({"n": start}));
        }
        for expect in start + 1..=2000 {
            let delta = next_frame(&mut ws).await;
            assert_eq!(delta["type"], "delta");
            assert_eq!(delta["seq"], expect, "no gap, no duplicate");
            assert_eq!(delta["payload"], json!({"n": expect}));
        }
    }
}

#[tokio::test]
async fn resume_resends_what_was_missed_or_says_why_not() {
    let server = bondx_server("[topics]\nhistory = 8", "");
    for n in 1..=10 {
        server.publish("prices.R1", json!({"n": n}), None).await;
    }
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/OTHER", &user_token("r")).await;
    next_frame(&mut ws).await;
    let request = json!({"type": "subscribe", "topic": "prices.R1", "resume_from_seq": 6});
    send_json(&mut ws, request).await;
    let ack = next_frame(&mut ws).await;
    assert_eq!(ack["type"], "ack");
    for seq in 7..=10 {
        let delta = next_frame(&mut ws).await;
        assert_eq!(
            (delta["type"].as_str(), delta["seq"].as_u64()),
            (Some("delta"), Some(seq))
        );
    }
    server.publish("prices.R1", json!({"n": 11}), None).await;
    assert_eq!(next_frame(&mut ws).await["seq"], 11);

    // Too old for the ring of 8: a fresh snapshot that says why.
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/OTHER", &user_token("r")).await;
    next_frame(&mut ws).await;
    let request = json!({"type": "subscribe", "topic": "prices.R1", "resume_from_seq": 1});
    send_json(&mut ws, request).await;
    assert_eq!(next_frame(&mut ws).await["type"], "ack");
    let snapshot = next_frame(&mut ws).await;
    assert_envelope(&snapshot, "snapshot");
    assert_eq!(snapshot["seq"], 11);
    assert_eq!(snapshot["payload"], json!({"n": 11}));
    let meta = &snapshot["meta"];
    assert_eq!(meta["resume"], "failed");
    assert_eq!(meta["reason"], "history_exceeded");
    assert_eq!(meta["requested_seq"], 1);
    assert_eq!(meta["oldest_seq"], 4);
    let epoch = meta["epoch"].as_str().unwrap().to_owned();

    // Another epoch (a restarted server): also a snapshot, never a gap.
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/OTHER", &user_token("r")).await;
    next_frame(&mut ws).await;
    let other = if epoch == "0000000000000001" {
        "0000000000000002"
    } else {
        "0000000000000001"
    };
    let request = json!({"type": "subscribe", "topic": "prices.R1", "resume_from_seq": 10, "resume_epoch": other});
    send_json(&mut ws, request).await;
    assert_eq!(next_frame(&mut ws).await["type"], "ack");
    let snapshot = next_frame(&mut ws).await;
    assert_eq!(snapshot["meta"]["reason"], "epoch_changed");
    // The right epoch resumes.
    let request = json!({"type": "subscribe", "topic": "prices.R1", "resume_from_seq": 10, "resume_epoch": epoch});
    let mut ws = bondx_by_query(&server, "/api/v1/ws/market/OTHER", &user_token("r")).await;
    next_frame(&mut ws).await;
    send_json(&mut ws, request).await;
    assert_eq!(next_frame(&mut ws).await["type"], "ack");
    let delta = next_frame(&mut ws).await;
    assert_eq!(
        (delta["type"].as_str(), delta["seq"].as_u64()),
        (Some("delta"), Some(11))
    );
}
