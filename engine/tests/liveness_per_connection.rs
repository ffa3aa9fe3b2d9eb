//! A connection's liveness is its protocol's: which frames count as a sign
//! of life and how long it may be silent. Driven end to end: a real engine
//! on an ephemeral port, a handler that attaches each socket with the
//! liveness its path asks for, and a raw client that sends only pings, or
//! only messages.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardcast_engine::{AliveOn, ConnCtx, Delivery, Engine, Formats, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A session that ignores what it is sent.
struct Quiet;

impl Session for Quiet {
    fn on_open(&mut self, _: &mut ConnCtx<'_>) {}
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {}
}

/// A format with no events and no heartbeat: nothing but what the test sends.
struct Silent;

impl shardcast_engine::WireFormat for Silent {
    fn name(&self) -> &'static str {
        "silent"
    }
    fn encode_event(&self, _: &shardcast_engine::Message, _: shardcast_engine::FrameKind) -> Bytes {
        Bytes::new()
    }
    fn heartbeat(&self, _: std::time::SystemTime) -> Option<Bytes> {
        None
    }
}

/// Attaches with a 1.2 s timeout, counting messages on `/messages` and
/// control frames elsewhere.
fn start() -> (Engine, SocketAddr) {
    let mut formats = Formats::default();
    formats.register(Arc::new(Silent)).unwrap();
    common::start(
        formats,
        Arc::new(|path: &str, delivery: &mut Delivery, _: &Engine| {
            delivery.liveness.timeout = Duration::from_millis(1200);
            delivery.liveness.alive_on = if path == "/messages" {
                AliveOn::Messages
            } else {
                AliveOn::ControlFrames
            };
            Box::new(Quiet) as Box<dyn Session>
        }),
    )
}

/// Connects to `path`, sends `kind` frames every 200 ms for 3 s (well past
/// the 1.2 s timeout), and returns the close code the server sent, if any.
async fn keep_sending(addr: SocketAddr, path: &str, opcode: u8) -> Option<u16> {
    let mut stream = common::upgrade(addr, path).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut received = Vec::new();
    while Instant::now() < deadline {
        let _ = stream.write_all(&common::frame(opcode, b"alive")).await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        // Pongs answer pings; a close frame (0x88) ends the test.
        for (first, payload) in common::take_frames(&mut received) {
            if first == 0x88 && payload.len() >= 2 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }
    None
}

#[tokio::test]
async fn only_the_frames_a_protocol_counts_keep_a_connection_alive() {
    let (engine, addr) = start();
    // Pings do not count where only messages do: closed with 4408.
    assert_eq!(keep_sending(addr, "/messages", 0x9).await, Some(4408));
    // Messages count there: alive throughout.
    assert_eq!(keep_sending(addr, "/messages", 0x1).await, None);
    // And the other way round where only control frames count.
    assert_eq!(keep_sending(addr, "/control", 0x1).await, Some(4408));
    assert_eq!(keep_sending(addr, "/control", 0x9).await, None);
    common::stop(engine).await;
}
