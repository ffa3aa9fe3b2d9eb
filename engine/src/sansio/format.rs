//! Pluggable wire formats: how a message becomes a frame for one protocol.
//!
//! Registered once when the engine is built; read-only afterwards and shared
//! by all shards. A connection speaks exactly one format, chosen when it is
//! attached. A message may be framed differently when it is delivered live,
//! replayed from the ring, or sent as part of a snapshot ([`FrameKind`]);
//! each [`Variant`] (format and kind) is encoded at most once per message
//! (see [`crate::Message::frame`]), and a heartbeat at most once per tick per
//! shard. Any number of formats can be registered: a message caches only
//! the variants someone received, so its size does not grow with them.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::sansio::message::Message;
use crate::sansio::outbox::{first_in_object, GapField};

/// The most formats one engine can carry (a [`FormatId`] is 16 bits).
pub const MAX_FORMATS: usize = 1 << 16;

/// How a message reaches a subscriber, for formats that frame it differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Delivered as it is published.
    #[default]
    Live,
    /// Replayed from the topic's ring (a resume, or the last N).
    Replay,
    /// The latest message of its key, sent as part of a snapshot.
    Snapshot,
}

/// One way of framing a message: a format, a kind, and whether it is
/// compressed (permessage-deflate). Cached per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The wire format.
    pub format: FormatId,
    /// Live, replayed or snapshot.
    pub kind: FrameKind,
    /// For connections that negotiated permessage-deflate: the plain frame
    /// compressed (RSV1 set) once for all of them, or the plain frame
    /// itself when its payload is below [`Formats::deflate_min_size`] or
    /// does not shrink.
    pub deflated: bool,
}

impl Variant {
    /// This variant, compressed when `deflate` (see [`Variant::deflated`]).
    #[inline]
    pub fn deflated_if(self, deflate: bool) -> Self {
        Self {
            deflated: deflate,
            ..self
        }
    }
}

/// How messages of one protocol look on the wire. Shared by all shards.
pub trait WireFormat: Send + Sync + 'static {
    /// A short name for logs and stats.
    fn name(&self) -> &'static str;

    /// One complete WebSocket frame (header and payload) carrying `msg`,
    /// delivered as `kind` (always a kind [`WireFormat::frame_kind`]
    /// returns). Called at most once per message and variant.
    fn encode_event(&self, msg: &Message, kind: FrameKind) -> Bytes;

    /// The kind of frame this format sends for a message delivered as
    /// `kind`. By default every kind gets the live frame, so a replayed
    /// message costs no second encoding and no second frame. A format that
    /// frames replays or snapshots differently returns `kind`; a retained
    /// message then holds up to three frames of it, of which the history's
    /// byte accounting charges one.
    fn frame_kind(&self, kind: FrameKind) -> FrameKind {
        let _ = kind;
        FrameKind::Live
    }

    /// Where this format's event frames say how many events of their topic
    /// the connection missed just before (`"skipped":N,`, written into the
    /// frame after a gap, for that connection alone); `None`: the format
    /// does not say (its clients see only the jump in sequence). By
    /// default first in the payload's object.
    fn gap_field(&self) -> Option<GapField> {
        Some(first_in_object)
    }

    /// The frame sent to every connection of this format at each heartbeat
    /// tick, or `None` when the protocol has no server heartbeat.
    fn heartbeat(&self, now: SystemTime) -> Option<Bytes>;

    /// How often this format's heartbeat goes out; `None` (the default):
    /// the engine's `heartbeat_interval`. Checked on the shard's tick
    /// (250 ms), so intervals are rounded up to it.
    fn heartbeat_interval(&self) -> Option<Duration> {
        None
    }
}

/// Index of a registered format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FormatId(u16);

impl FormatId {
    #[cfg(test)]
    pub(crate) fn first() -> Self {
        Self(0)
    }

    /// Its index in registration order.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Its variant for `kind`.
    pub fn variant(self, kind: FrameKind) -> Variant {
        Variant {
            format: self,
            kind,
            deflated: false,
        }
    }
}

/// The engine's registered formats, and the size from which their frames
/// are compressed for connections that negotiated permessage-deflate.
/// Shared by all shards; read-only once the engine starts.
#[derive(Clone, Default)]
pub struct Formats {
    list: Vec<Arc<dyn WireFormat>>,
    deflate_min_size: usize,
}

impl fmt::Debug for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|fmt| fmt.name()))
            .finish()
    }
}

/// More formats than a [`FormatId`] can name.
#[derive(Debug, thiserror::Error)]
#[error("at most {MAX_FORMATS} wire formats can be registered")]
pub struct TooManyFormats;

impl Formats {
    /// Registers `format`, returning its id.
    pub fn register(&mut self, format: Arc<dyn WireFormat>) -> Result<FormatId, TooManyFormats> {
        if self.list.len() == MAX_FORMATS {
            return Err(TooManyFormats);
        }
        self.list.push(format);
        Ok(FormatId((self.list.len() - 1) as u16))
    }

    /// Compresses frames whose payload has at least `bytes` bytes (set by
    /// the engine from its config when it starts).
    pub fn set_deflate_min_size(&mut self, bytes: usize) {
        self.deflate_min_size = bytes;
    }

    /// Payload bytes from which a deflated variant is compressed; smaller
    /// payloads go plain, as RFC 7692 allows.
    #[inline]
    pub fn deflate_min_size(&self) -> usize {
        self.deflate_min_size
    }

    /// The format with `id`.
    #[inline]
    pub fn get(&self, id: FormatId) -> &dyn WireFormat {
        &*self.list[id.index()]
    }

    /// The variant whose frame `variant` is sent as (see
    /// [`WireFormat::frame_kind`]).
    #[inline]
    pub fn canonical(&self, variant: Variant) -> Variant {
        match variant.kind {
            FrameKind::Live => variant,
            kind => Variant {
                kind: self.get(variant.format).frame_kind(kind),
                ..variant
            },
        }
    }

    /// How many formats are registered.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every registered format with its id.
    pub fn iter(&self) -> impl Iterator<Item = (FormatId, &dyn WireFormat)> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, f)| (FormatId(i as u16), &**f))
    }
}

/// Appends `time` as ISO-8601 UTC with milliseconds, e.g. `2026-11-21T09:30:00.125Z`.
pub fn write_iso8601(out: &mut BytesMut, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut buf = [0u8; 24];
    let mut cursor = &mut buf[..];
    // Writing 24 bytes into a 24-byte array cannot fail for years 0..=9999.
    let _ = write!(
        cursor,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let written = 24 - cursor.len();
    out.put_slice(&buf[..written]);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(secs: u64, millis: u64) -> String {
        let mut out = BytesMut::new();
        write_iso8601(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
        );
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso(1_795_304_825, 125), "2026-11-21T23:47:05.125Z");
        assert_eq!(iso(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
