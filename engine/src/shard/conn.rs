//! One WebSocket connection: its state, its opening and closing, and the
//! [`Session`] that gives its messages meaning.
//!
//! Owned by one shard thread. A connection has no task of its own for its
//! life: the shard's driver (`driver.rs`) polls it when its socket becomes
//! readable, writable (only after a write would have blocked), or when it
//! needs *attention* ([`Conn::notify`]: a close was requested, a wake-up is
//! due, a held command may go on). Only its opening (the wait for its
//! topics, `on_open`, what came with the upgrade request) and its closing
//! sequence, which hold timers, run as tasks while they last. Writes of
//! published events are made by the shard's dispatch loop directly, so a
//! message reaches the socket without a task switch per connection.
//!
//! Reading (see `reader.rs`): bytes are read into the shard's scratch buffer
//! and frames are parsed and unmasked in place; only an incomplete frame's
//! bytes are copied into the connection's own buffer, freed once used.
//!
//! Closing, in order:
//! 1. leave every topic, so nothing new is queued;
//! 2. unless the socket is already gone, queue a close frame behind what is
//!    still queued and flush for up to 2 s (`CLOSE_FLUSH`, `closing.rs`);
//! 3. count whatever was not written as dropped (reason `closed`);
//! 4. forget the connection (slab, client id, counts);
//! 5. half-close the socket and wait briefly for the peer's EOF, so the close
//!    frame is not destroyed by a reset;
//! 6. drop it, and with it its [`PeerPermit`]: only now does its address and
//!    WebSocket slot count free again.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;

use super::ctx::ConnCtx;
use super::driver::ReadyList;
use super::park::{self, Parked};
use super::transport::Attached;
use super::{reader, ShardState};
use crate::gate::PeerPermit;
use crate::sansio::close::CloseReason;
use crate::sansio::decode::Decoder;
use crate::sansio::delivery::Delivery;
use crate::sansio::ids::ConnKey;
use crate::sansio::mailbox::Mailbox;
use crate::sansio::outbox::{Admission, DropReason, GapField, OutboxLimits};
use crate::topic::Topic;

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
    /// The last write would have blocked; it waits for writability.
    pub(super) write_blocked: bool,
    /// A write failed: the socket is gone and nothing more can be sent.
    pub(super) broken: bool,
    /// Why it is closing, once it is; boxed, as a connection closes once.
    pub(super) closing: Option<Box<CloseReason>>,
    /// Close for this reason at this instant (e.g. when a token expires);
    /// boxed, as few connections have one.
    pub(super) deadline: Option<Box<(Instant, CloseReason)>>,
    /// Call the session's `on_wake` at this instant.
    pub(super) wake_at: Option<Instant>,
    /// The wake-up is due: the driver's next poll calls `on_wake`.
    pub(super) woken: bool,
    /// Incomplete frames and messages, kept between reads (freed once used).
    pub(super) decoder: Decoder,
    /// A command waiting for its topics, and the frames behind it (`park.rs`).
    pub(super) parked: Option<Box<Parked>>,
}

/// A WebSocket connection. Owned by one shard thread.
pub(super) struct Conn {
    pub(super) key: ConnKey,
    pub(super) transport: Attached,
    /// The peer's port; its address is the permit's ([`Conn::peer`]).
    pub(super) peer_port: u16,
    pub(super) client_id: Arc<str>,
    /// The principal the connection authenticated as (owner of `client_id`).
    pub(super) owner: Arc<str>,
    /// Format, overflow policy and liveness, as its protocol chose them.
    pub(super) delivery: Delivery,
    /// When it connected, in milliseconds since the Unix epoch (half the
    /// room of a `SystemTime`; a client listing shows no finer).
    pub(super) connected_at_ms: u64,
    /// What its protocol recorded about it, for the client listing.
    pub(super) details: super::handle::Details,
    /// Held for the connection's life; see step 6 of closing.
    pub(super) permit: PeerPermit,
    pub(super) state: RefCell<ConnState>,
    /// Where it is in its life: who polls it, and whom [`Conn::notify`] wakes.
    pub(super) phase: Cell<Phase>,
    /// Something other than its socket needs it to look at its state.
    pub(super) attention: Cell<bool>,
    /// On the driver's ready list, and not yet taken (`driver.rs`).
    pub(super) queued: Cell<bool>,
    /// The shard's ready list, for its notices and its socket's events.
    pub(super) ready: Rc<ReadyList>,
    /// Its session, while the driver owns it (taken for each poll, and for
    /// good when it closes).
    pub(super) session: Cell<Option<Box<dyn Session>>>,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Its opening task runs (`open`).
    Opening,
    /// The shard's driver polls it (`driver.rs`).
    Driven,
    /// The driver is polling it now: a notice needs no wake-up, the poll
    /// looks at its state again before it lets go.
    Driving,
    /// Its closing task runs (`close`).
    Closing,
}

