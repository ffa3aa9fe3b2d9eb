//! One BondX connection's session. Owned by the connection's shard.
//!
//! Subscribing (by path at open, or by a `subscribe` message), in one
//! callback so no delta can slip in between:
//! 1. the topic must be in the user's scope (`FORBIDDEN` otherwise; the
//!    connection stays open);
//! 2. with `resume_from_seq`, the engine answers the resume under the
//!    topic's lock together with the subscription: every later message is
//!    re-sent as a delta, in order — or, when that is not possible, the
//!    subscription is taken again with the topic's state, and the client
//!    gets a `snapshot` whose `meta` says why the resume failed;
//! 3. otherwise the engine hands over the topic's state with the
//!    subscription, and the client gets it as one `snapshot` whose `seq` is
//!    the topic's last seq: deltas continue at `seq + 1`;
//! 4. from there the subscription's sequence is watched: after a gap the
//!    session is woken and takes the subscription again, and the client
//!    gets a fresh `snapshot` marked `resync` instead of a delta after a
//!    hole (`resync.rs`).
//!
//! Background mode (a `background_mode` message, or `x-background-mode:
//! true` at connect) leaves every topic's live stream and instead sends,
//! at most once per `[bondx] background_interval_seconds`, a `snapshot` of
//! each topic whose state changed (`background.rs`). Turning it off
//! subscribes again, each topic starting with a fresh snapshot.
//!
//! Client messages are limited per connection: pings by [`PING_RATE`],
//! everything else by the endpoint class's burst and per-minute rate. A
//! message past its limit is not acted on and gets `RATE_LIMIT_EXCEEDED` —
//! at most one such reply per second, so a flood of messages cannot turn
//! into a flood of replies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shardcast_engine::{
    CloseReason, ConnCtx, Epoch, Position, RateLimit, RateLimiter, Replay, Replayed, Session,
    Subscribed,
};
use tracing::debug;

use super::background::Background;
use super::command::{parse, Code, Command, Subscribe};
use super::envelope::{self, Head};
use super::resync::{resync_meta, Watches};
use super::Class;
use crate::auth::Principal;
use crate::input::truncate;
use crate::App;

/// Pings a connection may send per second (a one-second burst): far above
/// any keep-alive, far below a flood.
const PING_RATE: u32 = 5;

/// At most one `RATE_LIMIT_EXCEEDED` reply per this interval.
const REFUSAL_REPLY_INTERVAL: Duration = Duration::from_secs(1);

/// One BondX connection. Owned by its shard.
#[derive(Debug)]
pub struct BondxSession {
    app: Arc<App>,
    principal: Arc<Principal>,
    class: Class,
    /// The path's topics, subscribed at open.
    initial: Vec<String>,
    limiter: RateLimiter,
    last_refusal_reply: Option<Instant>,
    refused_unreported: u64,
    opened: Instant,
    /// `Some` in background mode: the topics followed, none of them live.
    background: Option<Background>,
    /// Pings have a limit of their own ([`PING_RATE`]), so a client's
    /// keep-alive never eats the class's budget for subscriptions.
    pings: RateLimiter,
    /// The live subscriptions' sequences, watched for gaps (`resync.rs`).
    watches: Watches,
}

/// What a reply is about: its topic and the client message's id.
#[derive(Clone, Copy)]
struct Reply<'a> {
    topic: Option<&'a str>,
    correlation_id: Option<&'a str>,
}

impl BondxSession {
    /// A session of `class` for `principal`, subscribing to `topics` once
    /// open (in background mode from the start if `background`).
    pub fn new(
        app: Arc<App>,
        principal: Arc<Principal>,
        class: Class,
        topics: Vec<String>,
        background: bool,
    ) -> Self {
        Self {
            app,
            principal,
            class,
            initial: topics,
            limiter: RateLimiter::default(),
            last_refusal_reply: None,
            refused_unreported: 0,
            opened: Instant::now(),
            background: background.then(Background::default),
            pings: RateLimiter::default(),
            watches: Watches::default(),
        }
    }

