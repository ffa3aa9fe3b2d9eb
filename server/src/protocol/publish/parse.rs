//! The publish contract: one set of rules, and one set of error codes, for
//! HTTP bodies ([`parse_body`]: one message or a batch) and `/ws/publish`
//! frames ([`parse_frame`]), then the checks of each message's `data` and
//! scope ([`PublishItem::admit`]).
//!
//! A message is `{"channel":"…","data":{…},"key":"…","kind":"alert"}`:
//! `channel` a string; `data` a JSON object or array; `key` optional, a
//! string (`null` = none); `kind` optional, `"event"` (the default, also
//! for `null`) or `"alert"` — the BondX protocol frames alerts as
//! `type: "alert"`, the others ignore it. Over `/ws/publish` the message
//! carries `"action":"publish"`; `heartbeat` takes no other field and
//! `refresh` only `token`.
//!
//! A request is judged in this order, the same on every path, and refused
//! at the first rule it breaks:
//! 1. JSON syntax, over the whole text (`INVALID_JSON`): NaN, Infinity,
//!    text after the value and every other non-JSON are caught before any
//!    rule about fields, wherever they are.
//! 2. The shape (`INVALID_MESSAGE`): an object; no field twice; no field
//!    the place does not take; the required fields present, of their types.
//!    Over `/ws/publish`, `action` decides which fields are taken
//!    (`UNKNOWN_ACTION` when it names no command).
//! 3. `data` ([`PublishItem::check_data`]): an object or array
//!    (`INVALID_MESSAGE`), at most [`MAX_DATA_DEPTH`] levels (`TOO_DEEP`),
//!    and no object with the same key twice (`INVALID_MESSAGE`; see
//!    [`check_data`]).
//! 4. The credential's publish scope (`FORBIDDEN`), then the channel and
//!    its limits, when published (`super::publish_error`).
//!
//! In a batch, steps 1 and 2 refuse the whole batch (nothing is
//! published; the message names the item, `messages[2]: …`); steps 3 and 4
//! refuse only the message, in its result, with the code and text a single
//! publish would get.
//!
//! `data` is kept byte for byte, copied once out of the request into an
//! allocation of its own size, so a retained message holds its data and
//! nothing of the request around it (a small `data` padded with a megabyte
//! of whitespace costs its own bytes, not a megabyte). Parsing is bounded:
//! the body by `max_publish_body`, a frame by `max_frame_size`, a batch by
//! `max_publish_batch` (counted, not collected, past it); nothing recurses
//! per nesting level (see `members.rs`).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use shardcast_engine::{MessageKind, Publication, MAX_NAME_LEN};

use super::members::{read_array, read_top, what, Field, Members, Top};
use crate::auth::Principal;
use crate::input::{check_data, truncate, DataError, MAX_DATA_DEPTH};
use crate::protocol::common::{ApiCode, ApiError};

/// One message to publish, borrowing from the request. Its shape is
/// checked; its `data` is checked by [`PublishItem::admit`].
#[derive(Debug)]
pub struct PublishItem<'a> {
    /// The channel.
    pub channel: Cow<'a, str>,
    /// The payload, as sent.
    pub data: &'a RawValue,
    /// The optional key.
    pub key: Option<Cow<'a, str>>,
    /// `event` (the default) or `alert`.
    pub kind: Kind,
}

/// What a published message is, as the publish API names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// A parsed HTTP publish body.
#[derive(Debug)]
pub enum PublishBody<'a> {
    /// One message.
    Single(PublishItem<'a>),
    /// A batch, in order.
    Batch(Vec<PublishItem<'a>>),
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

/// The fields of a message.
const MESSAGE: [Field; 4] = [Field::Channel, Field::Data, Field::Key, Field::Kind];
/// What an unknown field's error says a message takes.
const MESSAGE_TAKES: &str = "a message takes only channel, data, key and kind";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiCode::InvalidMessage, message)
}

