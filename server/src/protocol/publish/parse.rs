//! Parsing publish requests: HTTP bodies ([`parse_body`]) and `/ws/publish`
//! frames ([`parse_frame`]), then the checks the parser cannot make
//! ([`PublishItem::admit`]).
//!
//! Both take `{"channel":"…","data":<any JSON>,"key":"…","kind":"alert"}`
//! (`key` optional; `kind` optional, `event` by default or `alert` — the
//! BondX protocol frames alerts as `type: "alert"`, the others ignore it).
//! `data` is kept byte for byte, copied once out of the request into an
//! allocation of its own size, so a retained message holds its data and
//! nothing of the request around it (a 1-byte `data` padded with a
//! megabyte of whitespace costs one byte, not a megabyte).
//!
//! Parsing is separate from publishing ([`parse_body`], [`parse_frame`]) and
//! bounded: the body by `max_publish_body`, a batch by `max_publish_batch`,
//! nesting by serde_json's own limit for the envelope and by
//! [`MAX_DATA_DEPTH`] for `data`. Every publish is checked against the
//! principal's publish scope, and any topic it creates is charged to the
//! principal's quota.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shardcast_engine::{
    MessageKind, Publication, PublishError, QuotaError, TopicError, MAX_NAME_LEN,
};

use crate::auth::Principal;
use crate::input::{check_depth, truncate, MAX_DATA_DEPTH};
use crate::protocol::common::{ApiCode, ApiError, ErrorCode};

/// One message to publish, borrowing from the request.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PublishItem<'a> {
    /// The channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// The payload, as sent.
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// The optional key.
    #[serde(default, borrow)]
    pub key: Option<Cow<'a, str>>,
    /// `event` (the default) or `alert`.
    #[serde(default)]
    pub kind: Kind,
}

/// What a published message is, as the publish API names it.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An ordinary update.
    #[default]
    Event,
    /// An important notification.
    Alert,
}

impl From<Kind> for MessageKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Event => MessageKind::Event,
            Kind::Alert => MessageKind::Alert,
        }
    }
}

/// The HTTP body as written: one message, or `{"messages":[…]}`. (Not an
/// untagged enum: serde buffers those, which `RawValue` cannot come through.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody<'a> {
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    kind: Option<Kind>,
    #[serde(default, borrow)]
    messages: Option<Vec<PublishItem<'a>>>,
}

/// A parsed HTTP publish body.
#[derive(Debug)]
pub enum PublishBody<'a> {
    /// One message.
    Single(PublishItem<'a>),
    /// A batch, in order.
    Batch(Vec<PublishItem<'a>>),
}

/// A WebSocket publish frame as written.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    kind: Kind,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
}

/// A parsed `/ws/publish` command.
#[derive(Debug)]
pub enum PublishCommand<'a> {
    /// Publish one message.
    Publish(PublishItem<'a>),
    /// Liveness; answered with a heartbeat.
    Heartbeat,
    /// A newer token for a connection opened with one.
    Refresh(Cow<'a, str>),
}

/// The answer for one published message.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum PublishResult {
    /// Accepted with its sequence number.
    Ok {
        /// The channel.
        channel: String,
        /// Its sequence number in the channel.
        seq: u64,
    },
    /// Refused.
    Err {
        /// The channel as sent.
        channel: String,
        /// Why.
        error: ApiError,
    },
}

/// Maps a publish failure to its error code.
pub fn publish_error(e: &PublishError) -> ApiError {
    let code = match e {
        PublishError::Topic(TopicError::Undeclared(_)) => ApiCode::UnknownChannel,
        PublishError::Topic(TopicError::InvalidName(_)) => ApiCode::InvalidChannel,
        PublishError::Topic(
            TopicError::TooManyTopics { .. } | TopicError::TooManyUnclaimed { .. },
        ) => ApiCode::LimitReached,
        PublishError::Topic(TopicError::Quota {
            quota: QuotaError::Rate { .. },
            ..
        }) => ApiCode::RateLimited,
        PublishError::Topic(TopicError::Quota {
            quota: QuotaError::Live { .. },
            ..
        }) => ApiCode::LimitReached,
        PublishError::InvalidKey => ApiCode::InvalidKey,
        PublishError::Retired | PublishError::Unavailable(_) | PublishError::ShuttingDown => {
            ApiCode::Unavailable
        }
    };
    let mut error = ApiError::new(code, e.to_string());
    if *e == PublishError::ShuttingDown {
        // Long enough for a restart, or for a balancer to move the client.
        error.retry_after = Some(std::time::Duration::from_secs(5));
    }
    if let PublishError::Topic(TopicError::Quota {
        quota: QuotaError::Rate { retry_after, .. },
        ..
    }) = e
    {
        error.retry_after = Some(*retry_after);
    }
    error
}

/// Parses an HTTP publish body (bounded in size by the caller).
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<PublishBody<'_>, ApiError> {
    let parsed: RawBody<'_> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ApiCode::InvalidMessage,
            format!(
                "expected {{\"channel\":\"…\",\"data\":…,\"key\":\"…\"}} or {{\"messages\":[…]}}: {e}"
            ),
        )
    })?;
    match parsed {
        RawBody {
            channel: Some(channel),
            data: Some(data),
            key,
            kind,
            messages: None,
        } => Ok(PublishBody::Single(PublishItem {
            channel,
            data,
            key,
            kind: kind.unwrap_or_default(),
        })),
        RawBody {
            channel: None,
            data: None,
            key: None,
            kind: None,
            messages: Some(messages),
        } => {
            if messages.len() > max_batch {
                return Err(ApiError::new(
                    ApiCode::LimitReached,
                    format!(
                        "a batch holds at most {max_batch} messages, not {}",
                        messages.len()
                    ),
                ));
            }
            Ok(PublishBody::Batch(messages))
        }
        _ => Err(ApiError::new(
            ApiCode::InvalidMessage,
            "expected {\"channel\":\"…\",\"data\":…} (with optional \"key\") or {\"messages\":[…]}",
        )),
    }
}

