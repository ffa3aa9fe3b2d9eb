//! Several servers as one through core NATS: a publish on any node reaches
//! every node's subscribers exactly once; each node numbers what it
//! delivers, so a resume from another node's run is answered "not
//! possible", never with a silent gap; a bus that is down is a clear 503 to
//! publishers, and everything resumes when it is back.
//!
//! Each test starts its own `nats-server` on an ephemeral port (skipping,
//! loudly, where it is not installed) and in-process servers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_node_reaches_every_node_exactly_once() {
    let Some(nats) = BusProcess::nats() else {
        return;
    };
    let a = nats_node(&nats.nats_url(), "a").await;
    let b = nats_node(&nats.nats_url(), "b").await;
    let c = nats_node(&nats.nats_url(), "c").await;
    let mut on_a = a.subscriber(&["t1"]).await;
    let mut on_b = b.subscriber(&["t1"]).await;
    let mut on_c = c.subscriber(&["t1"]).await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    for ws in [&mut on_a, &mut on_b, &mut on_c] {
        let got = events(ws, 3).await;
        let data: Vec<_> = got.iter().map(|e| e["data"]["n"].clone()).collect();
        assert_eq!(data, [1, 2, 3], "{got:?}");
        // Each node numbers what it delivers, in order, with no gap.
        assert_eq!(seqs(&got), [1, 2, 3]);
    }
    // Another node's publish comes next on every node.
    b.publish("t1", json!({"n": 4}), None).await;
    for ws in [&mut on_a, &mut on_b, &mut on_c] {
        let event = next_of_type(ws, "event").await;
        assert_eq!(
            (&event["data"], event["seq"].as_u64()),
            (&json!({"n": 4}), Some(4))
        );
        assert_silent(ws, Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_another_nodes_run_is_answered_not_possible() {
    let Some(nats) = BusProcess::nats() else {
        return;
    };
    let a = nats_node(&nats.nats_url(), "a").await;
    let b = nats_node(&nats.nats_url(), "b").await;
    let mut on_b = b.subscriber(&["t1"]).await;
    let mut first = a.telemetry("").await;
    let epoch = subscribe_at(&mut first, "t1").await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut first, 3).await), [1, 2, 3]);
    assert_eq!(events(&mut on_b, 3).await.len(), 3);
    drop(first);

    let mut second = b.telemetry("").await;
    let ack = resume(&mut second, "t1", &epoch, 3).await;
    assert_ne!(ack["positions"]["t1"]["epoch"], epoch.as_str(), "{ack}");
    let error = next_of_type(&mut second, "error").await;
    assert_eq!(error["code"], "RESUME_FAILED", "{error}");
    // Live messages go on from there.
    a.publish("t1", json!({"n": 4}), None).await;
    assert_eq!(
        next_of_type(&mut second, "event").await["data"],
        json!({"n": 4})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_topics_it_serves() {
    let Some(nats) = BusProcess::nats() else {
        return;
    };
    let a = nats_node(&nats.nats_url(), "a").await;
    let b = nats_node(&nats.nats_url(), "b").await;
    let mut on_b = b.subscriber(&["t1"]).await;
    for n in 1..=20 {
        a.publish("t2", json!({"n": n}), None).await;
    }
    a.publish("t1", json!({"n": 1}), None).await;
    assert_eq!(
        next_of_type(&mut on_b, "event").await["data"],
        json!({"n": 1})
    );
    let metrics = b.metrics().await;
    let received = metric(&metrics, "shardcast_broker_received_total");
    assert_eq!(received, 1.0, "node b took t2's messages too:\n{metrics}");
    assert_eq!(
        metric(&a.metrics().await, "shardcast_broker_published_total"),
        21.0
    );
}

/// Publishes until the answer has `status`; panics after 10 s.
async fn publish_until(server: &TestServer, status: u16, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = json!({"channel": "t1", "data": {"n": n}}).to_string();
        let (got, answer) = server
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        if got == status {
            return answer;
        }
        assert!(Instant::now() < deadline, "still {got}: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_start_is_a_clear_503_and_everything_resumes_when_it_is_back() {
    let Some(mut nats) = BusProcess::nats() else {
        return;
    };
    let port = nats.port;
    nats.kill();
    let a = nats_node_starting(&format!("nats://127.0.0.1:{port}"), "a");
    a.assert_bus_down("nats").await;
    let mut subscriber = a.subscriber(&["t1"]).await;
    let answer = publish_until(&a, 503, 0).await;
    assert!(answer.to_string().contains("NATS"), "{answer}");

    let _nats = BusProcess::nats_on(port).expect("nats-server starts again");
    publish_until(&a, 200, 1).await;
    // The subscriber stayed connected and gets what is published now.
    let event = next_of_type(&mut subscriber, "event").await;
    assert_eq!(event["data"], json!({"n": 1}), "{event}");
    let (_, health) = a.http("GET", "/health", None, None).await;
    assert_eq!(health["status"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_lost_mid_stream_refuses_publishes_and_starts_a_visible_new_run() {
    let Some(mut nats) = BusProcess::nats() else {
        return;
    };
    let port = nats.port;
    let a = nats_node(&nats.nats_url(), "a").await;
    let b = nats_node(&nats.nats_url(), "b").await;
    let mut on_b = b.telemetry("").await;
    let epoch = subscribe_at(&mut on_b, "t1").await;
    for n in 1..=3 {
        a.publish("t1", json!({"n": n}), None).await;
    }
    assert_eq!(seqs(&events(&mut on_b, 3).await), [1, 2, 3]);
    // One more subscriber, joining at seq 3 of this run.
    let mut joined_at_3 = b.subscriber(&["t1"]).await;

    nats.kill();
    publish_until(&a, 503, 0).await;
    let _nats = BusProcess::nats_on(port).expect("nats-server starts again");
    // Both nodes must be back before b can receive what a publishes.
    b.bus_up().await;
    // Until b's subscription is back on the bus, a's messages may miss it.
    let mut n = 4;
    let event = loop {
        publish_until(&a, 200, n).await;
        let next = next_of_type(&mut on_b, "event");
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(500), next).await {
            break event;
        }
        n += 1;
    };
    // What the bus carried meanwhile is lost to b: its subscribers see the
    // numbering restart (a new epoch), never a silent gap.
    assert_eq!(event["seq"].as_u64(), Some(1), "{event}");
    // A subscriber that joined later in the old run gets the new run from
    // its start too: its seq 1 is not mistaken for one of the old run's.
    let same = next_of_type(&mut joined_at_3, "event").await;
    assert_eq!(
        (&same["seq"], &same["data"]),
        (&event["seq"], &event["data"])
    );
    let metrics = b.metrics().await;
    assert!(metric(&metrics, "shardcast_broker_reconnects_total") >= 1.0);
    assert!(metric(&metrics, "shardcast_broker_gaps_detected_total") >= 1.0);
    let mut late = b.telemetry("").await;
    resume(&mut late, "t1", &epoch, 3).await;
    let error = next_of_type(&mut late, "error").await;
    assert_eq!(error["code"], "RESUME_FAILED", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_nats_carries_is_refused_not_half_delivered() {
    let Some(nats) = BusProcess::nats_configured(free_port(), "max_payload: 4096") else {
        return;
    };
    let a = nats_node(&nats.nats_url(), "a").await;
    let b = nats_node(&nats.nats_url(), "b").await;
    let mut on_a = a.subscriber(&["t1"]).await;
    let mut on_b = b.subscriber(&["t1"]).await;
    let body = json!({"channel": "t1", "data": {"blob": "x".repeat(5000)}}).to_string();
    let (status, answer) = a
        .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
        .await;
    // A client error, not a retry-later: no Retry-After, not 503.
    assert_eq!(answer["error"]["code"], "TOO_LARGE", "{answer}");
    assert!((400..500).contains(&status), "{status}");
    // Delivered nowhere, here included; what fits goes on.
    a.publish("t1", json!({"n": 1}), None).await;
    for ws in [&mut on_a, &mut on_b] {
        let event = next_of_type(ws, "event").await;
        assert_eq!(event["data"], json!({"n": 1}), "{event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_bus_lost_is_noticed_by_the_next_and_shown_as_a_new_run() {
    let Some(nats) = BusProcess::nats() else {
        return;
    };
    let b = nats_node(&nats.nats_url(), "b").await;
    let mut on_b = b.subscriber(&["t1"]).await;
    // Server x numbers what it sends on t1's subject in its run 0x..0a;
    // its message 2 never reaches the bus.
    let sent =
        |seq: u64| format!("000000000000000a:{seq}:x:1700000000000000:e:1:0:{{\"n\":{seq}}}");
    nats_publish(nats.port, "shardcast.t1", &[sent(1), sent(3), sent(3)]).await;
    let first = next_of_type(&mut on_b, "event").await;
    let after = next_of_type(&mut on_b, "event").await;
    assert_eq!(
        [
            (&first["data"], &first["seq"]),
            (&after["data"], &after["seq"])
        ],
        [(&json!({"n": 1}), &json!(1)), (&json!({"n": 3}), &json!(1))],
        "message 3 comes in a new run, and only once"
    );
    assert_silent(&mut on_b, Duration::from_millis(300)).await;
    let metrics = b.metrics().await;
    assert_eq!(
        metric(&metrics, "shardcast_broker_gaps_detected_total"),
        1.0
    );
}

/// Publishes `payloads` on `subject` as a plain NATS client would, and
/// waits for the server to have them.
async fn nats_publish(port: u16, subject: &str, payloads: &[String]) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("nats reachable");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let mut out = String::from("CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
    for payload in payloads {
        out.push_str(&format!("PUB {subject} {}\r\n{payload}\r\n", payload.len()));
    }
    out.push_str("PING\r\n");
    stream.get_mut().write_all(out.as_bytes()).await.unwrap();
    loop {
        line.clear();
        tokio::time::timeout(WAIT, stream.read_line(&mut line))
            .await
            .expect("nats answers")
            .unwrap();
        if line.starts_with("PONG") {
            return;
        }
        assert!(!line.starts_with("-ERR"), "{line}");
    }
}
