//! Client messages of the simple trading protocol: `{"type":"ping"}`, and
//! `subscribe` / `unsubscribe` with a `channel` and optional `symbols`.
//!
//! Stateless. Bounded before it is trusted: the frame by the engine's
//! `max_frame_size`, nesting by [`MAX_COMMAND_DEPTH`], a symbol list by
//! `[simple] max_symbols`, each symbol by [`MAX_KEY_LEN`]. A message that
//! cannot be acted on is an [`Invalid`] whose text the session sends in an
//! `error` frame; the connection stays usable. Fields the protocol does not
//! know are ignored, as the reference server does.

use std::time::Instant;

use serde_json::Value;
use shardcast_engine::{RateLimit, RateLimiter, MAX_KEY_LEN};

use crate::input::{check_depth, MAX_COMMAND_DEPTH};

/// One of the four streams a client can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Conflated latest prices, every price interval.
    PriceUpdates,
    /// Trading signals, as they happen.
    Signals,
    /// Trade executions, as they happen.
    Trades,
    /// The conflated portfolio, every portfolio interval.
    Portfolio,
}

impl Channel {
    /// Every channel, in the order the status endpoint lists them.
    pub const ALL: [Channel; 4] = [
        Channel::PriceUpdates,
        Channel::Signals,
        Channel::Trades,
        Channel::Portfolio,
    ];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Channel::PriceUpdates => "price_updates",
            Channel::Signals => "signals",
            Channel::Trades => "trades",
            Channel::Portfolio => "portfolio",
        }
    }

    /// Whether it is sent as it happens (otherwise conflated per interval).
    pub fn is_live(self) -> bool {
        matches!(self, Channel::Signals | Channel::Trades)
    }

    fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A valid client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `{"type":"ping"}`.
    Ping,
    /// Follow `channel`, for `symbols` (`None`: all of them).
    Subscribe {
        /// The channel.
        channel: Channel,
        /// The symbols, deduplicated, in the order given.
        symbols: Option<Vec<String>>,
    },
    /// Stop following `symbols` of `channel` (`None`: the whole channel).
    Unsubscribe {
        /// The channel.
        channel: Channel,
        /// The symbols, deduplicated, in the order given.
        symbols: Option<Vec<String>>,
    },
}

/// Why a message cannot be acted on: the `error` text for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(text: impl Into<String>) -> Invalid {
    Invalid(text.into())
}

/// One connection's budget of client messages. Owned by its session;
/// sans-IO (the caller passes `now`).
#[derive(Debug)]
pub struct MessageRate {
    limiter: RateLimiter,
    /// Whether the last message was refused (one error per run of them).
    limited: bool,
    since: Instant,
}

/// What to do with a client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Act on it.
    Yes,
    /// Not acted on; the first of a run: say so.
    RefuseAndSay,
    /// Not acted on, silently (the client was told).
    Refuse,
}

impl MessageRate {
    /// A budget starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            limiter: RateLimiter::default(),
            limited: false,
            since: now,
        }
    }

    /// Whether a message at `now` is within `limit`.
    pub fn admit(&mut self, limit: RateLimit, now: Instant) -> Admit {
        let at = now.saturating_duration_since(self.since).as_nanos() as u64;
        if self.limiter.try_acquire(limit, at) {
            self.limited = false;
            Admit::Yes
        } else if std::mem::replace(&mut self.limited, true) {
            Admit::Refuse
        } else {
            Admit::RefuseAndSay
        }
    }
}

/// Reads one client message; `max_symbols` bounds a symbol list.
pub fn parse(text: &[u8], max_symbols: usize) -> Result<Request, Invalid> {
    check_depth(text, MAX_COMMAND_DEPTH).map_err(|_| {
        invalid(format!(
            "Invalid message format: nested deeper than {MAX_COMMAND_DEPTH} levels"
        ))
    })?;
    let value: Value =
        serde_json::from_slice(text).map_err(|_| invalid("Invalid message format: not JSON"))?;
    let Value::Object(fields) = value else {
        return Err(invalid("Invalid message format: expected a JSON object"));
    };
    let kind = match fields.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(invalid("Invalid message format: type must be a string")),
        None => return Err(invalid("Invalid message format: missing type")),
    };
    let subscribe = match kind {
        "ping" => return Ok(Request::Ping),
        "subscribe" => true,
        "unsubscribe" => false,
        other => {
            return Err(invalid(format!(
                "Unknown message type: {:?} (expected ping, subscribe or unsubscribe)",
                truncated(other)
            )))
        }
    };
    let channel = match fields.get("channel") {
        Some(Value::String(name)) => Channel::parse(name).ok_or_else(|| {
            invalid(format!(
                "Unknown channel: {:?} (expected price_updates, signals, trades or portfolio)",
                truncated(name)
            ))
        })?,
        Some(_) => return Err(invalid("Invalid message format: channel must be a string")),
        None => {
            return Err(invalid(format!(
                "Invalid message format: {kind} needs a channel"
            )))
        }
    };
    let symbols = match fields.get("symbols") {
        // An empty list means what no list does, as in the reference server.
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => Some(symbols(items, max_symbols)?),
        Some(_) => {
            return Err(invalid(
                "Invalid message format: symbols must be an array of strings",
            ))
        }
    };
    Ok(if subscribe {
        Request::Subscribe { channel, symbols }
    } else {
        Request::Unsubscribe { channel, symbols }
    })
}