/// Parses an HTTP publish body (bounded in size by the caller): one
/// message, or `{"messages":[…]}` of at most `max_batch`.
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<PublishBody<'_>, ApiError> {
    let members = object(read_top(body)?)?;
    no_repeats(&members)?;
    let Some(messages) = members.get(Field::Messages) else {
        return message(&members, &MESSAGE, MESSAGE_TAKES).map(PublishBody::Single);
    };
    if let Some(field) = members.any_of(&MESSAGE) {
        return Err(invalid(format!(
            "a body is one message or {{\"messages\":[…]}}, so {:?} does not go beside \"messages\"",
            field.name()
        )));
    }
    only(&members, &[Field::Messages], "a batch takes only messages")?;
    if !messages.get().starts_with('[') {
        return Err(invalid(format!(
            "\"messages\" must be an array of messages, not {}",
            what(messages)
        )));
    }
    let (items, count) = read_array(messages, max_batch)?;
    if count > max_batch {
        return Err(ApiError::new(
            ApiCode::LimitReached,
            format!("a batch holds at most {max_batch} messages, not {count}"),
        ));
    }
    let items: Result<Vec<_>, _> = items.into_iter().enumerate().map(batch_item).collect();
    items.map(PublishBody::Batch)
}

/// Item `at` of a batch, judged as a single message; a refusal names it.
fn batch_item((at, item): (usize, &RawValue)) -> Result<PublishItem<'_>, ApiError> {
    let judge = || {
        let members = object(read_top(item.get().as_bytes())?)?;
        no_repeats(&members)?;
        message(&members, &MESSAGE, MESSAGE_TAKES)
    };
    judge().map_err(|e| ApiError::new(e.code, format!("messages[{at}]: {}", e.message)))
}

/// Parses a `/ws/publish` frame: `publish`, `heartbeat` or `refresh`.
pub fn parse_frame(text: &[u8]) -> Result<PublishCommand<'_>, ApiError> {
    let members = object(read_top(text)?)?;
    no_repeats(&members)?;
    let action = members
        .get(Field::Action)
        .ok_or_else(|| invalid("a command needs \"action\": publish, heartbeat or refresh"))?;
    let action = string(action, Field::Action)?;
    match action.as_ref() {
        "publish" => {
            let fields = [
                Field::Action,
                Field::Channel,
                Field::Data,
                Field::Key,
                Field::Kind,
            ];
            message(&members, &fields, MESSAGE_TAKES).map(PublishCommand::Publish)
        }
        "heartbeat" => {
            only(&members, &[Field::Action], "heartbeat takes no other field")?;
            Ok(PublishCommand::Heartbeat)
        }
        "refresh" => {
            only(
                &members,
                &[Field::Action, Field::Token],
                "refresh takes only token",
            )?;
            let token = members
                .get(Field::Token)
                .ok_or_else(|| invalid("refresh needs \"token\" (a string)"))?;
            string(token, Field::Token).map(PublishCommand::Refresh)
        }
        other => Err(ApiError::new(
            ApiCode::UnknownAction,
            format!(
                "unknown action {:?}: use publish, heartbeat or refresh",
                truncate(other, 64)
            ),
        )),
    }
}

