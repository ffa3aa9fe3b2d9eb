//! A command whose answer is many replies (a subscribe naming hundreds of
//! channels, each refused) reaches a client that reads in full: replies are
//! written as they pile up, so the outbox's small headroom for unread
//! control frames only ever closes a client that does not read. Driven end
//! to end: a real engine on an ephemeral port and a raw client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{ConnCtx, Delivery, Engine, Formats, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers any text with 300 replies.
struct Chatty;

impl Session for Chatty {
    fn on_open(&mut self, _: &mut ConnCtx<'_>) {}
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, _: &mut [u8]) {
        for n in 0..300 {
            ctx.send(frame::encode(OpCode::Text, format!("reply {n}").as_bytes()));
        }
    }
}

#[tokio::test]
async fn one_command_with_hundreds_of_replies_reaches_a_reading_client() {
    let mut formats = Formats::default();
    formats.register(Arc::new(common::Plain)).unwrap();
    let (engine, addr) = common::start(
        formats,
        Arc::new(|_: &str, _: &mut Delivery, _: &Engine| Box::new(Chatty) as Box<dyn Session>),
    );
    let mut stream = common::upgrade(addr, "/").await;
    stream
        .write_all(&common::frame(0x1, b"subscribe to everything"))
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut replies = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while replies.len() < 300 {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("replies in time")
            .unwrap();
        assert!(n > 0, "closed after {} replies", replies.len());
        received.extend_from_slice(&buf[..n]);
        for (first, payload) in common::take_frames(&mut received) {
            assert_eq!(first, 0x81, "a close frame after {} replies", replies.len());
            replies.push(String::from_utf8(payload).unwrap());
        }
    }
    assert_eq!(replies.last().map(String::as_str), Some("reply 299"));
    common::stop(engine).await;
}
