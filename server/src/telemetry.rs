//! The telemetry protocol (`/ws/telemetry`): its wire format and its session.
//!
//! Server → client text frames are JSON objects named by `type`: `welcome`,
//! `ack`, `event`, `heartbeat`, `error`. Client → server frames are JSON
//! objects named by `action`: `subscribe`, `unsubscribe`, `heartbeat`.
//! docs/protocol.md is the reference.
//!
//! Events are encoded once per message by [`TelemetryFormat`], with the
//! publisher's `data` copied byte for byte (key order and spacing kept).
//! Client commands are parsed in place with simd-json; every malformed one
//! gets an `error` frame and changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes};
use serde::Serialize;
use shardcast_engine::frame::{self, FrameBuf, OpCode};
use shardcast_engine::{write_iso8601, ConnCtx, Message, Session, SubscribeError, WireFormat};
use simd_json::prelude::*;
use tracing::debug;

use crate::input::{check_depth, truncate, MAX_COMMAND_DEPTH};
use crate::App;

/// The telemetry wire format. Shared by all shards.
#[derive(Debug, Default)]
pub struct TelemetryFormat;

impl WireFormat for TelemetryFormat {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn encode_event(&self, msg: &Message) -> Bytes {
        let key_len = msg.key.as_ref().map_or(0, |k| k.len() + 12);
        let mut frame =
            FrameBuf::with_capacity(96 + msg.topic_name.len() + key_len + msg.data.len());
        let out = frame.payload();
        out.put_slice(b"{\"type\":\"event\",\"channel\":\"");
        // Topic names are validated to need no escaping.
        out.put_slice(msg.topic_name.as_bytes());
        out.put_slice(b"\",\"seq\":");
        out.put_slice(itoa::Buffer::new().format(msg.seq).as_bytes());
        out.put_slice(b",\"ts\":\"");
        write_iso8601(out, msg.timestamp);
        out.put_u8(b'"');
        if let Some(key) = &msg.key {
            out.put_slice(b",\"key\":");
            // Writing a string into memory cannot fail.
            let _ = serde_json::to_writer(out.writer(), &**key);
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Welcome<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    client_id: &'a str,
    heartbeat_interval_seconds: u64,
    heartbeat_timeout_seconds: u64,
    rate_limit_per_second: u32,
    replay_limit: usize,
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    action: &'static str,
    channels: &'a [Arc<str>],
}

/// A parsed client command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Subscribe to channels, optionally replaying their history.
    Subscribe {
        /// Channel names as sent.
        channels: Vec<String>,
        /// Replay after the ack.
        replay: bool,
    },
    /// Leave channels.
    Unsubscribe {
        /// Channel names as sent.
        channels: Vec<String>,
    },
    /// Liveness; answered with a heartbeat.
    Heartbeat,
}

/// Why a client frame is not a command.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The error code to send.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
}

