//! A message as it travels on the bus and sits in the bus's history: one
//! byte string, the same in both places.
//!
//! ```text
//! <epoch:16 hex>:<seq>:<origin>:<published µs since 1970>:<kind e|a>:<keep 1|0>:<key length>:<key><data>
//! ```
//!
//! On Redis the bus's publish script writes the first two fields (it
//! numbers the message) and the publishing server the rest ([`body`]); on
//! NATS the publishing server writes them all, numbered as it numbered the
//! message itself ([`numbered`]). Every field
//! is bounded before it is trusted: a message that does not parse is
//! counted and dropped, never delivered half-read.
//!
//! Sans-IO; used by the broker's own thread.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shardcast_engine::{Epoch, MessageKind, Numbered, Publication, MAX_KEY_LEN};

/// Longest node id (`[broker] node_id`).
pub const MAX_NODE_ID: usize = 64;

/// A message read off the bus: where it came from, and the message.
#[derive(Debug)]
pub struct Envelope {
    /// The node that published it.
    pub origin: String,
    /// The message as the bus numbered it.
    pub message: Numbered,
}

/// Why a bus message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed bus message: {0}")]
pub struct Malformed(&'static str);

/// Whether `id` may name a node: 1-64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a message's publisher writes of it, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// Optional key.
    pub key: Option<&'a str>,
    /// The payload as published.
    pub data: &'a [u8],
    /// Event or alert.
    pub kind: MessageKind,
    /// Delivered but not kept in the history.
    pub transient: bool,
}

impl<'a> From<&'a Publication> for Parts<'a> {
    fn from(publication: &'a Publication) -> Self {
        Self {
            key: publication.key.as_deref(),
            data: &publication.data,
            kind: publication.kind,
            transient: publication.transient,
        }
    }
}

/// The part of a message its publisher writes (everything after the seq).
pub fn body(origin: &str, publication: &Publication, now: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(publication.data.len() + 64);
    write_body(&mut out, origin, &publication.into(), now);
    out
}

/// A whole message, numbered by its publisher: `(epoch, seq)` as this
/// server numbered it (a bus that does not number messages itself: NATS).
pub fn numbered(
    epoch: Epoch,
    seq: u64,
    origin: &str,
    parts: &Parts<'_>,
    now: SystemTime,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.data.len() + 96);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{epoch}:{seq}:");
    write_body(&mut out, origin, parts, now);
    out
}

fn write_body(out: &mut Vec<u8>, origin: &str, parts: &Parts<'_>, now: SystemTime) {
    let micros = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let key = parts.key.unwrap_or("");
    let kind = match parts.kind {
        MessageKind::Event => 'e',
        MessageKind::Alert => 'a',
    };
    let keep = if parts.transient { 0 } else { 1 };
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{origin}:{micros}:{kind}:{keep}:{}:{key}", key.len());
    out.extend_from_slice(parts.data);
}

/// Reads a whole bus message (as published, or as the history holds it).
pub fn parse(raw: &[u8]) -> Result<Envelope, Malformed> {
    let mut rest = raw;
    let epoch = field(&mut rest, 16, "epoch")?;
    let epoch = u64::from_str_radix(epoch, 16).map_err(|_| Malformed("epoch"))?;
    let seq = number(&mut rest, "seq")?;
    if seq == 0 {
        return Err(Malformed("seq"));
    }
    let origin = field(&mut rest, MAX_NODE_ID, "origin")?;
    if !valid_node_id(origin) {
        return Err(Malformed("origin"));
    }
    let origin = origin.to_owned();
    let micros = number(&mut rest, "timestamp")?;
    let kind = match field(&mut rest, 1, "kind")? {
        "e" => MessageKind::Event,
        "a" => MessageKind::Alert,
        _ => return Err(Malformed("kind")),
    };
    let transient = match field(&mut rest, 1, "keep")? {
        "1" => false,
        "0" => true,
        _ => return Err(Malformed("keep")),
    };
    let key_len = usize::try_from(number(&mut rest, "key length")?)
        .ok()
        .filter(|&n| n <= MAX_KEY_LEN && n <= rest.len())
        .ok_or(Malformed("key length"))?;
    let (key, data) = rest.split_at(key_len);
    let key = match key_len {
        0 => None,
        _ => Some(
            std::str::from_utf8(key)
                .map_err(|_| Malformed("key"))?
                .into(),
        ),
    };
    let timestamp = UNIX_EPOCH
        .checked_add(Duration::from_micros(micros))
        .ok_or(Malformed("timestamp"))?;
    Ok(Envelope {
        origin,
        message: Numbered {
            epoch: Epoch::from_u64(epoch),
            seq,
            key,
            data: Bytes::copy_from_slice(data),
            kind,
            timestamp,
            transient,
        },
    })
}

