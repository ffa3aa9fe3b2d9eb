//! The read side of a connection: socket bytes to frames to session calls.
//!
//! Owned by one shard thread. Bytes are read into the shard's scratch buffer
//! and parsed there; frames are unmasked in place and handed to the session
//! without a copy. Only an incomplete frame is copied into the connection's
//! `partial` buffer, which is freed as soon as it has been used, so an idle
//! connection holds no read buffer. Fragmented messages are reassembled up
//! to the configured maximum message size.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use crate::close::CloseReason;
use crate::conn::{Conn, ConnCtx, Fragments, Session};
use crate::frame::{self, FrameError, OpCode};
use crate::local::ShardState;

/// Reads what the socket has and handles every complete frame.
pub(crate) fn read_ready(
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
pub(crate) fn parse_partial(
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
