//! What the JSON protocols share: the error vocabulary ([`ErrorCode`]),
//! JSON framing, acks, timestamps, and the heartbeat-reply limiter.
//!
//! Plain functions and small values; owned by whichever session uses them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use shardcast_engine::frame::{self, FrameBuf, OpCode};
use shardcast_engine::write_iso8601;

use crate::auth::RefreshError;

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
    /// A resume cannot be answered with every event after its position
    /// (the `channel` field names which; the subscription holds).
    ResumeFailed,
}

#[derive(Serialize)]
struct ErrorMsg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    message: &'a str,
}

/// An `error` frame.
pub fn error_frame(code: ErrorCode, message: &str) -> Bytes {
    json_frame(&ErrorMsg {
        kind: "error",
        code,
        channel: None,
        message,
    })
}

/// An `error` frame about one channel, named in its `channel` field.
pub fn channel_error_frame(code: ErrorCode, channel: &str, message: &str) -> Bytes {
    json_frame(&ErrorMsg {
        kind: "error",
        code,
        channel: Some(channel),
        message,
    })
}

/// `{"type":"ack","action":…,"channels":[…]}`, with the token's expiry
/// after a refresh.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Ack<'a> {
    /// Always `ack`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The command acknowledged.
    pub action: &'static str,
    /// The channels it concerned.
    pub channels: &'a [Arc<str>],
    /// When the connection's token now expires (refresh only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// An `ack` frame for `action` on `channels`.
pub fn ack(action: &'static str, channels: &[Arc<str>]) -> Bytes {
    json_frame(&Ack {
        kind: "ack",
        action,
        channels,
        expires_at: None,
    })
}

/// `time` as ISO-8601 UTC with milliseconds.
pub fn iso(time: SystemTime) -> String {
    let mut out = BytesMut::with_capacity(24);
    write_iso8601(&mut out, time);
    String::from_utf8_lossy(&out).into_owned()
}

/// The `error` code of a refused refresh.
pub fn refresh_error_code(e: &RefreshError) -> ErrorCode {
    match e {
        RefreshError::NotToken => ErrorCode::InvalidMessage,
        RefreshError::Invalid(_) | RefreshError::NotLater => ErrorCode::Unauthorized,
        RefreshError::OtherUser => ErrorCode::Forbidden,
    }
}

/// An error body: `{"code":"…","message":"…"}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// When to try again (HTTP `Retry-After`), for limits that refill.
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_replies_are_limited_to_one_per_interval() {
        let mut replies = HeartbeatReplies::default();
        let start = Instant::now();
        assert!(replies.reply(start).is_some());
        assert!(replies.reply(start + Duration::from_millis(10)).is_none());
        assert!(replies.reply(start + Duration::from_millis(999)).is_none());
        assert!(replies.reply(start + HEARTBEAT_REPLY_INTERVAL).is_some());
    }
}
