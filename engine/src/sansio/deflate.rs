//! permessage-deflate (RFC 7692) on frames: compressing a server frame,
//! inflating a client message within a bound.
//!
//! Sans-IO and stateless between messages in both directions, because the
//! server negotiates `server_no_context_takeover` and
//! `client_no_context_takeover` on every connection (see the server's
//! `extensions.rs`):
//! - a server message is compressed on its own, so one compressed frame is
//!   valid for every subscriber that negotiated the extension, and is built
//!   once per message and variant (see [`crate::Message`]);
//! - a client message is inflated on its own, with a fresh 32 KiB window
//!   that is freed as soon as the message is, so an idle connection holds no
//!   inflate memory whatever it negotiated.
//!
//! Raw deflate with a sync flush; the `00 00 ff ff` that ends a sync flush
//! is stripped from what is sent (§7.2.1) and appended to what is received
//! before inflating (§7.2.2).
//!
//! The compressor (miniz_oxide's, a few hundred KiB of tables) is reused, not
//! rebuilt per message: it lives in the [`Compressor`] of whoever encodes —
//! one per shard thread — and is reset before each message.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::sansio::frame::{put_header, split_server_frame, MAX_HEADER_LEN, RSV1};

/// What every sync flush ends with, and so what is stripped and put back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib's default level. A message is compressed once however many
/// subscribers receive it, so the cost is shared and a denser frame saves
/// bytes on every delivery. Not yet measured against lower levels.
const LEVEL: u32 = 6;

/// Inflated bytes produced per step while a client message is inflated:
/// the output grows by at most this much past what the bound allows.
const INFLATE_STEP: usize = 16 * 1024;

/// Why a client's compressed message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// Inflated, it would exceed the largest message allowed (close 1009).
    #[error("compressed message inflates past the limit of {limit} bytes")]
    TooBig {
        /// The largest message allowed, in bytes.
        limit: usize,
    },
    /// Not a valid raw deflate stream (close 1002).
    #[error("compressed message is not valid deflate data")]
    Corrupt,
}

/// Compressions performed, and the bytes before and after. Owned by one
/// shard thread; summed when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateCounts {
    /// Messages compressed (once each per format and frame kind, whatever
    /// the number of subscribers). Messages below the size threshold are
    /// never compressed and not counted.
    pub messages: u64,
    /// Their payload bytes before compression.
    pub bytes_in: u64,
    /// Payload bytes of the frames sent for them: compressed, or the plain
    /// payload when compressing would not have made it smaller.
    pub bytes_out: u64,
}

impl DeflateCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Self) {
        self.messages += other.messages;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

/// A reusable raw-deflate compressor, built on first use. Owned by one
/// thread (a shard's, inside its encoder).
#[derive(Default)]
pub struct Compressor {
    inner: Option<Box<Compress>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("built", &self.inner.is_some())
            .finish()
    }
}

impl Compressor {
    /// `plain` (one complete final server data frame) compressed, with
    /// RSV1 set, when its payload is at least `min_size` bytes and
    /// compressing makes it smaller; `None` otherwise (send `plain`).
    pub fn compress_frame(&mut self, plain: &[u8], min_size: usize) -> Option<Bytes> {
        let (first, payload) = split_server_frame(plain)?;
        let data_final = first & 0xF0 == 0x80 && matches!(first & 0x0F, 0x1 | 0x2);
        if !data_final || payload.len() < min_size {
            return None;
        }
        let compress = self
            .inner
            .get_or_insert_with(|| Box::new(Compress::new(Compression::new(LEVEL), false)));
        compress.reset();
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len() + 64);
        out.resize(MAX_HEADER_LEN, 0);
        loop {
            let consumed = compress.total_in() as usize;
            if out.len() == out.capacity() {
                out.reserve(payload.len() / 4 + 64);
            }
            let status = compress.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync);
            if status.is_err() {
                return None;
            }
            // A sync flush is complete once it leaves room in the output.
            if compress.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        if out.len() - MAX_HEADER_LEN >= payload.len() {
            return None;
        }
        let start = put_header(&mut out, first | RSV1);
        Some(Bytes::from(out).slice(start..))
    }
}

