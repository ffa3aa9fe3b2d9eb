//! The BondX envelope, written straight into WebSocket frames.
//!
//! Every server frame is one JSON object:
//! `{"type","topic","seq","ts","payload","meta","correlation_id"}` — `topic`
//! `null` and `seq` 0 on frames about no topic (pong, heartbeat, most
//! errors), `correlation_id` `null` unless a client message caused the
//! frame. Error frames repeat the reference document's fields at the top
//! level too: `error`, `code`, `details`, `timestamp`.
//!
//! Deltas and alerts are encoded once per message by the format
//! (`BondxFormat`); everything here is per connection (acks, errors,
//! snapshots built for one subscriber).

use std::num::NonZeroU32;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use shardcast_engine::frame::{FrameBuf, OpCode};
use shardcast_engine::{json, write_iso8601, Epoch, Message, Position, ReplayError, Subscribed};

use super::command::{Code, Subscribe};

/// The fields every envelope has, besides its payload and meta.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    /// `type`.
    pub kind: &'static str,
    /// `topic` (`null` when `None`).
    pub topic: Option<&'a str>,
    /// `seq` (0 on frames about no topic).
    pub seq: u64,
    /// `correlation_id`, as JSON text (`null` when `None`).
    pub correlation_id: Option<&'a str>,
}

/// Writes an envelope's fields up to `"payload":`, leaving the payload to
/// the caller, who then calls [`finish`].
pub fn begin(out: &mut BytesMut, head: &Head<'_>, ts: SystemTime) {
    out.put_slice(b"{\"type\":\"");
    out.put_slice(head.kind.as_bytes());
    out.put_slice(b"\",\"topic\":");
    match head.topic {
        Some(topic) => json::write_str(out, topic),
        None => out.put_slice(b"null"),
    }
    out.put_slice(b",\"seq\":");
    out.put_slice(itoa::Buffer::new().format(head.seq).as_bytes());
    out.put_slice(b",\"ts\":\"");
    write_iso8601(out, ts);
    out.put_slice(b"\",\"payload\":");
}

/// Writes `meta` (a JSON object) and `correlation_id`, and closes the object.
pub fn finish(out: &mut BytesMut, meta: &[u8], correlation_id: Option<&str>) {
    out.put_slice(b",\"meta\":");
    out.put_slice(meta);
    out.put_slice(b",\"correlation_id\":");
    out.put_slice(correlation_id.unwrap_or("null").as_bytes());
    out.put_u8(b'}');
}

/// A whole envelope with a payload and meta given as JSON text.
pub fn frame(head: &Head<'_>, payload: &[u8], meta: &[u8]) -> Bytes {
    let mut frame = FrameBuf::with_capacity(128 + payload.len() + meta.len());
    let out = frame.payload();
    begin(out, head, SystemTime::now());
    out.put_slice(payload);
    finish(out, meta, head.correlation_id);
    frame.finish(OpCode::Text)
}

/// Writes `epoch` as the 16 hexadecimal digits of its `Display`, quoted.
fn write_epoch(out: &mut BytesMut, epoch: Epoch) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let value = epoch.as_u64();
    out.put_u8(b'"');
    for shift in (0..16).rev() {
        out.put_u8(HEX[((value >> (shift * 4)) & 0xf) as usize]);
    }
    out.put_u8(b'"');
}

/// An `ack` about `topic` (or none) with `payload`, answering
/// `correlation_id`.
pub fn ack(
    topic: Option<&str>,
    correlation_id: Option<&str>,
    payload: &serde_json::Value,
) -> Bytes {
    let head = Head {
        kind: "ack",
        topic,
        seq: 0,
        correlation_id,
    };
    frame(&head, payload.to_string().as_bytes(), b"{}")
}

