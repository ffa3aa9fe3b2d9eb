//! A shard that falls a whole lap behind a topic's feed (its fan-out ring)
//! loses the oldest messages, never the order: its subscribers get the
//! last lap of messages in sequence, and every delivery missed is counted
//! as `shard_overflow`, so delivered + dropped = published × subscribers.
//! Driven end to end: a real engine on an ephemeral port and raw clients,
//! with the shard held busy by a session while messages are published.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    ConnCtx, Delivery, DropReason, Engine, Formats, FrameKind, Message, Replay, Session, WireFormat,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Frames a message as its sequence number.
struct Seqs;

impl WireFormat for Seqs {
    fn name(&self) -> &'static str {
        "seqs"
    }
    fn encode_event(&self, msg: &Message, _: FrameKind) -> Bytes {
        frame::encode(OpCode::Text, msg.seq.to_string().as_bytes())
    }
    fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
        None
    }
}

/// The test's hold on the shard: the session says when it is holding the
/// shard's thread, and holds it until told to let go.
#[derive(Clone)]
struct Hold {
    holding: mpsc::SyncSender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

/// Subscribes to `t` and says `ready`; any text holds the shard.
struct Subscriber(Hold);

impl Session for Subscriber {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.subscribe("t", Replay::None, None).unwrap();
        ctx.send(frame::encode(OpCode::Text, b"ready"));
    }
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {
        self.0.holding.send(()).unwrap();
        self.0.release.lock().unwrap().recv().unwrap();
    }
}

async fn read_texts(stream: &mut tokio::net::TcpStream, want: usize) -> Vec<String> {
    let mut received = Vec::new();
    let mut texts = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while texts.len() < want {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("frames in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        received.extend_from_slice(&buf[..n]);
        for (_, payload) in common::take_frames(&mut received) {
            texts.push(String::from_utf8(payload).unwrap());
        }
    }
    texts
}

#[tokio::test]
async fn a_shard_a_lap_behind_delivers_the_last_lap_in_order_and_counts_the_rest() {
    const SLOTS: u64 = 8;
    const PUBLISHED: u64 = 100;
    let (holding, held) = mpsc::sync_channel(1);
    let (release, released) = mpsc::channel();
    let hold = Hold {
        holding,
        release: Arc::new(Mutex::new(released)),
    };
    let mut formats = Formats::default();
    formats.register(Arc::new(Seqs)).unwrap();
    let (engine, addr) = common::start_with(
        formats,
        Arc::new(move |_: &str, _: &mut Delivery, _: &Engine| {
            Box::new(Subscriber(hold.clone())) as Box<dyn Session>
        }),
        |config| config.ring_slots = SLOTS as usize,
    );
    let mut one = common::upgrade(addr, "/").await;
    let mut two = common::upgrade(addr, "/").await;
    assert_eq!(read_texts(&mut one, 1).await, ["ready"]);
    assert_eq!(read_texts(&mut two, 1).await, ["ready"]);

    // Hold the shard's thread, publish twelve laps' worth, let go.
    one.write_all(&common::frame(0x1, b"hold")).await.unwrap();
    tokio::task::spawn_blocking(move || held.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the shard is held");
    let topic = engine.topic("t").unwrap();
    for _ in 0..PUBLISHED {
        engine
            .publish(&topic, None, Bytes::from_static(b"1"))
            .unwrap();
    }
    release.send(()).unwrap();

    let last_lap: Vec<String> = (PUBLISHED - SLOTS + 1..=PUBLISHED)
        .map(|seq| seq.to_string())
        .collect();
    assert_eq!(read_texts(&mut one, SLOTS as usize).await, last_lap);
    assert_eq!(read_texts(&mut two, SLOTS as usize).await, last_lap);

    let stats = engine.stats().await;
    let overflow = stats.counts.dropped(DropReason::ShardOverflow);
    assert_eq!(stats.counts.sent, 2 * SLOTS);
    assert_eq!(
        overflow,
        2 * (PUBLISHED - SLOTS),
        "one per subscriber per message missed"
    );
    assert_eq!(
        stats.counts.sent + stats.counts.dropped_total(),
        2 * PUBLISHED
    );
    let per_topic = &stats
        .topics
        .iter()
        .find(|t| &*t.topic.name == "t")
        .unwrap()
        .counts;
    assert_eq!(per_topic.dropped(DropReason::ShardOverflow), overflow);
    common::stop(engine).await;
}
