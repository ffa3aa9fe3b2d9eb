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

/// The highest rate a client may ask a subscription to be limited to
/// (telemetry `maxRate`, BondX `max_rate`), in updates a second; a
/// channel's `max_rate` may lower it.
pub const MAX_RATE: u32 = 10_000;

/// A client's maximum rate for a subscription, `field` of its command:
/// absent, or a whole number from 1 to [`MAX_RATE`]; otherwise the message
/// to send back.
pub fn max_rate(
    field: &str,
    value: Option<&simd_json::BorrowedValue<'_>>,
) -> Result<Option<std::num::NonZeroU32>, String> {
    use simd_json::prelude::ValueAsScalar;
    let Some(value) = value else {
        return Ok(None);
    };
    value
        .as_u64()
        .filter(|rate| *rate <= u64::from(MAX_RATE))
        .and_then(|rate| std::num::NonZeroU32::new(rate as u32))
        .map(Some)
        .ok_or_else(|| format!("\"{field}\" must be a whole number from 1 to {MAX_RATE}"))
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
struct ErrorMsg<'a, C> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: C,
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

/// An `error` frame carrying an API error's code and message (the
/// `/ws/publish` errors, coded as the HTTP publish API codes them).
pub fn api_error_frame(error: &ApiError) -> Bytes {
    json_frame(&ErrorMsg {
        kind: "error",
        code: error.code,
        channel: None,
        message: &error.message,
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

/// The code of an HTTP error body (`{"error":{"code":…,"message":…}}`),
/// and of the `error` frames of `/ws/publish`, so a publish is refused
/// with the same code on every path: what went wrong, for machines.
/// Written in `SCREAMING_SNAKE_CASE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiCode {
    /// No endpoint at this path (404).
    NotFound,
    /// The endpoint takes another method (405).
    MethodNotAllowed,
    /// The query is malformed: repeated parameters, too many channels (400).
    InvalidQuery,
    /// A credential cannot be read, or several were given (400).
    InvalidCredentials,
    /// No credential, or one that does not verify (401).
    Unauthorized,
    /// The credential lacks the role or the channel scope (403).
    Forbidden,
    /// A browser page from an origin that may not present credentials (403).
    OriginNotAllowed,
    /// A body that is not `application/json` (415).
    UnsupportedMediaType,
    /// The body did not arrive in time (408).
    RequestTimeout,
    /// The body is over its size limit (413).
    TooLarge,
    /// A publish that is not JSON: NaN, Infinity, text after the value,
    /// an empty body (400).
    InvalidJson,
    /// The body is not the shape the endpoint takes, or published `data`
    /// is not an object or array or repeats a key (400, or per message).
    InvalidMessage,
    /// A `/ws/publish` `action` that names no command.
    UnknownAction,
    /// Published `data` nests too deeply.
    TooDeep,
    /// The channel is not declared.
    UnknownChannel,
    /// The channel name is not a valid name.
    InvalidChannel,
    /// The message key is empty or too long.
    InvalidKey,
    /// A limit of the server or of the credential is reached.
    LimitReached,
    /// Over the credential's channel-creation rate (429, with `Retry-After`).
    RateLimited,
    /// The broker could not take the message.
    Unavailable,
    /// No connected client with this id (404).
    UnknownClient,
    /// A WebSocket endpoint asked without an upgrade, or another version (426).
    UpgradeRequired,
    /// A malformed WebSocket handshake (400).
    BadHandshake,
    /// A `clientId` that is not a valid id (400).
    InvalidClientId,
    /// No connection slot left (503, with `Retry-After`).
    ServerFull,
    /// The server is draining before it stops (503, with `Retry-After`):
    /// connect to another.
    ServerDraining,
}

impl ApiCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::NotFound => "NOT_FOUND",
            ApiCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiCode::InvalidQuery => "INVALID_QUERY",
            ApiCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ApiCode::Unauthorized => "UNAUTHORIZED",
            ApiCode::Forbidden => "FORBIDDEN",
            ApiCode::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            ApiCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiCode::RequestTimeout => "REQUEST_TIMEOUT",
            ApiCode::TooLarge => "TOO_LARGE",
            ApiCode::InvalidJson => "INVALID_JSON",
            ApiCode::InvalidMessage => "INVALID_MESSAGE",
            ApiCode::UnknownAction => "UNKNOWN_ACTION",
            ApiCode::TooDeep => "TOO_DEEP",
            ApiCode::UnknownChannel => "UNKNOWN_CHANNEL",
            ApiCode::InvalidChannel => "INVALID_CHANNEL",
            ApiCode::InvalidKey => "INVALID_KEY",
            ApiCode::LimitReached => "LIMIT_REACHED",
            ApiCode::RateLimited => "RATE_LIMITED",
            ApiCode::Unavailable => "UNAVAILABLE",
            ApiCode::UnknownClient => "UNKNOWN_CLIENT",
            ApiCode::UpgradeRequired => "UPGRADE_REQUIRED",
            ApiCode::BadHandshake => "BAD_HANDSHAKE",
            ApiCode::InvalidClientId => "INVALID_CLIENT_ID",
            ApiCode::ServerFull => "SERVER_FULL",
            ApiCode::ServerDraining => "SERVER_DRAINING",
        }
    }
}

impl std::fmt::Display for ApiCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error body: `{"code":"…","message":"…"}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ApiCode,
    /// What went wrong, for a person.
    pub message: String,
    /// When to try again (HTTP `Retry-After`), for limits that refill.
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ApiCode, message: impl Into<String>) -> Self {
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
