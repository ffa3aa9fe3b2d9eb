//! What the simple protocol sends, and which symbols a subscription wants.
//!
//! Plain functions and values, no clock of their own (`now` comes in).
//!
//! - A message's **symbol** is its data's top-level `symbol` string when it
//!   has one, otherwise its key ([`symbol_of`]).
//! - [`Symbols`] is a channel subscription's set: all, only some, or all
//!   but some; [`SymbolFilter`] lets the engine apply it to a live channel.
//!   The symbol of the message being dispatched is worked out once per
//!   shard, not once per subscriber (a one-message memo).
//! - [`live_event`] frames a signal or a trade (once per message, by the
//!   wire format); [`price_update`] and [`portfolio_update`] build the
//!   conflated frames from a topic's latest state (once per interval and
//!   subscription set, `conflate.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use shardcast_engine::frame::{FrameBuf, OpCode};
use shardcast_engine::{json, write_iso8601, Epoch, Message, MessageFilter, Position, TopicId};

/// A message's symbol: its data's top-level `symbol` string, else its key.
pub fn symbol_of(msg: &Message) -> Option<Box<str>> {
    #[derive(Deserialize)]
    struct Symbolic<'a> {
        #[serde(borrow, default)]
        symbol: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Symbolic<'_>>(&msg.data)
        .ok()
        .and_then(|s| s.symbol)
        .map(|s| s.into())
        .or_else(|| msg.key.clone())
}

/// The symbol of one message, remembered by the message's identity.
struct Memo {
    message: (TopicId, Epoch, u64),
    symbol: Option<Box<str>>,
}

thread_local! {
    /// The symbol of the message this shard dispatched last: every
    /// filtered subscriber of a message asks for the same one in a row.
    static LAST_SYMBOL: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// Which symbols of a channel a subscription wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Symbols {
    /// Every symbol.
    #[default]
    All,
    /// These only (never empty).
    Only(BTreeSet<String>),
    /// Every symbol but these (never empty).
    AllBut(BTreeSet<String>),
}

/// A symbol list that would grow past the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooMany(pub usize);

impl Symbols {
    /// Whether a message of `symbol` is wanted; one without a symbol only
    /// by a subscription to all of them.
    pub fn admits(&self, symbol: Option<&str>) -> bool {
        match (self, symbol) {
            (Symbols::All, _) => true,
            (Symbols::Only(set), Some(s)) => set.contains(s),
            (Symbols::AllBut(set), Some(s)) => !set.contains(s),
            (Symbols::Only(_) | Symbols::AllBut(_), None) => false,
        }
    }

    /// Adds `symbols` (`None`: all), keeping at most `limit` listed.
    pub fn add(&mut self, symbols: Option<&[String]>, limit: usize) -> Result<(), TooMany> {
        let Some(symbols) = symbols else {
            *self = Symbols::All;
            return Ok(());
        };
        match self {
            Symbols::All => {}
            Symbols::Only(set) => {
                let mut grown = set.clone();
                grown.extend(symbols.iter().cloned());
                if grown.len() > limit {
                    return Err(TooMany(limit));
                }
                *set = grown;
            }
            Symbols::AllBut(set) => {
                for s in symbols {
                    set.remove(s);
                }
                if set.is_empty() {
                    *self = Symbols::All;
                }
            }
        }
        Ok(())
    }

    /// Removes `symbols` (`None`: all); `false` when nothing is left.
    pub fn remove(&mut self, symbols: Option<&[String]>, limit: usize) -> Result<bool, TooMany> {
        let Some(symbols) = symbols else {
            return Ok(false);
        };
        match self {
            Symbols::All | Symbols::AllBut(_) => {
                let mut set = match self {
                    Symbols::AllBut(set) => set.clone(),
                    _ => BTreeSet::new(),
                };
                set.extend(symbols.iter().cloned());
                if set.len() > limit {
                    return Err(TooMany(limit));
                }
                *self = Symbols::AllBut(set);
                Ok(true)
            }
            Symbols::Only(set) => {
                for s in symbols {
                    set.remove(s);
                }
                Ok(!set.is_empty())
            }
        }
    }
}

/// A live channel's [`Symbols`], applied by the engine per message.
#[derive(Debug)]
pub struct SymbolFilter(pub Symbols);

impl MessageFilter for SymbolFilter {
    fn admits(&self, msg: &Message) -> bool {
        let message = (msg.topic, msg.epoch, msg.seq);
        LAST_SYMBOL.with(|last| {
            let mut last = last.borrow_mut();
            if last.as_ref().is_none_or(|memo| memo.message != message) {
                *last = Some(Memo {
                    message,
                    symbol: symbol_of(msg),
                });
            }
            let symbol = last.as_ref().and_then(|memo| memo.symbol.as_deref());
            self.0.admits(symbol)
        })
    }
}

