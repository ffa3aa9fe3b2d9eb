//! The publish API: `POST /api/v1/publish` and the `/ws/publish` WebSocket.
//!
//! Both take `{"channel":"…","data":<any JSON>,"key":"…"}` (key optional).
//! `data` is kept byte for byte: the HTTP body is sliced, not copied; a
//! WebSocket frame's `data` is copied once out of the shard's read buffer.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use shardcast_engine::{ConnCtx, LocalShard, PublishError, Session, TopicError};

use crate::telemetry::{error_frame, truncate, ErrorCode, HeartbeatReplies};

/// One message to publish, borrowing from the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishItem<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
}

/// The HTTP body: one message, or `{"messages":[…]}`. (Not an untagged
/// enum: serde buffers those, which `RawValue` cannot come through.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    messages: Option<Vec<PublishItem<'a>>>,
}

/// A WebSocket publish frame.
#[derive(Deserialize)]
struct PublishFrame<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
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

/// An error body: `{"code":"…","message":"…"}`.
#[derive(Serialize, Debug, Clone)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Maps a publish failure to its error code.
pub fn publish_error(e: &PublishError) -> ApiError {
    let code = match e {
        PublishError::Topic(TopicError::Undeclared(_)) => "UNKNOWN_CHANNEL",
        PublishError::Topic(TopicError::InvalidName(_)) => "INVALID_CHANNEL",
        PublishError::Topic(TopicError::TooManyTopics { .. }) => "LIMIT_REACHED",
        PublishError::InvalidKey => "INVALID_KEY",
        PublishError::Unavailable(_) => "UNAVAILABLE",
    };
    ApiError::new(code, e.to_string())
}

/// What an HTTP publish answers.
#[derive(Debug)]
pub enum HttpOutcome {
    /// One message: its result.
    Single(PublishResult),
    /// A batch: one result per message, in order.
    Batch(Vec<PublishResult>),
    /// The body was not a publish request.
    BadRequest(ApiError),
}

/// Publishes an HTTP body from `shard`.
pub fn publish_http(shard: &LocalShard, body: &Bytes, max_batch: usize) -> HttpOutcome {
    let parsed: PublishBody<'_> = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return HttpOutcome::BadRequest(ApiError::new(
                "INVALID_MESSAGE",
                format!(
                    "expected {{\"channel\":\"…\",\"data\":…,\"key\":\"…\"}} or {{\"messages\":[…]}}: {e}"
                ),
            ))
        }
    };
    match parsed {
        PublishBody {
            channel: Some(channel),
            data: Some(data),
            key,
            messages: None,
        } => HttpOutcome::Single(publish_item(
            shard,
            body,
            PublishItem { channel, data, key },
        )),
        PublishBody {
            channel: None,
            data: None,
            key: None,
            messages: Some(messages),
        } => {
            if messages.len() > max_batch {
                return HttpOutcome::BadRequest(ApiError::new(
                    "LIMIT_REACHED",
                    format!(
                        "a batch holds at most {max_batch} messages, not {}",
                        messages.len()
                    ),
                ));
            }
            HttpOutcome::Batch(
                messages
                    .into_iter()
                    .map(|item| publish_item(shard, body, item))
                    .collect(),
            )
        }
        _ => HttpOutcome::BadRequest(ApiError::new(
            "INVALID_MESSAGE",
            "expected {\"channel\":\"…\",\"data\":…} (with optional \"key\") or {\"messages\":[…]}",
        )),
    }
}

fn publish_item(shard: &LocalShard, body: &Bytes, item: PublishItem<'_>) -> PublishResult {
    // `data` borrows from `body`: share the body's bytes instead of copying.
    let data = body.slice_ref(item.data.get().as_bytes());
    match shard.publish(&item.channel, item.key.map(|k| k.into()), data) {
        Ok(seq) => PublishResult::Ok {
            channel: item.channel.into_owned(),
            seq,
        },
        Err(e) => PublishResult::Err {
            channel: truncate(&item.channel, 128).to_owned(),
            error: publish_error(&e),
        },
    }
}

/// One `/ws/publish` connection. Owned by its shard.
#[derive(Debug, Default)]
pub struct PublishSession {
    heartbeats: HeartbeatReplies,
}

impl Session for PublishSession {
    fn on_open(&mut self, _ctx: &mut ConnCtx<'_>) {}

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let frame: PublishFrame<'_> = match serde_json::from_slice(text) {
            Ok(frame) => frame,
            Err(e) => {
                let code = if e.is_syntax() || e.is_eof() {
                    ErrorCode::InvalidJson
                } else {
                    ErrorCode::InvalidMessage
                };
                ctx.send(error_frame(code, &e.to_string()));
                return;
            }
        };
        match frame.action.as_ref() {
            "publish" => {}
            "heartbeat" => {
                if let Some(frame) = self.heartbeats.reply(std::time::Instant::now()) {
                    ctx.send(frame);
                }
                return;
            }
            other => {
                let message = format!(
                    "unknown action {:?}: use publish or heartbeat",
                    truncate(other, 64)
                );
                ctx.send(error_frame(ErrorCode::UnknownAction, &message));
                return;
            }
        }
        let (Some(channel), Some(data)) = (frame.channel, frame.data) else {
            ctx.send(error_frame(
                ErrorCode::InvalidMessage,
                "publish needs \"channel\" (string) and \"data\" (any JSON)",
            ));
            return;
        };
        let data = Bytes::copy_from_slice(data.get().as_bytes());
        if let Err(e) = ctx.publish(&channel, frame.key.map(|k| k.into()), data) {
            let error = publish_error(&e);
            let message = format!("{}: {}", error.code, error.message);
            ctx.send(error_frame(ErrorCode::PublishFailed, &message));
        }
    }
}