/// The members of `top`, which must be an object.
fn object(top: Top<'_>) -> Result<Members<'_>, ApiError> {
    match top {
        Top::Object(members) => Ok(members),
        Top::Other(other) => Err(invalid(format!("expected a JSON object, not {other}"))),
    }
}

/// Refuses a field given twice: readers disagree on which one counts.
fn no_repeats(members: &Members<'_>) -> Result<(), ApiError> {
    match members.repeated {
        Some(field) => Err(invalid(format!(
            "the field {:?} appears twice (each field may appear once)",
            field.name()
        ))),
        None => Ok(()),
    }
}

/// Refuses a member outside `allowed`, naming it; `takes` says what is allowed.
fn only(members: &Members<'_>, allowed: &[Field], takes: &str) -> Result<(), ApiError> {
    let outside = members.unknown.clone().or_else(|| {
        Field::ALL
            .iter()
            .find(|field| !allowed.contains(field) && members.get(**field).is_some())
            .map(|field| field.name().to_owned())
    });
    match outside {
        Some(name) => Err(invalid(format!("unknown field {name:?}: {takes}"))),
        None => Ok(()),
    }
}

/// The message in `members`, which may hold only `allowed` fields.
fn message<'a>(
    members: &Members<'a>,
    allowed: &[Field],
    takes: &str,
) -> Result<PublishItem<'a>, ApiError> {
    only(members, allowed, takes)?;
    let channel = members
        .get(Field::Channel)
        .ok_or_else(|| invalid("a message needs \"channel\" (a string)"))?;
    let channel = string(channel, Field::Channel)?;
    let data = members
        .get(Field::Data)
        .ok_or_else(|| invalid("a message needs \"data\" (a JSON object or array)"))?;
    let key = match members.get(Field::Key) {
        Some(key) if key.get() != "null" => Some(string(key, Field::Key)?),
        _ => None,
    };
    let kind = match members.get(Field::Kind) {
        Some(kind) if kind.get() != "null" => match string(kind, Field::Kind)?.as_ref() {
            "event" => Kind::Event,
            "alert" => Kind::Alert,
            _ => return Err(invalid("\"kind\" must be \"event\" or \"alert\"")),
        },
        _ => Kind::Event,
    };
    Ok(PublishItem {
        channel,
        data,
        key,
        kind,
    })
}

/// The string `value` of `field`, borrowed unless it has escapes.
fn string<'a>(value: &'a RawValue, field: Field) -> Result<Cow<'a, str>, ApiError> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    // A JSON string without escapes is its own text (the reader refused
    // control characters in it already).
    let raw = value.get();
    if let Some(text) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !text.contains('\\') {
            return Ok(Cow::Borrowed(text));
        }
    }
    serde_json::from_str::<Text<'a>>(raw)
        .map(|text| text.0)
        .map_err(|_| {
            let what = match what(value) {
                "a string" => "a string with an invalid escape",
                other => other,
            };
            invalid(format!("{:?} must be a string, not {what}", field.name()))
        })
}

impl PublishItem<'_> {
    /// Checks `data`: a JSON object or array, nested at most
    /// [`MAX_DATA_DEPTH`] levels, with no object holding a key twice.
    pub fn check_data(&self) -> Result<(), ApiError> {
        if !matches!(self.data.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(invalid(format!(
                "\"data\" must be a JSON object or array, not {}",
                what(self.data)
            )));
        }
        check_data(self.data.get().as_bytes(), MAX_DATA_DEPTH).map_err(|e| {
            let code = match e {
                DataError::TooDeep(_) => ApiCode::TooDeep,
                DataError::DuplicateKey(_) => ApiCode::InvalidMessage,
            };
            ApiError::new(code, format!("\"data\" refused: {e}"))
        })
    }

    /// Checks what the shape does not: `data` ([`PublishItem::check_data`]),
    /// then the principal's scope. Returns the publication, its data copied
    /// to an allocation of its own.
    pub fn admit(&self, principal: &Principal) -> Result<Publication, ApiError> {
        self.check_data()?;
        if !principal.may_publish(&self.channel) {
            return Err(ApiError::new(
                ApiCode::Forbidden,
                format!(
                    "these credentials may not publish into {:?}",
                    truncate(&self.channel, MAX_NAME_LEN)
                ),
            ));
        }
        Ok(Publication {
            key: self.key.as_deref().map(Into::into),
            data: Bytes::copy_from_slice(self.data.get().as_bytes()),
            kind: self.kind.into(),
            transient: false,
        })
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
