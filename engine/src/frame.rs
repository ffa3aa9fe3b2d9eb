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
        let len = self.buf.len() - MAX_HEADER_LEN;
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = write_header(&mut header, opcode, len);
        let start = MAX_HEADER_LEN - header_len;
        self.buf[start..MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
        self.buf.freeze().slice(start..)
    }
}

/// Writes a server frame header (FIN set, unmasked) into `out`; returns its length.
fn write_header(out: &mut [u8; MAX_HEADER_LEN], opcode: OpCode, len: usize) -> usize {
    out[0] = 0x80 | opcode.bits();
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
    /// RSV bits set (no extension was negotiated), an unknown opcode, a
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
    if b0 & 0x70 != 0 {
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
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn server_frame_headers_use_the_shortest_length_form() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = encode(OpCode::Text, &vec![b'x'; len]);
            assert_eq!(frame.len(), header_len + len, "payload {len}");
            assert_eq!(frame[0], 0x81);
        }
        let frame = encode(OpCode::Text, b"hi");
        assert_eq!(&frame[..], &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let frame = encode_close(4401, "VIOLATED_POLICY");
        assert_eq!(frame[0], 0x88);
        assert_eq!(frame[1] as usize, 2 + 15);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 4401);
        let long = "é".repeat(100);
        let frame = encode_close(1000, &long);
        assert!(frame[1] <= 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn parses_and_unmasks_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 1000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = client_frame(true, 1, &payload, [1, 2, 3, 4]);
            let parsed = parse_client_frame(&mut wire, 1 << 20).unwrap().unwrap();
            assert_eq!(parsed.opcode, OpCode::Text);
            assert!(parsed.fin);
            assert_eq!(
                &wire[parsed.payload_start..parsed.payload_end],
                &payload[..]
            );
            assert_eq!(parsed.consumed(), wire.len());
        }
    }

    #[test]
    fn partial_frames_ask_for_more_bytes() {
        let wire = client_frame(true, 1, &[7u8; 300], [9, 8, 7, 6]);
        for cut in 0..wire.len() {
            let mut part = wire[..cut].to_vec();
            assert_eq!(
                parse_client_frame(&mut part, 1024),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn refuses_unmasked_reserved_and_oversized_frames() {
        let mut unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert!(matches!(
            parse_client_frame(&mut unmasked, 1024),
            Err(FrameError::Protocol(_))
        ));
        let mut rsv = client_frame(true, 1, b"x", [0; 4]);
        rsv[0] |= 0x40;
        assert!(matches!(
            parse_client_frame(&mut rsv, 1024),
            Err(FrameError::Protocol(_))
        ));
        let mut big = client_frame(true, 2, &[0u8; 2000], [1; 4]);
        // Refused from the header alone, before the payload arrives.
        assert_eq!(
            parse_client_frame(&mut big[..8], 1024),
            Err(FrameError::TooBig {
                len: 2000,
                limit: 1024
            })
        );
        let mut fragmented_ping = client_frame(false, 9, b"", [0; 4]);
        assert!(parse_client_frame(&mut fragmented_ping, 1024).is_err());
        let mut bad_opcode = client_frame(true, 3, b"", [0; 4]);
        assert!(parse_client_frame(&mut bad_opcode, 1024).is_err());
    }

    #[test]
    fn refuses_non_minimal_and_top_bit_lengths() {
        // 5 bytes announced in the 16-bit form.
        let mut wire = vec![0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0];
        wire.extend_from_slice(b"hello");
        assert_eq!(
            parse_client_frame(&mut wire, 1024),
            Err(FrameError::Protocol("non-minimal length encoding"))
        );
        // 300 bytes announced in the 64-bit form.
        let mut wire = vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 1, 44, 0, 0, 0, 0];
        assert_eq!(
            parse_client_frame(&mut wire, 1 << 20),
            Err(FrameError::Protocol("non-minimal length encoding"))
        );
        let mut wire = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_client_frame(&mut wire, usize::MAX),
            Err(FrameError::Protocol("64-bit length with its top bit set"))
        );
        // The shortest forms still parse.
        let mut ok = client_frame(true, 1, &[b'x'; 126], [0; 4]);
        assert!(parse_client_frame(&mut ok, 1024).unwrap().is_some());
    }

    #[test]
    fn close_payloads_are_checked_as_rfc_6455_says() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8, b'b', b'y', b'e']),
            Ok(Some((1000, "bye")))
        );
        assert!(matches!(
            parse_close_payload(&[0x03]),
            Err(FrameError::Protocol(_))
        ));
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ] {
            assert!(
                matches!(
                    parse_close_payload(&code.to_be_bytes()),
                    Err(FrameError::Protocol(_))
                ),
                "{code}"
            );
        }
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999] {
            assert_eq!(
                parse_close_payload(&code.to_be_bytes()),
                Ok(Some((code, "")))
            );
        }
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8, 0xFF, 0xFE]),
            Err(FrameError::InvalidUtf8)
        );
    }

    /// A fixed-seed xorshift generator: randomized tests that replay exactly.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_frames_stay_in_bounds() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        let valid = client_frame(true, 1, br#"{"action":"heartbeat"}"#, [3, 1, 4, 1]);
        for round in 0..200_000 {
            let mut buf: Vec<u8> = if round % 2 == 0 {
                // Pure noise of random length.
                let len = (xorshift(&mut seed) % 40) as usize;
                (0..len).map(|_| xorshift(&mut seed) as u8).collect()
            } else {
                // A valid frame with a few bytes flipped or cut.
                let mut b = valid.clone();
                for _ in 0..=(xorshift(&mut seed) % 3) {
                    let at = (xorshift(&mut seed) as usize) % b.len();
                    b[at] ^= xorshift(&mut seed) as u8;
                }
                b.truncate((xorshift(&mut seed) as usize) % (b.len() + 1));
                b
            };
            let len = buf.len();
            if let Ok(Some(frame)) = parse_client_frame(&mut buf, 1024) {
                assert!(frame.payload_start <= frame.payload_end && frame.payload_end <= len);
                assert!(frame.payload_end - frame.payload_start <= 1024);
            }
        }
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_length() {
        let mask = [0xA1, 0x22, 0x37, 0x4F];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
