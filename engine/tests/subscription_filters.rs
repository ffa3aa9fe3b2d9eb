//! A subscription's filter: a subscriber receives only the messages its
//! filter admits, the others are counted as `filtered` (not as drops), and
//! each message is still encoded once per format whatever the number of
//! subscribers; a filter that asks for it has its session woken when it
//! leaves a message out. Driven end to end: a real engine on an ephemeral
//! port and a raw client.

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    ConnCtx, Delivery, Engine, Formats, FrameKind, Message, MessageFilter, Replay, Session,
    WireFormat,
};

/// Frames a message as its key.
struct Keys;

impl WireFormat for Keys {
    fn name(&self) -> &'static str {
        "keys"
    }
    fn encode_event(&self, msg: &Message, _: FrameKind) -> Bytes {
        frame::encode(OpCode::Text, msg.key.as_deref().unwrap_or("-").as_bytes())
    }
    fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
        None
    }
}

/// Admits messages of one key.
#[derive(Debug)]
struct OnlyKey(String);

impl MessageFilter for OnlyKey {
    fn admits(&self, msg: &Message) -> bool {
        msg.key.as_deref() == Some(&self.0)
    }
}

/// Subscribes to `t` on open, filtered to the key after `/only/` if any,
/// and says `ready`.
struct Subscriber(Option<String>);

impl Session for Subscriber {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.subscribe("t", Replay::None, None).unwrap();
        if let Some(key) = self.0.take() {
            assert!(ctx.filter("t", Some(Rc::new(OnlyKey(key)))));
        }
        assert!(!ctx.filter("elsewhere", None), "not subscribed there");
        ctx.send(frame::encode(OpCode::Text, b"ready"));
    }
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {}
}

/// Leaves out messages of key `W`, and asks for its session when it does.
#[derive(Debug)]
struct WakeOnW;

impl MessageFilter for WakeOnW {
    fn admits(&self, msg: &Message) -> bool {
        msg.key.as_deref() != Some("W")
    }
    fn wakes_session(&self) -> bool {
        true
    }
}

/// Subscribes to `t` through [`WakeOnW`], says `ready`, and says `woken`
/// each time its session is woken (it never asks for a wake-up itself).
struct Watcher;

impl Session for Watcher {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.subscribe("t", Replay::None, None).unwrap();
        assert!(ctx.filter("t", Some(Rc::new(WakeOnW))));
        ctx.send(frame::encode(OpCode::Text, b"ready"));
    }
    fn on_text(&mut self, _: &mut ConnCtx<'_>, _: &mut [u8]) {}
    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.send(frame::encode(OpCode::Text, b"woken"));
    }
}

#[tokio::test]
async fn a_filtered_subscriber_gets_only_what_its_filter_admits() {
    let mut formats = Formats::default();
    formats.register(Arc::new(Keys)).unwrap();
    let (engine, addr) = common::start(
        formats,
        Arc::new(|path: &str, _: &mut Delivery, _: &Engine| {
            let only = path.strip_prefix("/only/").map(str::to_owned);
            Box::new(Subscriber(only)) as Box<dyn Session>
        }),
    );
    let mut all = common::upgrade(addr, "/all").await;
    let mut only_a = common::upgrade(addr, "/only/A").await;
    assert_eq!(common::read_texts(&mut all, 1).await, ["ready"]);
    assert_eq!(common::read_texts(&mut only_a, 1).await, ["ready"]);

    let topic = engine.topic("t").unwrap();
    for key in ["A", "B", "A", "C"] {
        engine
            .publish(&topic, Some(key.into()), Bytes::from_static(b"1"))
            .unwrap();
    }
    assert_eq!(common::read_texts(&mut all, 4).await, ["A", "B", "A", "C"]);
    assert_eq!(common::read_texts(&mut only_a, 2).await, ["A", "A"]);

    let stats = engine.stats().await;
    assert_eq!(stats.counts.sent, 6);
    assert_eq!(stats.counts.filtered, 2, "B and C left out for one client");
    assert_eq!(stats.counts.dropped_total(), 0, "filtering is not dropping");
    assert_eq!(
        stats.encodings_by_format(),
        [4],
        "one encoding per message for two subscribers"
    );
    let by_format = stats.counts_by_format();
    assert_eq!((by_format[0].sent, by_format[0].filtered), (6, 2));
    common::stop(engine).await;
}

#[tokio::test]
async fn a_filter_that_asks_wakes_its_session_when_it_leaves_a_message_out() {
    let mut formats = Formats::default();
    formats.register(Arc::new(Keys)).unwrap();
    let (engine, addr) = common::start(
        formats,
        Arc::new(|_: &str, _: &mut Delivery, _: &Engine| Box::new(Watcher) as Box<dyn Session>),
    );
    let mut ws = common::upgrade(addr, "/watch").await;
    assert_eq!(common::read_texts(&mut ws, 1).await, ["ready"]);
    let topic = engine.topic("t").unwrap();
    for (key, expect) in [("A", "A"), ("W", "woken"), ("B", "B")] {
        engine
            .publish(&topic, Some(key.into()), Bytes::from_static(b"1"))
            .unwrap();
        assert_eq!(common::read_texts(&mut ws, 1).await, [expect]);
    }
    assert_eq!(engine.stats().await.counts.filtered, 1);
    common::stop(engine).await;
}