    fn error(ctx: &mut ConnCtx<'_>, code: Code, message: &str, reply: Reply<'_>) {
        ctx.send_error(envelope::error(
            code,
            message,
            reply.topic,
            None,
            reply.correlation_id,
        ));
    }

    /// The most keys a snapshot holds: the topics' own bound.
    fn max_keys(&self) -> usize {
        self.app.config.engine.history.max_keys
    }

    /// Subscribes to `request.topic` (steps in the module docs); `ack`:
    /// answer with an `ack` first (subscriptions by message).
    fn subscribe(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        request: &Subscribe,
        ack: bool,
        correlation_id: Option<&str>,
    ) {
        let name = request.topic.as_str();
        let reply = Reply {
            topic: Some(name),
            correlation_id,
        };
        if !self.principal.may_subscribe(name) {
            let message = format!("this user may not subscribe to {:?}", truncate(name, 128));
            return Self::error(ctx, Code::Forbidden, &message, reply);
        }
        if let Some(background) = &mut self.background {
            let limit = self.app.config.engine.max_subscriptions;
            if let Err((code, message)) = background.follow(name, limit) {
                return Self::error(ctx, code, &message, reply);
            }
            if ack {
                let payload = json!({"action": "subscribe", "status": "ok", "background": true});
                ctx.send(envelope::ack(Some(name), correlation_id, &payload));
            }
            return;
        }
        let replay = match request.resume_from_seq {
            Some(seq) => {
                // Without an epoch, the topic's current one (a topic that
                // does not exist yet cannot be resumed: any epoch fails).
                let epoch = request.resume_epoch.unwrap_or_else(|| {
                    ctx.engine()
                        .topics()
                        .get(name)
                        .map_or(Epoch::from_u64(0), |t| t.epoch())
                });
                Replay::After(Position { epoch, seq })
            }
            None => Replay::State(self.max_keys()),
        };
        let sub = match ctx.subscribe(name, replay, Some(&self.principal.quota)) {
            Ok(sub) => sub,
            Err(e) => return Self::error(ctx, Code::from(&e), &e.to_string(), reply),
        };
        // The rate in force (the channel's ceiling wins), echoed in the ack.
        let max_rate = match request.max_rate {
            Some(asked) => ctx.limit_rate(name, Some(asked)).flatten(),
            None => ctx.rate_of(name),
        };
        if ack {
            ctx.send(envelope::subscribe_ack(
                request,
                &sub,
                max_rate,
                reply.correlation_id,
            ));
        }
        if !sub.new {
            // Already live: its deltas flow; nothing to replay.
            return;
        }
        match (request.resume_from_seq, &sub.replay) {
            (Some(asked), Ok(resumed)) => {
                let queued = ctx.send_replay(resumed);
                self.watches.watch(ctx, name, sub.position);
                if queued < resumed.messages.len() {
                    ctx.unsubscribe(name);
                    self.watches.forget(name);
                    let through = resumed.messages[queued].seq - 1;
                    let message = format!("resume cut short after seq {through}: the connection's outbox is full, so the topic was left; subscribe again with resume_from_seq {through}");
                    debug!(client = %ctx.client_id(), asked, through, "bondx resume cut short");
                    Self::error(ctx, Code::SlowConsumer, &message, reply);
                }
            }
            (Some(asked), Err(e)) => {
                // Take the subscription again, this time with the state.
                ctx.unsubscribe(name);
                let failure = envelope::resume_failure(asked, e);
                match ctx.subscribe(name, Replay::State(self.max_keys()), None) {
                    Ok(sub) => self.send_snapshot(ctx, &sub, Some(&failure), reply),
                    Err(e) => Self::error(ctx, Code::from(&e), &e.to_string(), reply),
                }
            }
            (None, _) => self.send_snapshot(ctx, &sub, None, reply),
        }
    }

