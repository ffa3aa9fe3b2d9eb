//! A real engine on an ephemeral port behind a minimal handler, and a raw
//! client: for tests of what the engine does with one connection, below
//! any protocol.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use shardcast_engine::{
    Attachment, Broker, ConnectionHandler, Delivery, Engine, EngineConfig, Formats, FrameKind,
    InProcess, LocalShard, Message, PeerPermit, Session, WireFormat,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Makes a connection's session from its request path, adjusting its
/// delivery (which starts as the engine's default in the first format).
pub type Attach = Arc<dyn Fn(&str, &mut Delivery, &Engine) -> Box<dyn Session> + Send + Sync>;

/// Reads the request head, answers 101 (the raw client checks no accept
/// key), and attaches the socket with what `attach` makes of its path.
struct Handler {
    engine: Engine,
    attach: Attach,
    /// Each connection gets its own client id (`c1`, `c2`…): one id twice
    /// would replace the first connection.
    next_id: AtomicU64,
}

impl ConnectionHandler for Handler {
    fn serve(
        &self,
        mut stream: TcpStream,
        _peer: SocketAddr,
        permit: PeerPermit,
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let engine = self.engine.clone();
        let attach = Arc::clone(&self.attach);
        let client_id = format!("c{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
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
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let format = engine.formats().iter().next().expect("a format").0;
            let mut delivery = engine.config().delivery(format);
            let session = attach(&path, &mut delivery, &engine);
            let upgraded = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if stream.write_all(upgraded).await.is_err() {
                return;
            }
            let _ = shard.attach(Attachment {
                transport: shardcast_engine::Transport::plain(stream),
                read_buf: Bytes::new(),
                client_id: client_id.into(),
                owner: "test".into(),
                delivery,
                session,
                permit,
                details: Box::default(),
            });
        })
    }
}

/// One unpinned shard with `formats`, serving on an ephemeral port; the
/// topic `t` is declared.
pub fn start(formats: Formats, attach: Attach) -> (Engine, SocketAddr) {
    start_with(formats, attach, |_| {})
}

/// As [`start`], with the config changed by `configure` first.
pub fn start_with(
    formats: Formats,
    attach: Attach,
    configure: impl FnOnce(&mut EngineConfig),
) -> (Engine, SocketAddr) {
    start_with_broker(formats, attach, configure, Arc::new(InProcess))
}

/// As [`start_with`], publishing through `broker`.
pub fn start_with_broker(
    formats: Formats,
    attach: Attach,
    configure: impl FnOnce(&mut EngineConfig),
    broker: Arc<dyn Broker>,
) -> (Engine, SocketAddr) {
    let mut config = EngineConfig {
        pin_threads: false,
        shards: std::num::NonZeroUsize::MIN,
        ..EngineConfig::default()
    };
    config.channels.declare("t").unwrap();
    configure(&mut config);
    let engine = Engine::start(config, formats, broker).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(Handler {
        engine: engine.clone(),
        attach,
        next_id: AtomicU64::new(0),
    });
    engine.serve(listener, handler);
    (engine, addr)
}

/// Shuts `engine` down and waits for its shards.
pub async fn stop(engine: Engine) {
    engine.shutdown();
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .unwrap();
}

/// Connects to `path` and reads the 101.
pub async fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "101 expected");
        response.push(byte[0]);
    }
    stream
}

/// A masked client frame (payloads under 126 bytes).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Takes the complete server frames (unmasked, payloads under 126 bytes)
/// off the front of `received`: (first byte, payload) each.
pub fn take_frames(received: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while received.len() >= 2 {
        let len = usize::from(received[1] & 0x7f);
        if received.len() < 2 + len {
            break;
        }
        frames.push((received[0], received[2..2 + len].to_vec()));
        received.drain(..2 + len);
    }
    frames
}

/// The texts of the next `want` frames `stream` receives, within 5 s.
pub async fn read_texts(stream: &mut TcpStream, want: usize) -> Vec<String> {
    read_frames(stream, want, std::time::Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, payload)| String::from_utf8(payload).unwrap())
        .collect()
}

/// At least the next `want` frames `stream` receives, within `wait`:
/// (first byte, payload) each.
pub async fn read_frames(
    stream: &mut TcpStream,
    want: usize,
    wait: std::time::Duration,
) -> Vec<(u8, Vec<u8>)> {
    let mut received = Vec::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while frames.len() < want {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("frames in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        received.extend_from_slice(&buf[..n]);
        frames.extend(take_frames(&mut received));
    }
    frames
}

/// A format with no events and no heartbeat: nothing but what the test's
/// session sends.
pub struct Plain;

impl WireFormat for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }
    fn encode_event(&self, _: &Message, _: FrameKind) -> Bytes {
        Bytes::new()
    }
    fn heartbeat(&self, _: std::time::SystemTime) -> Option<Bytes> {
        None
    }
}
