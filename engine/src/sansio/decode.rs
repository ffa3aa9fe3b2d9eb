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
//! Every violation is an error that maps to one close code (1002, 1007 or
//! 1009); nothing a client sends can make this module panic or allocate
//! more than the limit (fuzzed by `fuzz/fuzz_targets/client_frames.rs`).

use std::ops::{ControlFlow, Deref, DerefMut};

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
    /// Bytes of an incomplete frame, kept between reads.
    partial: Vec<u8>,
    /// The opcode and bytes so far of a fragmented message.
    fragments: Option<(OpCode, Vec<u8>)>,
}

impl Decoder {
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
        if self.partial.is_empty() {
            let (used, flow) = self.decode(input, max_message, &mut on_inbound)?;
            if flow.is_continue() && used < input.len() {
                self.partial.extend_from_slice(&input[used..]);
            }
            return Ok(flow);
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(input);
        let (used, flow) = self.decode(&mut buf, max_message, &mut on_inbound)?;
        if flow.is_continue() && used < buf.len() {
            buf.drain(..used);
            self.partial = buf;
        }
        // Otherwise `buf` is dropped: an idle connection keeps no buffer.
        Ok(flow)
    }

    /// Bytes held between reads (incomplete frame plus unfinished message).
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.fragments.as_ref().map_or(0, |(_, data)| data.len())
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
            let Some(inbound) = self.assemble(parsed.fin, parsed.opcode, payload, max_message)?
            else {
                continue;
            };
            if on_inbound(inbound).is_break() {
                return Ok((used, ControlFlow::Break(())));
            }
        }
        Ok((used, ControlFlow::Continue(())))
    }

    /// One frame in; the complete message or control frame it finishes, if any.
    fn assemble<'a>(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<Inbound<'a>>, FrameError> {
        match opcode {
            OpCode::Ping => Ok(Some(Inbound::Ping(payload))),
            OpCode::Pong => Ok(Some(Inbound::Pong)),
            OpCode::Close => Ok(Some(Inbound::Close(frame::parse_close_payload(payload)?))),
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                if !fin {
                    self.fragments = Some((opcode, payload.to_vec()));
                    return Ok(None);
                }
                complete(opcode, Payload::InPlace(payload)).map(Some)
            }
            OpCode::Continuation => {
                let Some((_, data)) = self.fragments.as_mut() else {
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
                let Some((opcode, data)) = self.fragments.take() else {
                    unreachable!("checked above");
                };
                complete(opcode, Payload::Reassembled(data)).map(Some)
            }
        }
    }
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
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7, 1, 9, 3];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// What the decoder yields, as owned values.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<(u16, String)>),
    }

    fn feed_all(chunks: &[&[u8]], max: usize) -> Result<Vec<Seen>, FrameError> {
        let mut decoder = Decoder::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            let mut chunk = chunk.to_vec();
            let _ = decoder.feed(&mut chunk, max, |inbound| {
                seen.push(match inbound {
                    Inbound::Text(p) => Seen::Text(String::from_utf8(p.to_vec()).unwrap()),
                    Inbound::Binary(p) => Seen::Binary(p.to_vec()),
                    Inbound::Ping(p) => Seen::Ping(p.to_vec()),
                    Inbound::Pong => Seen::Pong,
                    Inbound::Close(c) => Seen::Close(c.map(|(code, r)| (code, r.to_owned()))),
                });
                ControlFlow::Continue(())
            })?;
        }
        Ok(seen)
    }

    #[test]
    fn fragments_reassemble_around_interleaved_control_frames() {
        let wire = [
            client_frame(false, 1, b"hel"),
            client_frame(true, 9, b"p"),
            client_frame(false, 0, b"lo "),
            client_frame(true, 0, "wörld".as_bytes()),
        ]
        .concat();
        // Byte by byte and whole: the same messages.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        for chunks in [bytes, vec![&wire[..]]] {
            assert_eq!(
                feed_all(&chunks, 1024).unwrap(),
                vec![Seen::Ping(b"p".to_vec()), Seen::Text("hello wörld".into())]
            );
        }
    }

    #[test]
    fn violations_map_to_the_right_error() {
        let text = |b: &[u8]| client_frame(true, 1, b);
        assert_eq!(
            feed_all(&[&text(&[0xC3])], 64),
            Err(FrameError::InvalidUtf8)
        );
        let split_utf8 = [
            client_frame(false, 1, &[0xC3]),
            client_frame(true, 0, &[0xA9]),
        ]
        .concat();
        assert_eq!(
            feed_all(&[&split_utf8], 64).unwrap(),
            vec![Seen::Text("é".into())]
        );
        let reassembled_too_big = [
            client_frame(false, 2, &[0; 40]),
            client_frame(true, 0, &[0; 40]),
        ]
        .concat();
        assert!(matches!(
            feed_all(&[&reassembled_too_big], 64),
            Err(FrameError::TooBig { .. })
        ));
        let orphan = client_frame(true, 0, b"x");
        assert!(matches!(
            feed_all(&[&orphan], 64),
            Err(FrameError::Protocol(_))
        ));
        let nested = [client_frame(false, 1, b"a"), client_frame(true, 1, b"b")].concat();
        assert!(matches!(
            feed_all(&[&nested], 64),
            Err(FrameError::Protocol(_))
        ));
        let one_byte_close = client_frame(true, 8, &[3]);
        assert!(matches!(
            feed_all(&[&one_byte_close], 64),
            Err(FrameError::Protocol(_))
        ));
        assert_eq!(
            feed_all(&[&client_frame(true, 8, &[0x03, 0xE9, b'o', b'k'])], 64).unwrap(),
            vec![Seen::Close(Some((1001, "ok".into())))]
        );
        assert_eq!(
            feed_all(&[&client_frame(true, 10, b"")], 64).unwrap(),
            vec![Seen::Pong]
        );
        assert_eq!(
            feed_all(&[&client_frame(true, 2, b"\x00\x01")], 64).unwrap(),
            vec![Seen::Binary(vec![0, 1])]
        );
    }

    #[test]
    fn nothing_is_held_once_a_frame_completes_and_nothing_is_read_after_a_break() {
        let mut decoder = Decoder::default();
        let wire = [client_frame(true, 1, b"one"), client_frame(true, 1, b"two")].concat();
        let mut first = wire[..4].to_vec();
        let flow = decoder.feed(&mut first, 64, |_| ControlFlow::Continue(()));
        assert_eq!(flow, Ok(ControlFlow::Continue(())));
        assert_eq!(decoder.buffered(), 4);
        let mut rest = wire[4..].to_vec();
        let mut texts = 0;
        let flow = decoder
            .feed(&mut rest, 64, |_| {
                texts += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(texts, 1);
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.partial.capacity(), 0);
    }
}
