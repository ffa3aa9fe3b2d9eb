//! One `/ws` connection of the simple trading protocol. Owned by the
//! connection's shard.
//!
//! 1. **Admission**: the connection takes one of `[simple] max_connections`
//!    slots when it opens (close 1013 `Try Again Later` when none is free)
//!    and gives it back when its session goes.
//! 2. **Auto-subscription**: it follows all four channels, for all symbols,
//!    until its first `subscribe`; that one replaces the automatic set, and
//!    later ones add to it. An `unsubscribe` changes whatever set is current.
//! 3. **Live channels** (`signals`, `trades`) are engine subscriptions to
//!    their feed topics, narrowed by a [`SymbolFilter`] when the client
//!    lists symbols: each message is framed once for every subscriber.
//! 4. **Conflated channels** (`price_updates`, `portfolio`) are not
//!    subscriptions: at each of the channel's interval boundaries (counted
//!    from one origin, so a shard's sessions wake together) the session
//!    sends the frame `conflate.rs` built for its tick, position and symbols.
//!    A channel just subscribed (or whose symbols grew) gets its current
//!    state at once, read afresh for it alone.
//! 5. **Liveness**: a client silent for `ping_interval` is sent a WebSocket
//!    ping (clients answer with a pong by themselves); the engine closes one
//!    silent for three intervals.
//! 6. **Limits**: at most `[simple] messages_per_second` client messages
//!    (twice that in a burst); past it a message is not acted on, and the
//!    first such message of a run gets an `error`.
//! 7. **Several servers as one**: a channel's feed must be caught up with
//!    the bus before its state is read or its live messages taken, so the
//!    automatic set waits for its feeds before the session opens
//!    ([`Session::topics_at_open`]) and a `subscribe` waits for its feed
//!    ([`ConnCtx::prepare`]); a message held that way was admitted by the
//!    limit when it first came ([`ConnCtx::redelivered`]).
//!
//! Every bad message gets an `error` frame and changes nothing: a request
//! is checked whole (symbols, scope, the topic) before anything changes.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{CloseReason, ConnCtx, Position, ProtocolCloseCode, Replay, Session};
use tracing::debug;

use super::conflate::digest;
use super::frames::{SymbolFilter, Symbols};
use super::message::{parse, Admit, Channel, MessageRate, Request};
use super::Shared;
use crate::auth::Principal;
use crate::protocol::common::{iso, json_frame};
use crate::App;

mod conflated;

/// `Try Again Later`: every `[simple] max_connections` slot is taken.
const TRY_AGAIN_LATER: ProtocolCloseCode = ProtocolCloseCode::new(1013);

/// One channel the connection follows.
#[derive(Debug)]
struct Followed {
    symbols: Symbols,
    /// [`digest`] of `symbols`.
    hash: u64,
    /// Conflated channels: the position of the state last sent (or looked at).
    sent: Option<Position>,
    /// Conflated channels: the last tick served.
    tick: Option<u64>,
}

/// One `/ws` connection. Owned by its shard.
#[derive(Debug)]
pub struct SimpleSession {
    app: Arc<App>,
    shared: Arc<Shared>,
    principal: Arc<Principal>,
    /// Still following the automatic set (no `subscribe` yet).
    auto: bool,
    channels: BTreeMap<Channel, Followed>,
    last_heard: Instant,
    last_ping: Instant,
    /// Holds one of the endpoint's connection slots.
    admitted: bool,
    rate: MessageRate,
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'static str,
    symbols: Option<&'a [String]>,
    timestamp: String,
}

impl SimpleSession {
    /// A session for `principal`.
    pub fn new(app: Arc<App>, shared: Arc<Shared>, principal: Arc<Principal>) -> Self {
        let now = Instant::now();
        Self {
            app,
            shared,
            principal,
            auto: true,
            channels: BTreeMap::new(),
            last_heard: now,
            last_ping: now,
            admitted: false,
            rate: MessageRate::new(now),
        }
    }

    fn error(ctx: &mut ConnCtx<'_>, text: &str) {
        ctx.send_error(json_frame(&serde_json::json!({
            "type": "error",
            "error": text,
            "timestamp": iso(SystemTime::now()),
        })));
    }