fn command_error(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// Parses a client command in place. At most `max_channels` channels per
/// command, and at most [`MAX_COMMAND_DEPTH`] levels of nesting, checked
/// before the parser (which recurses per level) sees the text.
pub fn parse_command(text: &mut [u8], max_channels: usize) -> Result<Command, CommandError> {
    check_depth(text, MAX_COMMAND_DEPTH)
        .map_err(|e| command_error(ErrorCode::TooDeep, format!("command refused: {e}")))?;
    let value = simd_json::to_borrowed_value(text)
        .map_err(|e| command_error(ErrorCode::InvalidJson, format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(command_error(
            ErrorCode::InvalidMessage,
            "a command must be a JSON object",
        ));
    }
    let action = match value.get("action") {
        None => {
            return Err(command_error(
                ErrorCode::InvalidMessage,
                "missing \"action\"",
            ))
        }
        Some(action) => action.as_str().ok_or_else(|| {
            command_error(ErrorCode::InvalidMessage, "\"action\" must be a string")
        })?,
    };
    let channels = || -> Result<Vec<String>, CommandError> {
        let list = value
            .get("channels")
            .and_then(|c| c.as_array())
            .ok_or_else(|| {
                command_error(
                    ErrorCode::InvalidMessage,
                    "\"channels\" must be an array of strings",
                )
            })?;
        if list.len() > max_channels {
            return Err(command_error(
                ErrorCode::LimitReached,
                format!("at most {max_channels} channels per command"),
            ));
        }
        list.iter()
            .map(|c| {
                c.as_str().map(str::to_owned).ok_or_else(|| {
                    command_error(
                        ErrorCode::InvalidMessage,
                        "\"channels\" must be an array of strings",
                    )
                })
            })
            .collect()
    };
    match action {
        "subscribe" => {
            let replay = match value.get("replay") {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| {
                    command_error(
                        ErrorCode::InvalidMessage,
                        "\"replay\" must be true or false",
                    )
                })?,
            };
            Ok(Command::Subscribe {
                channels: channels()?,
                replay,
            })
        }
        "unsubscribe" => Ok(Command::Unsubscribe {
            channels: channels()?,
        }),
        "heartbeat" => Ok(Command::Heartbeat),
        other => Err(command_error(
            ErrorCode::UnknownAction,
            format!(
                "unknown action {:?}: use subscribe, unsubscribe or heartbeat",
                truncate(other, 64)
            ),
        )),
    }
}

/// One `/ws/telemetry` connection. Owned by its shard.
#[derive(Debug)]
pub struct TelemetrySession {
    app: Arc<App>,
    initial_channels: Vec<String>,
    initial_replay: bool,
    heartbeats: HeartbeatReplies,
}

impl TelemetrySession {
    /// A session that subscribes to `channels` once open.
    pub fn new(app: Arc<App>, channels: Vec<String>, replay: bool) -> Self {
        Self {
            app,
            initial_channels: channels,
            initial_replay: replay,
            heartbeats: HeartbeatReplies::default(),
        }
    }

    /// Subscribes, then sends in order: the ack (channels now held from this
    /// request), an error naming any refused channels, the replay.
    fn subscribe(&self, ctx: &mut ConnCtx<'_>, channels: &[String], replay: bool) {
        let limit = replay.then_some(self.app.config.replay_limit);
        let mut subscribed = Vec::with_capacity(channels.len());
        let mut replays = Vec::new();
        let mut unknown = Vec::new();
        let mut limited = None;
        for name in channels {
            match ctx.subscribe(name, limit) {
                Ok(sub) => {
                    if !sub.replay.is_empty() {
                        replays.push(sub.replay);
                    }
                    subscribed.push(Arc::clone(sub.topic.name()));
                }
                Err(SubscribeError::Topic(e)) => unknown.push((name.as_str(), e.to_string())),
                Err(e @ SubscribeError::TooMany { .. }) => limited = Some(e.to_string()),
            }
        }
        ctx.send(json_frame(&Ack {
            kind: "ack",
            action: "subscribe",
            channels: &subscribed,
        }));
        match unknown.as_slice() {
            [] => {}
            [(_, message)] => ctx.send(error_frame(ErrorCode::UnknownChannel, message)),
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _)| truncate(n, 128)).collect();
                let message = format!("unknown channels: {}", names.join(", "));
                ctx.send(error_frame(ErrorCode::UnknownChannel, &message));
            }
        }
        if let Some(message) = limited {
            ctx.send(error_frame(ErrorCode::LimitReached, &message));
        }
        for messages in &replays {
            ctx.send_replay(messages);
        }
    }

    fn unsubscribe(&self, ctx: &mut ConnCtx<'_>, channels: &[String]) {
        let mut left = Vec::with_capacity(channels.len());
        let mut not_held = Vec::new();
        for name in channels {
            if ctx.unsubscribe(name) {
                left.push(Arc::from(name.as_str()));
            } else {
                not_held.push(truncate(name, 128));
            }
        }
        ctx.send(json_frame(&Ack {
            kind: "ack",
            action: "unsubscribe",
            channels: &left,
        }));
        if !not_held.is_empty() {
            let message = format!("not subscribed to: {}", not_held.join(", "));
            ctx.send(error_frame(ErrorCode::NotSubscribed, &message));
        }
    }
}