    /// Sends the snapshot a subscription came with, and watches the
    /// subscription from there.
    fn send_snapshot(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        sub: &Subscribed,
        extra: Option<&serde_json::Value>,
        reply: Reply<'_>,
    ) {
        let empty = Replayed::default();
        let state = sub.replay.as_ref().unwrap_or(&empty);
        let frame = envelope::snapshot(
            sub.topic.name(),
            sub.position,
            &state.messages,
            extra,
            reply.correlation_id,
        );
        if ctx.send_state(&sub.topic, frame) {
            self.watches.watch(ctx, sub.topic.name(), sub.position);
        } else {
            ctx.unsubscribe(sub.topic.name());
            self.watches.forget(sub.topic.name());
            let message =
                "the topic's snapshot does not fit in the connection's outbox; the topic was left";
            Self::error(ctx, Code::SlowConsumer, message, reply);
        }
    }

    fn unsubscribe(&mut self, ctx: &mut ConnCtx<'_>, topic: &str, correlation_id: Option<&str>) {
        let reply = Reply {
            topic: Some(topic),
            correlation_id,
        };
        let held = match &mut self.background {
            Some(background) => background.leave(topic),
            None => ctx.unsubscribe(topic),
        };
        self.watches.forget(topic);
        if !held {
            let message = format!("not subscribed to {:?}", truncate(topic, 128));
            return Self::error(ctx, Code::NotSubscribed, &message, reply);
        }
        let payload = json!({"action": "unsubscribe", "status": "ok"});
        ctx.send(envelope::ack(Some(topic), correlation_id, &payload));
    }

    /// Switches background mode (module docs): the ack, then (turning it
    /// off) each topic's fresh snapshot.
    fn set_background(&mut self, ctx: &mut ConnCtx<'_>, on: bool, correlation_id: Option<&str>) {
        let payload = json!({"action": "background_mode", "status": "ok", "enabled": on});
        ctx.send(envelope::ack(None, correlation_id, &payload));
        match (on, self.background.take()) {
            (true, None) => {
                let topics = ctx.subscriptions();
                for topic in &topics {
                    ctx.unsubscribe(topic);
                }
                self.watches.clear();
                self.background = Some(Background::following(topics));
                let interval = self.app.config.bondx.background_interval;
                ctx.wake_at(Some(Instant::now() + interval));
            }
            (false, Some(background)) => {
                ctx.wake_at(None);
                for topic in background.into_topics() {
                    let request = Subscribe {
                        topic: topic.to_string(),
                        ..Subscribe::default()
                    };
                    self.subscribe(ctx, &request, false, correlation_id);
                }
            }
            // Already in the mode asked for: nothing changes.
            (true, Some(background)) => self.background = Some(background),
            (false, None) => {}
        }
    }

    /// Answers a message refused by the rate limit, at most once per
    /// [`REFUSAL_REPLY_INTERVAL`].
    fn refuse(&mut self, ctx: &mut ConnCtx<'_>, now: Instant, limit: String) {
        self.refused_unreported += 1;
        if self
            .last_refusal_reply
            .is_some_and(|at| now.duration_since(at) < REFUSAL_REPLY_INTERVAL)
        {
            return;
        }
        self.last_refusal_reply = Some(now);
        let topic = self.initial_topic();
        let details = json!({
            "topic": topic,
            "limit": limit,
            "refused": std::mem::take(&mut self.refused_unreported),
        });
        ctx.send_error(envelope::error(
            Code::RateLimitExceeded,
            "Rate limit exceeded",
            Some(&topic),
            Some(&details),
            None,
        ));
    }