    /// `subscribed` / `unsubscribed`, echoing the request.
    fn ack(
        ctx: &mut ConnCtx<'_>,
        kind: &'static str,
        channel: Channel,
        symbols: Option<&[String]>,
    ) {
        ctx.send(json_frame(&Ack {
            kind,
            channel: channel.name(),
            symbols,
            timestamp: iso(SystemTime::now()),
        }));
    }

    /// Follows `channel` for `symbols`, added to what it follows already
    /// (or instead of it: `replace`). Checks everything before changing
    /// anything; `Ok(true)` when the channel's state should be sent now.
    fn follow(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        symbols: Option<&[String]>,
        replace: bool,
    ) -> Result<bool, String> {
        let feed = self.shared.feed(channel);
        if !self.principal.may_subscribe(feed) {
            return Err(format!("these credentials may not read {}", channel.name()));
        }
        let held = if replace {
            None
        } else {
            self.channels.get(&channel)
        };
        // A channel not followed yet starts from no symbols at all.
        let mut wanted =
            held.map_or_else(|| Symbols::Only(Default::default()), |f| f.symbols.clone());
        wanted
            .add(symbols, self.shared.config.max_symbols)
            .map_err(|e| format!("Too many symbols: at most {} per channel", e.0))?;
        let changed = held.is_none_or(|f| f.symbols != wanted);
        if channel.is_live() {
            if !self.channels.contains_key(&channel) {
                ctx.subscribe(feed, Replay::None, Some(&self.principal.quota))
                    .map_err(|e| format!("Cannot subscribe to {}: {e}", channel.name()))?;
            }
            let filter =
                (wanted != Symbols::All).then(|| Rc::new(SymbolFilter(wanted.clone())) as Rc<_>);
            ctx.filter(feed, filter);
        }
        let hash = digest(&wanted);
        let followed = self.channels.entry(channel).or_insert(Followed {
            symbols: Symbols::All,
            hash,
            sent: None,
            tick: None,
        });
        followed.symbols = wanted;
        followed.hash = hash;
        if changed && !channel.is_live() {
            followed.sent = None;
            followed.tick = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Stops following `symbols` of `channel` (`None`: all of it).
    fn leave(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        symbols: Option<&[String]>,
    ) -> Result<(), String> {
        let Some(followed) = self.channels.get_mut(&channel) else {
            return Err(format!("Not subscribed to {}", channel.name()));
        };
        let mut left = followed.symbols.clone();
        let any = left
            .remove(symbols, self.shared.config.max_symbols)
            .map_err(|e| format!("Too many symbols: at most {} per channel", e.0))?;
        let feed = self.shared.feed(channel);
        if !any {
            self.channels.remove(&channel);
            if channel.is_live() {
                ctx.unsubscribe(feed);
            }
            return Ok(());
        }
        if channel.is_live() {
            ctx.filter(feed, Some(Rc::new(SymbolFilter(left.clone()))));
        }
        followed.hash = digest(&left);
        followed.symbols = left;
        Ok(())
    }

    /// The first `subscribe`: `channel` alone replaces the automatic set,
    /// once it is known to succeed.
    fn replace_auto(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        symbols: Option<&[String]>,
    ) -> Result<bool, String> {
        let send = self.follow(ctx, channel, symbols, true)?;
        self.auto = false;
        let others: Vec<Channel> = self
            .channels
            .keys()
            .copied()
            .filter(|c| *c != channel)
            .collect();
        for other in others {
            self.channels.remove(&other);
            if other.is_live() {
                ctx.unsubscribe(self.shared.feed(other));
            }
        }
        Ok(send)
    }

    /// Asks to be woken at the next conflation boundary or ping, whichever
    /// comes first.
    fn schedule(&self, ctx: &mut ConnCtx<'_>, now: Instant) {
        let ping = self.last_heard.max(self.last_ping) + self.shared.config.ping_interval;
        let next = self
            .channels
            .keys()
            .filter(|c| !c.is_live())
            .map(|&c| self.shared.boundary(c, now))
            .fold(ping, Instant::min);
        ctx.wake_at(Some(next));
    }

    /// Whether a client message at `now` is within the rate; the first one
    /// past it gets an error.
    fn admit_message(&mut self, ctx: &mut ConnCtx<'_>, now: Instant) -> bool {
        let config = &self.shared.config;
        match self.rate.admit(config.message_rate, now) {
            Admit::Yes => true,
            Admit::Refuse => false,
            Admit::RefuseAndSay => {
                let limit = config.messages_per_second;
                Self::error(ctx, &format!("Rate limit exceeded: at most {limit} messages per second; this one was not acted on"));
                false
            }
        }
    }

    /// Gives back the connection slot (once).
    fn release(&mut self) {
        if std::mem::take(&mut self.admitted) {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Session for SimpleSession {
    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<shardcast_engine::TopicQuota>>) {
        let feeds = Channel::ALL
            .iter()
            .map(|&channel| self.shared.feed(channel))
            .filter(|feed| self.principal.may_subscribe(feed))
            .map(str::to_owned)
            .collect();
        (feeds, Some(Arc::clone(&self.principal.quota)))
    }

    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        let max = self.shared.config.max_connections;
        if self.shared.connections.fetch_add(1, Ordering::Relaxed) >= max {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            return ctx.close(CloseReason::ByProtocol {
                code: TRY_AGAIN_LATER,
                label: "simple_full",
                text: format!("too many connections (at most {max}); retry later").into(),
            });
        }
        self.admitted = true;
        for channel in Channel::ALL {
            match self.follow(ctx, channel, None, false) {
                Ok(true) => self.send_conflated(ctx, channel, None),
                Ok(false) => {}
                Err(e) => {
                    debug!(client = %ctx.client_id(), channel = channel.name(), error = %e, "automatic subscription refused");
                }
            }
        }
        self.schedule(ctx, Instant::now());
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let now = Instant::now();
        self.last_heard = now;
        // A message held for its feed was admitted when it first came.
        if !ctx.redelivered() && !self.admit_message(ctx, now) {
            return;
        }
        let request = match parse(text, self.shared.config.max_symbols) {
            Ok(request) => request,
            Err(invalid) => {
                debug!(client = %ctx.client_id(), error = %invalid, "simple message refused");
                return Self::error(ctx, &invalid.0);
            }
        };
        if let Request::Subscribe { channel, .. } = &request {
            let feed = self.shared.feed(*channel);
            if self.principal.may_subscribe(feed)
                && !ctx.prepare([feed], Some(&self.principal.quota))
            {
                // Handed over again once the feed is caught up with the bus.
                return;
            }
        }
        match request {
            Request::Ping => ctx.send(json_frame(&serde_json::json!({"type": "pong"}))),
            Request::Subscribe { channel, symbols } => {
                let result = if self.auto {
                    self.replace_auto(ctx, channel, symbols.as_deref())
                } else {
                    self.follow(ctx, channel, symbols.as_deref(), false)
                };
                match result {
                    Ok(send) => {
                        Self::ack(ctx, "subscribed", channel, symbols.as_deref());
                        if send {
                            self.send_conflated(ctx, channel, None);
                        }
                    }
                    Err(text) => Self::error(ctx, &text),
                }
            }
            Request::Unsubscribe { channel, symbols } => {
                match self.leave(ctx, channel, symbols.as_deref()) {
                    Ok(()) => Self::ack(ctx, "unsubscribed", channel, symbols.as_deref()),
                    Err(text) => Self::error(ctx, &text),
                }
            }
        }
        self.schedule(ctx, now);
    }

    fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, _data: &mut [u8]) {
        let now = Instant::now();
        self.last_heard = now;
        if self.admit_message(ctx, now) {
            Self::error(
                ctx,
                "Invalid message format: binary messages are not accepted",
            );
        }
    }

    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        let now = Instant::now();
        for channel in [Channel::PriceUpdates, Channel::Portfolio] {
            let tick = self.shared.tick(channel, now);
            self.send_conflated(ctx, channel, Some(tick));
        }
        let interval = self.shared.config.ping_interval;
        if now.saturating_duration_since(self.last_heard.max(self.last_ping)) >= interval {
            self.last_ping = now;
            ctx.send(frame::encode(OpCode::Ping, b""));
        }
        self.schedule(ctx, now);
    }

    fn on_close(&mut self, _reason: &CloseReason) {
        // At once, not when the close has finished flushing: the slot is
        // free for a reconnecting client.
        self.release();
    }
}

/// Gives the slot back if the connection ended without `on_close` (a
/// panicking callback: the session is dropped unclosed).
impl Drop for SimpleSession {
    fn drop(&mut self) {
        self.release();
    }
}
