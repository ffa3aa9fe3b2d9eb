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
//! Reading: bytes are read into the shard's scratch buffer and frames are
//! parsed and unmasked in place; only an incomplete frame's bytes are copied
//! into the connection's own `partial` buffer, which is freed once used.
//!
//! Closing, in order:
//! 1. leave every topic, so nothing new is queued;
//! 2. unless the socket is already gone, queue a close frame behind what is
//!    still queued and flush for up to [`CLOSE_FLUSH`];
//! 3. count whatever was not written as dropped (reason `closed`);
//! 4. forget the connection (slab, client id, counts);
//! 5. half-close the socket and wait briefly for the peer's EOF, so the close
//!    frame is not destroyed by a reset.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::close::CloseReason;
use crate::engine::Engine;
use crate::format::FormatId;
use crate::frame::{self, FrameError, OpCode};
use crate::local::ShardState;
use crate::mailbox::Mailbox;
use crate::message::Message;
use crate::outbox::{Admission, EventMeta, OutboxLimits};
use crate::topic::{Topic, TopicError};
use crate::PublishError;

/// How long a closing connection may take to flush its close frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// How long to wait for the peer's EOF after our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Identifies a connection within its shard; stale keys never match a newer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// The protocol spoken on a connection: what its client's messages mean.
///
/// Called on the connection's shard thread, synchronously, once per complete
/// client message; never on the delivery path.
pub trait Session: 'static {
    /// The connection was attached; send a greeting, subscribe defaults.
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>);

    /// A complete text message (valid UTF-8), mutable so it can be parsed in place.
    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]);

    /// A complete binary message. By default the connection closes with 1003.
    fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, _data: &mut [u8]) {
        ctx.close(CloseReason::UnsupportedData);
    }

    /// The connection is closing for `reason`.
    fn on_close(&mut self, _reason: &CloseReason) {}
}

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The topic name is invalid, undeclared, or over the topic limit.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The connection holds its maximum number of subscriptions.
    #[error("subscription limit of {limit} channels per connection reached")]
    TooMany {
        /// The configured limit.
        limit: usize,
    },
}

/// A successful subscription.
#[derive(Debug)]
pub struct Subscribed {
    /// The topic.
    pub topic: Arc<Topic>,
    /// `false` when the connection was already subscribed (nothing changed).
    pub new: bool,
    /// Messages to replay, oldest first (empty unless replay was asked for).
    pub replay: Vec<Arc<Message>>,
}

/// Reassembly of a fragmented message.
struct Fragments {
    opcode: OpCode,
    data: Vec<u8>,
}

/// A connection's mutable state. Owned by its shard thread.
pub(crate) struct ConnState {
    pub(crate) mailbox: Mailbox,
    pub(crate) topics: Vec<Arc<Topic>>,
    pub(crate) last_seen: Instant,
    /// Listed in the shard's dirty list for the next flush.
    pub(crate) dirty: bool,
    /// The last write would have blocked; the task is waiting for writability.
    pub(crate) write_blocked: bool,
    /// A write failed: the socket is gone and nothing more can be sent.
    pub(crate) broken: bool,
    pub(crate) closing: Option<CloseReason>,
    partial: Vec<u8>,
    fragments: Option<Fragments>,
}

/// A WebSocket connection. Owned by one shard thread.
pub(crate) struct Conn {
    pub(crate) key: ConnKey,
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) client_id: Arc<str>,
    pub(crate) format: FormatId,
    pub(crate) connected_at: SystemTime,
    pub(crate) attention: Notify,
    pub(crate) state: RefCell<ConnState>,
}

impl Conn {
    pub(crate) fn new(
        key: ConnKey,
        stream: TcpStream,
        peer: SocketAddr,
        client_id: Arc<str>,
        format: FormatId,
        limits: OutboxLimits,
        now: Instant,
    ) -> Self {
        Self {
            key,
            stream,
            peer,
            client_id,
            format,
            connected_at: SystemTime::now(),
            attention: Notify::new(),
            state: RefCell::new(ConnState {
                mailbox: Mailbox::new(limits),
                topics: Vec::new(),
                last_seen: now,
                dirty: false,
                write_blocked: false,
                broken: false,
                closing: None,
                partial: Vec::new(),
                fragments: None,
            }),
        }
    }

