//! While a connection opens: a bug outside the session callbacks (which
//! are guarded one by one) closes only that connection, with 1011, and
//! gives its place back, the shard serving its other connections on; a
//! close requested while it waits for its topics is acted on at once.
//! Driven end to end: a real engine on an ephemeral port whose broker says
//! it is external and never catches a topic up (so a session's
//! `topics_at_open` runs while the connection opens, outside any
//! callback's guard, and a connection naming a topic waits), and raw
//! clients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{
    Broker, CloseReason, ConnCtx, Delivery, Engine, Fanout, Formats, InProcess, Publication,
    PublishError, Published, Session, Topic, TopicQuota,
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
        InProcess.publish(topic, publication, local)
    }

    fn is_external(&self) -> bool {
        true
    }
}

/// Echoes text. At open, names the topic `t` (`/wait`: it waits, up to
/// the engine's 5 s, as the broker never catches it up), or panics
/// (`/buggy`); says "opened" once open.
struct Echo {
    path: String,
}

impl Session for Echo {
    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<TopicQuota>>) {
        assert_ne!(self.path, "/buggy", "a bug while the connection opens");
        let topics = if self.path == "/wait" {
            vec!["t".to_owned()]
        } else {
            Vec::new()
        };
        (topics, None)
    }
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        ctx.send(frame::encode(OpCode::Text, b"opened"));
    }
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        ctx.send(frame::encode(OpCode::Text, text));
    }
}

#[tokio::test]
async fn a_panic_while_opening_closes_that_connection_with_1011_and_frees_it() {
    let (engine, addr) = start();
    let mut good = common::upgrade(addr, "/").await;
    assert_eq!(common::read_texts(&mut good, 1).await, vec!["opened"]);
    let mut buggy = common::upgrade(addr, "/buggy").await;

    // The buggy one is told why and closed.
    let close = common::read_frames(&mut buggy, 1, Duration::from_secs(5)).await[0].clone();
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

/// A connection waiting to open (for a topic the broker never catches up)
/// that is kicked hears so at once, not when its wait would have ended,
/// and is never opened.
#[tokio::test]
async fn a_connection_kicked_while_it_waits_to_open_is_closed_at_once() {
    let (engine, addr) = start();
    let mut waiting = common::upgrade(addr, "/wait").await;
    // Its client id is the first; the 101 goes out just before it is
    // attached, so the kick may come before there is anything to kick.
    let attached = tokio::time::Instant::now() + Duration::from_secs(2);
    while engine.disconnect("c1", None, CloseReason::Kicked("bye".into())) != 1 {
        assert!(tokio::time::Instant::now() < attached, "never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Well within the 5 s the wait would last on its own.
    let close = common::read_frames(&mut waiting, 1, Duration::from_secs(3)).await[0].clone();
    assert_eq!(close.0, 0x88, "a close frame, not \"opened\"");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 4000);
    common::stop(engine).await;
}

fn start() -> (Engine, std::net::SocketAddr) {
    let mut formats = Formats::default();
    formats.register(Arc::new(common::Plain)).unwrap();
    let attach = |path: &str, _: &mut Delivery, _: &Engine| {
        Box::new(Echo {
            path: path.to_owned(),
        }) as Box<dyn Session>
    };
    common::start_with_broker(formats, Arc::new(attach), |_| {}, Arc::new(External))
}
