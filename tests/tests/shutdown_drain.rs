//! Lame duck: a draining server says so on `/health` and `/ready`, refuses
//! new WebSocket clients, and closes the open ones with 1001 a batch at a
//! time while it goes on delivering to the rest.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// What one client saw until the server closed it.
struct Seen {
    events: Vec<u64>,
    close: Option<(u16, String)>,
}

async fn read_until_close(mut ws: Ws, closed: Arc<AtomicUsize>) -> Seen {
    let mut seen = Seen {
        events: Vec::new(),
        close: None,
    };
    while let Ok(Some(frame)) = tokio::time::timeout(WAIT * 2, ws.next()).await {
        match frame {
            Ok(Message::Text(text)) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "event" {
                    seen.events.push(value["data"]["n"].as_u64().unwrap());
                }
            }
            Ok(Message::Close(frame)) => {
                seen.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    closed.fetch_add(1, Ordering::SeqCst);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_newcomers_and_closes_clients_in_batches() {
    const CLIENTS: usize = 20;
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let (status, body) = server.http("GET", "/ready", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, body) = server.http("GET", "/health", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let closed = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let ws = server.subscriber(&["t1"]).await;
        readers.push(tokio::spawn(read_until_close(ws, Arc::clone(&closed))));
    }

    let drain = server.server().drain(Duration::from_secs(4));
    let operator = async {
        // The drain has begun once /ready says so.
        loop {
            let (status, body) = server.http("GET", "/ready", None, None).await;
            if status == 503 {
                assert_eq!(body["status"], "draining", "{body}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, body) = server.http("GET", "/health", None, None).await;
        assert_eq!((status, body["status"].as_str()), (503, Some("draining")));
        assert_eq!(
            server
                .try_connect("/ws/telemetry", &[("X-API-Key", ADMIN)])
                .await
                .err(),
            Some(503),
            "a new WebSocket client is refused while draining"
        );
        // Once the first client has been closed, the others still get data.
        while closed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let still_open = CLIENTS - closed.load(Ordering::SeqCst);
        server.publish("t1", json!({"n": 1}), Some(PUB)).await;
        still_open
    };
    let ((), still_open) = tokio::join!(drain, operator);
    // Spread over 4 s, one client of each shard's ten every 400 ms: after
    // the first goes, most are still there.
    assert!(
        still_open > CLIENTS / 2,
        "{} of {CLIENTS} clients were closed at once",
        CLIENTS - still_open
    );

    let mut got_it = 0;
    for reader in readers {
        let seen = reader.await.unwrap();
        assert_eq!(
            seen.close,
            Some((1001, "SERVER_DRAINING".to_owned())),
            "every client is told to go elsewhere"
        );
        got_it += usize::from(seen.events == [1]);
    }
    assert!(
        got_it >= 1 && got_it <= still_open,
        "{got_it} clients got the message published while {still_open} were open"
    );
    assert_eq!(server.server().engine().connections(), 0);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("shardcast_websocket_upgrades_refused_total{reason=\"draining\"} 1"),
        "the refused newcomer is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_with_no_client_ends_at_once_and_still_says_draining() {
    let server = TestServer::start("");
    // A drain of an hour: it must not wait for anything.
    tokio::time::timeout(WAIT, server.server().drain(Duration::from_secs(3600)))
        .await
        .expect("nothing to drain");
    let (status, body) = server.http("GET", "/ready", None, None).await;
    assert_eq!((status, body["status"].as_str()), (503, Some("draining")));
}
