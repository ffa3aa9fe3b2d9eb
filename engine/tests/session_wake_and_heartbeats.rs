//! Periodic work per connection and per protocol: a session's wake-ups
//! come when it asked for them, once each, and each wire format's heartbeat
//! goes out on its own interval, for every connection however many a
//! shard holds. Driven end to end: a real engine on an
//! ephemeral port and a raw client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    ConnCtx, Delivery, Engine, Formats, FrameKind, Message, Session, WireFormat,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A format whose heartbeat is its name, on its own interval.
struct Beating(&'static str, Duration);

impl WireFormat for Beating {
    fn name(&self) -> &'static str {
        self.0
    }
    fn encode_event(&self, _: &Message, _: FrameKind) -> Bytes {
        Bytes::new()
    }
    fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
        Some(frame::encode(OpCode::Text, self.0.as_bytes()))
    }
    fn heartbeat_interval(&self) -> Option<Duration> {
        Some(self.1)
    }
}

/// Asks to be woken every 300 ms, three times, saying `wake N` each time.
struct Waking {
    wakes: u32,
}

impl Session for Waking {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.wake_at(Some(Instant::now() + Duration::from_millis(300)));
    }
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {}
    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        self.wakes += 1;
        let said = format!("wake {}", self.wakes);
        ctx.send(frame::encode(OpCode::Text, said.as_bytes()));
        if self.wakes < 3 {
            ctx.wake_at(Some(Instant::now() + Duration::from_millis(300)));
        }
    }
}

/// `fast` beats every 500 ms, `slow` every 10 s; `/slow` connections speak
/// `slow`, the others `fast`.
fn start() -> (Engine, SocketAddr) {
    let mut formats = Formats::default();
    let fast = formats
        .register(Arc::new(Beating("fast", Duration::from_millis(500))))
        .unwrap();
    let slow = formats
        .register(Arc::new(Beating("slow", Duration::from_secs(10))))
        .unwrap();
    common::start(
        formats,
        Arc::new(move |path: &str, delivery: &mut Delivery, _: &Engine| {
            delivery.format = if path == "/slow" { slow } else { fast };
            Box::new(Waking { wakes: 0 }) as Box<dyn Session>
        }),
    )
}

/// Every text frame `path`'s connection gets in `window`.
async fn texts(addr: SocketAddr, path: &str, window: Duration) -> Vec<String> {
    listen(common::upgrade(addr, path).await, window).await
}

/// Every text frame `stream` gets in `window`.
async fn listen(mut stream: TcpStream, window: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + window;
    let mut received = Vec::new();
    let mut texts = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        for (first, payload) in common::take_frames(&mut received) {
            if first == 0x81 {
                texts.push(String::from_utf8(payload).unwrap());
            }
        }
    }
    texts
}

#[tokio::test]
async fn wake_ups_come_once_each_and_heartbeats_keep_their_formats_interval() {
    let (engine, addr) = start();
    let (fast, slow) = tokio::join!(
        texts(addr, "/fast", Duration::from_millis(2300)),
        texts(addr, "/slow", Duration::from_millis(2300)),
    );
    for got in [&fast, &slow] {
        let wakes: Vec<&String> = got.iter().filter(|t| t.starts_with("wake")).collect();
        assert_eq!(wakes, ["wake 1", "wake 2", "wake 3"], "{got:?}");
    }
    // 2.3 s of 500 ms beats (on a 250 ms tick): four, give or take one.
    let beats = fast.iter().filter(|t| *t == "fast").count();
    assert!((3..=5).contains(&beats), "{fast:?}");
    // None of another format's, and at most one of its own: its interval is
    // 10 s, and a connection's beat falls on one tick of each interval.
    assert!(!fast.iter().any(|t| t == "slow"), "{fast:?}");
    assert!(!slow.iter().any(|t| t == "fast"), "{slow:?}");
    assert!(
        slow.iter().filter(|t| *t == "slow").count() <= 1,
        "{slow:?}"
    );
    common::stop(engine).await;
}

/// A tick checks its connections a slice at a time (256 of them), letting
/// the shard deliver in between; none is skipped or checked twice.
#[tokio::test]
async fn every_connection_of_a_tick_gets_its_wake_ups_and_beats_beyond_one_slice() {
    const CONNECTIONS: usize = 300;
    let (engine, addr) = start();
    // One after another: handshakes in progress are limited per address.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let stream = common::upgrade(addr, "/fast").await;
        clients.spawn(listen(stream, Duration::from_millis(2300)));
    }
    let mut heard = 0;
    while let Some(got) = clients.join_next().await {
        let got = got.unwrap();
        let wakes: Vec<&String> = got.iter().filter(|t| t.starts_with("wake")).collect();
        assert_eq!(wakes, ["wake 1", "wake 2", "wake 3"], "{got:?}");
        let beats = got.iter().filter(|t| *t == "fast").count();
        assert!((3..=5).contains(&beats), "{got:?}");
        heard += 1;
    }
    assert_eq!(heard, CONNECTIONS);
    common::stop(engine).await;
}
