//! RFC 6455 framing: server frames are built once into `Bytes`, client frames
//! are parsed in place.
//!
//! Sans-IO: nothing here touches a socket. Encoding writes the payload first,
//! after a reserved gap of [`MAX_HEADER_LEN`] bytes, and then writes the
//! header backwards into the end of that gap, so a frame is one contiguous
//! buffer built without copying the payload a second time.
//!
//! Parsing works on a mutable byte slice (the shard's read buffer): a complete
//! client frame is unmasked in place and handed out as a sub-slice, so reading
//! a command costs no allocation.

use bytes::{BufMut, Bytes, BytesMut};

/// The largest server frame header: 2 bytes + 8-byte extended length.
/// Server frames are never masked.
pub const MAX_HEADER_LEN: usize = 10;

/// The largest client frame header: 2 bytes + 8-byte length + 4-byte mask.
const MAX_CLIENT_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// A continuation fragment of a text or binary message.
    Continuation,
    /// A UTF-8 text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// Close handshake.
    Close,
    /// Ping: the peer must answer with a pong carrying the same payload.
    Ping,
    /// Pong: the answer to a ping, or an unsolicited keep-alive.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A buffer that becomes one complete, unmasked server frame.
///
/// Write the payload with [`FrameBuf::payload`], then call
/// [`FrameBuf::finish`]. The header is placed in front of the payload without
/// moving it.
#[derive(Debug)]
pub struct FrameBuf {
    buf: BytesMut,
}

impl FrameBuf {
    /// A frame buffer with room for `payload_capacity` payload bytes.
    pub fn with_capacity(payload_capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + payload_capacity);
        buf.put_bytes(0, MAX_HEADER_LEN);
        Self { buf }
    }

    /// The payload being written; append to it.
    #[inline]
    pub fn payload(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Writes the header for a final (FIN) frame of `opcode` and returns the
    /// frame as shared bytes.
    pub fn finish(mut self, opcode: OpCode) -> Bytes {
        let start = put_header(&mut self.buf, 0x80 | opcode.bits());
        self.buf.freeze().slice(start..)
    }
}

/// The RSV1 bit of a frame's first byte: "compressed" under permessage-deflate.
pub const RSV1: u8 = 0x40;

/// Writes a server frame header whose first byte is `first` (FIN, RSV bits,
/// opcode) at the end of the [`MAX_HEADER_LEN`] bytes reserved at the start
/// of `buf`, for the payload after them; returns where the frame starts.
pub(crate) fn put_header(buf: &mut [u8], first: u8) -> usize {
    let len = buf.len() - MAX_HEADER_LEN;
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = write_header(&mut header, first, len);
    let start = MAX_HEADER_LEN - header_len;
    buf[start..MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
    start
}

/// A server frame's first byte (FIN, RSV bits, opcode) and its payload;
/// `None` when `frame` is not exactly one complete unmasked frame.
pub fn split_server_frame(frame: &[u8]) -> Option<(u8, &[u8])> {
    let (&[first, second], rest) = frame.split_first_chunk::<2>()?;
    if second & 0x80 != 0 {
        return None;
    }
    let (len, payload) = match second {
        126 => {
            let (len, rest) = rest.split_first_chunk::<2>()?;
            (u16::from_be_bytes(*len) as usize, rest)
        }
        127 => {
            let (len, rest) = rest.split_first_chunk::<8>()?;
            (usize::try_from(u64::from_be_bytes(*len)).ok()?, rest)
        }
        n => (n as usize, rest),
    };
    (payload.len() == len).then_some((first, payload))
}

/// Writes a server frame header (unmasked) with first byte `first` into
/// `out`; returns its length.
fn write_header(out: &mut [u8; MAX_HEADER_LEN], first: u8, len: usize) -> usize {
    out[0] = first;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// One complete frame with `payload` as its payload.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut frame = FrameBuf::with_capacity(payload.len());
    frame.payload().extend_from_slice(payload);
    frame.finish(opcode)
}

/// A close frame with `code` and a reason truncated to fit a control frame.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    // A control frame payload is at most 125 bytes: 2 for the code.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut frame = FrameBuf::with_capacity(2 + end);
    frame.payload().put_u16(code);
    frame.payload().extend_from_slice(&reason.as_bytes()[..end]);
    frame.finish(OpCode::Close)
}

/// Why a client frame was refused. Each maps to a close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV bits set (no extension was negotiated, or RSV1 where
    /// permessage-deflate does not allow it), an unknown opcode, a
    /// fragmented or oversized control frame, or an unmasked client frame.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The payload length exceeds the configured maximum message size.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooBig {
        /// The declared payload length.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A text message or a close reason is not valid UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
}

/// A parsed client frame: header fields plus where its payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFrame {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// RSV1 bit: a compressed message under permessage-deflate. Whether it
    /// may be set is the decoder's question (it depends on negotiation and
    /// on the frame's place in its message).
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Payload bytes, already unmasked, at `payload_start..payload_end` of the input.
    pub payload_start: usize,
    /// End of the payload in the input.
    pub payload_end: usize,
}

impl ParsedFrame {
    /// Bytes of input this frame occupied.
    pub fn consumed(&self) -> usize {
        self.payload_end
    }
}

/// Parses one client frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more);
/// otherwise unmasks the payload in place and returns where it lies. Frames
/// whose payload exceeds `max_payload` are refused from their header alone,
/// before their bytes arrive.
pub fn parse_client_frame(
    buf: &mut [u8],
    max_payload: usize,
) -> Result<Option<ParsedFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    // RSV2 and RSV3 belong to no extension this server speaks.
    if b0 & 0x30 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(FrameError::Protocol("unknown opcode"))?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frame not masked"));
    }
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode
    // the length", and a 64-bit length has its most significant bit clear.
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            if len < 126 {
                return Err(FrameError::Protocol("non-minimal length encoding"));
            }
            (len, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("64-bit length with its top bit set"));
            }
            if len <= u64::from(u16::MAX) {
                return Err(FrameError::Protocol("non-minimal length encoding"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (len > 125 || !fin) {
        return Err(FrameError::Protocol("invalid control frame"));
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig {
            len,
            limit: max_payload,
        });
    }
    debug_assert!(pos + 4 <= MAX_CLIENT_HEADER_LEN);
    if buf.len() < pos + 4 {
        return Ok(None);
    }
    let mask = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
    pos += 4;
    let end = pos + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    unmask(&mut buf[pos..end], mask);
    Ok(Some(ParsedFrame {
        fin,
        rsv1: b0 & RSV1 != 0,
        opcode,
        payload_start: pos,
        payload_end: end,
    }))
}

/// Whether a client may send `code` in a close frame (RFC 6455 §7.4).
///
/// Allowed: the codes registered for use on the wire (1000–1003, 1007–1014)
/// and the ranges for libraries and applications (3000–4999). Refused: below
/// 1000; 1004 (reserved); 1005, 1006 and 1015, which must never be sent;
/// 1016–2999 (reserved for the protocol); 5000 and above (undefined).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The code and reason of a client's close frame, `None` when it has no
/// body. A 1-byte body or a code clients may not send is a protocol error;
/// a reason that is not UTF-8 is [`FrameError::InvalidUtf8`].
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte body")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// XORs `data` with the 4-byte `mask`, eight bytes at a time.
#[inline]
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: mask phase 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests;
