//! A topic's feed (its fan-out ring) grows while a shard lags behind it, so
//! a burst longer than the ring reaches every subscriber whole. A shard
//! that falls a whole lap behind a feed at its most slots
//! loses the oldest messages, never the order: its subscribers get the
//! last lap of messages in sequence, and every delivery missed is counted
//! as `shard_overflow`, so delivered + dropped = published × subscribers,
//! for subscribers that joined while the shard was behind too. A shard
//! with more than a turn's worth to read comes back for the rest by
//! itself. Driven end to end: a real engine on an ephemeral port and raw
//! clients, with the shard held busy by a session while messages are
//! published.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    ConnCtx, Delivery, DropReason, Engine, Formats, FrameKind, Message, RateLimit, Replay, Session,
    WireFormat,
};
use tokio::io::AsyncWriteExt;

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

/// When a connection subscribes to `t`, by its path.
#[derive(Clone, Copy, PartialEq)]
enum Joins {
    /// `/`: as it opens.
    AtOpen,
    /// `/late`: once the shard it held is let go.
    AfterHold,
    /// `/holder`: never.
    Never,
}

/// Says `ready`; subscribes to `t` as its path says; any text holds the
/// shard.
struct Subscriber {
    hold: Hold,
    joins: Joins,
}

impl Session for Subscriber {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        if self.joins == Joins::AtOpen {
            ctx.subscribe("t", Replay::None, None).unwrap();
        }
        ctx.send(frame::encode(OpCode::Text, b"ready"));
    }
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, _: &mut [u8]) {
        self.hold.holding.send(()).unwrap();
        self.hold.release.lock().unwrap().recv().unwrap();
        if self.joins == Joins::AfterHold {
            ctx.subscribe("t", Replay::None, None).unwrap();
        }
    }
}

/// The test's end of a hold: told when the shard is held; lets it go.
type HoldEnd = (mpsc::Receiver<()>, mpsc::Sender<()>);

/// An engine with feeds of `slots` slots, growing to `max_slots`, whose
/// sessions are [`Subscriber`]s, and the test's end of their hold: wait
/// for `held`, let go with `release`.
fn start(slots: usize, max_slots: usize) -> (Engine, std::net::SocketAddr, HoldEnd) {
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
        Arc::new(move |path: &str, _: &mut Delivery, _: &Engine| {
            let joins = match path {
                "/late" => Joins::AfterHold,
                "/holder" => Joins::Never,
                _ => Joins::AtOpen,
            };
            let hold = hold.clone();
            Box::new(Subscriber { hold, joins }) as Box<dyn Session>
        }),
        |config| {
            // A feed grows to at least a history's worth: keep it small.
            config.history.capacity = slots.min(8);
            config.ring_slots = slots;
            config.ring_max_slots = max_slots;
            config.rate_limit = RateLimit::per_second(0);
        },
    );
    (engine, addr, (held, release))
}

/// A client on `path`, once its session said `ready`.
async fn connect(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut conn = common::upgrade(addr, path).await;
    assert_eq!(common::read_texts(&mut conn, 1).await, ["ready"]);
    conn
}

