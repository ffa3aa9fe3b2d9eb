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
//!    A channel just subscribed gets its current state at once.
//! 5. **Liveness**: a client silent for `ping_interval` is sent a WebSocket
//!    ping (clients answer with a pong by themselves); the engine closes one
//!    silent for three intervals.
//!
//! Every bad message gets an `error` frame and changes nothing.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use shardcast_engine::frame::{self, OpCode};
use shardcast_engine::{CloseReason, ConnCtx, Position, ProtocolCloseCode, Replay, Session};
use tracing::debug;

use super::conflate::{Built, CONFLATION};
use super::frames::{portfolio_update, price_update, SymbolFilter, Symbols};
use super::message::{parse, Channel, Request};
use super::Shared;
use crate::auth::Principal;
use crate::protocol::common::{iso, json_frame};
use crate::App;

/// `Try Again Later`: every `[simple] max_connections` slot is taken.
const TRY_AGAIN_LATER: ProtocolCloseCode = ProtocolCloseCode::new(1013);

/// One channel the connection follows.
#[derive(Debug)]
struct Followed {
    symbols: Symbols,
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
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'static str,
    symbols: Option<Vec<&'a str>>,
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
        }
    }

    fn error(ctx: &mut ConnCtx<'_>, text: &str) {
        ctx.send(json_frame(&serde_json::json!({
            "type": "error",
            "error": text,
            "timestamp": iso(SystemTime::now()),
        })));
    }

    fn ack(ctx: &mut ConnCtx<'_>, kind: &'static str, channel: Channel, symbols: Option<&Symbols>) {
        ctx.send(json_frame(&Ack {
            kind,
            channel: channel.name(),
            symbols: symbols.and_then(Symbols::listed),
            timestamp: iso(SystemTime::now()),
        }));
    }

    /// Follows `channel` for `symbols` (added to what it follows already).
    fn follow(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        symbols: Option<&[String]>,
    ) -> Result<(), String> {
        let limit = self.shared.config.max_symbols;
        // A channel not followed yet starts from no symbols at all.
        let mut wanted = match self.channels.get(&channel) {
            Some(followed) => followed.symbols.clone(),
            None => Symbols::Only(Default::default()),
        };
        wanted
            .add(symbols, limit)
            .map_err(|e| format!("Too many symbols: at most {} per channel", e.0))?;
        if channel.is_live() {
            let feed = self.shared.feed(channel);
            if !self.channels.contains_key(&channel) {
                if !self.principal.may_subscribe(feed) {
                    return Err(format!("these credentials may not read {feed}"));
                }
                ctx.subscribe(feed, Replay::None, Some(&self.principal.quota))
                    .map_err(|e| format!("Cannot subscribe to {}: {e}", channel.name()))?;
            }
            let filter =
                (wanted != Symbols::All).then(|| Rc::new(SymbolFilter(wanted.clone())) as Rc<_>);
            ctx.filter(feed, filter);
        }
        let fresh = !self.channels.contains_key(&channel);
        let followed = self.channels.entry(channel).or_insert(Followed {
            symbols: Symbols::All,
            sent: None,
            tick: None,
        });
        followed.symbols = wanted;
        if fresh && !channel.is_live() {
            // Its state now, then at each boundary.
            let tick = self.shared.tick(channel, Instant::now());
            self.send_conflated(ctx, channel, tick);
        }
        Ok(())
    }

    /// Stops following `symbols` of `channel` (`None`: all of it).
    fn leave(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        channel: Channel,
        symbols: Option<&[String]>,
    ) -> Result<Option<Symbols>, String> {
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
            return Ok(None);
        }
        if channel.is_live() {
            ctx.filter(feed, Some(Rc::new(SymbolFilter(left.clone()))));
        }
        followed.symbols = left.clone();
        Ok(Some(left))
    }

    /// Ends the automatic set: the first `subscribe` says what is wanted.
    fn end_auto(&mut self, ctx: &mut ConnCtx<'_>) {
        if std::mem::take(&mut self.auto) {
            for channel in std::mem::take(&mut self.channels).into_keys() {
                if channel.is_live() {
                    ctx.unsubscribe(self.shared.feed(channel));
                }
            }
        }
    }

    /// Sends `channel`'s frame of `tick` if it has one for this client.
    fn send_conflated(&mut self, ctx: &mut ConnCtx<'_>, channel: Channel, tick: u64) {
        let Some(followed) = self.channels.get_mut(&channel) else {
            return;
        };
        if followed.tick == Some(tick) && followed.sent.is_some() {
            return;
        }
        followed.tick = Some(tick);
        let Some(topic) = ctx.engine().topics().get(self.shared.feed(channel)) else {
            return;
        };
        let max_keys = self.app.config.engine.history.max_keys;
        let (since, symbols) = (followed.sent, &followed.symbols);
        let built = CONFLATION.with(|cache| {
            cache.borrow_mut().frame(channel, tick, since, symbols, || {
                let (position, state) = topic.peek(Replay::State(max_keys));
                let state = state.map(|r| r.messages).unwrap_or_default();
                let now = SystemTime::now();
                let frame = match channel {
                    Channel::PriceUpdates => price_update(&state, since, symbols, now),
                    _ if since == Some(position) => None,
                    _ => Some(portfolio_update(&state, symbols, now)),
                };
                Built { position, frame }
            })
        });
        let sent = match built.frame {
            Some(frame) => ctx.send_state(&topic, frame),
            None => true,
        };
        if sent {
            followed.sent = Some(built.position);
        } else {
            // The outbox is full: the next tick sends what this one would
            // have, conflated with whatever came meanwhile.
            debug!(client = %ctx.client_id(), channel = channel.name(), "conflated frame deferred: outbox full");
        }
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
}