impl Conn {
    #[allow(clippy::too_many_arguments)] // One constructor, called from attach and a test.
    pub(super) fn new(
        key: ConnKey,
        transport: Attached,
        peer_port: u16,
        client_id: Arc<str>,
        owner: Arc<str>,
        delivery: Delivery,
        permit: PeerPermit,
        limits: OutboxLimits,
        gap_field: Option<GapField>,
        now: Instant,
        ready: Rc<ReadyList>,
    ) -> Self {
        Self {
            key,
            transport,
            peer_port,
            client_id,
            owner,
            delivery,
            connected_at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            details: Box::default(),
            permit,
            phase: Cell::new(Phase::Opening),
            attention: Cell::new(false),
            queued: Cell::new(false),
            ready,
            session: Cell::new(None),
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

    /// Asks the connection to close; the first reason wins.
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
            state.closing = Some(Box::new(reason));
            state.mailbox.close(lost);
            drop(state);
            self.notify();
        }
    }

    /// The peer's address.
    pub(super) fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.permit.address(), self.peer_port)
    }

    /// Asks the connection to look at its state (a close was requested, a
    /// wake-up is due, a held command may go on): puts it on the driver's
    /// list; the driver polls it, or, if it is still opening, wakes its
    /// opening task (`park::attended`). Each call is seen at least once;
    /// several may be seen as one. A connection the driver is polling, or
    /// whose closing task runs, looks at its state itself.
    pub(super) fn notify(&self) {
        self.attention.set(true);
        if matches!(self.phase.get(), Phase::Opening | Phase::Driven) {
            self.ready.push(self.key, &self.queued);
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

/// The connection's opening, a task of its own while it lasts: waits for
/// the session's topics, calls `on_open`, handles what the client sent
/// with its upgrade request, then hands the connection to the shard's
/// driver (`driver.rs`) for the rest of its life. A panic on the way (a
/// bug outside the session callbacks, which `guarded` catches one by one)
/// closes the connection with 1011.
pub(super) async fn open(
    shard: Rc<ShardState>,
    conn: Rc<Conn>,
    session: Box<dyn Session>,
    read_buf: Bytes,
) {
    let opening = AssertUnwindSafe(opening(&shard, &conn, session, read_buf));
    if let Err(panic) = opening.catch_unwind().await {
        closed_by_panic(&shard, &conn, &*panic);
    }
}

async fn opening(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    mut session: Box<dyn Session>,
    read_buf: Bytes,
) {
    park::await_open(shard, conn, &*session).await;
    // A connection replaced before it opened says nothing more.
    if conn.state.borrow().closing.is_none() {
        let mut ctx = ConnCtx { shard, conn };
        if guarded(conn, || session.on_open(&mut ctx)).is_err() {
            conn.request_close(CloseReason::InternalError);
        }
    }
    if !read_buf.is_empty() && conn.state.borrow().closing.is_none() {
        let mut early = read_buf.to_vec();
        if let Err(reason) = reader::feed(shard, conn, &mut *session, &mut early) {
            conn.request_close(reason);
        }
    }
    // Even empty, these bytes can keep the HTTP layer's whole read buffer
    // alive: let go before the connection settles in for its life.
    drop(read_buf);
    shard.flush(conn);
    conn.session.set(Some(session));
    conn.phase.set(Phase::Driven);
    // The driver looks at what its socket said while it opened.
    conn.ready.push(conn.key, &conn.queued);
}

/// After a panic outside the session callbacks (a bug) cut the handling of
/// `conn` short: what the handling of one message sets on the shard for its
/// duration is cleared, as the shard goes on serving its other
/// connections, and `conn` closes with 1011 — or for the reason it was
/// already closing for, whose close frame may be queued already.
pub(super) fn closed_by_panic(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    panic: &(dyn std::any::Any + Send),
) {
    tracing::error!(client = %conn.client_id, peer = %conn.peer(), panic = %panic_text(panic), "connection handling panicked; closing");
    shard.reset_after_panic();
    shard.waiting.borrow_mut().remove(&conn.key);
    // Closing first: the request only marks it (nothing more is queued,
    // what is left is counted), nobody is woken for it.
    conn.phase.set(Phase::Closing);
    conn.request_close(CloseReason::InternalError);
    let reason = conn
        .state
        .borrow()
        .closing
        .as_deref()
        .cloned()
        .unwrap_or(CloseReason::InternalError);
    tokio::task::spawn_local(close(Rc::clone(shard), Rc::clone(conn), reason));
}

/// What a panic said, if it said it in text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs a session callback; a panic in it is caught and logged, so that a
/// bug in one protocol's handling of one message closes that connection
/// (1011) through the normal close sequence instead of unwinding through the
/// shard's driver and leaving the connection half-registered.
pub(super) fn guarded(conn: &Conn, callback: impl FnOnce()) -> Result<(), ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).map_err(|panic| {
        let what = panic_text(&*panic);
        tracing::error!(client = %conn.client_id, peer = %conn.peer(), panic = %what, "session callback panicked; closing with 1011");
    })
}

mod closing;

pub(super) use closing::{close, until};

#[cfg(test)]
mod tests;