fn symbols(items: &[Value], max_symbols: usize) -> Result<Vec<String>, Invalid> {
    if items.len() > max_symbols {
        return Err(invalid(format!(
            "Too many symbols: at most {max_symbols} per message"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(symbol) = item else {
            return Err(invalid(
                "Invalid message format: symbols must be an array of strings",
            ));
        };
        if symbol.is_empty() || symbol.len() > MAX_KEY_LEN {
            return Err(invalid(format!("Invalid symbol: 1 to {MAX_KEY_LEN} bytes")));
        }
        if !out.contains(symbol) {
            out.push(symbol.clone());
        }
    }
    Ok(out)
}

/// At most 64 characters of client text, for an error message.
fn truncated(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Request {
        parse(text.as_bytes(), 3).unwrap()
    }

    fn err(text: &str) -> String {
        parse(text.as_bytes(), 3).unwrap_err().0
    }

    #[test]
    fn reads_the_documented_messages() {
        assert_eq!(ok(r#"{"type":"ping"}"#), Request::Ping);
        assert_eq!(
            ok(
                r#"{"type":"subscribe","channel":"price_updates","symbols":["AAPL","MSFT","AAPL"]}"#
            ),
            Request::Subscribe {
                channel: Channel::PriceUpdates,
                symbols: Some(vec!["AAPL".into(), "MSFT".into()]),
            }
        );
        assert_eq!(
            ok(r#"{"type":"unsubscribe","channel":"trades","extra":1}"#),
            Request::Unsubscribe {
                channel: Channel::Trades,
                symbols: None,
            }
        );
    }

    #[test]
    fn each_bad_input_says_what_is_wrong() {
        assert!(err("{nope").contains("not JSON"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err(r#"{"channel":"signals"}"#).contains("missing type"));
        assert!(err(r#"{"type":7}"#).contains("type must be a string"));
        assert!(err(r#"{"type":"dance"}"#).contains("Unknown message type"));
        assert!(err(r#"{"type":"subscribe"}"#).contains("needs a channel"));
        assert!(err(r#"{"type":"subscribe","channel":"news"}"#).contains("Unknown channel"));
        assert!(err(r#"{"type":"subscribe","channel":1}"#).contains("channel must be a string"));
        let bad_symbols = [
            r#"{"type":"subscribe","channel":"signals","symbols":"AAPL"}"#,
            r#"{"type":"subscribe","channel":"signals","symbols":[1]}"#,
        ];
        for text in bad_symbols {
            assert!(err(text).contains("array of strings"), "{text}");
        }
        assert!(
            err(r#"{"type":"subscribe","channel":"signals","symbols":["a","b","c","d"]}"#)
                .contains("at most 3")
        );
        assert!(
            err(r#"{"type":"subscribe","channel":"signals","symbols":[""]}"#)
                .contains("Invalid symbol")
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(err(&deep).contains("nested deeper"));
    }

    #[test]
    fn a_run_of_refused_messages_is_told_once() {
        let start = Instant::now();
        let limit = RateLimit::new(2, std::time::Duration::from_secs(1), 2);
        let mut rate = MessageRate::new(start);
        let verdicts: Vec<Admit> = (0..4).map(|_| rate.admit(limit, start)).collect();
        assert_eq!(
            verdicts,
            [Admit::Yes, Admit::Yes, Admit::RefuseAndSay, Admit::Refuse]
        );
        // A second later the bucket has refilled; a new run is told again.
        let later = start + std::time::Duration::from_secs(1);
        assert_eq!(rate.admit(limit, later), Admit::Yes);
        assert_eq!(rate.admit(limit, later), Admit::Yes);
        assert_eq!(rate.admit(limit, later), Admit::RefuseAndSay);
    }

    #[test]
    fn client_text_in_errors_is_bounded() {
        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        assert!(err(&long).len() < 200);
    }
}