impl Session for SimpleSession {
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
            if let Err(e) = self.follow(ctx, channel, None) {
                debug!(client = %ctx.client_id(), channel = channel.name(), error = %e, "automatic subscription refused");
            }
        }
        self.schedule(ctx, Instant::now());
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let now = Instant::now();
        self.last_heard = now;
        let request = match parse(text, self.shared.config.max_symbols) {
            Ok(request) => request,
            Err(invalid) => {
                debug!(client = %ctx.client_id(), error = %invalid, "simple message refused");
                return Self::error(ctx, &invalid.0);
            }
        };
        match request {
            Request::Ping => ctx.send(json_frame(&serde_json::json!({"type": "pong"}))),
            Request::Subscribe { channel, symbols } => {
                self.end_auto(ctx);
                match self.follow(ctx, channel, symbols.as_deref()) {
                    Ok(()) => {
                        let now = self.channels.get(&channel).map(|f| &f.symbols);
                        Self::ack(ctx, "subscribed", channel, now);
                    }
                    Err(text) => Self::error(ctx, &text),
                }
            }
            Request::Unsubscribe { channel, symbols } => {
                self.auto = false;
                match self.leave(ctx, channel, symbols.as_deref()) {
                    Ok(left) => Self::ack(ctx, "unsubscribed", channel, left.as_ref()),
                    Err(text) => Self::error(ctx, &text),
                }
            }
        }
        self.schedule(ctx, now);
    }

    fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, _data: &mut [u8]) {
        self.last_heard = Instant::now();
        Self::error(
            ctx,
            "Invalid message format: binary messages are not accepted",
        );
    }

    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        let now = Instant::now();
        for channel in [Channel::PriceUpdates, Channel::Portfolio] {
            let tick = self.shared.tick(channel, now);
            self.send_conflated(ctx, channel, tick);
        }
        let interval = self.shared.config.ping_interval;
        if now.saturating_duration_since(self.last_heard.max(self.last_ping)) >= interval {
            self.last_ping = now;
            ctx.send(frame::encode(OpCode::Ping, b""));
        }
        self.schedule(ctx, now);
    }
}

impl Drop for SimpleSession {
    fn drop(&mut self) {
        if self.admitted {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
