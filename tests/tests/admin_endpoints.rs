//! Admin endpoints, health, metrics, and their access rules.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let server = TestServer::start("");
    for path in ["/api/v1/websocket/stats", "/api/v1/websocket/clients"] {
        assert_eq!(server.http("GET", path, None, None).await.0, 401, "{path}");
        assert_eq!(
            server.http("GET", path, Some("wrong-key"), None).await.0,
            401,
            "{path}"
        );
        assert_eq!(
            server.http("GET", path, Some(SUB), None).await.0,
            403,
            "{path}"
        );
        assert_eq!(
            server.http("GET", path, Some(ADMIN), None).await.0,
            200,
            "{path}"
        );
    }
    assert_eq!(
        server
            .http("DELETE", "/api/v1/websocket/clients/x", Some(PUB), None)
            .await
            .0,
        403
    );
    // Open by default.
    assert_eq!(server.http("GET", "/health", None, None).await.0, 200);
    assert_eq!(server.http("GET", "/metrics", None, None).await.0, 200);
    assert_eq!(server.http("GET", "/nowhere", None, None).await.0, 404);
    assert_eq!(server.http("POST", "/health", None, None).await.0, 405);
}

#[tokio::test]
async fn open_paths_are_configurable() {
    let server = TestServer::start("open_paths = [\"/health\"]");
    assert_eq!(server.http("GET", "/metrics", None, None).await.0, 401);
    assert_eq!(
        server.http("GET", "/metrics", Some(ADMIN), None).await.0,
        200
    );
    assert_eq!(server.http("GET", "/health", None, None).await.0, 200);
}

#[tokio::test]
async fn clients_lists_each_connection_and_delete_closes_it_with_the_reason() {
    let server = TestServer::start("");
    let mut desk = server
        .telemetry("?clientId=desk-9&channels=t1,positions")
        .await;
    next_of_type(&mut desk, "ack").await;
    let mut other = server.subscriber(&["t1"]).await;
    server.publish("t1", json!({"v": 1}), None).await;
    next_of_type(&mut desk, "event").await;
    next_of_type(&mut other, "event").await;

    let (status, list) = server
        .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2);
    let entry = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "desk-9")
        .unwrap()
        .clone();
    assert_eq!(entry["channels"], json!(["t1", "positions"]));
    assert_eq!(entry["sent"], 1);
    assert_eq!(entry["dropped"], 0);
    assert_eq!(entry["queueDepth"], 0);
    assert!(entry["remoteAddress"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(entry["shard"].as_u64().unwrap() < 2);
    assert!(entry["lastHeartbeat"].as_str().unwrap().ends_with('Z'));

    let (status, answer) = server
        .http(
            "DELETE",
            "/api/v1/websocket/clients/desk-9?reason=maintenance%20window",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        close_code(&mut desk).await,
        (4000, "maintenance window".into())
    );
    let (status, answer) = server
        .http(
            "DELETE",
            "/api/v1/websocket/clients/desk-9",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("UNKNOWN_CLIENT"))
    );

    // The other client is untouched.
    server.publish("t1", json!({"v": 2}), None).await;
    assert_eq!(next_of_type(&mut other, "event").await["seq"], 2);
    eventually_stats(&server, |s| s["activeConnections"] == 1).await;
}

#[tokio::test]
async fn stats_and_metrics_report_traffic_under_their_documented_names() {
    let server = TestServer::start("");
    let mut a = server.subscriber(&["t1"]).await;
    let mut b = server.subscriber(&["t1", "t2"]).await;
    for _ in 0..3 {
        server.publish("t1", json!({"x": 1}), None).await;
    }
    server.publish("t2", json!({"x": 1}), Some("k")).await;
    for _ in 0..3 {
        next_of_type(&mut a, "event").await;
    }
    for _ in 0..4 {
        next_of_type(&mut b, "event").await;
    }
    let stats = eventually_stats(&server, |s| s["messagesSent"] == 7).await;
    assert_eq!(stats["activeConnections"], 2);
    assert_eq!(stats["messagesPublished"], 4);
    assert_eq!(stats["messagesDropped"], 0);
    assert_eq!(stats["snapshotCount"], 1);
    assert_eq!(channel(&stats, "t1")["sent"], 6);
    assert_eq!(channel(&stats, "t1")["subscribers"], 2);
    assert_eq!(channel(&stats, "t2")["snapshotCount"], 1);
    let shard_conns: u64 = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(shard_conns, 2);

    let metrics = server.metrics().await;
    for line in [
        "shardcast_active_connections 2\n",
        "shardcast_messages_published_total 4\n",
        "shardcast_messages_sent_total 7\n",
        "shardcast_channel_messages_sent_total{channel=\"t1\"} 6\n",
        "shardcast_messages_dropped_total 0\n",
        "shardcast_channel_messages_dropped_total{channel=\"t2\"} 0\n",
        "# TYPE shardcast_delivery_latency_seconds histogram\n",
        "shardcast_delivery_latency_seconds_bucket{le=\"+Inf\"} 7\n",
        "shardcast_delivery_latency_seconds_count 7\n",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // Buckets are cumulative and end at the count.
    let buckets: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("shardcast_delivery_latency_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(*buckets.last().unwrap(), 7);
}

#[tokio::test]
async fn upgrades_past_max_connections_get_503_with_retry_after() {
    let server = TestServer::start("max_connections = 2");
    let _a = server.telemetry("").await;
    let _b = server.telemetry("").await;
    let request = format!(
        "GET /ws/telemetry HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-API-Key: {ADMIN}\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 5"), "{head}");
    // A plain GET on a WebSocket endpoint is told to upgrade.
    assert_eq!(
        server
            .http("GET", "/ws/telemetry", Some(ADMIN), None)
            .await
            .0,
        426
    );
}
