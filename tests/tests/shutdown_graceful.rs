//! Shutdown closes every client with 1001 after flushing what was queued.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_queued_events_then_closes_with_1001() {
    let mut server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let mut ws = server.subscriber(&["t1"]).await;
    server.publish_batch("t1", 200).await;
    tokio::task::block_in_place(|| server.shutdown());
    for seq in 1..=200u64 {
        assert_eq!(
            next_of_type(&mut ws, "event").await["seq"].as_u64(),
            Some(seq)
        );
    }
    assert_eq!(close_code(&mut ws).await, (1001, "SERVER_SHUTDOWN".into()));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

/// A publisher on one keep-alive HTTP connection, as load generators and
/// broker back-ends publish.
struct Publisher {
    stream: tokio::net::TcpStream,
}

impl Publisher {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        Self { stream }
    }

    /// `Ok(Some(seq))` when acknowledged, `Ok(None)` when refused with 503
    /// and `Retry-After: 5`, `Err(())` once the connection is gone.
    async fn publish(&mut self, n: u64) -> Result<Option<u64>, ()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = format!(r#"{{"channel":"t1","data":{{"n":{n}}}}}"#);
        let request = format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {PUB}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(|_| ())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut byte)).await;
            match read {
                Ok(Ok(1)) => head.push(byte[0]),
                _ => return Err(()),
            }
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.map_err(|_| ())?;
        match head.split(' ').nth(1) {
            Some("200") => {
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                Ok(answer["seq"].as_u64())
            }
            Some("503") => {
                assert!(head.contains("retry-after: 5"), "{head}");
                Ok(None)
            }
            other => panic!(
                "publish answered {other:?}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_stops_before_subscribers_close_and_nothing_acknowledged_is_lost() {
    let server = TestServer::start("[telemetry]\nrate_limit_per_second = 0");
    let mut ws = server.subscriber(&["t1"]).await;
    // Clients that never read nor close keep each shard in its shutdown
    // grace for a while, as real ones do.
    let mut lingering = Vec::new();
    for _ in 0..4 {
        lingering.push(
            raw_upgrade(
                &server,
                "/ws/telemetry?channels=t1",
                &format!("X-API-Key: {ADMIN}\r\n"),
            )
            .await,
        );
    }
    let reader = tokio::spawn(async move {
        let mut seqs = std::collections::BTreeSet::new();
        while let Some(frame) = next_json_or_close(&mut ws).await {
            if frame["type"] == "event" {
                seqs.insert(frame["seq"].as_u64().unwrap());
            }
        }
        seqs
    });
    let mut publisher = Publisher::connect(server.addr).await;
    let publishing = tokio::spawn(async move {
        let (mut acknowledged, mut refused) = (Vec::new(), 0);
        for n in 0..1_000_000u64 {
            match publisher.publish(n).await {
                Ok(Some(seq)) => {
                    assert_eq!(refused, 0, "seq {seq} acknowledged after a refusal");
                    acknowledged.push(seq);
                }
                Ok(None) => refused += 1,
                Err(()) => break,
            }
        }
        (acknowledged, refused)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let (acknowledged, refused) = publishing.await.unwrap();
    let received = reader.await.unwrap();
    drop(lingering);
    assert!(
        acknowledged.len() > 10,
        "the publisher ran before the shutdown"
    );
    let lost: Vec<&u64> = acknowledged
        .iter()
        .filter(|s| !received.contains(s))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged but never delivered: {:?}…",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        refused > 0,
        "publishes during the shutdown were refused with 503"
    );
}