/// The `ack` of a subscribe: what was asked, echoed, and where the
/// subscription starts (`seq`, `meta.epoch`).
pub fn subscribe_ack(
    request: &Subscribe,
    sub: &Subscribed,
    max_rate: Option<NonZeroU32>,
    correlation_id: Option<&str>,
) -> Bytes {
    let mut payload = serde_json::json!({"action": "subscribe", "status": "ok"});
    if let Some(rate) = max_rate {
        payload["max_rate"] = rate.get().into();
    }
    if let Some(size) = request.batch_size {
        payload["batch_size"] = size.into();
    }
    if let Some(compression) = request.compression {
        payload["compression"] = compression.into();
    }
    if let Some(seq) = request.resume_from_seq {
        payload["resume_from_seq"] = seq.into();
    }
    if !sub.new {
        payload["already_subscribed"] = true.into();
    }
    let mut payload = payload.to_string();
    if let Some(subtopics) = &request.subtopics {
        // Echoed as the client sent it (compact JSON from the parser),
        // spliced in: a round trip through `serde_json::Value` would give
        // some keys a meaning of their own.
        payload.pop();
        payload.push_str(",\"subtopics\":");
        payload.push_str(subtopics);
        payload.push('}');
    }
    let head = Head {
        kind: "ack",
        topic: Some(sub.topic.name()),
        seq: sub.position.seq,
        correlation_id,
    };
    frame(
        &head,
        payload.as_bytes(),
        &meta_with_epoch(sub.position.epoch, None),
    )
}

/// The envelope of a delta or alert for `msg`: `meta.epoch` always (so a
/// client can tell a restarted topic's seqs from the ones it had),
/// `meta.key` when keyed.
pub fn delta(frame: &mut FrameBuf, msg: &Message, kind: &'static str) {
    let out = frame.payload();
    let head = Head {
        kind,
        topic: Some(&msg.topic_name),
        seq: msg.seq,
        correlation_id: None,
    };
    begin(out, &head, msg.timestamp);
    out.put_slice(&msg.data);
    out.put_slice(b",\"meta\":{\"epoch\":");
    write_epoch(out, msg.epoch);
    if let Some(key) = &msg.key {
        out.put_slice(b",\"key\":");
        json::write_str(out, key);
    }
    out.put_slice(b"},\"correlation_id\":null}");
}

/// Where a delta says how many of its topic's messages the connection
/// missed just before it: first in its `meta` (`"meta":{"skipped":3,
/// "epoch":…}`). The last `,"meta":{` of the envelope is its own — the
/// payload comes before it, and only escaped strings after.
pub fn gap_field(payload: &[u8]) -> Option<usize> {
    const META: &[u8] = b",\"meta\":{";
    payload
        .windows(META.len())
        .rposition(|w| w == META)
        .map(|at| at + META.len())
}

/// An `error` envelope, with the document's fields at the top level too.
pub fn error(
    code: Code,
    message: &str,
    topic: Option<&str>,
    details: Option<&serde_json::Value>,
    correlation_id: Option<&str>,
) -> Bytes {
    let now = SystemTime::now();
    let mut body = BytesMut::with_capacity(96 + message.len());
    body.put_slice(b"{\"error\":");
    json::write_str(&mut body, message);
    body.put_slice(b",\"code\":\"");
    body.put_slice(code.as_str().as_bytes());
    body.put_slice(b"\",\"details\":");
    match details {
        Some(details) => body.put_slice(&serde_json::to_vec(details).unwrap_or_default()),
        None => body.put_slice(b"{}"),
    }
    body.put_slice(b",\"timestamp\":\"");
    write_iso8601(&mut body, now);
    body.put_slice(b"\"}");
    let head = Head {
        kind: "error",
        topic,
        seq: 0,
        correlation_id,
    };
    let mut frame = FrameBuf::with_capacity(2 * body.len() + 128);
    let out = frame.payload();
    begin(out, &head, now);
    out.put_slice(&body);
    finish(out, b"{}", correlation_id);
    // The same fields again at the top level: drop the closing brace and
    // append the body's fields.
    out.truncate(out.len() - 1);
    out.put_u8(b',');
    out.put_slice(&body[1..]);
    frame.finish(OpCode::Text)
}

/// Why a resume could not be answered, as `meta` says it.
pub fn resume_failure(asked: u64, e: &ReplayError) -> serde_json::Value {
    match *e {
        ReplayError::TooOld { oldest, last, .. } => serde_json::json!({
            "resume": "failed", "reason": "history_exceeded",
            "requested_seq": asked, "oldest_seq": oldest, "last_seq": last,
        }),
        ReplayError::Ahead { last, .. } => serde_json::json!({
            "resume": "failed", "reason": "ahead_of_topic",
            "requested_seq": asked, "last_seq": last,
        }),
        ReplayError::EpochMismatch { asked: epoch, .. } => serde_json::json!({
            "resume": "failed", "reason": "epoch_changed",
            "requested_seq": asked, "requested_epoch": epoch.to_string(),
        }),
    }
}

