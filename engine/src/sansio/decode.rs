//! Client bytes to complete messages: frame parsing, reassembly of
//! fragments, and the UTF-8 and close-frame checks of RFC 6455.
//!
//! Sans-IO and owned by one connection (inside its state, on its shard's
//! thread). The reader hands [`Decoder::feed`] each chunk the socket gave it,
//! in the shard's shared read buffer; complete frames are unmasked and
//! handed on in place, without a copy. Only two things are kept between
//! reads, both bounded by the maximum message size and both freed as soon as
//! they are used, so an idle connection holds no read memory:
//! - the bytes of an incomplete frame (`partial`);
//! - the fragments of an unfinished message (`fragments`).
//!
//! With permessage-deflate negotiated ([`Decoder::new`]), a data message
//! whose first frame has RSV1 set is compressed: its frames are reassembled
//! (compressed bytes, within the limit), then inflated within the limit, so
//! a message that inflates past it is refused (1009) after at most one
//! step of output past it, never inflated whole. RSV1 anywhere else — a
//! continuation, a control frame, a connection without the extension — is
//! a protocol error (1002). Nothing of the inflater outlives its message
//! (no context takeover: see `deflate.rs`).
//!
//! Every violation is an error that maps to one close code (1002, 1007 or
//! 1009); nothing a client sends can make this module panic or allocate
//! more than the limit (fuzzed by `fuzz/fuzz_targets/client_frames.rs` and
//! `fuzz/fuzz_targets/client_deflate.rs`).

use std::ops::{ControlFlow, Deref, DerefMut};

use crate::sansio::deflate::{self, InflateError};
use crate::sansio::frame::{self, FrameError, OpCode};

/// A complete message or control frame from the client.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// A text message, valid UTF-8.
    Text(Payload<'a>),
    /// A binary message.
    Binary(Payload<'a>),
    /// A ping; answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame: its code and reason, `None` when it had no body.
    Close(Option<(u16, &'a str)>),
}

/// A message's bytes: in place in the caller's buffer (one frame), or
/// reassembled from fragments into a buffer of its own.
#[derive(Debug)]
pub enum Payload<'a> {
    /// A single-frame message, unmasked where it arrived.
    InPlace(&'a mut [u8]),
    /// A fragmented message, reassembled.
    Reassembled(Vec<u8>),
}

impl Deref for Payload<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::InPlace(bytes) => bytes,
            Self::Reassembled(bytes) => bytes,
        }
    }
}

impl DerefMut for Payload<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Self::InPlace(bytes) => bytes,
            Self::Reassembled(bytes) => bytes,
        }
    }
}

/// One connection's decoding state. Owned by its connection.
#[derive(Debug, Default)]
pub struct Decoder {
    /// What a read left for the next, if anything. Boxed: most reads leave
    /// nothing, and every connection carries the field
    /// (docs/architecture.md, *Memory per connection*).
    held: Option<Box<Held>>,
    /// Whether permessage-deflate was negotiated.
    deflate: bool,
}

/// What a connection's reads left unfinished.
#[derive(Debug, Default)]
struct Held {
    /// Bytes of an incomplete frame.
    partial: Vec<u8>,
    /// The opcode, compression and bytes so far of a fragmented message.
    fragments: Option<(OpCode, bool, Vec<u8>)>,
}

impl Decoder {
    /// A decoder for a connection that negotiated permessage-deflate
    /// (`deflate`) or not ([`Decoder::default`]).
    pub fn new(deflate: bool) -> Self {
        Self {
            deflate,
            ..Self::default()
        }
    }

