//! Client messages of the BondX protocol, parsed in place with simd-json
//! after a depth check (the parser recurses per nesting level).
//!
//! `{"type": "subscribe" | "unsubscribe" | "ping" | "background_mode", …}`
//! with an optional `correlation_id` (a string of at most
//! [`MAX_CORRELATION_ID`] bytes, or an integer), echoed in every reply —
//! also in the error about a message that was otherwise malformed, when its
//! id could be read. Bounded: the frame by the engine's `max_frame_size`,
//! nesting by [`MAX_COMMAND_DEPTH`], `subtopics` (echoed in the ack) by
//! [`MAX_SUBTOPICS_BYTES`].

use std::num::NonZeroU32;

use shardcast_engine::{json, Epoch, SubscribeError, TopicError, MAX_NAME_LEN};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::input::{check_depth, truncate, MAX_COMMAND_DEPTH};
use crate::protocol::common::max_rate;

/// Longest `correlation_id` string echoed, in bytes.
pub const MAX_CORRELATION_ID: usize = 128;

/// Largest `subtopics` object, as compact JSON, in bytes.
pub const MAX_SUBTOPICS_BYTES: usize = 4096;

/// Most deltas a `batch_size` may ask for per frame.
pub const MAX_BATCH_SIZE: u64 = 1000;

/// A parsed client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Subscribe to one topic.
    Subscribe(Subscribe),
    /// Leave one topic.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// Liveness; answered with `pong`.
    Ping,
    /// Switch background mode on or off.
    BackgroundMode {
        /// On or off.
        enabled: bool,
    },
}

/// What a `subscribe` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// The topic.
    pub topic: String,
    /// Resend every delta after this seq, instead of a snapshot.
    pub resume_from_seq: Option<u64>,
    /// The epoch `resume_from_seq` belongs to (as snapshots' `meta.epoch`
    /// give it); the topic's current epoch when absent.
    pub resume_epoch: Option<Epoch>,
    /// Deltas per frame at most (1..=1000).
    pub batch_size: Option<u64>,
    /// Whether the client asked for compression.
    pub compression: Option<bool>,
    /// `subtopics`, as compact JSON, echoed in the ack.
    pub subtopics: Option<String>,
    /// At most so many updates a second of each key (`max_rate`).
    pub max_rate: Option<NonZeroU32>,
}

/// The error codes of the BondX protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// No valid token (sent before the connection closes).
    AuthRequired,
    /// More client messages than the endpoint class allows.
    RateLimitExceeded,
    /// Not JSON, not an object, an unknown `type`, a field of the wrong type.
    InvalidMessage,
    /// A topic outside the user's scope.
    Forbidden,
    /// A topic that does not exist and cannot be created.
    InvalidTopic,
    /// Unsubscribing from a topic not held.
    NotSubscribed,
    /// A limit of the connection or the server.
    LimitReached,
    /// The connection's outbox could not take what was asked for.
    SlowConsumer,
    /// A fault of the server.
    InternalError,
}

impl Code {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AuthRequired => "AUTH_REQUIRED",
            Code::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Code::InvalidMessage => "INVALID_MESSAGE",
            Code::Forbidden => "FORBIDDEN",
            Code::InvalidTopic => "INVALID_TOPIC",
            Code::NotSubscribed => "NOT_SUBSCRIBED",
            Code::LimitReached => "LIMIT_REACHED",
            Code::SlowConsumer => "SLOW_CONSUMER",
            Code::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl From<&SubscribeError> for Code {
    /// The code of a refused subscription.
    fn from(e: &SubscribeError) -> Self {
        match e {
            SubscribeError::TooMany { .. }
            | SubscribeError::Topic(
                TopicError::Quota { .. }
                | TopicError::TooManyTopics { .. }
                | TopicError::TooManyUnclaimed { .. },
            ) => Code::LimitReached,
            SubscribeError::Topic(TopicError::InvalidName(_) | TopicError::Undeclared(_)) => {
                Code::InvalidTopic
            }
        }
    }
}

/// Why a client message is not a command.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The code.
    pub code: Code,
    /// What was wrong, for a person.
    pub message: String,
}

fn invalid(message: impl Into<String>) -> CommandError {
    CommandError {
        code: Code::InvalidMessage,
        message: message.into(),
    }
}

/// A parsed message: its `correlation_id` as JSON text (when readable),
/// and the command or why it is not one.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// `correlation_id`, as the JSON to echo (`"abc"`, `42`).
    pub correlation_id: Option<String>,
    /// The command.
    pub command: Result<Command, CommandError>,
}

