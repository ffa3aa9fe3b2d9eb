//! Below the WebSocket client: a hand-made upgrade, frames a conforming
//! client would never send, close frames read off the socket, and the
//! process's resident memory.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TestServer, ADMIN, WAIT};

/// Performs the upgrade to /ws/telemetry by hand (admin key), so a test can
/// send frames a conforming client never would.
pub async fn raw_websocket(server: &TestServer) -> TcpStream {
    raw_upgrade(server, "/ws/telemetry", &format!("X-API-Key: {ADMIN}\r\n")).await
}

/// Performs the upgrade to `path` by hand with `headers` (each ending in
/// CRLF): a client that never answers anything, pings included.
pub async fn raw_upgrade(server: &TestServer, path: &str, headers: &str) -> TcpStream {
    raw_upgrade_head(server, path, headers).await.0
}

/// [`raw_upgrade`], with the response head as text.
pub async fn raw_upgrade_head(
    server: &TestServer,
    path: &str,
    headers: &str,
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    (stream, String::from_utf8(head).unwrap())
}

/// Reads server frames until a close frame; returns its code and reason.
pub async fn raw_close(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without a close frame");
        buf.extend_from_slice(&chunk[..n]);
        // Server frames: 2-byte header (+2 for 126) and no mask.
        let mut at = 0;
        while at + 2 <= buf.len() {
            let (len, header) = match buf[at + 1] {
                126 if at + 4 <= buf.len() => {
                    (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                }
                126 => break,
                n => (n as usize, 2),
            };
            if at + header + len > buf.len() {
                break;
            }
            if buf[at] == 0x88 {
                let body = &buf[at + header..at + header + len];
                let code = u16::from_be_bytes([body[0], body[1]]);
                return (code, String::from_utf8_lossy(&body[2..]).into_owned());
            }
            at += header + len;
        }
    }
}

/// A masked client frame (mask of zeros: the payload travels as is).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// Resident set size of this process (server and test client), in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}