/// A signal or a trade: `{"type":<kind>, …the data's fields…, "timestamp":…}`
/// — the publisher's `type` replaced, its `timestamp` kept when it has one,
/// `symbol` added from the key when the data has none. Data that is not an
/// object goes under `data`.
pub fn live_event(kind: &str, msg: &Message) -> Bytes {
    let mut frame = FrameBuf::with_capacity(64 + kind.len() + msg.data.len());
    let out = frame.payload();
    out.put_slice(b"{\"type\":");
    json::write_str(out, kind);
    let fields: Option<BTreeMap<String, &RawValue>> = serde_json::from_slice(&msg.data).ok();
    let (has_symbol, has_timestamp) = match &fields {
        Some(fields) => {
            for (name, value) in fields.iter().filter(|(name, _)| *name != "type") {
                out.put_u8(b',');
                json::write_str(out, name);
                out.put_u8(b':');
                out.put_slice(value.get().as_bytes());
            }
            (
                fields.contains_key("symbol"),
                fields.contains_key("timestamp"),
            )
        }
        None => {
            out.put_slice(b",\"data\":");
            out.put_slice(&msg.data);
            (false, false)
        }
    };
    if let (false, Some(key)) = (has_symbol, &msg.key) {
        out.put_slice(b",\"symbol\":");
        json::write_str(out, key);
    }
    if !has_timestamp {
        timestamp(out, msg.timestamp);
    }
    out.put_u8(b'}');
    frame.finish(OpCode::Text)
}

fn timestamp(out: &mut BytesMut, at: SystemTime) {
    out.put_slice(b",\"timestamp\":\"");
    write_iso8601(out, at);
    out.put_u8(b'"');
}

/// One message of a topic's latest state with its symbol, read once per
/// state and shared by every frame built from it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// [`symbol_of`] the message.
    pub symbol: Option<Box<str>>,
    /// The message.
    pub msg: Arc<Message>,
}

/// `state` (a topic's latest message per key, oldest first) with each
/// message's symbol.
pub fn annotate(state: Vec<Arc<Message>>) -> Vec<Entry> {
    state
        .into_iter()
        .map(|msg| Entry {
            symbol: symbol_of(&msg),
            msg,
        })
        .collect()
}

/// Whether `msg` came after `since` (every message does after nothing, or
/// after a position of another epoch).
fn is_newer(msg: &Message, since: Option<Position>) -> bool {
    since.is_none_or(|p| p.epoch != msg.epoch || msg.seq > p.seq)
}

/// The `price_update` of every wanted symbol whose latest price in `state`
/// ([`annotate`]d, oldest first) came after `since`; `None` when there is
/// none.
pub fn price_update(
    state: &[Entry],
    since: Option<Position>,
    symbols: &Symbols,
    now: SystemTime,
) -> Option<Bytes> {
    let mut latest: BTreeMap<&str, &Message> = BTreeMap::new();
    for entry in state.iter().filter(|e| is_newer(&e.msg, since)) {
        let Some(symbol) = entry.symbol.as_deref() else {
            continue;
        };
        if symbols.admits(Some(symbol)) {
            latest.insert(symbol, &entry.msg);
        }
    }
    if latest.is_empty() {
        return None;
    }
    let mut frame =
        FrameBuf::with_capacity(64 + latest.values().map(|m| m.data.len() + 16).sum::<usize>());
    let out = frame.payload();
    out.put_slice(b"{\"type\":\"price_update\",\"symbols\":{");
    for (i, (symbol, msg)) in latest.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        json::write_str(out, symbol);
        out.put_u8(b':');
        out.put_slice(&msg.data);
    }
    out.put_u8(b'}');
    timestamp(out, now);
    out.put_u8(b'}');
    Some(frame.finish(OpCode::Text))
}

/// The `portfolio_update` of `state` ([`annotate`]d latest message per key):
/// each wanted position by symbol, `total_pnl` (the sum of their
/// `unrealized_pnl`, or `unrealizedPnl`) and `position_count`. A topic whose
/// state is one unkeyed message with a `positions` object publishes whole
/// portfolios: that object's entries are the positions.
pub fn portfolio_update(state: &[Entry], symbols: &Symbols, now: SystemTime) -> Bytes {
    let mut positions: BTreeMap<String, Value> = BTreeMap::new();
    let whole = match state {
        [only] if only.msg.key.is_none() => serde_json::from_slice::<Value>(&only.msg.data)
            .ok()
            .and_then(|mut v| v.get_mut("positions").map(Value::take))
            .and_then(|p| match p {
                Value::Object(map) => Some(map),
                _ => None,
            }),
        _ => None,
    };
    match whole {
        Some(map) => positions.extend(map.into_iter().filter(|(s, _)| symbols.admits(Some(s)))),
        None => {
            for entry in state {
                let Some(symbol) = entry.symbol.as_deref() else {
                    continue;
                };
                if !symbols.admits(Some(symbol)) {
                    continue;
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&entry.msg.data) {
                    positions.insert(symbol.into(), value);
                }
            }
        }
    }
    let total_pnl: f64 = positions
        .values()
        .filter_map(|p| {
            p.get("unrealized_pnl")
                .or_else(|| p.get("unrealizedPnl"))
                .and_then(Value::as_f64)
        })
        .sum();
    let body = serde_json::json!({
        "type": "portfolio_update",
        "channel": "portfolio",
        "timestamp": crate::protocol::common::iso(now),
        "data": {
            "position_count": positions.len(),
            "total_pnl": (total_pnl * 100.0).round() / 100.0,
            "positions": positions,
        },
    });
    crate::protocol::common::json_frame(&body)
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
