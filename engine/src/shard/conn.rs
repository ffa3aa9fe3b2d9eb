//! One WebSocket connection: its state, its task, and the [`Session`] that
//! gives its messages meaning.
//!
//! Owned by one shard thread. The connection's task waits for three things:
//! the socket becoming readable (frames to parse), writable (only after a
//! write would have blocked), and `attention` (a close was requested or the
//! writer needs it). Writes of published events are made by the shard's
//! dispatch loop directly, not by this task, so a message reaches the socket
//! without a task switch per connection.
//!
//! Reading (see `reader.rs`): bytes are read into the shard's scratch buffer
//! and frames are parsed and unmasked in place; only an incomplete frame's
//! bytes are copied into the connection's own buffer, freed once used.
//!
//! Closing, in order:
//! 1. leave every topic, so nothing new is queued;
//! 2. unless the socket is already gone, queue a close frame behind what is
//!    still queued and flush for up to [`CLOSE_FLUSH`];
//! 3. count whatever was not written as dropped (reason `closed`);
//! 4. forget the connection (slab, client id, counts);
//! 5. half-close the socket and wait briefly for the peer's EOF, so the close
//!    frame is not destroyed by a reset;
//! 6. drop it, and with it its [`PeerPermit`]: only now does its address and
//!    WebSocket slot count free again.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

use super::ctx::ConnCtx;
use super::park::{self, Parked};
use super::transport::Transport;
use super::{reader, ShardState};
use crate::gate::PeerPermit;
use crate::sansio::close::CloseReason;
use crate::sansio::decode::Decoder;
use crate::sansio::delivery::Delivery;
use crate::sansio::frame;
use crate::sansio::ids::ConnKey;
use crate::sansio::mailbox::Mailbox;
use crate::sansio::outbox::{Admission, DropReason, GapField, OutboxLimits};
use crate::topic::Topic;

/// What woke a connection's task, in the order it looks.
enum Ready {
    /// `attention` was notified.
    Attention,
    /// The socket takes writes again, or failed.
    Writable(std::io::Result<()>),
    /// The socket has bytes (or an error) to read.
    Readable(std::io::Result<()>),
}

/// How long a closing connection may take to flush its close frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// How long to wait for the peer's EOF after our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The protocol spoken on a connection: what its client's messages mean.
///
/// Called on the connection's shard thread, synchronously, once per complete
/// client message; never on the delivery path.
pub trait Session: 'static {
    /// The connection was attached; send a greeting, subscribe defaults.
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>);

    /// The topics `on_open` will subscribe to (from the URL, say), and the
    /// quota a topic it creates is charged to. With an external broker the
    /// engine waits for them to catch up (a few seconds at most) before
    /// calling `on_open`, as [`ConnCtx::prepare`] makes a command wait.
    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<crate::TopicQuota>>) {
        (Vec::new(), None)
    }

    /// A complete text message (valid UTF-8), mutable so it can be parsed in place.
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]);

    /// A complete binary message. By default the connection closes with 1003.
    fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, _data: &mut [u8]) {
        ctx.close(CloseReason::UnsupportedData);
    }

    /// The instant set with [`ConnCtx::wake_at`] has come (checked every
    /// shard tick, 250 ms). Periodic work of a protocol — a conflated
    /// update every few seconds — is done here.
    fn on_wake(&mut self, _ctx: &mut ConnCtx<'_>) {}

    /// The connection is closing for `reason`.
    fn on_close(&mut self, _reason: &CloseReason) {}
}

/// A subscription as its connection holds it: the topic, and the
/// connection's position in the shard's subscriber list of that topic, kept
/// exact as the list changes so that leaving costs O(1), not a scan of every
/// subscriber of a popular topic.
pub(super) struct Held {
    pub(super) topic: Arc<Topic>,
    pub(super) slot: Cell<usize>,
}

/// A connection's mutable state. Owned by its shard thread.
pub(super) struct ConnState {
    pub(super) mailbox: Mailbox,
    pub(super) topics: Vec<Held>,
    pub(super) last_seen: Instant,
    /// Listed in the shard's dirty list for the next flush.
    pub(super) dirty: bool,
    /// The last write would have blocked; the task is waiting for writability.
    pub(super) write_blocked: bool,
    /// A write failed: the socket is gone and nothing more can be sent.
    pub(super) broken: bool,
    pub(super) closing: Option<CloseReason>,
    /// Close for this reason at this instant (e.g. when a token expires);
    /// boxed, as few connections have one.
    pub(super) deadline: Option<Box<(Instant, CloseReason)>>,
    /// Call the session's `on_wake` at this instant.
    pub(super) wake_at: Option<Instant>,
    /// The wake-up is due: the task calls `on_wake` next.
    pub(super) woken: bool,
    /// Incomplete frames and messages, kept between reads (freed once used).
    pub(super) decoder: Decoder,
    /// A command waiting for its topics, and the frames behind it (`park.rs`).
    pub(super) parked: Option<Box<Parked>>,
}