    /// Asks the connection's task to close; the first reason wins.
    pub(crate) fn request_close(&self, reason: CloseReason) {
        let mut state = self.state.borrow_mut();
        if state.closing.is_none() {
            state.closing = Some(reason);
            state.mailbox.close();
            drop(state);
            self.attention.notify_one();
        }
    }

    /// Queues a control frame; a client that lets them pile up is closed.
    pub(crate) fn send_control(&self, frame: Bytes) {
        let admission = self.state.borrow_mut().mailbox.outbox.push_control(frame);
        if admission != Admission::Queued {
            self.request_close(CloseReason::SlowConsumer);
        }
    }
}

/// A session's view of its connection during a callback.
pub struct ConnCtx<'a> {
    shard: &'a Rc<ShardState>,
    conn: &'a Rc<Conn>,
}

impl std::fmt::Debug for ConnCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCtx")
            .field("client_id", &self.conn.client_id)
            .field("shard", &self.shard.index())
            .finish()
    }
}

impl ConnCtx<'_> {
    /// The client's id.
    pub fn client_id(&self) -> &Arc<str> {
        &self.conn.client_id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The shard that owns this connection.
    pub fn shard(&self) -> usize {
        self.shard.index()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.shard.engine()
    }

    /// Queues a control frame (reply, ack, error) ahead of nothing: it goes
    /// out in order with the events already queued.
    pub fn send(&mut self, frame: Bytes) {
        self.conn.send_control(frame);
    }

    /// Subscribes to `topic`. With `replay_limit`, also returns up to that many
    /// messages to replay (see [`ConnCtx::send_replay`]). Subscribing again
    /// to a topic already held changes nothing.
    pub fn subscribe(
        &mut self,
        topic: &str,
        replay_limit: Option<usize>,
    ) -> Result<Subscribed, SubscribeError> {
        let topic = self.shard.topic(topic)?;
        let held = self.conn.state.borrow().topics.len();
        if self
            .conn
            .state
            .borrow()
            .topics
            .iter()
            .any(|t| t.id() == topic.id())
        {
            return Ok(Subscribed {
                topic,
                new: false,
                replay: Vec::new(),
            });
        }
        let limit = self.shard.shared().config().max_subscriptions;
        if held >= limit {
            return Err(SubscribeError::TooMany { limit });
        }
        let start = self.shard.subscribe(self.conn, &topic, replay_limit);
        self.conn.state.borrow_mut().topics.push(Arc::clone(&topic));
        info!(client = %self.conn.client_id, topic = %topic.name(), "subscribed");
        Ok(Subscribed {
            topic,
            new: true,
            replay: start.replay,
        })
    }

    /// Queues replayed messages in this connection's format. They bypass the
    /// rate limit and are counted as replayed, not as sent.
    pub fn send_replay(&mut self, messages: &[Arc<Message>]) {
        let formats = self.shard.shared().formats();
        let mut state = self.conn.state.borrow_mut();
        for msg in messages {
            let meta = EventMeta {
                topic: msg.topic,
                accepted_at: msg.accepted_at,
                replay: true,
            };
            let frame = msg.frame(self.conn.format, formats).clone();
            if state.mailbox.outbox.push_event(frame, meta) != Admission::Queued {
                debug!(client = %self.conn.client_id, "replay cut short by a full outbox");
                break;
            }
        }
    }

    /// Leaves `topic`; `false` if the connection was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let mut state = self.conn.state.borrow_mut();
        let Some(pos) = state.topics.iter().position(|t| &**t.name() == topic) else {
            return false;
        };
        let topic = state.topics.swap_remove(pos);
        drop(state);
        self.shard.unsubscribe(self.conn, &topic);
        info!(client = %self.conn.client_id, topic = %topic.name(), "unsubscribed");
        true
    }

    /// Topics this connection is subscribed to.
    pub fn subscriptions(&self) -> Vec<Arc<str>> {
        let state = self.conn.state.borrow();
        state.topics.iter().map(|t| Arc::clone(t.name())).collect()
    }

    /// Publishes through the engine's broker.
    pub fn publish(
        &mut self,
        topic: &str,
        key: Option<Box<str>>,
        data: Bytes,
    ) -> Result<u64, PublishError> {
        self.shard.publish(topic, key, data)
    }

    /// Closes the connection for `reason` once this callback returns.
    pub fn close(&mut self, reason: CloseReason) {
        self.conn.request_close(reason);
    }
}

