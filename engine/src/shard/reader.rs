//! The read side of a connection: socket bytes to session calls.
//!
//! Owned by one shard thread. Bytes are read into the shard's scratch buffer
//! (shared by all its connections) and handed to the connection's
//! [`Decoder`], which unmasks complete frames in place and keeps only what an
//! incomplete frame or message needs between reads; see `decode.rs`.
//!
//! The decoder is taken out of the connection's state while it runs, so the
//! session callbacks it drives may borrow that state freely.
//!
//! Liveness follows the connection's [`Liveness`](crate::Liveness): with
//! `AliveOn::Anything` every read resets its silence; otherwise only the
//! complete inbound frames of the kinds it names.
//!
//! Replies are not traffic: a read that carries many commands (65
//! subscribes in one write) makes as many replies, and the outbox admits
//! only 64 unwritten control frames (1 MiB) before it calls the client a
//! slow consumer. So once half of either is queued the replies are written
//! at once, mid-read: a client that reads gets them all, one
//! that does not fills its socket and is closed as it should be. How many
//! commands a client may send is each protocol's own limit.

use std::io;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Instant;

use super::conn::{guarded, Conn, Session};
use super::ctx::ConnCtx;
use super::park::{self, FrameType};
use super::ShardState;
use crate::sansio::close::CloseReason;
use crate::sansio::decode::{Decoder, Inbound};
use crate::sansio::delivery::InboundKind;
use crate::sansio::frame::{self, FrameError, OpCode};

/// Full reads taken from one connection before it goes to the back of its
/// shard's ready list (`driver.rs`): 1 MiB, so
/// a client that sends without pause cannot keep the shard from its other
/// connections and its deliveries.
const READS_PER_TURN: usize = 16;

/// Whether a connection's socket was drained or has more to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// The socket would block: wait for readiness.
    Yes,
    /// The turn's reads were used up with data still coming: yield, then read on.
    No,
}

/// Reads what the socket has (up to [`READS_PER_TURN`] buffers) and handles
/// every complete frame.
pub(super) fn read_ready(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
) -> Result<Drained, CloseReason> {
    for _ in 0..READS_PER_TURN {
        // A held command stops reading until it is handed on (`park.rs`).
        if conn.state.borrow().closing.is_some() || park::is_parked(conn) {
            return Ok(Drained::Yes);
        }
        let scratch = shard.scratch();
        let mut scratch = scratch.borrow_mut();
        match conn.transport.try_read(&mut scratch[..]) {
            Ok(0) => return Err(CloseReason::ConnectionLost),
            Ok(n) => {
                let now = Instant::now();
                shard.refresh_clock_to(now);
                if conn.delivery.liveness.on_every_read() {
                    conn.state.borrow_mut().last_seen = now;
                }
                // A read that found the socket drained made the next one
                // say `WouldBlock` without a system call (`transport.rs`).
                feed(shard, conn, session, &mut scratch[..n])?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Yes),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(CloseReason::ConnectionLost),
        }
    }
    Ok(Drained::No)
}

/// Decodes `input` and hands each complete message to the session.
pub(super) fn feed(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    input: &mut [u8],
) -> Result<(), CloseReason> {
    let max = shard.shared().config().max_message_size;
    let mut decoder: Decoder = std::mem::take(&mut conn.state.borrow_mut().decoder);
    let mut outcome = Ok(());
    let fed = decoder.feed(input, max, |inbound| {
        if let Err(reason) = handle(shard, conn, session, inbound) {
            outcome = Err(reason);
            return ControlFlow::Break(());
        }
        let replies_piling = {
            let state = conn.state.borrow();
            if state.closing.is_some() {
                return ControlFlow::Break(());
            }
            state.mailbox.outbox.control_half_full()
        };
        if replies_piling {
            shard.flush(conn);
            // A write that failed has begun the close.
            if conn.state.borrow().closing.is_some() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    conn.state.borrow_mut().decoder = decoder;
    match fed {
        Ok(_) => outcome,
        Err(FrameError::TooBig { .. }) => Err(CloseReason::MessageTooBig),
        Err(FrameError::InvalidUtf8) => Err(CloseReason::InvalidPayload),
        Err(FrameError::Protocol(what)) => Err(CloseReason::ProtocolError(what)),
    }
}

fn handle(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    inbound: Inbound<'_>,
) -> Result<(), CloseReason> {
    let kind = match inbound {
        Inbound::Text(_) | Inbound::Binary(_) => InboundKind::Message,
        Inbound::Ping(_) | Inbound::Pong => InboundKind::Control,
        Inbound::Close(_) => InboundKind::Close,
    };
    // Reads already count when everything counts.
    let liveness = conn.delivery.liveness;
    if !liveness.on_every_read() && liveness.is_alive(kind) {
        conn.state.borrow_mut().last_seen = shard.now();
    }
    match inbound {
        Inbound::Ping(payload) => {
            conn.send_control(frame::encode(OpCode::Pong, payload));
            Ok(())
        }
        Inbound::Pong => Ok(()),
        Inbound::Close(body) => {
            // Echo the client's code (1000 when it gave none), then close.
            let code = body.map_or(1000, |(code, _)| code);
            conn.send_control(frame::encode_close(code, ""));
            Err(CloseReason::ClientClosed)
        }
        Inbound::Text(mut payload) => {
            park::dispatch(shard, conn, session, FrameType::Text, &mut payload)
        }
        Inbound::Binary(mut payload) => {
            park::dispatch(shard, conn, session, FrameType::Binary, &mut payload)
        }
    }
}

/// Hands one client message to the session (`park.rs` decides when).
pub(super) fn to_session(
    shard: &Rc<ShardState>,
    conn: &Rc<Conn>,
    session: &mut dyn Session,
    kind: FrameType,
    payload: &mut [u8],
) -> Result<(), CloseReason> {
    counted(shard, conn, || {
        guarded(conn, || {
            let mut ctx = ConnCtx { shard, conn };
            match kind {
                FrameType::Text => session.on_text(&mut ctx, payload),
                FrameType::Binary => session.on_binary(&mut ctx, payload),
            }
        })
    })
    .map_err(|()| CloseReason::InternalError)
}

/// Runs the session's handling of one client message, counting the message
/// under the connection's format, and once more if any reply to it was an
/// error ([`ConnCtx::send_error`]): so errors never outnumber messages, and
/// their ratio is the share of messages refused.
fn counted<R>(shard: &ShardState, conn: &Conn, handle: impl FnOnce() -> R) -> R {
    shard.answered_error.set(false);
    let out = handle();
    let mut counts = shard.client_messages.borrow_mut();
    let format = &mut counts[conn.delivery.format.index()];
    // A held command handed over again was counted when it came.
    format.received += u64::from(!shard.parking.redelivering());
    format.answered_error += u64::from(shard.answered_error.take());
    out
}