/// A WebSocket connection. Owned by one shard thread.
pub(super) struct Conn {
    pub(super) key: ConnKey,
    pub(super) transport: Transport,
    pub(super) peer: SocketAddr,
    pub(super) client_id: Arc<str>,
    /// The principal the connection authenticated as (owner of `client_id`).
    pub(super) owner: Arc<str>,
    /// Format, overflow policy and liveness, as its protocol chose them.
    pub(super) delivery: Delivery,
    pub(super) connected_at: SystemTime,
    /// What its protocol recorded about it, for the client listing.
    pub(super) details: super::handle::Details,
    /// Held for the connection's life; see step 6 of closing.
    pub(super) _permit: PeerPermit,
    pub(super) attention: Notify,
    pub(super) state: RefCell<ConnState>,
}

impl Conn {
    #[allow(clippy::too_many_arguments)] // One constructor, called from attach and a test.
    pub(super) fn new(
        key: ConnKey,
        transport: Transport,
        peer: SocketAddr,
        client_id: Arc<str>,
        owner: Arc<str>,
        delivery: Delivery,
        permit: PeerPermit,
        limits: OutboxLimits,
        gap_field: Option<GapField>,
        now: Instant,
    ) -> Self {
        Self {
            key,
            transport,
            peer,
            client_id,
            owner,
            delivery,
            connected_at: SystemTime::now(),
            details: Box::default(),
            _permit: permit,
            attention: Notify::new(),
            state: RefCell::new(ConnState {
                mailbox: Mailbox::new(OutboxLimits {
                    policy: delivery.overflow,
                    ..limits
                })
                .marking_gaps_with(gap_field),
                topics: Vec::new(),
                last_seen: now,
                dirty: false,
                write_blocked: false,
                broken: false,
                closing: None,
                deadline: None,
                wake_at: None,
                woken: false,
                decoder: Decoder::new(delivery.deflate),
                parked: None,
            }),
        }
    }

    /// Whether the connection has been asked to close.
    pub(super) fn is_closing(&self) -> bool {
        self.state.borrow().closing.is_some()
    }

    /// Asks the connection's task to close; the first reason wins.
    pub(super) fn request_close(&self, reason: CloseReason) {
        let mut state = self.state.borrow_mut();
        if state.closing.is_none() {
            // What the connection will never send was lost to the shutdown
            // when the server is stopping, to the close otherwise.
            let lost = if reason == CloseReason::ServerShutdown {
                DropReason::Shutdown
            } else {
                DropReason::Closed
            };
            state.closing = Some(reason);
            state.mailbox.close(lost);
            drop(state);
            self.attention.notify_one();
        }
    }

    /// Queues a control frame; a client that lets them pile up is closed.
    /// Once the connection is closing nothing more is queued: the close frame
    /// must be the last frame it sends.
    pub(super) fn send_control(&self, frame: Bytes) {
        let mut state = self.state.borrow_mut();
        if state.closing.is_some() {
            return;
        }
        let admission = state.mailbox.outbox.push_control(frame);
        drop(state);
        if admission != Admission::Queued {
            self.request_close(CloseReason::SlowConsumer);
        }
    }
}

