//! Unauthenticated sockets trickling huge request heads cost at most
//! `max_header_bytes` each: 3000 such sockets once grew the server from
//! 115 MB to 1.2 GB.
//!
//! One test in this binary, so that the resident set it measures is this
//! server's alone (the server runs in the test process).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn sockets_sending_endless_heads_are_cut_off_at_the_header_limit() {
    let server = TestServer::start(
        "max_http_connections = 1024\nmax_http_connections_per_ip = 0\nrequest_timeout_seconds = 60",
    );
    let _ = server.http("GET", "/health", None, None).await;
    let before = rss();

    // 300 sockets, each sending 96 KiB of one header that never ends.
    let chunk = vec![b'a'; 8 * 1024];
    let mut sockets = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            .await
            .unwrap();
        sockets.push(stream);
    }
    for _ in 0..12 {
        for stream in &mut sockets {
            // The server stops reading (and answers 431) past the limit.
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.write_all(&chunk)).await;
        }
    }
    // What the server holds while the heads are (or would be) buffered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss().saturating_sub(before);
    // Every one of them was cut off (answered 431 and closed) at once, not
    // at the head timeout.
    let mut refused = 0;
    for stream in &mut sockets {
        let mut sink = Vec::new();
        let cut = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut sink));
        if cut.await.is_ok() {
            refused += 1;
        }
    }
    eprintln!(
        "resident set grew by {:.1} MiB for 300 endless heads",
        grown as f64 / MIB as f64
    );
    assert_eq!(refused, 300);
    // 300 x 16 KiB is under 5 MiB; 28 MiB went through.
    assert!(
        grown < 12 * MIB,
        "resident set grew by {} MiB for 300 sockets",
        grown / MIB
    );
}