/// Parses one client message in place.
pub fn parse(text: &mut [u8]) -> Parsed {
    if let Err(e) = check_depth(text, MAX_COMMAND_DEPTH) {
        return Parsed {
            correlation_id: None,
            command: Err(invalid(format!("message refused: {e}"))),
        };
    }
    let value = match simd_json::to_borrowed_value(text) {
        Ok(value) => value,
        Err(e) => {
            return Parsed {
                correlation_id: None,
                command: Err(invalid(format!("not valid JSON: {e}"))),
            }
        }
    };
    if !value.is_object() {
        return Parsed {
            correlation_id: None,
            command: Err(invalid("a message must be a JSON object")),
        };
    }
    let correlation_id = match correlation_id(&value) {
        Ok(id) => id,
        Err(e) => {
            return Parsed {
                correlation_id: None,
                command: Err(e),
            }
        }
    };
    Parsed {
        correlation_id,
        command: command(&value),
    }
}

fn correlation_id(value: &BorrowedValue<'_>) -> Result<Option<String>, CommandError> {
    let Some(id) = value.get("correlation_id") else {
        return Ok(None);
    };
    if id.is_null() {
        return Ok(None);
    }
    if let Some(text) = id.as_str() {
        if text.len() > MAX_CORRELATION_ID {
            return Err(invalid(format!(
                "\"correlation_id\" is limited to {MAX_CORRELATION_ID} bytes"
            )));
        }
        let mut out = bytes::BytesMut::with_capacity(text.len() + 2);
        json::write_str(&mut out, text);
        return Ok(Some(String::from_utf8_lossy(&out).into_owned()));
    }
    if let Some(n) = id.as_i64() {
        return Ok(Some(n.to_string()));
    }
    if let Some(n) = id.as_u64() {
        return Ok(Some(n.to_string()));
    }
    Err(invalid("\"correlation_id\" must be a string or an integer"))
}

fn command(value: &BorrowedValue<'_>) -> Result<Command, CommandError> {
    let kind = match value.get("type") {
        None => return Err(invalid("missing \"type\"")),
        Some(kind) => kind
            .as_str()
            .ok_or_else(|| invalid("\"type\" must be a string"))?,
    };
    match kind {
        "subscribe" => subscribe(value).map(Command::Subscribe),
        "unsubscribe" => Ok(Command::Unsubscribe {
            topic: topic(value)?,
        }),
        "ping" => Ok(Command::Ping),
        "background_mode" => match value.get("enabled").map(|e| e.as_bool()) {
            Some(Some(enabled)) => Ok(Command::BackgroundMode { enabled }),
            _ => Err(invalid("background_mode needs \"enabled\": true or false")),
        },
        other => Err(invalid(format!(
            "unknown type {:?}: use subscribe, unsubscribe, ping or background_mode",
            truncate(other, 64)
        ))),
    }
}

fn topic(value: &BorrowedValue<'_>) -> Result<String, CommandError> {
    match value.get("topic").map(|t| t.as_str()) {
        Some(Some(topic)) if !topic.is_empty() && topic.len() <= MAX_NAME_LEN => {
            Ok(topic.to_owned())
        }
        Some(Some(_)) => Err(invalid(format!("\"topic\" must be 1-{MAX_NAME_LEN} bytes"))),
        _ => Err(invalid("\"topic\" must be a string")),
    }
}