/// Publishes `count` messages to `t` while `conn`'s session holds the
/// shard's thread, then lets go.
async fn publish_while_held(
    engine: &Engine,
    conn: &mut tokio::net::TcpStream,
    (held, release): HoldEnd,
    count: u64,
) {
    conn.write_all(&common::frame(0x1, b"hold")).await.unwrap();
    tokio::task::spawn_blocking(move || held.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the shard is held");
    let topic = engine.topic("t").unwrap();
    for _ in 0..count {
        engine
            .publish(&topic, None, Bytes::from_static(b"1"))
            .unwrap();
    }
    release.send(()).unwrap();
}

/// The frames of messages numbered `seqs`.
fn texts(seqs: std::ops::RangeInclusive<u64>) -> Vec<String> {
    seqs.map(|seq| seq.to_string()).collect()
}

#[tokio::test]
async fn a_shard_a_lap_behind_delivers_the_last_lap_in_order_and_counts_the_rest() {
    const SLOTS: u64 = 8;
    const PUBLISHED: u64 = 100;
    let (engine, addr, hold) = start(SLOTS as usize, SLOTS as usize);
    let mut one = connect(addr, "/").await;
    let mut two = connect(addr, "/").await;
    // Twelve laps' worth while the shard is held.
    publish_while_held(&engine, &mut one, hold, PUBLISHED).await;
    let last_lap = texts(PUBLISHED - SLOTS + 1..=PUBLISHED);
    assert_eq!(common::read_texts(&mut one, SLOTS as usize).await, last_lap);
    assert_eq!(common::read_texts(&mut two, SLOTS as usize).await, last_lap);

    let stats = engine.stats().await;
    let overflow = stats.counts.dropped(DropReason::ShardOverflow);
    assert_eq!(stats.counts.sent, 2 * SLOTS);
    let missed = 2 * (PUBLISHED - SLOTS);
    assert_eq!(overflow, missed, "one per subscriber per message missed");
    assert_eq!(
        stats.counts.sent + stats.counts.dropped_total(),
        2 * PUBLISHED
    );
    let topic = stats.topics.iter().find(|t| &*t.topic.name == "t").unwrap();
    assert_eq!(topic.counts.dropped(DropReason::ShardOverflow), overflow);
    common::stop(engine).await;
}

#[tokio::test]
async fn a_subscriber_that_joins_a_shard_a_lap_behind_is_charged_nothing_from_before() {
    const SLOTS: u64 = 8;
    const PUBLISHED: u64 = 100;
    let (engine, addr, hold) = start(SLOTS as usize, SLOTS as usize);
    let mut early = connect(addr, "/").await;
    let mut late = connect(addr, "/late").await;
    // The late one holds the shard while twelve laps are published, then
    // subscribes before the shard reads the feed it has fallen behind on.
    publish_while_held(&engine, &mut late, hold, PUBLISHED).await;
    let last_lap = texts(PUBLISHED - SLOTS + 1..=PUBLISHED);
    assert_eq!(
        common::read_texts(&mut early, SLOTS as usize).await,
        last_lap
    );
    // The next message reaches both; the late one got nothing before it.
    let topic = engine.topic("t").unwrap();
    engine
        .publish(&topic, None, Bytes::from_static(b"1"))
        .unwrap();
    let next = texts(PUBLISHED + 1..=PUBLISHED + 1);
    assert_eq!(common::read_texts(&mut early, 1).await, next);
    assert_eq!(common::read_texts(&mut late, 1).await, next);

    let stats = engine.stats().await;
    let overflow = stats.counts.dropped(DropReason::ShardOverflow);
    assert_eq!(overflow, PUBLISHED - SLOTS, "only the early one missed any");
    assert_eq!(stats.counts.sent, SLOTS + 2);
    // Early: all PUBLISHED + 1, sent or dropped; late: the one after it joined.
    assert_eq!(stats.counts.sent + overflow, (PUBLISHED + 1) + 1);
    common::stop(engine).await;
}

#[tokio::test]
async fn a_burst_of_many_laps_reaches_every_subscriber_whole() {
    // Twelve laps of the feed's first 8 slots while the shard is held:
    // the feed grows instead of lapping.
    const PUBLISHED: u64 = 100;
    let (engine, addr, hold) = start(8, 128);
    let mut one = connect(addr, "/").await;
    let mut two = connect(addr, "/").await;
    publish_while_held(&engine, &mut one, hold, PUBLISHED).await;
    let every = texts(1..=PUBLISHED);
    assert_eq!(
        common::read_texts(&mut one, PUBLISHED as usize).await,
        every
    );
    assert_eq!(
        common::read_texts(&mut two, PUBLISHED as usize).await,
        every
    );
    // Caught up, the feed goes on from where it was, whatever its size.
    let topic = engine.topic("t").unwrap();
    for _ in 0..20 {
        engine
            .publish(&topic, None, Bytes::from_static(b"1"))
            .unwrap();
    }
    let next = texts(PUBLISHED + 1..=PUBLISHED + 20);
    assert_eq!(common::read_texts(&mut one, 20).await, next);
    assert_eq!(common::read_texts(&mut two, 20).await, next);
    let stats = engine.stats().await;
    assert_eq!(
        (stats.counts.sent, stats.counts.dropped_total()),
        (2 * (PUBLISHED + 20), 0)
    );
    common::stop(engine).await;
}

#[tokio::test]
async fn a_shard_with_more_than_a_turn_to_read_comes_back_for_the_rest() {
    // More than one turn's 1024 messages, into a feed that grows from 8
    // slots to hold them all.
    const PUBLISHED: u64 = 3000;
    let (engine, addr, hold) = start(8, 4096);
    let mut reader = connect(addr, "/").await;
    let mut holder = connect(addr, "/holder").await;
    publish_while_held(&engine, &mut holder, hold, PUBLISHED).await;
    // No later publish wakes the shard: it must queue the feed itself.
    let every = texts(1..=PUBLISHED);
    assert_eq!(
        common::read_texts(&mut reader, PUBLISHED as usize).await,
        every
    );
    let stats = engine.stats().await;
    assert_eq!(
        (stats.counts.sent, stats.counts.dropped_total()),
        (PUBLISHED, 0)
    );
    common::stop(engine).await;
}
