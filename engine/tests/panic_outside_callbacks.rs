//! A bug outside the session callbacks (which are guarded one by one)
//! closes only the connection it hit, with 1011, and gives its place back:
//! the shard goes on serving its other connections. Driven end to end: a
//! real engine on an ephemeral port whose broker says it is external (so a
//! session's `topics_at_open` runs while the connection opens, outside any
//! callback's guard), and raw clients.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    Broker, ConnCtx, Delivery, Engine, Fanout, Formats, FrameKind, Message, Publication,
    PublishError, Published, Session, Topic, TopicQuota, WireFormat,
};
use tokio::io::AsyncWriteExt;

/// Delivers here, but says it numbers on a bus: connections wait for the
/// topics their session names at open.
struct External;

impl Broker for External {
    fn publish(
        &self,
        topic: &Arc<Topic>,
        publication: Publication,
        local: &Fanout<'_>,
    ) -> Result<Published, PublishError> {
        local.deliver(topic, publication).map(Published::Seq)
    }

    fn is_external(&self) -> bool {
        true
    }
}

struct Plain;

impl WireFormat for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }
    fn encode_event(&self, _: &Message, _: FrameKind) -> Bytes {
        Bytes::new()
    }
    fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
        None
    }
}

/// Echoes text; with `buggy`, panics when asked for its topics at open.
struct Echo {
    buggy: bool,
}

impl Session for Echo {
    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<TopicQuota>>) {
        assert!(!self.buggy, "a bug while the connection opens");
        (Vec::new(), None)
    }
    fn on_open(&mut self, _: &mut ConnCtx<'_>) {}
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        ctx.send(frame::encode(OpCode::Text, text));
    }
}

#[tokio::test]
async fn a_panic_while_opening_closes_that_connection_with_1011_and_frees_it() {
    let mut formats = Formats::default();
    formats.register(Arc::new(Plain)).unwrap();
    let attach = |path: &str, _: &mut Delivery, _: &Engine| {
        Box::new(Echo {
            buggy: path == "/buggy",
        }) as Box<dyn Session>
    };
    let (engine, addr) =
        common::start_with_broker(formats, Arc::new(attach), |_| {}, Arc::new(External));
    let mut good = common::upgrade(addr, "/").await;
    let mut buggy = common::upgrade(addr, "/buggy").await;

    // The buggy one is told why and closed.
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let close = loop {
        let n = tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(&mut buggy, &mut buf),
        )
        .await
        .expect("a close frame in time")
        .unwrap();
        assert!(n > 0, "the socket ended without a close frame");
        received.extend_from_slice(&buf[..n]);
        if let Some((first, payload)) = common::take_frames(&mut received).into_iter().next() {
            break (first, payload);
        }
    };
    assert_eq!(close.0, 0x88, "a close frame first");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1011);

    // Its place is given back; the other connection is served as before.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while engine.stats().await.connections() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the buggy connection still counted: {} open",
            engine.stats().await.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    good.write_all(&common::frame(0x1, b"still here"))
        .await
        .unwrap();
    assert_eq!(common::read_texts(&mut good, 1).await, vec!["still here"]);
    common::stop(engine).await;
}