    /// Answers the gaps the watches saw (`resync.rs`): each topic is taken
    /// again with its state, at the rate it had, and sent as a `snapshot`
    /// marked `resync`.
    fn resync(&mut self, ctx: &mut ConnCtx<'_>) {
        for (topic, before) in self.watches.take_gaps() {
            let rate = ctx.rate_of(&topic);
            ctx.unsubscribe(&topic);
            let reply = Reply {
                topic: Some(&topic),
                correlation_id: None,
            };
            match ctx.subscribe(&topic, Replay::State(self.max_keys()), None) {
                Ok(sub) => {
                    if rate.is_some() {
                        ctx.limit_rate(&topic, rate);
                    }
                    debug!(client = %ctx.client_id(), topic = %topic, after = before.seq, to = sub.position.seq, "bondx resync after a gap");
                    self.send_snapshot(ctx, &sub, Some(&resync_meta(before)), reply);
                }
                Err(e) => Self::error(ctx, Code::from(&e), &e.to_string(), reply),
            }
        }
    }

    /// The endpoint's first topic (the one the path names).
    fn initial_topic(&self) -> String {
        self.initial.first().cloned().unwrap_or_default()
    }
}

impl Session for BondxSession {
    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<shardcast_engine::TopicQuota>>) {
        let names = self
            .initial
            .iter()
            .filter(|name| self.principal.may_subscribe(name))
            .cloned()
            .collect();
        (names, Some(Arc::clone(&self.principal.quota)))
    }

    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some(at) = self.principal.deadline() {
            ctx.close_at(Some((at, CloseReason::TokenExpired)));
        }
        let topics = std::mem::take(&mut self.initial);
        for topic in &topics {
            let request = Subscribe {
                topic: topic.clone(),
                ..Subscribe::default()
            };
            self.subscribe(ctx, &request, false, None);
        }
        self.initial = topics;
        if self.background.is_some() {
            // The first state goes out at once, then once per interval.
            ctx.wake_at(Some(Instant::now()));
        }
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        // Parsing is bounded by max_frame_size (and reads by the shard's
        // per-turn budget); the limits below decide what is acted on.
        let parsed = parse(text);
        let now = Instant::now();
        let now_ns = now.duration_since(self.opened).as_nanos() as u64;
        // A command held for its topic was admitted when it first came.
        let admitted = if ctx.redelivered() {
            Ok(())
        } else if parsed.command == Ok(Command::Ping) {
            self.pings
                .try_acquire(RateLimit::per_second(PING_RATE), now_ns)
                .then_some(())
                .ok_or_else(|| format!("{PING_RATE} pings per second"))
        } else {
            let limit = self.app.config.bondx.limit(self.class);
            self.limiter
                .try_acquire(limit.rate, now_ns)
                .then_some(())
                .ok_or_else(|| format!("{} per minute", limit.per_minute))
        };
        if let Err(limit) = admitted {
            return self.refuse(ctx, now, limit);
        }
        let correlation_id = parsed.correlation_id.as_deref();
        match parsed.command {
            Ok(Command::Subscribe(request))
                if self.principal.may_subscribe(&request.topic)
                    && !ctx.prepare([request.topic.as_str()], Some(&self.principal.quota)) =>
            {
                // Handed over again once the topic is caught up with the bus.
            }
            Ok(Command::Subscribe(request)) => self.subscribe(ctx, &request, true, correlation_id),
            Ok(Command::Unsubscribe { topic }) => self.unsubscribe(ctx, &topic, correlation_id),
            Ok(Command::Ping) => ctx.send(envelope::frame(
                &Head {
                    kind: "pong",
                    topic: None,
                    seq: 0,
                    correlation_id,
                },
                b"{}",
                b"{}",
            )),
            Ok(Command::BackgroundMode { enabled }) => {
                self.set_background(ctx, enabled, correlation_id)
            }
            Err(e) => {
                debug!(client = %ctx.client_id(), error = %e.message, "bad bondx message");
                let reply = Reply {
                    topic: None,
                    correlation_id,
                };
                Self::error(ctx, e.code, &e.message, reply);
            }
        }
    }

    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        // Woken by a gap (`resync.rs`), or by the background interval.
        self.resync(ctx);
        let max_keys = self.max_keys();
        if let Some(background) = &mut self.background {
            let interval = self.app.config.bondx.background_interval;
            background.send_changed(ctx, max_keys, interval);
            ctx.wake_at(Some(Instant::now() + interval));
        }
    }
}
