//! Replies are not traffic: a client that sends many commands in one write
//! and reads normally gets every reply, never `4429 SLOW_CONSUMER` (the
//! outbox's small headroom for control frames is meant for clients that do
//! not read). How many commands a client may send is its protocol's own
//! limit, answered with an error per refused command.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The payloads of the next `want` text frames (server frames: unmasked),
/// failing on a close frame.
async fn texts(stream: &mut tokio::net::TcpStream, want: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while out.len() < want {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("replies in time")
            .unwrap();
        assert!(n > 0, "closed after {} replies", out.len());
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if buf.len() < 2 {
                break;
            }
            let (len, header) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                126 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < header + len {
                break;
            }
            let payload = &buf[header..header + len];
            match buf[0] & 0x0f {
                0x1 => out.push(String::from_utf8_lossy(payload).into_owned()),
                0x8 => panic!(
                    "closed after {} replies: {:?}",
                    out.len(),
                    String::from_utf8_lossy(payload)
                ),
                _ => {}
            }
            buf.drain(..header + len);
        }
    }
    out
}

#[tokio::test]
async fn a_burst_of_commands_in_one_write_gets_every_reply() {
    let server = TestServer::start("");
    let mut stream = raw_websocket(&server).await;
    let welcome = texts(&mut stream, 1).await;
    assert!(welcome[0].contains("welcome"), "{welcome:?}");
    let command = br#"{"action":"subscribe","channels":["t1"]}"#;
    let burst: Vec<u8> = (0..200).flat_map(|_| client_frame(0x81, command)).collect();
    stream.write_all(&burst).await.unwrap();
    let replies = texts(&mut stream, 200).await;
    let acks = replies
        .iter()
        .filter(|r| r.contains(r#""type":"ack""#))
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.contains("RATE_LIMITED"))
        .count();
    // The first second's worth of commands is acted on, the rest refused
    // by the command limit, each with an error; nothing else.
    assert_eq!(acks + refused, 200, "{replies:?}");
    assert!(acks >= 50, "{acks} acks");
}