impl Session for TelemetrySession {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        let config = &self.app.config;
        ctx.send(json_frame(&Welcome {
            kind: "welcome",
            client_id: ctx.client_id(),
            heartbeat_interval_seconds: config.engine.heartbeat_interval.as_secs(),
            heartbeat_timeout_seconds: config.engine.heartbeat_timeout.as_secs(),
            rate_limit_per_second: config.rate_limit_per_second,
            replay_limit: config.replay_limit,
        }));
        if !self.initial_channels.is_empty() {
            let channels = std::mem::take(&mut self.initial_channels);
            self.subscribe(ctx, &channels, self.initial_replay);
        }
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let max = self.app.config.engine.max_subscriptions;
        match parse_command(text, max) {
            Ok(Command::Subscribe { channels, replay }) => self.subscribe(ctx, &channels, replay),
            Ok(Command::Unsubscribe { channels }) => self.unsubscribe(ctx, &channels),
            Ok(Command::Heartbeat) => {
                if let Some(frame) = self.heartbeats.reply(Instant::now()) {
                    ctx.send(frame);
                }
            }
            Err(e) => {
                debug!(client = %ctx.client_id(), code = ?e.code, "bad client command");
                ctx.send(error_frame(e.code, &e.message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::TopicId;

    fn parse(text: &str) -> Result<Command, CommandError> {
        parse_command(&mut text.as_bytes().to_vec(), 4)
    }

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            parse(r#"{"action":"subscribe","channels":["a","b"],"replay":true}"#),
            Ok(Command::Subscribe {
                channels: vec!["a".into(), "b".into()],
                replay: true
            })
        );
        assert_eq!(
            parse(r#"{"action":"unsubscribe","channels":["a"]}"#),
            Ok(Command::Unsubscribe {
                channels: vec!["a".into()]
            })
        );
        assert_eq!(parse(r#"{"action":"heartbeat"}"#), Ok(Command::Heartbeat));
    }

    #[test]
    fn malformed_commands_get_precise_codes() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"channels":["a"]}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"action":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"action":"subscribe","channels":"a"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"action":"subscribe","channels":[1]}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"action":"subscribe","channels":["a"],"replay":"yes"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"action":"dance"}"#), ErrorCode::UnknownAction);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), ErrorCode::TooDeep);
        let deep_field = format!(
            r#"{{"action":"heartbeat","x":{}1{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert_eq!(code(&deep_field), ErrorCode::TooDeep);
        assert_eq!(
            code(r#"{"action":"subscribe","channels":["a","b","c","d","e"]}"#),
            ErrorCode::LimitReached
        );
    }

    #[test]
    fn mutated_commands_never_panic_and_always_get_a_verdict() {
        let seeds: [&[u8]; 4] = [
            br#"{"action":"subscribe","channels":["market-data","positions"],"replay":true}"#,
            br#"{"action":"unsubscribe","channels":["risk-alerts"]}"#,
            br#"{"action":"heartbeat"}"#,
            br#"{"action":"subscribe","channels":["a\u00e9\n"]}"#,
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut verdicts = [0usize; 2];
        for round in 0..50_000 {
            let mut text = seeds[round % seeds.len()].to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => text[at] = next() as u8,
                    1 => text.insert(at, b"{}[]\",:0\\"[(next() % 9) as usize]),
                    _ => {
                        text.remove(at);
                    }
                }
                if text.is_empty() {
                    text.push(b'{');
                }
            }
            // Any bytes at all may reach here only as valid UTF-8 (the engine
            // checks); simd-json must cope with whatever that is.
            if std::str::from_utf8(&text).is_err() {
                continue;
            }
            match parse_command(&mut text, 4) {
                Ok(_) => verdicts[0] += 1,
                Err(e) => {
                    assert!(!e.message.is_empty());
                    verdicts[1] += 1;
                }
            }
        }
        // The mutations produce both accepted and refused commands.
        assert!(verdicts[0] > 0 && verdicts[1] > 0, "{verdicts:?}");
    }

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
            7,
            Some("A\"B".into()),
            Bytes::from(data),
        );
        msg.timestamp = SystemTime::UNIX_EPOCH;
        let frame = TelemetryFormat.encode_event(&msg);
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