/// The next `:`-terminated field, at most `max` bytes of ASCII.
fn field<'a>(rest: &mut &'a [u8], max: usize, what: &'static str) -> Result<&'a str, Malformed> {
    let end = rest
        .iter()
        .take(max + 1)
        .position(|&b| b == b':')
        .ok_or(Malformed(what))?;
    let (value, tail) = rest.split_at(end);
    *rest = &tail[1..];
    let value = std::str::from_utf8(value).map_err(|_| Malformed(what))?;
    if value.is_empty() {
        return Err(Malformed(what));
    }
    Ok(value)
}

/// The next field as a decimal number (at most 20 digits).
fn number(rest: &mut &[u8], what: &'static str) -> Result<u64, Malformed> {
    let text = field(rest, 20, what)?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed(what));
    }
    text.parse().map_err(|_| Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered_prefix(epoch: u64, seq: u64) -> Vec<u8> {
        format!("{epoch:016x}:{seq}:").into_bytes()
    }

    #[test]
    fn a_message_reads_back_as_published() {
        let publication =
            Publication::new(Some("AAPL".into()), Bytes::from_static(b"{\"px\":1:2}"))
                .with_kind(MessageKind::Alert);
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let mut raw = numbered_prefix(0xabc, 42);
        raw.extend(body("node-a", &publication, at));
        let envelope = parse(&raw).unwrap();
        assert_eq!(envelope.origin, "node-a");
        let m = envelope.message;
        assert_eq!((m.epoch.as_u64(), m.seq), (0xabc, 42));
        assert_eq!(m.key.as_deref(), Some("AAPL"));
        assert_eq!(&m.data[..], b"{\"px\":1:2}");
        assert_eq!(m.kind, MessageKind::Alert);
        assert_eq!(m.timestamp, at);
        assert!(!m.transient);
    }

    #[test]
    fn a_transient_message_numbered_by_its_publisher_reads_back() {
        let publication = Publication::new(None, Bytes::from_static(b"1")).transient();
        let raw = numbered(
            Epoch::from_u64(7),
            3,
            "n",
            &(&publication).into(),
            SystemTime::now(),
        );
        let m = parse(&raw).unwrap().message;
        assert_eq!((m.epoch.as_u64(), m.seq), (7, 3));
        assert!(m.transient && m.key.is_none());
        assert_eq!(&m.data[..], b"1");
    }

    #[test]
    fn malformed_messages_are_refused_naming_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "epoch"),
            (b"zz:1:n:1:e:1:0:x", "epoch"),
            (b"1:0:n:1:e:1:0:x", "seq"),
            (b"1:1:bad id:1:e:1:0:x", "origin"),
            (b"1:1:n:1:x:1:0:x", "kind"),
            (b"1:1:n:1:e:2:0:x", "keep"),
            (b"1:1:n:1:e:1:9:ab", "key length"),
            (b"1:1:n:1:e:1:999999999999999999999:ab", "key length"),
            (b"1:1:n:99999999999999999999:e:1:0:", "timestamp"),
        ];
        for (raw, what) in cases {
            assert_eq!(parse(raw).unwrap_err(), Malformed(what), "{raw:?}");
        }
    }

    #[test]
    fn node_ids_are_bounded_and_plain() {
        assert!(valid_node_id("node-1.eu_west"));
        assert!(!valid_node_id(""));
        assert!(!valid_node_id("a:b"));
        assert!(!valid_node_id(&"x".repeat(MAX_NODE_ID + 1)));
    }
}