/// The connection's task: reads until it must close, then closes.
pub(crate) async fn run(
    shard: Rc<ShardState>,
    conn: Rc<Conn>,
    mut session: Box<dyn Session>,
    read_buf: Bytes,
) {
    session.on_open(&mut ConnCtx {
        shard: &shard,
        conn: &conn,
    });
    if !read_buf.is_empty() {
        conn.state.borrow_mut().partial.extend_from_slice(&read_buf);
        if let Err(reason) = parse_partial(&shard, &conn, &mut *session) {
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
        tokio::select! {
            biased;
            () = conn.attention.notified() => {}
            ready = conn.stream.writable(), if blocked => {
                if ready.is_err() {
                    break CloseReason::ConnectionLost;
                }
                conn.state.borrow_mut().write_blocked = false;
                shard.flush(&conn);
            }
            ready = conn.stream.readable() => {
                let result = ready.map_err(|_| CloseReason::ConnectionLost)
                    .and_then(|()| read_ready(&shard, &conn, &mut *session));
                if let Err(reason) = result {
                    conn.request_close(reason);
                }
                shard.flush(&conn);
            }
        }
    };
    session.on_close(&reason);
    close(shard, conn, reason).await;
}

/// Reads what the socket has and handles every complete frame.
fn read_ready(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
) -> Result<(), CloseReason> {
    loop {
        if conn.state.borrow().closing.is_some() {
            return Ok(());
        }
        if !conn.state.borrow().partial.is_empty() {
            // Continue an incomplete frame in the connection's own buffer.
            let read = {
                let mut state = conn.state.borrow_mut();
                let partial = &mut state.partial;
                let filled = partial.len();
                partial.resize(filled + 16 * 1024, 0);
                let read = conn.stream.try_read(&mut partial[filled..]);
                partial.truncate(filled + *read.as_ref().unwrap_or(&0));
                read
            };
            match read {
                Ok(0) => return Err(CloseReason::ConnectionLost),
                Ok(_) => {
                    touch(shard, conn);
                    parse_partial(shard, conn, session)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(CloseReason::ConnectionLost),
            }
            continue;
        }
        let scratch = shard.scratch();
        let mut scratch = scratch.borrow_mut();
        let read = conn.stream.try_read(&mut scratch[..]);
        match read {
            Ok(0) => return Err(CloseReason::ConnectionLost),
            Ok(n) => {
                touch(shard, conn);
                let used = parse_frames(shard, conn, session, &mut scratch[..n])?;
                if used < n {
                    conn.state
                        .borrow_mut()
                        .partial
                        .extend_from_slice(&scratch[used..n]);
                }
                if n < scratch.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(CloseReason::ConnectionLost),
        }
    }
}

fn touch(shard: &ShardState, conn: &Conn) {
    let now = Instant::now();
    shard.refresh_clock_to(now);
    conn.state.borrow_mut().last_seen = now;
}

/// Parses frames out of the connection's `partial` buffer.
fn parse_partial(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
) -> Result<(), CloseReason> {
    let mut buf = std::mem::take(&mut conn.state.borrow_mut().partial);
    let used = parse_frames(shard, conn, session, &mut buf)?;
    buf.drain(..used);
    let mut state = conn.state.borrow_mut();
    if buf.is_empty() {
        // Free the buffer: idle connections keep no read memory.
        state.partial = Vec::new();
    } else {
        state.partial = buf;
    }
    Ok(())
}

/// Handles every complete frame at the start of `buf`; returns the bytes used.
fn parse_frames(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    buf: &mut [u8],
) -> Result<usize, CloseReason> {
    let max = shard.shared().config().max_message_size;
    let mut used = 0;
    while used < buf.len() {
        let frame = match frame::parse_client_frame(&mut buf[used..], max) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::TooBig { .. }) => return Err(CloseReason::MessageTooBig),
            Err(FrameError::Protocol(what)) => return Err(CloseReason::ProtocolError(what)),
        };
        let start = used + frame.payload_start;
        let end = used + frame.payload_end;
        used += frame.consumed();
        handle_frame(
            shard,
            conn,
            session,
            frame.fin,
            frame.opcode,
            &mut buf[start..end],
        )?;
        if conn.state.borrow().closing.is_some() {
            break;
        }
    }
    Ok(used)
}

fn handle_frame(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    fin: bool,
    opcode: OpCode,
    payload: &mut [u8],
) -> Result<(), CloseReason> {
    match opcode {
        OpCode::Ping => {
            conn.send_control(frame::encode(OpCode::Pong, payload));
            Ok(())
        }
        OpCode::Pong => Ok(()),
        OpCode::Close => {
            // Echo the client's code (1000 when it gave none), then close.
            let code = match payload {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                _ => 1000,
            };
            conn.send_control(frame::encode_close(code, ""));
            Err(CloseReason::ClientClosed)
        }
        OpCode::Text | OpCode::Binary => {
            if conn.state.borrow().fragments.is_some() {
                return Err(CloseReason::ProtocolError(
                    "new message inside a fragmented one",
                ));
            }
            if fin {
                return deliver(shard, conn, session, opcode, payload);
            }
            conn.state.borrow_mut().fragments = Some(Fragments {
                opcode,
                data: payload.to_vec(),
            });
            Ok(())
        }
        OpCode::Continuation => {
            let max = shard.shared().config().max_message_size;
            let mut state = conn.state.borrow_mut();
            let Some(fragments) = state.fragments.as_mut() else {
                return Err(CloseReason::ProtocolError("continuation without a message"));
            };
            if fragments.data.len() + payload.len() > max {
                return Err(CloseReason::MessageTooBig);
            }
            fragments.data.extend_from_slice(payload);
            if !fin {
                return Ok(());
            }
            let Fragments { opcode, mut data } = state.fragments.take().expect("checked above");
            drop(state);
            deliver(shard, conn, session, opcode, &mut data)
        }
    }
}

fn deliver(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    opcode: OpCode,
    payload: &mut [u8],
) -> Result<(), CloseReason> {
    let mut ctx = ConnCtx { shard, conn };
    if opcode == OpCode::Text {
        if std::str::from_utf8(payload).is_err() {
            return Err(CloseReason::InvalidPayload);
        }
        session.on_text(&mut ctx, payload);
    } else {
        session.on_binary(&mut ctx, payload);
    }
    Ok(())
}

async fn close(shard: Rc<ShardState>, conn: Rc<Conn>, reason: CloseReason) {
    // 1. Leave every topic.
    let topics = std::mem::take(&mut conn.state.borrow_mut().topics);
    for topic in &topics {
        shard.unsubscribe(&conn, topic);
    }
    drop(topics);

    // 2. Close frame behind what is queued, flushed within a deadline.
    if reason.sends_close_frame() {
        {
            let mut state = conn.state.borrow_mut();
            state.fragments = None;
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
                state.mailbox.outbox.is_empty() || state.broken
            };
            if done {
                break;
            }
            tokio::select! {
                biased;
                () = &mut deadline => break,
                ready = conn.stream.writable() => if ready.is_err() { break },
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
    let mut stream = conn.stream;
    if reason.sends_close_frame() && stream.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_LINGER, drain_until_eof(&stream)).await;
    }
}

async fn drain_until_eof(stream: &TcpStream) {
    let mut sink = [0u8; 512];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
