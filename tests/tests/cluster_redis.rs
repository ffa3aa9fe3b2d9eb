//! Several servers as one through Redis: a publish on any node reaches
//! every node's subscribers exactly once with the same seq; a client
//! resumes on another node; a broker that is down is a clear 503 to
//! publishers, never a silent loss, and everything resumes when it is back;
//! a gap on the bus is a visible jump (telemetry) or a fresh snapshot
//! saying so (BondX); on a node that never had the topic, a subscribe in
//! any protocol waits for it to catch up from Redis.
//!
//! Each test starts its own `redis-server` on an ephemeral port (skipping,
//! loudly, where it is not installed) and real server processes' engines.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_node_reaches_every_node_once_with_the_same_seq() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", "").await;
    let b = node(&redis.url(), "b", "").await;
    let c = node(&redis.url(), "c", "").await;
    let mut on_a = a.subscriber(&["t1"]).await;
    let mut on_b = b.subscriber(&["t1"]).await;
    let mut on_c = c.subscriber(&["t1"]).await;
    let mut answered = Vec::new();
    for n in 1..=3 {
        answered.push(a.publish("t1", json!({"n": n}), None).await);
    }
    // Another node's publish continues the same sequence.
    answered.push(b.publish("t1", json!({"n": 4}), None).await);
    assert_eq!(answered, [1, 2, 3, 4]);
    for ws in [&mut on_a, &mut on_b, &mut on_c] {
        let got = events(ws, 4).await;
        assert_eq!(seqs(&got), [1, 2, 3, 4]);
        assert_eq!(got[3]["data"], json!({"n": 4}));
        assert_silent(ws, Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_nothing_missed() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", "").await;
    let b = node(&redis.url(), "b", "").await;
    let mut first = a.telemetry("").await;
    let epoch = subscribe_at(&mut first, "t1").await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut first, 3).await), [1, 2, 3]);
    drop(first); // node a's client goes, having seen seq 3
    for n in 4..=5 {
        a.publish("t1", json!({"n": n}), None).await;
    }

    // Node b has never had a subscriber for t1: it catches up from Redis
    // before answering the resume.
    let mut second = b.telemetry("").await;
    let ack = resume(&mut second, "t1", &epoch, 3).await;
    assert_eq!(ack["positions"]["t1"]["seq"], 5, "{ack}");
    b.publish("t1", json!({"n": 6}), None).await;
    let got = events(&mut second, 3).await;
    assert_eq!(seqs(&got), [4, 5, 6]);
    assert_eq!(got[0]["data"], json!({"n": 4}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", "").await;
    let b = node(&redis.url(), "b", "").await;
    let mut on_b = b.subscriber(&["t1"]).await;
    for n in 1..=20 {
        a.publish("t2", json!({"n": n}), None).await;
    }
    a.publish("t1", json!({"n": 1}), None).await;
    assert_eq!(next_of_type(&mut on_b, "event").await["seq"], 1);
    let metrics = b.metrics().await;
    let received = metric(&metrics, "shardcast_broker_received_total");
    assert_eq!(received, 1.0, "node b took t2's messages too:\n{metrics}");
    let metrics = a.metrics().await;
    assert_eq!(metric(&metrics, "shardcast_broker_published_total"), 21.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_is_a_clear_503_and_everything_resumes_when_it_is_back() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let port = redis.port;
    redis.kill();
    let a = node_starting(&format!("redis://127.0.0.1:{port}/0"), "a", "");
    a.assert_bus_down("redis").await;

    let mut subscriber = a.subscriber(&["t1"]).await;
    let body = json!({"channel": "t1", "data": {"n": 1}}).to_string();
    let (status, head, answer) = a
        .http_raw("POST", "/api/v1/publish", Some(PUB), Some(&body))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert!(
        answer.contains("UNAVAILABLE") || answer.contains("unreachable"),
        "{answer}"
    );

    let _redis = RedisProcess::start_on(port).expect("redis-server starts again");
    a.bus_up().await;
    // The subscriber stayed connected and is caught up: it gets what is
    // published now.
    assert_eq!(a.publish("t1", json!({"n": 2}), None).await, 1);
    let event = next_of_type(&mut subscriber, "event").await;
    assert_eq!(
        (event["seq"].as_u64(), &event["data"]),
        (Some(1), &json!({"n": 2}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_lost_mid_stream_refuses_publishes_and_the_gap_is_visible() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let port = redis.port;
    let a = node(&redis.url(), "a", "").await;
    let b = node(&redis.url(), "b", "").await;
    let mut on_b = b.telemetry("").await;
    let epoch = subscribe_at(&mut on_b, "t1").await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut on_b, 3).await), [1, 2, 3]);

    // Redis dies, losing everything (no persistence), and comes back.
    redis.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = json!({"channel": "t1", "data": {"n": 0}}).to_string();
        let (status, _, _) = a
            .http_raw("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "publishes still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _redis = RedisProcess::start_on(port).expect("redis-server starts again");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seq = loop {
        let body = json!({"channel": "t1", "data": {"n": 4}}).to_string();
        let (status, answer) = a
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        if status == 200 {
            break answer["seq"].as_u64().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis not back: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The sequence restarted under a new epoch; b's subscriber gets the
    // message, never a silent merge of the two runs.
    let event = next_of_type(&mut on_b, "event").await;
    assert_eq!(event["data"], json!({"n": 4}), "{event}");
    assert_eq!((seq, event["seq"].as_u64()), (1, Some(1)), "a new run");
    let metrics = b.metrics().await;
    assert!(metric(&metrics, "shardcast_broker_reconnects_total") >= 1.0);
    // A client resuming in the old run is told it cannot, on any node.
    for server in [&a, &b] {
        let mut late = server.telemetry("").await;
        let ack = resume(&mut late, "t1", &epoch, 3).await;
        assert_ne!(ack["positions"]["t1"]["epoch"], epoch.as_str(), "{ack}");
        let error = next_of_type(&mut late, "error").await;
        assert_eq!(error["code"], "RESUME_FAILED", "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_on_the_bus_is_counted_and_dropped_not_delivered() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", "").await;
    let mut on_a = a.subscriber(&["t1"]).await;
    // Something else publishes on the channel: not a message of ours.
    for garbage in ["", "nonsense", "0000000000000001:1:a:1:e:1:999:x"] {
        let published = redis_command(redis.port, &["PUBLISH", "shardcast:{t1}", garbage]).await;
        assert_eq!(published, ":1\r\n", "node a listens on the channel");
    }
    assert_eq!(a.publish("t1", json!({"n": 1}), None).await, 1);
    let event = next_of_type(&mut on_a, "event").await;
    assert_eq!(
        (event["seq"].as_u64(), &event["data"]),
        (Some(1), &json!({"n": 1}))
    );
    assert_silent(&mut on_a, Duration::from_millis(300)).await;
    let metrics = a.metrics().await;
    assert_eq!(metric(&metrics, "shardcast_broker_malformed_total"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_on_the_bus_is_a_jump_for_telemetry_and_a_fresh_snapshot_for_bondx() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", &bondx_section("")).await;
    let mut bondx = bondx_by_query(&a, "/api/v1/ws/market/GAP", &user_token("u1")).await;
    let first = next_frame(&mut bondx).await;
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("snapshot"), Some(0))
    );
    let epoch = first["meta"]["epoch"].as_str().unwrap().to_owned();
    let mut telemetry = a.subscriber(&["prices.GAP"]).await;
    for n in 1..=3 {
        a.publish("prices.GAP", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut telemetry, 3).await), [1, 2, 3]);
    for seq in 1..=3 {
        let delta = next_frame(&mut bondx).await;
        assert_eq!(
            (delta["type"].as_str(), delta["seq"].as_u64()),
            (Some("delta"), Some(seq))
        );
    }

    // Redis numbers five messages no node ever hears of (a bus that lost
    // them, and a history that does not hold them): the next is seq 9.
    let meta = "shardcast:{prices.GAP}:m";
    assert_eq!(
        redis_command(redis.port, &["HINCRBY", meta, "seq", "5"]).await,
        ":8\r\n"
    );
    assert_eq!(a.publish("prices.GAP", json!({"n": 9}), None).await, 9);
    // Telemetry sees the jump; BondX gets the state, saying why, instead
    // of a delta after a hole.
    assert_eq!(next_of_type(&mut telemetry, "event").await["seq"], 9);
    let resync = next_frame(&mut bondx).await;
    assert_eq!(
        (
            resync["type"].as_str(),
            resync["seq"].as_u64(),
            &resync["payload"]
        ),
        (Some("snapshot"), Some(9), &json!({"n": 9})),
        "{resync}"
    );
    assert_eq!(
        resync["meta"],
        json!({"epoch": epoch, "resync": "gap", "previous_seq": 3, "previous_epoch": epoch})
    );
    // Then live again, from the snapshot's seq on: nothing twice, nothing lost.
    a.publish("prices.GAP", json!({"n": 10}), None).await;
    let delta = next_frame(&mut bondx).await;
    assert_eq!(
        (
            delta["type"].as_str(),
            delta["seq"].as_u64(),
            &delta["payload"]
        ),
        (Some("delta"), Some(10), &json!({"n": 10})),
        "{delta}"
    );
    assert_eq!(next_of_type(&mut telemetry, "event").await["seq"], 10);
    assert_silent(&mut bondx, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_client_on_a_node_that_never_had_the_feed_gets_its_state_from_redis() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let long = "[simple]\nprice_update_interval_seconds = 30";
    let a = node(&redis.url(), "a", long).await;
    let b = node(&redis.url(), "b", long).await;
    let prices = [("AAPL", 150.0), ("MSFT", 380.0)];
    let batch: Vec<(&str, Value, &str)> = prices
        .iter()
        .map(|(s, p)| ("market-data", json!({"symbol": s, "price": p}), *s))
        .collect();
    publish_all(&a, &batch).await;
    let state = json!({
        "AAPL": {"symbol": "AAPL", "price": 150.0},
        "MSFT": {"symbol": "MSFT", "price": 380.0},
    });

    // Node b has never followed market-data: the automatic set at open
    // and the subscribe each wait for its catch-up from Redis.
    let mut ws = simple(&b, "").await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates"}),
    )
    .await;
    let (_, at_open) = next_type(&mut ws, "subscribed").await;
    let at_open: Vec<&Value> = at_open
        .iter()
        .filter(|f| f["type"] == "price_update")
        .collect();
    assert_eq!(at_open.len(), 1, "{at_open:?}");
    assert_eq!(at_open[0]["symbols"], state);
    let (subscribed, _) = next_type(&mut ws, "price_update").await;
    assert_eq!(subscribed["symbols"], state, "{subscribed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_feed_stays_followed_while_its_clients_watch_it() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let ticks = "[simple]\nprice_update_interval_seconds = 1";
    let a = node(&redis.url(), "a", ticks).await;
    // Node b lets go of a channel 2 s after it was last wanted; its simple
    // client holds no subscription, but looks at the feed every second.
    let b = node_lingering(&redis.url(), "b", ticks, Duration::from_secs(2)).await;
    publish_price(&a, "AAPL", 150.0).await;
    let mut ws = simple(&b, "").await;
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "price_updates"}),
    )
    .await;
    next_type(&mut ws, "subscribed").await;
    // Quiet past the linger and the next sweep of unwanted channels (every
    // 5 s): the feed must stay followed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    publish_price(&a, "AAPL", 151.0).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (update, _) = next_type(&mut ws, "price_update").await;
        if update["symbols"]["AAPL"]["price"] == 151.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node b stopped following the feed: {update}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastws_subscribe_on_a_node_that_never_had_the_topic_misses_nothing_after_it() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let a = node(&redis.url(), "a", "").await;
    let b = node(&redis.url(), "b", "").await;
    let topic = r#"orders:{"accountId":"X-1"}"#;
    let mut ws = b.fastws().await;
    send_json(
        &mut ws,
        json!({"type": "orders.subscribe", "payload": {"accountId": "X-1"}}),
    )
    .await;
    let response = next_json(&mut ws).await;
    assert_eq!(response["payload"]["status"], "ok", "{response}");
    // Answered once node b follows the topic: what is published anywhere
    // from now on reaches the client.
    a.publish(topic, json!({"id": "O-1"}), None).await;
    let update = next_json(&mut ws).await;
    assert_eq!(
        update,
        json!({"type": "orders.update", "payload": {"id": "O-1"}})
    );
}

/// Sends one command to Redis in RESP; returns the raw reply.
async fn redis_command(port: u16, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("redis reachable");
    stream.write_all(command.as_bytes()).await.unwrap();
    let mut reply = vec![0; 256];
    let n = tokio::time::timeout(WAIT, stream.read(&mut reply))
        .await
        .expect("redis answers")
        .unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}
