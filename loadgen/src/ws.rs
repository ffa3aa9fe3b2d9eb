//! A minimal WebSocket client for load: handshake by hand, frames parsed in
//! place from one reusable buffer per connection, no allocation per message.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;

/// Connects from `source` (port chosen by the kernel) and upgrades `path`.
pub async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    api_key: &str,
) -> io::Result<Conn> {
    let mut stream = crate::net::connect(server, source).await?;
    let offer = if DEFLATE.load(Ordering::Relaxed) {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hhcmRjYXN0LWxvYWRnbg==\r\nSec-WebSocket-Version: 13\r\nX-API-Key: {api_key}\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(8 * 1024),
        start: 0,
        inflate: None,
    };
    // Read the response head; anything after it is already WebSocket data.
    loop {
        if let Some(end) = find(&conn.buf, b"\r\n\r\n") {
            if !conn.buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&conn.buf[..end.min(64)]).into_owned();
                return Err(io::Error::other(format!("upgrade refused: {line}")));
            }
            if !offer.is_empty() {
                let head = String::from_utf8_lossy(&conn.buf[..end]).to_ascii_lowercase();
                if !head.contains("sec-websocket-extensions: permessage-deflate") {
                    return Err(io::Error::other(
                        "--deflate: the server did not accept permessage-deflate",
                    ));
                }
                conn.inflate = Some(Box::new(Inflate {
                    state: flate2::Decompress::new(false),
                    out: Vec::with_capacity(4096),
                }));
            }
            conn.start = end + 4;
            return Ok(conn);
        }
        if conn.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during handshake",
            ));
        }
    }
}

/// Offer permessage-deflate on every connection (`--deflate`).
static DEFLATE: AtomicBool = AtomicBool::new(false);

/// From now on every connection offers permessage-deflate and fails if the
/// server does not take it.
pub fn use_deflate() {
    DEFLATE.store(true, Ordering::Relaxed);
}

/// One client connection with its read buffer.
pub struct Conn {
    pub stream: Stream,
    buf: Vec<u8>,
    start: usize,
    /// With permessage-deflate: the inflater and its output, reused.
    inflate: Option<Box<Inflate>>,
}

struct Inflate {
    state: flate2::Decompress,
    out: Vec<u8>,
}

/// A server frame as parsed: opcode and payload.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

impl Conn {
    /// Reads more bytes; returns how many (0 at EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.capacity() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(self.buf.capacity().max(8192));
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Waits until at least one complete frame is buffered; `false` at EOF.
    pub async fn ready(&mut self) -> io::Result<bool> {
        while frame_len(&self.buf[self.start..]).is_none() {
            if self.fill().await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next buffered frame, if complete; a compressed one (RSV1)
    /// inflated. One the loadgen cannot inflate comes out empty.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let data = &self.buf[self.start..];
        let (header, len) = frame_len(data)?;
        let opcode = data[0] & 0x0F;
        let compressed = data[0] & 0x40 != 0;
        self.start += header + len;
        let end = self.start;
        let payload = &self.buf[end - len..end];
        match (&mut self.inflate, compressed) {
            (Some(inflate), true) => Some(Frame {
                opcode,
                payload: inflate.message(payload),
            }),
            _ => Some(Frame { opcode, payload }),
        }
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(text.len() + 14);
        encode_text(&mut out, text);
        self.stream.write_all(&out).await
    }
}

impl Inflate {
    /// One message (no context takeover: each starts afresh), with the
    /// `00 00 ff ff` the sender removed put back (RFC 7692 section 7.2.2).
    fn message(&mut self, compressed: &[u8]) -> &[u8] {
        self.state.reset(false);
        self.out.clear();
        for mut input in [compressed, &[0, 0, 0xff, 0xff][..]] {
            loop {
                if self.out.capacity() - self.out.len() < 4096 {
                    self.out.reserve(4096);
                }
                let spare = self.out.capacity() - self.out.len();
                let (read, written) = (self.state.total_in(), self.state.total_out());
                let sync = flate2::FlushDecompress::Sync;
                if self
                    .state
                    .decompress_vec(input, &mut self.out, sync)
                    .is_err()
                {
                    self.out.clear();
                    return &self.out;
                }
                let used = (self.state.total_in() - read) as usize;
                let produced = (self.state.total_out() - written) as usize;
                input = &input[used..];
                if input.is_empty() && produced < spare {
                    break;
                }
                if used == 0 && produced == 0 {
                    self.out.clear();
                    return &self.out;
                }
            }
        }
        &self.out
    }
}

/// `(header length, payload length)` of a complete frame at the start of `data`.
fn frame_len(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < 2 {
        return None;
    }
    let (header, len) = match data[1] & 0x7F {
        126 if data.len() >= 4 => (4, u16::from_be_bytes([data[2], data[3]]) as usize),
        127 if data.len() >= 10 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&data[2..10]);
            (10, u64::from_be_bytes(be) as usize)
        }
        126 | 127 => return None,
        n => (2, n as usize),
    };
    (data.len() >= header + len).then_some((header, len))
}

/// Appends a masked text frame. The mask is zero: servers must accept any
/// mask, and a zero mask costs nothing to apply.
pub fn encode_text(out: &mut Vec<u8>, text: &[u8]) {
    out.push(0x81);
    match text.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(text);
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = 0;
    while at + needle.len() <= hay.len() {
        let rel = hay[at..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        at += rel;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// The unsigned integer at the start of `bytes`.
pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(value)
}

/// The value after `"name":` as an integer.
pub fn field_u64(hay: &[u8], name: &[u8]) -> Option<u64> {
    let at = find(hay, name)?;
    parse_u64(&hay[at + name.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_in_an_event() {
        let event = br#"{"type":"event","channel":"load.17","seq":1234,"ts":"2026-01-01T00:00:00.000Z","data":{"t":987654321,"p":"xx"}}"#;
        assert_eq!(field_u64(event, b"\"seq\":"), Some(1234));
        assert_eq!(field_u64(event, b"\"data\":{\"t\":"), Some(987654321));
        assert_eq!(find(event, b"nope"), None);
    }

    #[test]
    fn compressed_messages_inflate_one_by_one() {
        let mut inflate = Inflate {
            state: flate2::Decompress::new(false),
            out: Vec::new(),
        };
        for text in [crate::publish::market_text(20_000), "short".to_owned()] {
            let mut deflate = flate2::Compress::new(flate2::Compression::default(), false);
            let mut compressed = Vec::with_capacity(text.len() + 64);
            deflate
                .compress_vec(
                    text.as_bytes(),
                    &mut compressed,
                    flate2::FlushCompress::Sync,
                )
                .unwrap();
            assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
            compressed.truncate(compressed.len() - 4);
            assert!(compressed.len() < text.len() / 2 || text.len() < 100);
            assert_eq!(inflate.message(&compressed), text.as_bytes());
        }
        assert!(
            inflate.message(&[0xff; 8]).is_empty(),
            "garbage inflates to nothing"
        );
    }

    #[test]
    fn frame_lengths_need_the_whole_frame() {
        let mut frame = vec![0x81, 126, 0, 200];
        frame.extend(vec![b'x'; 200]);
        assert_eq!(frame_len(&frame), Some((4, 200)));
        assert_eq!(frame_len(&frame[..100]), None);
    }
}