/// The connection's task: reads until it must close, then closes.
pub(super) async fn run(
    shard: Rc<ShardState>,
    conn: Rc<Conn>,
    mut session: Box<dyn Session>,
    read_buf: Bytes,
) {
    // The opening wait and the closing sequence hold timers and I/O futures
    // that are needed once each; boxed, they take no room in this task,
    // which lives as long as the connection (docs/architecture.md, *Memory
    // per connection*).
    Box::pin(park::await_open(&shard, &conn, &*session)).await;
    // A connection replaced before its task started says nothing more.
    if conn.state.borrow().closing.is_none() {
        let mut ctx = ConnCtx {
            shard: &shard,
            conn: &conn,
        };
        if guarded(&conn, || session.on_open(&mut ctx)).is_err() {
            conn.request_close(CloseReason::InternalError);
        }
    }
    if !read_buf.is_empty() && conn.state.borrow().closing.is_none() {
        let mut early = read_buf.to_vec();
        if let Err(reason) = reader::feed(&shard, &conn, &mut *session, &mut early) {
            conn.request_close(reason);
        }
    }
    // Even empty, these bytes can keep the HTTP layer's whole read buffer
    // alive; this task lives as long as the connection, so let go now.
    drop(read_buf);
    shard.flush(&conn);

    let reason = loop {
        if let Some(reason) = conn.state.borrow().closing.clone() {
            break reason;
        }
        let blocked = conn.state.borrow().write_blocked;
        let parked = park::is_parked(&conn);
        // In this order: attention, the socket taking writes again, frames
        // to read. Polled by hand rather than with `select!`, whose
        // readiness futures would live in this task for the connection's
        // whole life (docs/architecture.md, *Memory per connection*).
        let ready = {
            let mut attention = pin!(conn.attention.notified());
            poll_fn(|cx| {
                if attention.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ready::Attention);
                }
                if blocked {
                    if let Poll::Ready(ready) = conn.transport.poll_writable(cx) {
                        return Poll::Ready(Ready::Writable(ready));
                    }
                }
                if !parked {
                    if let Poll::Ready(ready) = conn.transport.poll_readable(cx) {
                        return Poll::Ready(Ready::Readable(ready));
                    }
                }
                Poll::Pending
            })
            .await
        };
        match ready {
            Ready::Attention => {
                let woken = std::mem::take(&mut conn.state.borrow_mut().woken);
                if woken && conn.state.borrow().closing.is_none() {
                    let mut ctx = ConnCtx {
                        shard: &shard,
                        conn: &conn,
                    };
                    if guarded(&conn, || session.on_wake(&mut ctx)).is_err() {
                        conn.request_close(CloseReason::InternalError);
                    }
                    shard.flush(&conn);
                }
                if let Err(reason) = park::redeliver(&shard, &conn, &mut *session) {
                    conn.request_close(reason);
                }
                shard.flush(&conn);
            }
            Ready::Writable(ready) => {
                if ready.is_err() {
                    break CloseReason::ConnectionLost;
                }
                conn.state.borrow_mut().write_blocked = false;
                shard.flush(&conn);
            }
            Ready::Readable(ready) => {
                let result = ready
                    .map_err(|_| CloseReason::ConnectionLost)
                    .and_then(|()| reader::read_ready(&shard, &conn, &mut *session));
                let more = match result {
                    Ok(drained) => drained == reader::Drained::No,
                    Err(reason) => {
                        conn.request_close(reason);
                        false
                    }
                };
                shard.flush(&conn);
                if more {
                    tokio::task::yield_now().await;
                }
            }
        }
    };
    if reason != CloseReason::InternalError {
        let _ = guarded(&conn, || session.on_close(&reason));
    }
    Box::pin(close(shard, conn, reason)).await;
}

/// Runs a session callback; a panic in it is caught and logged, so that a
/// bug in one protocol's handling of one message closes that connection
/// (1011) through the normal close sequence instead of killing its task and
/// leaving it half-registered.
pub(super) fn guarded(conn: &Conn, callback: impl FnOnce()) -> Result<(), ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(client = %conn.client_id, peer = %conn.peer, panic = %what, "session callback panicked; closing with 1011");
    })
}

async fn close(shard: Rc<ShardState>, conn: Rc<Conn>, reason: CloseReason) {
    // 1. Leave every topic.
    let topics = std::mem::take(&mut conn.state.borrow_mut().topics);
    for held in &topics {
        shard.unsubscribe(&conn, held);
    }
    drop(topics);

    // 2. Close frame behind what is queued, flushed within a deadline.
    if reason.sends_close_frame() {
        {
            let mut state = conn.state.borrow_mut();
            state.decoder = Decoder::new(conn.delivery.deflate);
            // The reply to a client's close frame is already queued.
            if reason != CloseReason::ClientClosed {
                state
                    .mailbox
                    .outbox
                    .push_close(frame::encode_close(reason.code(), &reason.text()));
            }
        }
        let deadline = tokio::time::sleep(CLOSE_FLUSH);
        tokio::pin!(deadline);
        loop {
            conn.state.borrow_mut().write_blocked = false;
            shard.flush(&conn);
            let done = {
                let state = conn.state.borrow();
                (state.mailbox.outbox.is_empty() && !conn.transport.has_pending()) || state.broken
            };
            if done {
                break;
            }
            tokio::select! {
                biased;
                () = &mut deadline => break,
                ready = conn.transport.writable() => if ready.is_err() { break },
            }
        }
    }

    // 3. and 4.
    shard.count_undelivered(&conn);
    shard.detach(&conn, &reason);

    // 5. Half-close and linger for the peer's EOF.
    let Ok(conn) = Rc::try_unwrap(conn) else {
        return;
    };
    let mut transport = conn.transport;
    if reason.sends_close_frame() && transport.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_LINGER, transport.drain_until_eof()).await;
    }
}

#[cfg(test)]
mod tests;