/// The compressed `payload` of a client message inflated, refused once it
/// exceeds `limit` bytes: inflating stops there, whatever the input claims.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len().saturating_mul(2).clamp(64, INFLATE_STEP));
    for input in [payload, &TAIL[..]] {
        let start = inflater.total_in();
        loop {
            let used = (inflater.total_in() - start) as usize;
            if out.len() == out.capacity() {
                let room = limit.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::TooBig { limit });
                }
                out.reserve_exact(room.min(INFLATE_STEP.max(out.len())));
            }
            let before = (inflater.total_in(), out.len());
            let status = inflater
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig { limit });
            }
            if status == Status::StreamEnd {
                // A final block: the message ends there.
                return Ok(out);
            }
            let done = (inflater.total_in() - start) as usize == input.len();
            if done && out.len() < out.capacity() {
                break;
            }
            if before == (inflater.total_in(), out.len()) && out.len() < out.capacity() {
                return Err(InflateError::Corrupt);
            }
        }
    }
    Ok(out)
}

/// A frame the server compressed, back as its plain frame (RSV1 clear);
/// `None` when `frame` is not compressed (or not a frame).
pub fn plain_frame(frame: &[u8]) -> Option<Bytes> {
    let (first, payload) = split_server_frame(frame)?;
    if first & RSV1 == 0 {
        return None;
    }
    // The server's own frame: its plain size was bounded when published.
    let data = inflate(payload, usize::MAX - 1).ok()?;
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + data.len());
    out.resize(MAX_HEADER_LEN, 0);
    out.extend_from_slice(&data);
    let start = put_header(&mut out, first & !RSV1);
    Some(Bytes::from(out).slice(start..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::frame::{encode, OpCode};

    fn json(n: usize) -> Vec<u8> {
        let items: Vec<String> = (0..n).map(|i| format!("{{\"px\":{i}.25}}")).collect();
        format!("{{\"type\":\"event\",\"data\":[{}]}}", items.join(",")).into_bytes()
    }

    #[test]
    fn a_compressed_frame_has_rsv1_no_tail_and_inflates_back() {
        let payload = json(100);
        let plain = encode(OpCode::Text, &payload);
        let frame = Compressor::default()
            .compress_frame(&plain, 256)
            .expect("compressible");
        let (first, body) = split_server_frame(&frame).unwrap();
        assert_eq!(first, 0x80 | RSV1 | 0x1);
        assert!(body.len() < payload.len() / 2, "{}", body.len());
        assert!(!body.ends_with(&TAIL));
        assert_eq!(inflate(body, payload.len()).unwrap(), payload);
        assert_eq!(plain_frame(&frame).unwrap(), plain);
        assert_eq!(plain_frame(&plain), None);
    }

    #[test]
    fn each_frame_stands_alone_when_the_compressor_is_reused() {
        let mut compressor = Compressor::default();
        let one = encode(OpCode::Text, &json(40));
        let first = compressor.compress_frame(&one, 0).unwrap();
        compressor.compress_frame(&encode(OpCode::Text, &json(50)), 0);
        // No context carried over: the same input gives the same bytes.
        assert_eq!(compressor.compress_frame(&one, 0).unwrap(), first);
    }

    #[test]
    fn small_incompressible_and_control_frames_stay_plain() {
        let mut compressor = Compressor::default();
        let small = encode(OpCode::Text, &json(3));
        assert!(small.len() < 256);
        assert_eq!(compressor.compress_frame(&small, 256), None);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(
            compressor.compress_frame(&encode(OpCode::Binary, &noise), 0),
            None
        );
        assert_eq!(
            compressor.compress_frame(&encode(OpCode::Ping, &json(5)), 0),
            None
        );
    }

    #[test]
    fn a_bomb_stops_at_the_bound() {
        let zeros = vec![0u8; 4 << 20];
        let frame = Compressor::default()
            .compress_frame(&encode(OpCode::Binary, &zeros), 0)
            .unwrap();
        let (_, body) = split_server_frame(&frame).unwrap();
        assert!(body.len() < 8 << 10, "{}", body.len());
        assert_eq!(
            inflate(body, 64 << 10),
            Err(InflateError::TooBig { limit: 64 << 10 })
        );
        assert_eq!(inflate(body, 4 << 20).unwrap().len(), 4 << 20);
        assert_eq!(
            inflate(body, (4 << 20) - 1).unwrap_err(),
            InflateError::TooBig {
                limit: (4 << 20) - 1
            }
        );
    }

    #[test]
    fn the_tail_is_appended_and_garbage_is_corrupt() {
        // "Hello" from RFC 7692 §7.2.3.1, without its 00 00 ff ff.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&hello, 5).unwrap(), b"Hello");
        assert_eq!(inflate(&hello, 4), Err(InflateError::TooBig { limit: 4 }));
        // The same with a final block (BFINAL set), §7.2.3.1's second form.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&last, 64).unwrap(), b"Hello");
        assert_eq!(inflate(&[0xff; 16], 64), Err(InflateError::Corrupt));
        assert_eq!(inflate(&[], 64).unwrap(), b"");
    }
}