/// Parses a `/ws/publish` frame: (error code, message) when it is not a command.
pub fn parse_frame(text: &[u8]) -> Result<PublishCommand<'_>, (ErrorCode, String)> {
    // The envelope adds one level to the data it carries.
    check_depth(text, MAX_DATA_DEPTH + 1).map_err(|e| {
        (
            ErrorCode::TooDeep,
            format!("frame refused (data: at most {MAX_DATA_DEPTH} levels): {e}"),
        )
    })?;
    let frame: RawFrame<'_> = serde_json::from_slice(text).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            ErrorCode::InvalidJson
        } else {
            ErrorCode::InvalidMessage
        };
        (code, e.to_string())
    })?;
    match frame.action.as_ref() {
        "publish" => match (frame.channel, frame.data) {
            (Some(channel), Some(data)) => Ok(PublishCommand::Publish(PublishItem {
                channel,
                data,
                key: frame.key,
                kind: frame.kind,
            })),
            _ => Err((
                ErrorCode::InvalidMessage,
                "publish needs \"channel\" (string) and \"data\" (any JSON)".into(),
            )),
        },
        "heartbeat" => Ok(PublishCommand::Heartbeat),
        "refresh" => frame.token.map(PublishCommand::Refresh).ok_or((
            ErrorCode::InvalidMessage,
            "refresh needs \"token\" (a string)".into(),
        )),
        other => Err((
            ErrorCode::UnknownAction,
            format!(
                "unknown action {:?}: use publish, heartbeat or refresh",
                truncate(other, 64)
            ),
        )),
    }
}

impl PublishItem<'_> {
    /// Checks what the envelope parser does not: the principal's scope and
    /// the depth of `data`. Returns the publication, its data copied to an
    /// allocation of its own.
    pub fn admit(&self, principal: &Principal) -> Result<Publication, ApiError> {
        if !principal.may_publish(&self.channel) {
            return Err(ApiError::new(
                ApiCode::Forbidden,
                format!(
                    "these credentials may not publish into {:?}",
                    truncate(&self.channel, MAX_NAME_LEN)
                ),
            ));
        }
        let data = self.data.get().as_bytes();
        check_depth(data, MAX_DATA_DEPTH)
            .map_err(|e| ApiError::new(ApiCode::TooDeep, format!("data refused: {e}")))?;
        Ok(Publication {
            key: self.key.as_deref().map(Into::into),
            data: Bytes::copy_from_slice(data),
            kind: self.kind.into(),
            transient: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_into_one_message_or_a_batch() {
        let body = br#"{"channel":"t1","data":{"px":1},"key":"A"}"#;
        let PublishBody::Single(item) = parse_body(body, 10).unwrap() else {
            panic!("single");
        };
        assert_eq!(item.channel, "t1");
        assert_eq!(item.data.get(), r#"{"px":1}"#);
        assert_eq!(item.kind, Kind::Event);
        let body = br#"{"channel":"t1","data":{},"kind":"alert"}"#;
        let PublishBody::Single(item) = parse_body(body, 10).unwrap() else {
            panic!("single");
        };
        assert_eq!(item.kind, Kind::Alert);
        let body = br#"{"channel":"t1","data":{},"kind":"loud"}"#;
        assert_eq!(
            parse_body(body, 10).unwrap_err().code,
            ApiCode::InvalidMessage
        );
        let frame = br#"{"action":"publish","channel":"t1","data":1,"kind":"alert"}"#;
        let Ok(PublishCommand::Publish(item)) = parse_frame(frame) else {
            panic!("publish");
        };
        assert_eq!(item.kind, Kind::Alert);
        let body = br#"{"messages":[{"channel":"a","data":1},{"channel":"b","data":[2]}]}"#;
        let PublishBody::Batch(items) = parse_body(body, 10).unwrap() else {
            panic!("batch");
        };
        assert_eq!(items.len(), 2);
        assert_eq!(parse_body(body, 1).unwrap_err().code, ApiCode::LimitReached);
        assert_eq!(
            parse_body(b"{}", 10).unwrap_err().code,
            ApiCode::InvalidMessage
        );
        assert_eq!(
            parse_body(b"[", 10).unwrap_err().code,
            ApiCode::InvalidMessage
        );
    }

    #[test]
    fn data_is_exactly_the_value_not_the_padding_around_it() {
        let body = format!(
            r#"{{"channel":"t1","data":{}1{}}}"#,
            " ".repeat(100_000),
            " ".repeat(100_000)
        );
        let PublishBody::Single(item) = parse_body(body.as_bytes(), 10).unwrap() else {
            panic!("single");
        };
        assert_eq!(item.data.get(), "1");
    }

    #[test]
    fn an_envelope_nested_past_the_parser_limit_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"channel":"t1","data":1,"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_body(deep.as_bytes(), 10).is_err());
        let deep_frame = format!(
            r#"{{"action":"publish","x":{}{}}}"#,
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert_eq!(
            parse_frame(deep_frame.as_bytes()).unwrap_err().0,
            ErrorCode::TooDeep
        );
    }
}