fn subscribe(value: &BorrowedValue<'_>) -> Result<Subscribe, CommandError> {
    let topic = topic(value)?;
    let present = |name: &str| value.get(name).filter(|v| !v.is_null());
    let resume_from_seq =
        match present("resume_from_seq") {
            None => None,
            Some(seq) => Some(seq.as_u64().ok_or_else(|| {
                invalid("\"resume_from_seq\" must be a whole number of at least 0")
            })?),
        };
    let resume_epoch = match present("resume_epoch") {
        None => None,
        Some(epoch) => Some(
            epoch
                .as_str()
                .and_then(|e| e.parse::<Epoch>().ok())
                .ok_or_else(|| {
                    invalid("\"resume_epoch\" must be the 16 hexadecimal digits of a snapshot's meta.epoch")
                })?,
        ),
    };
    let batch_size = match present("batch_size") {
        None => None,
        Some(size) => match size.as_u64() {
            Some(n @ 1..=MAX_BATCH_SIZE) => Some(n),
            _ => {
                return Err(invalid(format!(
                    "\"batch_size\" must be a whole number from 1 to {MAX_BATCH_SIZE}"
                )))
            }
        },
    };
    let compression = match present("compression") {
        None => None,
        Some(flag) => Some(
            flag.as_bool()
                .ok_or_else(|| invalid("\"compression\" must be true or false"))?,
        ),
    };
    let max_rate = max_rate("max_rate", present("max_rate")).map_err(invalid)?;
    let subtopics = match present("subtopics") {
        None => None,
        Some(subtopics) if subtopics.is_object() => {
            let text = simd_json::to_string(subtopics)
                .map_err(|e| invalid(format!("\"subtopics\": {e}")))?;
            if text.len() > MAX_SUBTOPICS_BYTES {
                return Err(invalid(format!(
                    "\"subtopics\" is limited to {MAX_SUBTOPICS_BYTES} bytes"
                )));
            }
            Some(text)
        }
        Some(_) => return Err(invalid("\"subtopics\" must be an object")),
    };
    Ok(Subscribe {
        topic,
        resume_from_seq,
        resume_epoch,
        batch_size,
        compression,
        subtopics,
        max_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Parsed {
        parse(&mut text.as_bytes().to_vec())
    }

    fn error(text: &str) -> String {
        parsed(text).command.unwrap_err().message
    }

    #[test]
    fn the_documents_subscription_request_parses() {
        let p = parsed(
            r#"{"type":"subscribe","topic":"prices.IN1234567890","subtopics":{"levels":"L1,L2","trades":true},"resume_from_seq":12345,"compression":true,"batch_size":100,"correlation_id":"uuid-123"}"#,
        );
        assert_eq!(p.correlation_id.as_deref(), Some("\"uuid-123\""));
        let Ok(Command::Subscribe(s)) = p.command else {
            panic!("{p:?}");
        };
        assert_eq!(s.topic, "prices.IN1234567890");
        assert_eq!(s.resume_from_seq, Some(12345));
        assert_eq!(s.batch_size, Some(100));
        assert_eq!(s.compression, Some(true));
        assert_eq!(
            s.subtopics.as_deref(),
            Some(r#"{"levels":"L1,L2","trades":true}"#)
        );
    }

    #[test]
    fn every_other_command() {
        assert_eq!(parsed(r#"{"type":"ping"}"#).command, Ok(Command::Ping));
        assert_eq!(
            parsed(r#"{"type":"ping","correlation_id":7}"#).correlation_id,
            Some("7".into())
        );
        assert_eq!(
            parsed(r#"{"type":"unsubscribe","topic":"prices.X"}"#).command,
            Ok(Command::Unsubscribe {
                topic: "prices.X".into()
            })
        );
        assert_eq!(
            parsed(r#"{"type":"background_mode","enabled":true}"#).command,
            Ok(Command::BackgroundMode { enabled: true })
        );
    }

    #[test]
    fn bad_input_is_named() {
        assert!(error("{").contains("not valid JSON"));
        assert!(error("[1]").contains("JSON object"));
        assert!(error(r#"{"topic":"x"}"#).contains("missing \"type\""));
        assert!(error(r#"{"type":"dance"}"#).contains("unknown type"));
        assert!(error(r#"{"type":"subscribe"}"#).contains("\"topic\""));
        assert!(error(r#"{"type":"subscribe","topic":5}"#).contains("\"topic\""));
        for seq in ["-1", "\"12\"", "1.5", "true"] {
            let text = format!(r#"{{"type":"subscribe","topic":"a","resume_from_seq":{seq}}}"#);
            assert!(error(&text).contains("resume_from_seq"), "{seq}");
        }
        for size in ["0", "1001", "-5", "\"10\"", "2.5"] {
            let text = format!(r#"{{"type":"subscribe","topic":"a","batch_size":{size}}}"#);
            assert!(error(&text).contains("batch_size"), "{size}");
        }
        assert!(
            error(r#"{"type":"subscribe","topic":"a","compression":"yes"}"#)
                .contains("compression")
        );
        assert!(error(r#"{"type":"subscribe","topic":"a","subtopics":[1]}"#).contains("subtopics"));
        assert!(error(r#"{"type":"background_mode"}"#).contains("enabled"));
        assert!(error(r#"{"type":"ping","correlation_id":{}}"#).contains("correlation_id"));
        let long = format!(
            r#"{{"type":"ping","correlation_id":"{}"}}"#,
            "x".repeat(200)
        );
        assert!(error(&long).contains("correlation_id"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(error(&deep).contains("refused"));
        // The id is echoed even when the rest is wrong.
        let p = parsed(r#"{"type":"subscribe","correlation_id":"c1"}"#);
        assert_eq!(p.correlation_id.as_deref(), Some("\"c1\""));
        assert!(p.command.is_err());
    }

    #[test]
    fn max_rate_is_a_whole_number_within_bounds() {
        for (rate, expected) in [("1", Some(1)), ("10000", Some(10_000))] {
            let text = format!(r#"{{"type":"subscribe","topic":"a","max_rate":{rate}}}"#);
            let Ok(Command::Subscribe(s)) = parsed(&text).command else {
                panic!("{text}")
            };
            assert_eq!(s.max_rate.map(NonZeroU32::get), expected);
        }
        for rate in ["0", "10001", "-1", "2.5", "\"3\"", "true"] {
            let text = format!(r#"{{"type":"subscribe","topic":"a","max_rate":{rate}}}"#);
            assert!(error(&text).contains("max_rate"), "{rate}");
        }
    }

    #[test]
    fn batch_size_bounds_are_inclusive() {
        for size in [1, 1000] {
            let text = format!(r#"{{"type":"subscribe","topic":"a","batch_size":{size}}}"#);
            let Ok(Command::Subscribe(s)) = parsed(&text).command else {
                panic!("{size}");
            };
            assert_eq!(s.batch_size, Some(size));
        }
    }
}
