//! A connection's liveness is its protocol's: which frames count as a sign
//! of life and how long it may be silent. Driven end to end: a real engine
//! on an ephemeral port, a handler that attaches each socket with the
//! liveness its path asks for, and a raw client that sends only pings, or
//! only messages.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardcast_engine::{
    AliveOn, Attachment, ConnCtx, ConnectionHandler, Engine, EngineConfig, Formats, InProcess,
    LocalShard, PeerPermit, Session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A session that ignores what it is sent.
struct Quiet;

impl Session for Quiet {
    fn on_open(&mut self, _: &mut ConnCtx<'_>) {}
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {}
}

/// Reads the request head, answers 101 (the raw test client checks no
/// accept key), and attaches with the liveness the path names.
struct Handler {
    engine: Engine,
}

impl ConnectionHandler for Handler {
    fn serve(
        &self,
        mut stream: TcpStream,
        _peer: SocketAddr,
        permit: PeerPermit,
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let mut delivery = self.engine.config().delivery(self.engine_format());
        Box::pin(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            delivery.liveness.timeout = Duration::from_millis(1200);
            delivery.liveness.alive_on = if head.starts_with("GET /messages ") {
                AliveOn::Messages
            } else {
                AliveOn::ControlFrames
            };
            let upgraded = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if stream.write_all(upgraded).await.is_err() {
                return;
            }
            let _ = shard.attach(Attachment {
                stream,
                read_buf: Bytes::new(),
                client_id: "c".into(),
                owner: "test".into(),
                delivery,
                session: Box::new(Quiet),
                permit,
                details: Box::default(),
            });
        })
    }
}

impl Handler {
    fn engine_format(&self) -> shardcast_engine::FormatId {
        self.engine.formats().iter().next().expect("one format").0
    }
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

fn start() -> (Engine, SocketAddr) {
    let config = EngineConfig {
        pin_threads: false,
        shards: std::num::NonZeroUsize::MIN,
        ..EngineConfig::default()
    };
    let mut formats = Formats::default();
    formats.register(Arc::new(Silent)).unwrap();
    let engine = Engine::start(config, formats, Arc::new(InProcess)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(Handler {
        engine: engine.clone(),
    });
    engine.serve(listener, handler);
    (engine, addr)
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Connects to `path`, sends `kind` frames every 200 ms for 3 s (well past
/// the 1.2 s timeout), and returns the close code the server sent, if any.
async fn keep_sending(addr: SocketAddr, path: &str, opcode: u8) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "101 expected");
        response.push(byte[0]);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut received = Vec::new();
    while Instant::now() < deadline {
        let _ = stream.write_all(&frame(opcode, b"alive")).await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        // Pongs answer pings; a close frame (0x88) ends the test.
        while received.len() >= 2 {
            let len = usize::from(received[1] & 0x7f);
            if received.len() < 2 + len {
                break;
            }
            if received[0] == 0x88 && len >= 2 {
                return Some(u16::from_be_bytes([received[2], received[3]]));
            }
            received.drain(..2 + len);
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
    engine.shutdown();
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .unwrap();
}
