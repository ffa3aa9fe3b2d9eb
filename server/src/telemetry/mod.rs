//! The telemetry protocol (`/ws/telemetry`): its wire format and its session.
//!
//! Server → client text frames are JSON objects named by `type`: `welcome`,
//! `ack`, `event`, `heartbeat`, `error`. Client → server frames are JSON
//! objects named by `action`: `subscribe`, `unsubscribe`, `heartbeat`,
//! `refresh`. docs/protocol.md is the reference.
//!
//! Events are encoded once per message by [`TelemetryFormat`], with the
//! publisher's `data` copied byte for byte (key order and spacing kept).
//! Client commands are parsed in place with simd-json; every malformed one
//! gets an `error` frame and changes nothing.

mod command;
mod session;

use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes};
use serde::Serialize;
use shardcast_engine::frame::{self, FrameBuf, OpCode};
use shardcast_engine::{json, write_iso8601, FrameKind, Message, WireFormat};

pub use command::{parse_command, Command, CommandError};
pub use session::TelemetrySession;
pub(crate) use session::{iso, refresh_error_code, Ack};

/// The telemetry wire format. Shared by all shards.
#[derive(Debug, Default)]
pub struct TelemetryFormat;

impl WireFormat for TelemetryFormat {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn encode_event(&self, msg: &Message, _kind: FrameKind) -> Bytes {
        let key_len = msg.key.as_ref().map_or(0, |k| k.len() + 12);
        let mut frame =
            FrameBuf::with_capacity(96 + msg.topic_name.len() + key_len + msg.data.len());
        let out = frame.payload();
        out.put_slice(b"{\"type\":\"event\",\"channel\":");
        json::write_str(out, &msg.topic_name);
        out.put_slice(b",\"seq\":");
        out.put_slice(itoa::Buffer::new().format(msg.seq).as_bytes());
        out.put_slice(b",\"ts\":\"");
        write_iso8601(out, msg.timestamp);
        out.put_u8(b'"');
        if let Some(key) = &msg.key {
            out.put_slice(b",\"key\":");
            json::write_str(out, key);
        }
        out.put_slice(b",\"data\":");
        out.put_slice(&msg.data);
        out.put_u8(b'}');
        frame.finish(OpCode::Text)
    }

    fn heartbeat(&self, now: SystemTime) -> Option<Bytes> {
        Some(heartbeat_frame(now))
    }
}

/// A connection is answered at most one heartbeat per this interval.
///
/// A client that answers every server heartbeat (as clients are told to)
/// would otherwise ping-pong with the server's answer to its own heartbeat,
/// forever and as fast as the network allows.
pub const HEARTBEAT_REPLY_INTERVAL: Duration = Duration::from_secs(1);

/// Answers client heartbeats, at most one per [`HEARTBEAT_REPLY_INTERVAL`].
/// Owned by one connection's session.
#[derive(Debug, Default)]
pub struct HeartbeatReplies {
    last: Option<Instant>,
}

impl HeartbeatReplies {
    /// The reply to a client heartbeat at `now`, unless one was sent too recently.
    pub fn reply(&mut self, now: Instant) -> Option<Bytes> {
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < HEARTBEAT_REPLY_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(heartbeat_frame(SystemTime::now()))
    }
}

/// `{"type":"heartbeat","ts":"…"}`.
pub fn heartbeat_frame(now: SystemTime) -> Bytes {
    let mut frame = FrameBuf::with_capacity(48);
    let out = frame.payload();
    out.put_slice(b"{\"type\":\"heartbeat\",\"ts\":\"");
    write_iso8601(out, now);
    out.put_slice(b"\"}");
    frame.finish(OpCode::Text)
}

/// Serializes a server message into a text frame.
pub fn json_frame<T: Serialize>(value: &T) -> Bytes {
    // Our own message types always serialize.
    let payload = serde_json::to_vec(value).unwrap_or_default();
    frame::encode(OpCode::Text, &payload)
}

/// Error codes carried in `error` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// JSON, but not the shape of any command (wrong types, missing fields).
    InvalidMessage,
    /// The JSON nests deeper than the limit for its kind.
    TooDeep,
    /// `action` names no command.
    UnknownAction,
    /// A channel is not declared (or its name is invalid).
    UnknownChannel,
    /// Unsubscribing from a channel the connection does not hold.
    NotSubscribed,
    /// The connection or the server is at a limit.
    LimitReached,
    /// A publish was refused.
    PublishFailed,
    /// The connection's credentials do not allow this (a channel out of scope).
    Forbidden,
    /// A token sent with `refresh` was refused.
    Unauthorized,
    /// More commands than the connection may send per second.
    RateLimited,
}

#[derive(Serialize)]
struct ErrorMsg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    message: &'a str,
}

/// An `error` frame.
pub fn error_frame(code: ErrorCode, message: &str) -> Bytes {
    json_frame(&ErrorMsg {
        kind: "error",
        code,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::TopicId;

    #[test]
    fn heartbeat_replies_are_limited_to_one_per_interval() {
        let mut replies = HeartbeatReplies::default();
        let start = Instant::now();
        assert!(replies.reply(start).is_some());
        assert!(replies.reply(start + Duration::from_millis(10)).is_none());
        assert!(replies.reply(start + Duration::from_millis(999)).is_none());
        assert!(replies.reply(start + HEARTBEAT_REPLY_INTERVAL).is_some());
    }

    #[test]
    fn events_carry_the_data_exactly_as_published() {
        let data = r#"{"z":1, "a":[true,null],"m":"\u00e9"}"#;
        let mut msg = Message::new(
            TopicId::new(0, 0),
            "market-data".into(),
            shardcast_engine::Epoch::from_u64(1),
            7,
            Some("A\"B".into()),
            Bytes::from(data),
        );
        msg.timestamp = SystemTime::UNIX_EPOCH;
        let frame = TelemetryFormat.encode_event(&msg, FrameKind::Live);
        // Text frame, 126-length form, payload after a 4-byte header.
        assert_eq!(frame[0], 0x81);
        let payload = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(
            payload,
            format!(
                r#"{{"type":"event","channel":"market-data","seq":7,"ts":"1970-01-01T00:00:00.000Z","key":"A\"B","data":{data}}}"#
            )
        );
        let parsed: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(parsed["key"], "A\"B");
    }
}