    /// Decodes `input` (bytes just read; the buffer is the caller's and is
    /// unmasked in place) after whatever an earlier call left incomplete,
    /// handing each complete message or control frame to `on_inbound` in
    /// order. Stops early when `on_inbound` breaks (the connection is
    /// closing; the rest is never looked at). Messages longer than
    /// `max_message` bytes, whole or reassembled, are refused.
    pub fn feed<F>(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        mut on_inbound: F,
    ) -> Result<ControlFlow<()>, FrameError>
    where
        F: FnMut(Inbound<'_>) -> ControlFlow<()>,
    {
        let mut buf = match &mut self.held {
            Some(held) => std::mem::take(&mut held.partial),
            None => Vec::new(),
        };
        let flow = if buf.is_empty() {
            let (used, flow) = self.decode(input, max_message, &mut on_inbound)?;
            if flow.is_continue() && used < input.len() {
                self.held().partial.extend_from_slice(&input[used..]);
            }
            flow
        } else {
            buf.extend_from_slice(input);
            let (used, flow) = self.decode(&mut buf, max_message, &mut on_inbound)?;
            if flow.is_continue() && used < buf.len() {
                buf.drain(..used);
                self.held().partial = buf;
            }
            flow
        };
        // Nothing left unfinished: an idle connection keeps no buffer.
        if self
            .held
            .as_ref()
            .is_some_and(|held| held.partial.is_empty() && held.fragments.is_none())
        {
            self.held = None;
        }
        Ok(flow)
    }

    /// Bytes held between reads (incomplete frame plus unfinished message).
    pub fn buffered(&self) -> usize {
        self.held.as_ref().map_or(0, |held| {
            held.partial.len() + held.fragments.as_ref().map_or(0, |f| f.2.len())
        })
    }

    /// What reads left unfinished, made room for.
    #[cold]
    fn held(&mut self) -> &mut Held {
        self.held.get_or_insert_with(Box::default)
    }

    /// The fragmented message being reassembled, if any.
    fn fragments(&mut self) -> Option<&mut (OpCode, bool, Vec<u8>)> {
        self.held.as_mut().and_then(|held| held.fragments.as_mut())
    }

    /// Handles the complete frames at the start of `buf`; returns the bytes used.
    fn decode<F>(
        &mut self,
        buf: &mut [u8],
        max_message: usize,
        on_inbound: &mut F,
    ) -> Result<(usize, ControlFlow<()>), FrameError>
    where
        F: FnMut(Inbound<'_>) -> ControlFlow<()>,
    {
        let mut used = 0;
        while used < buf.len() {
            let Some(parsed) = frame::parse_client_frame(&mut buf[used..], max_message)? else {
                // An incomplete frame can still be refused from its header;
                // what is held meanwhile is bounded by the frame limit.
                break;
            };
            let start = used + parsed.payload_start;
            let end = used + parsed.payload_end;
            used += parsed.consumed();
            let payload = &mut buf[start..end];
            if parsed.rsv1
                && !(self.deflate && matches!(parsed.opcode, OpCode::Text | OpCode::Binary))
            {
                return Err(FrameError::Protocol(
                    "RSV1 set outside a compressed message's first frame",
                ));
            }
            let first = (parsed.fin, parsed.rsv1, parsed.opcode);
            let Some(inbound) = self.assemble(first, payload, max_message)? else {
                continue;
            };
            if on_inbound(inbound).is_break() {
                return Ok((used, ControlFlow::Break(())));
            }
        }
        Ok((used, ControlFlow::Continue(())))
    }

    /// One frame in; the complete message or control frame it finishes, if any.
    /// `frame` is its FIN bit, RSV1 bit (already checked) and opcode.
    fn assemble<'a>(
        &mut self,
        (fin, compressed, opcode): (bool, bool, OpCode),
        payload: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<Inbound<'a>>, FrameError> {
        match opcode {
            OpCode::Ping => Ok(Some(Inbound::Ping(payload))),
            OpCode::Pong => Ok(Some(Inbound::Pong)),
            OpCode::Close => Ok(Some(Inbound::Close(frame::parse_close_payload(payload)?))),
            OpCode::Text | OpCode::Binary => {
                if self.fragments().is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                if !fin {
                    self.held().fragments = Some((opcode, compressed, payload.to_vec()));
                    return Ok(None);
                }
                if compressed {
                    let data = inflate(payload, max_message)?;
                    return complete(opcode, Payload::Reassembled(data)).map(Some);
                }
                complete(opcode, Payload::InPlace(payload)).map(Some)
            }
            OpCode::Continuation => {
                let Some((_, _, data)) = self.fragments() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                if data.len() + payload.len() > max_message {
                    return Err(FrameError::TooBig {
                        len: (data.len() + payload.len()) as u64,
                        limit: max_message,
                    });
                }
                data.extend_from_slice(payload);
                if !fin {
                    return Ok(None);
                }
                let taken = self.held.as_mut().and_then(|held| held.fragments.take());
                let Some((opcode, compressed, mut data)) = taken else {
                    unreachable!("checked above");
                };
                if compressed {
                    data = inflate(&data, max_message)?;
                }
                complete(opcode, Payload::Reassembled(data)).map(Some)
            }
        }
    }
}

/// A compressed message inflated within `max_message` bytes.
fn inflate(compressed: &[u8], max_message: usize) -> Result<Vec<u8>, FrameError> {
    deflate::inflate(compressed, max_message).map_err(|e| match e {
        InflateError::TooBig { limit } => FrameError::TooBig {
            len: limit as u64 + 1,
            limit,
        },
        InflateError::Corrupt => FrameError::Protocol("invalid deflate data"),
    })
}

fn complete(opcode: OpCode, payload: Payload<'_>) -> Result<Inbound<'_>, FrameError> {
    if opcode == OpCode::Binary {
        return Ok(Inbound::Binary(payload));
    }
    if std::str::from_utf8(&payload).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    Ok(Inbound::Text(payload))
}

#[cfg(test)]
mod tests;
