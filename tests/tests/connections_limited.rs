//! No client can hold more of the server's connections, buffers or time
//! than the limits say, and what one client holds never stalls another.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects from `source` (any 127.0.0.0/8 address) to `server`.
async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Whether the server closes `stream` (after an optional answer) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-API-Key: {ADMIN}\r\n\r\n"
    )
}

/// The status line's code of the first response on `stream`.
async fn status_of(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read_exact(&mut byte).await.is_err() {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_request_head_past_the_limit_gets_431() {
    let server = TestServer::start("max_header_bytes = 16384");
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (status, _, _) = server.raw_request(request.as_bytes()).await;
    assert_eq!(status, 431);
    let fits = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert_eq!(server.raw_request(fits.as_bytes()).await.0, 200);
}

#[tokio::test]
async fn trickling_heads_use_up_only_the_http_slots_and_subscribers_keep_their_data() {
    let server = TestServer::start("max_http_connections = 20\nmax_http_connections_per_ip = 0");
    let mut subscriber = server.subscriber(&["t1"]).await;
    let mut tricklers = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        tricklers.push(stream);
    }
    // The first 20 are held (and would be closed at the head timeout); the
    // rest are refused at once with 503.
    let mut refused = 0;
    for stream in &mut tricklers[20..] {
        let answer = closed_within(stream, Duration::from_secs(2))
            .await
            .expect("refused promptly, not left hanging");
        assert!(
            answer.starts_with(b"HTTP/1.1 503"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        refused += 1;
    }
    assert_eq!(refused, 20);
    // Deliveries to existing connections go on (published in process: the
    // HTTP slots are all taken).
    let topic = server.server().engine().topic("t1").unwrap();
    server
        .server()
        .engine()
        .publish(&topic, None, Bytes::from_static(b"\"through\""))
        .unwrap();
    assert_eq!(
        next_of_type(&mut subscriber, "event").await["data"],
        "through"
    );
    let metrics_refused = server.server().engine().gate().stats().refused;
    assert_eq!(metrics_refused[1], 20, "{metrics_refused:?}");
    // Once the tricklers go, HTTP is served again.
    drop(tricklers);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.http("GET", "/health", None, None).await.0, 200);
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let server = TestServer::start("max_connections_per_ip = 3");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.1", server.addr).await;
        stream
            .write_all(upgrade_request("/ws/telemetry").as_bytes())
            .await
            .unwrap();
        assert_eq!(status_of(&mut stream).await, 101);
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.1", server.addr).await;
    let _ = fourth
        .write_all(upgrade_request("/ws/telemetry").as_bytes())
        .await;
    let answer = closed_within(&mut fourth, Duration::from_secs(2))
        .await
        .expect("refused");
    assert!(
        answer.starts_with(b"HTTP/1.1 503"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", server.addr).await;
    other
        .write_all(upgrade_request("/ws/telemetry").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&mut other).await, 101);
    // A closed connection gives its place back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.1", server.addr).await;
    again
        .write_all(upgrade_request("/ws/telemetry").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&mut again).await, 101);
}

#[tokio::test]
async fn a_burst_of_upgrades_never_overshoots_max_connections() {
    let server = TestServer::start("max_connections = 20\nmax_http_connections_per_ip = 0");
    let addr = server.addr;
    let attempts: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(upgrade_request("/ws/telemetry").as_bytes())
                    .await
                    .unwrap();
                let status = status_of(&mut stream).await;
                (status, stream)
            })
        })
        .collect();
    let mut upgraded = 0;
    let mut full = 0;
    let mut streams = Vec::new();
    for attempt in attempts {
        let (status, stream) = attempt.await.unwrap();
        match status {
            101 => upgraded += 1,
            503 => full += 1,
            other => panic!("unexpected status {other}"),
        }
        streams.push(stream);
    }
    assert_eq!((upgraded, full), (20, 180));
    let stats = server.stats().await;
    assert!(
        stats["activeConnections"].as_u64().unwrap() <= 20,
        "{stats}"
    );
}

#[tokio::test]
async fn a_trickled_body_times_out_with_408() {
    let server = TestServer::start("request_timeout_seconds = 1");
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-API-Key: {PUB}\r\n\r\n{{\"chan"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(WAIT, status_of(&mut stream))
        .await
        .expect("an answer, not an endless wait");
    assert_eq!(status, 408);
    // A publish that arrives in time still works.
    let seq = server.publish("t1", json!({"v": 1}), None).await;
    assert_eq!(seq, 1);
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_http_slot() {
    let server = TestServer::start(
        "max_http_connections = 4\nmax_http_connections_per_ip = 0\nrequest_timeout_seconds = 1",
    );
    // Open-path requests with sizeable answers, pipelined without end, from
    // sockets with a small receive buffer that are never read: the server's
    // writes stop, and it must not wait on them forever.
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(server.addr).await.unwrap();
        for _ in 0..50 {
            if tokio::time::timeout(Duration::from_millis(20), stream.write_all(&request))
                .await
                .is_err()
            {
                break;
            }
        }
        hogs.push(stream);
    }
    // Once all four are held, the HTTP stage is full...
    let gate = || server.server().engine().gate().stats();
    let deadline = tokio::time::Instant::now() + WAIT;
    while gate().http < 4 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", gate());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...until the hogs are cut off, their answers having waited the
    // timeout, and their places go to others.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while gate().http > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hogs still held: {:?}",
            gate()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.http("GET", "/health", None, None).await.0, 200);
    drop(hogs);
}

#[tokio::test]
async fn commands_beyond_the_rate_limit_are_refused_and_the_connection_stays() {
    let server = TestServer::start("[telemetry]\ncommands_per_second = 10");
    let mut ws = server.telemetry("").await;
    for _ in 0..30 {
        send_json(&mut ws, json!({"action": "unsubscribe", "channels": []})).await;
    }
    let (mut acks, mut limited) = (0, 0);
    while acks + limited < 30 {
        let frame = next_json(&mut ws).await;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            (Some("error"), Some("RATE_LIMITED")) => limited += 1,
            _ => panic!("unexpected {frame}"),
        }
    }
    // A one-second burst of 10 passes (a few more may refill meanwhile).
    assert!((10..20).contains(&acks), "{acks} acks");
    assert!(limited > 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_json(&mut ws, json!({"action": "subscribe", "channels": ["t1"]})).await;
    assert_eq!(
        next_of_type(&mut ws, "ack").await["channels"],
        json!(["t1"])
    );
}
