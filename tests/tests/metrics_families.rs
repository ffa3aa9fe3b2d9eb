//! `/metrics` as an operator reads it: a valid exposition whose families
//! sum to their totals, a bounded number of channel series, and the
//! figures of connections coming, going and misbehaving.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The per-channel families and the unlabelled totals they must sum to.
const CHANNEL_FAMILIES: [(&str, &str); 4] = [
    (
        "shardcast_channel_messages_published_total",
        "shardcast_messages_published_total",
    ),
    (
        "shardcast_channel_messages_sent_total",
        "shardcast_messages_sent_total",
    ),
    (
        "shardcast_channel_messages_conflated_total",
        "shardcast_messages_conflated_total",
    ),
    (
        "shardcast_channel_messages_dropped_total",
        "shardcast_messages_dropped_total",
    ),
];

/// Asserts every per-channel family sums exactly to its total.
fn assert_channel_sums(metrics: &Exposition) {
    for (per_channel, total) in CHANNEL_FAMILIES {
        assert_eq!(
            metrics.sum(per_channel),
            metrics.get(total, &[]),
            "{per_channel} does not sum to {total}:\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn every_family_sums_to_its_total_and_counts_nothing_twice() {
    let server = TestServer::start("");
    let mut a = server.subscriber(&["t1", "t2"]).await;
    let mut b = server.subscriber(&["t1"]).await;
    for n in 0..3 {
        server.publish("t1", json!({"n": n}), None).await;
    }
    for n in 0..2 {
        server.publish("t2", json!({"n": n}), None).await;
    }
    for _ in 0..5 {
        next_of_type(&mut a, "event").await;
    }
    for _ in 0..3 {
        next_of_type(&mut b, "event").await;
    }

    // Parsing checks the format: one HELP and TYPE per family, no series
    // twice, no sample name both labelled and not.
    let metrics = eventually_metrics(&server, |m| {
        m.value("shardcast_messages_sent_total", &[]) == Some(8.0)
    })
    .await;
    assert_eq!(metrics.get("shardcast_messages_published_total", &[]), 5.0);
    assert_eq!(
        metrics.get(
            "shardcast_channel_messages_sent_total",
            &[("channel", "t1")]
        ),
        6.0
    );
    assert_eq!(
        metrics.get(
            "shardcast_channel_messages_sent_total",
            &[("channel", "t2")]
        ),
        2.0
    );
    assert_channel_sums(&metrics);
    assert_eq!(metrics.get("shardcast_active_connections", &[]), 2.0);
    assert_eq!(metrics.sum("shardcast_shard_connections"), 2.0);
    assert_eq!(metrics.series("shardcast_shard_connections").len(), 2);
    assert_eq!(metrics.sum("shardcast_protocol_connections"), 2.0);
    assert_eq!(
        metrics.get("shardcast_subscriptions", &[("protocol", "telemetry")]),
        3.0
    );
    assert_eq!(metrics.sum("shardcast_subscriptions"), 3.0);
}

#[tokio::test]
async fn channels_past_the_cap_share_one_other_series() {
    let server = TestServer::start("[metrics]\nmax_channel_labels = 2");
    // Published 4, 3, 2 and 1 times.
    server.publish_batch("prices.A", 4).await;
    server.publish_batch("prices.B", 3).await;
    server.publish_batch("prices.C", 2).await;
    server.publish_batch("prices.D", 1).await;

    let metrics = eventually_metrics(&server, |m| {
        m.value("shardcast_messages_published_total", &[]) == Some(10.0)
    })
    .await;
    let channels: Vec<String> = metrics
        .series("shardcast_channel_messages_published_total")
        .iter()
        .map(|(labels, _)| labels["channel"].clone())
        .collect();
    assert_eq!(channels, ["prices.A", "prices.B", "other"]);
    assert_eq!(
        metrics.get(
            "shardcast_channel_messages_published_total",
            &[("channel", "other")]
        ),
        3.0
    );
    // The same channels are labelled in every per-channel family.
    for (family, _) in CHANNEL_FAMILIES {
        assert_eq!(metrics.series(family).len(), 3, "{family}");
    }
    assert_channel_sums(&metrics);
}

#[tokio::test]
async fn a_channel_named_other_is_counted_in_the_other_series() {
    let server = TestServer::start_declaring(&["other"], "", "");
    server.publish_batch("other", 2).await;
    server.publish_batch("t1", 1).await;
    let metrics = eventually_metrics(&server, |m| {
        m.value("shardcast_messages_published_total", &[]) == Some(3.0)
    })
    .await;
    let series = metrics.series("shardcast_channel_messages_published_total");
    assert_eq!(series.len(), 2, "{}", metrics.text);
    assert_eq!(
        metrics.get(
            "shardcast_channel_messages_published_total",
            &[("channel", "other")]
        ),
        2.0
    );
    assert_channel_sums(&metrics);
}

#[tokio::test]
async fn a_slow_consumer_disconnect_is_counted_with_its_close_code() {
    let server = TestServer::start(
        "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n\
         [outbox]\nmax_messages = 32\nslow_consumer = \"disconnect\"\n",
    );
    let slow = server.telemetry("?channels=big").await; // never read
    let publisher = flood_big(&server).await;
    let metrics = eventually_metrics(&server, |m| {
        m.value(
            "shardcast_disconnects_total",
            &[("reason", "slow_consumer"), ("code", "4429")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(metrics.sum("shardcast_disconnects_total"), 1.0);
    assert_eq!(metrics.get("shardcast_active_connections", &[]), 1.0);
    drop(slow);
    drop(publisher);
    let metrics = eventually_metrics(&server, |m| {
        m.value(
            "shardcast_disconnects_total",
            &[("reason", "connection_lost"), ("code", "1006")],
        )
        .or(m.value(
            "shardcast_disconnects_total",
            &[("reason", "client_closed"), ("code", "1000")],
        )) == Some(1.0)
    })
    .await;
    assert_eq!(metrics.sum("shardcast_disconnects_total"), 2.0);
}

#[tokio::test]
async fn outbox_depths_show_every_connection_and_the_one_behind() {
    let server = TestServer::start(
        "max_frame_size = 131072\n[telemetry]\nrate_limit_per_second = 0\n\
         [outbox]\nmax_messages = 32\nslow_consumer = \"drop_newest\"\n",
    );
    let _slow = server.telemetry("?channels=big").await; // never read
    let _publisher = flood_big(&server).await;
    // Two connections: the publisher's outbox is empty, the reader's full.
    let metrics = eventually_metrics(&server, |m| {
        m.value("shardcast_outbox_depth_sum", &[]).unwrap_or(0.0) >= 30.0
    })
    .await;
    assert_eq!(metrics.types["shardcast_outbox_depth"], "histogram");
    assert_eq!(metrics.get("shardcast_outbox_depth_count", &[]), 2.0);
    assert_eq!(
        metrics.get("shardcast_outbox_depth_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert_eq!(
        metrics.get("shardcast_outbox_depth_bucket", &[("le", "16")]),
        1.0,
        "only the publisher is under 16 frames"
    );
    assert_eq!(
        metrics.get("shardcast_outbox_depth_bucket", &[("le", "64")]),
        2.0
    );
    let buckets: Vec<f64> = metrics
        .series("shardcast_outbox_depth_bucket")
        .iter()
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[tokio::test]
async fn upgrade_attempts_and_refusals_are_counted_by_reason() {
    let server = TestServer::start("max_connections = 1");
    let _first = server.telemetry("").await;
    let long_id = "a".repeat(200);
    assert_eq!(
        server
            .try_connect(
                &format!("/ws/telemetry?clientId={long_id}"),
                &[("X-API-Key", ADMIN)]
            )
            .await
            .err(),
        Some(400)
    );
    assert_eq!(
        server
            .try_connect("/ws/telemetry", &[("X-API-Key", ADMIN)])
            .await
            .err(),
        Some(503)
    );
    let (status, _, _) = server
        .http_raw("GET", "/ws/telemetry", Some(ADMIN), None)
        .await;
    assert_eq!(status, 426);
    let mut wrong = server
        .try_connect("/ws/telemetry", &[("X-API-Key", "not-a-key")])
        .await
        .expect("the handshake completes, then the close says why");
    assert_eq!(close_code(&mut wrong).await.0, 4401);

    let metrics = eventually_metrics(&server, |m| {
        m.value("shardcast_websocket_upgrade_requests_total", &[]) == Some(5.0)
    })
    .await;
    let refused = |reason: &str| {
        metrics.get(
            "shardcast_websocket_upgrades_refused_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refused("bad_client_id"), 1.0);
    assert_eq!(refused("full"), 1.0);
    assert_eq!(refused("upgrade_required"), 1.0);
    assert_eq!(refused("unauthorized"), 1.0);
    assert_eq!(
        metrics.sum("shardcast_websocket_upgrades_refused_total"),
        4.0
    );
    // The gate counted the same `full`; every socket was accepted first.
    assert_eq!(
        metrics.get("shardcast_connections_refused_total", &[("reason", "full")]),
        1.0
    );
    assert!(metrics.get("shardcast_tcp_accepts_total", &[]) >= 5.0);
}

#[tokio::test]
async fn client_commands_and_the_ones_answered_with_errors_are_counted() {
    let server = TestServer::start("");
    let mut ws = server.telemetry("").await;
    send_json(&mut ws, json!({"action": "subscribe", "channels": ["t1"]})).await;
    next_of_type(&mut ws, "ack").await;
    ws.send(Message::text("not json")).await.unwrap();
    next_of_type(&mut ws, "error").await;
    send_json(&mut ws, json!({"action": "nope"})).await;
    next_of_type(&mut ws, "error").await;
    // One command, an ack and an error: counted as one answered with an error.
    send_json(
        &mut ws,
        json!({"action": "subscribe", "channels": ["t2", "orders", "prices.a.b"]}),
    )
    .await;
    next_of_type(&mut ws, "ack").await;
    next_of_type(&mut ws, "error").await;

    let metrics = eventually_metrics(&server, |m| {
        m.value(
            "shardcast_client_commands_total",
            &[("protocol", "telemetry")],
        ) == Some(4.0)
    })
    .await;
    assert_eq!(
        metrics.get(
            "shardcast_client_errors_total",
            &[("protocol", "telemetry")]
        ),
        3.0
    );
    assert_eq!(metrics.sum("shardcast_client_commands_total"), 4.0);
    assert_eq!(metrics.sum("shardcast_client_errors_total"), 3.0);
    assert_eq!(
        metrics.get("shardcast_subscriptions", &[("protocol", "telemetry")]),
        2.0
    );
}

#[tokio::test]
async fn process_start_time_and_build_info_are_exported() {
    let server = TestServer::start("");
    let metrics = Exposition::parse(&server.metrics().await);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = metrics.get("process_start_time_seconds", &[]);
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
    let info = metrics.series("shardcast_build_info");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].0["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info[0].1, 1.0);
}

#[tokio::test]
async fn metrics_take_the_admin_key_as_a_bearer_token_when_not_open() {
    let server = TestServer::start("open_paths = [\"/health\"]");
    let get = |authorization: Option<&str>| {
        let mut request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            server.addr
        );
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        request
    };
    let status = |request: String| {
        let server = &server;
        async move { server.raw_request(request.as_bytes()).await.0 }
    };
    assert_eq!(status(get(None)).await, 401);
    assert_eq!(status(get(Some(&format!("Bearer {ADMIN}")))).await, 200);
    assert_eq!(status(get(Some("Bearer not-the-key"))).await, 401);
    assert_eq!(status(get(Some(&format!("Bearer {SUB}")))).await, 403);
    // Only /metrics takes a key as a bearer token; elsewhere it is a JWT.
    let clients = format!(
        "GET /api/v1/websocket/clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
    );
    assert_eq!(status(clients).await, 401);
    let (status, _, body) = server.http_raw("GET", "/metrics", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    Exposition::parse(&body);
}
