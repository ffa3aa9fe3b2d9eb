//! A peer's end of stream is seen when it comes, even when it comes with
//! the peer's last bytes: the connection closes at once, and is not left
//! open, holding its place, until something is written to it or its
//! silence times out. Driven end to end: a real engine on an ephemeral
//! port, a session that never writes (so no write can find the end), and
//! a raw client that sends its last message and its FIN in a row.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardcast_engine::{CloseReason, ConnCtx, Delivery, Engine, Formats, Session};
use tokio::io::AsyncWriteExt;

/// What the session saw: texts, then how it closed.
#[derive(Default)]
struct Seen {
    texts: Vec<String>,
    closed: Option<CloseReason>,
}

/// Writes nothing; records what it is told.
struct Silent(Arc<Mutex<Seen>>);

impl Session for Silent {
    fn on_open(&mut self, _: &mut ConnCtx<'_>) {}
    fn on_text(&mut self, _: &mut ConnCtx<'_>, text: &mut [u8]) {
        let text = String::from_utf8_lossy(text).into_owned();
        self.0.lock().unwrap().texts.push(text);
    }
    fn on_close(&mut self, reason: &CloseReason) {
        self.0.lock().unwrap().closed = Some(reason.clone());
    }
}

#[tokio::test]
async fn a_peer_that_ends_right_after_its_last_message_is_closed_at_once() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (engine, addr) = start(&seen);
    let mut client = common::upgrade(addr, "/").await;
    // Open and read: what its socket said so far is taken.
    client
        .write_all(&common::frame(0x1, b"first"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().texts.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "first message lost");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The last message and the FIN in a row: the server's poll reports
    // them together, and nothing more will come from this socket.
    client
        .write_all(&common::frame(0x1, b"last words"))
        .await
        .unwrap();
    client.shutdown().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (texts, closed) = {
            let seen = seen.lock().unwrap();
            (seen.texts.clone(), seen.closed.clone())
        };
        if closed.is_some() {
            assert_eq!(texts, ["first", "last words"], "the messages, then the end");
            assert_eq!(closed, Some(CloseReason::ConnectionLost));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open 3 s after the peer's end (texts seen: {texts:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while engine.stats().await.connections() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "its place is kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::stop(engine).await;
}

fn start(seen: &Arc<Mutex<Seen>>) -> (Engine, std::net::SocketAddr) {
    let mut formats = Formats::default();
    formats.register(Arc::new(common::Plain)).unwrap();
    let seen = Arc::clone(seen);
    let attach = move |_: &str, delivery: &mut Delivery, _: &Engine| {
        delivery.liveness.timeout = Duration::from_secs(600);
        Box::new(Silent(Arc::clone(&seen))) as Box<dyn Session>
    };
    common::start_with(formats, Arc::new(attach), |_| {})
}