/// A `snapshot` of `topic` at `position`: `payload` is the latest data of
/// each key (an object) when `keyed`, else the latest data (`null` for an
/// empty topic). `meta` holds the epoch plus `extra`'s fields.
pub fn snapshot(
    topic: &str,
    position: Position,
    messages: &[std::sync::Arc<Message>],
    extra: Option<&serde_json::Value>,
    correlation_id: Option<&str>,
) -> Bytes {
    let data_len: usize = messages
        .iter()
        .map(|m| m.data.len() + m.key.as_ref().map_or(0, |k| k.len() + 4))
        .sum();
    let mut frame = FrameBuf::with_capacity(192 + topic.len() + data_len);
    let out = frame.payload();
    let head = Head {
        kind: "snapshot",
        topic: Some(topic),
        seq: position.seq,
        correlation_id,
    };
    begin(out, &head, SystemTime::now());
    let keyed = messages.iter().any(|m| m.key.is_some());
    // Messages were published but none is held (history 0, or evicted for
    // memory): the payload cannot say the state, and `meta` says so.
    let unknown = messages.is_empty() && position.seq > 0;
    if keyed {
        out.put_u8(b'{');
        let mut first = true;
        for msg in messages {
            let Some(key) = &msg.key else { continue };
            if !std::mem::take(&mut first) {
                out.put_u8(b',');
            }
            json::write_str(out, key);
            out.put_u8(b':');
            out.put_slice(&msg.data);
        }
        out.put_u8(b'}');
    } else {
        match messages.last() {
            Some(msg) => out.put_slice(&msg.data),
            None => out.put_slice(b"null"),
        }
    }
    let mut meta = meta_with_epoch(position.epoch, extra);
    if unknown {
        meta.pop();
        meta.extend_from_slice(b",\"state\":\"unavailable\"}");
    }
    finish(out, &meta, correlation_id);
    frame.finish(OpCode::Text)
}

/// `{"epoch":"…", …extra}` as JSON text.
pub fn meta_with_epoch(epoch: Epoch, extra: Option<&serde_json::Value>) -> Vec<u8> {
    let mut meta = serde_json::Map::new();
    meta.insert("epoch".into(), epoch.to_string().into());
    if let Some(serde_json::Value::Object(extra)) = extra {
        meta.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    serde_json::to_vec(&meta).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// The JSON of an unmasked server text frame.
    pub(crate) fn parse(frame: &[u8]) -> Value {
        assert_eq!(frame[0], 0x81, "a final text frame");
        let start = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    #[test]
    fn errors_carry_the_envelope_and_the_documents_fields() {
        let details = serde_json::json!({"topic": "prices.X", "limit": "100 per minute"});
        let frame = error(
            Code::RateLimitExceeded,
            "Rate limit exceeded",
            Some("prices.X"),
            Some(&details),
            Some("\"c-1\""),
        );
        let v = parse(&frame);
        for (key, want) in [
            ("type", Value::from("error")),
            ("topic", "prices.X".into()),
            ("seq", 0.into()),
            ("correlation_id", "c-1".into()),
            ("error", "Rate limit exceeded".into()),
            ("code", "RATE_LIMIT_EXCEEDED".into()),
            ("details", details.clone()),
        ] {
            assert_eq!(v[key], want, "{key}: {v}");
        }
        assert_eq!(v["payload"]["code"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(v["meta"], serde_json::json!({}));
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        let mut out = BytesMut::new();
        write_epoch(&mut out, Epoch::from_u64(0x00ab_cdef_0123_4567));
        let shown = format!("\"{}\"", Epoch::from_u64(0x00ab_cdef_0123_4567));
        assert_eq!(&out[..], shown.as_bytes());
        assert_eq!(v["timestamp"].as_str().unwrap().len(), 24);
    }
}
