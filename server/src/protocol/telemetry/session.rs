//! One `/ws/telemetry` connection's session: what its commands do.
//!
//! Owned by the connection's shard. The session holds the connection's
//! [`Principal`]: every subscribe is checked against its subscribe scope
//! before the engine sees the name (so a refused name never creates a
//! topic), and topics it creates are charged to its quota. A connection
//! opened with a token closes with 4440 when the token expires, unless a
//! `refresh` brought a newer token of the same user; a refresh narrows or
//! widens the scope, ending subscriptions it no longer covers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use shardcast_engine::{
    CloseReason, ConnCtx, Position, RateLimiter, Replay, Session, SubscribeError, TopicError,
    MAX_NAME_LEN,
};
use tracing::{debug, info};

use super::{parse_command, Command};
use crate::auth::Principal;
use crate::input::truncate;
use crate::protocol::common::{
    ack, channel_error_frame, error_frame, iso, json_frame, refresh_error_code, Ack, ErrorCode,
    HeartbeatReplies,
};
use crate::App;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// Names refused for one reason, reported in one `error` frame: the names,
/// and what was said about the first.
fn report(ctx: &mut ConnCtx<'_>, code: ErrorCode, what: &str, names: &[(&str, String)]) {
    match names {
        [] => {}
        [(_, message)] => ctx.send_error(error_frame(code, message)),
        [(_, first), ..] => {
            let list: Vec<&str> = names
                .iter()
                .map(|(n, _)| truncate(n, MAX_NAME_LEN))
                .collect();
            let message = format!("{what}: {}; {first}", list.join(", "));
            ctx.send_error(error_frame(code, &message));
        }
    }
}

/// A subscribe's `ack` with the channels' positions (when asked for).
#[derive(Serialize)]
struct AckWithPositions<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    action: &'static str,
    channels: &'a [Arc<str>],
    positions: &'a serde_json::Map<String, serde_json::Value>,
}

/// What one subscribe asks for.
struct SubscribeRequest<'a> {
    channels: &'a [String],
    replay: bool,
    resume: &'a [(String, Position)],
    positions: bool,
    max_rate: Option<NonZeroU32>,
}

/// One `/ws/telemetry` connection. Owned by its shard.
#[derive(Debug)]
pub struct TelemetrySession {
    app: Arc<App>,
    principal: Arc<Principal>,
    initial_channels: Vec<String>,
    initial_replay: bool,
    heartbeats: HeartbeatReplies,
    /// Commands are rate-limited: each may cost a scan of the connection's
    /// subscriptions, a token verification, a reply.
    commands: RateLimiter,
    opened: Instant,
}

impl TelemetrySession {
    /// A session for `principal` that subscribes to `channels` once open.
    pub fn new(
        app: Arc<App>,
        principal: Arc<Principal>,
        channels: Vec<String>,
        replay: bool,
    ) -> Self {
        Self {
            app,
            principal,
            initial_channels: channels,
            initial_replay: replay,
            heartbeats: HeartbeatReplies::default(),
            commands: RateLimiter::default(),
            opened: Instant::now(),
        }
    }

    /// Subscribes, then sends in order: the ack (channels now held from this
    /// request, with their positions if asked), an error per kind of refusal
    /// naming its channels (`FORBIDDEN`, `UNKNOWN_CHANNEL`, `LIMIT_REACHED`),
    /// a `RESUME_FAILED` per resume that cannot be answered, the replays.
    /// Nothing else is queued meanwhile: live events follow all of it.
    fn subscribe(&self, ctx: &mut ConnCtx<'_>, request: &SubscribeRequest<'_>) {
        let recent = if request.replay {
            Replay::Recent(self.app.config.telemetry.replay_limit)
        } else {
            Replay::None
        };
        let show_positions = request.positions || !request.resume.is_empty();
        // By name, so a long command costs no quadratic string compares.
        let resumes: HashMap<&str, Position> = request
            .resume
            .iter()
            .map(|(name, at)| (name.as_str(), *at))
            .collect();
        let mut subscribed = Vec::with_capacity(request.channels.len());
        let mut positions = serde_json::Map::new();
        let mut replays = Vec::new();
        let mut failed = Vec::new();
        let mut forbidden = Vec::new();
        let mut unknown = Vec::new();
        let mut limited = Vec::new();
        for name in request.channels {
            if !self.principal.may_subscribe(name) {
                let message = format!(
                    "these credentials may not subscribe to {:?}",
                    truncate(name, MAX_NAME_LEN)
                );
                forbidden.push((name.as_str(), message));
                continue;
            }
            let resume = resumes.get(name.as_str());
            let replay = resume.map_or(recent, |&at| Replay::After(at));
            match ctx.subscribe(name, replay, Some(&self.principal.quota)) {
                Ok(sub) => {
                    let topic = Arc::clone(sub.topic.name());
                    if request.max_rate.is_some() {
                        ctx.limit_rate(&topic, request.max_rate);
                    }
                    // Named twice in this command: answered the first time.
                    // (Only a subscription already held can be a repeat, and
                    // the same topic is the same `Arc`: no string compares.)
                    if !sub.new && subscribed.iter().any(|t| Arc::ptr_eq(t, &topic)) {
                        subscribed.push(topic);
                        continue;
                    }
                    match sub.replay {
                        Ok(_) if resume.is_some() && !sub.new => failed.push((
                            Arc::clone(&topic),
                            "already subscribed: its events are live".to_owned(),
                        )),
                        Ok(replayed) if !replayed.messages.is_empty() => {
                            replays.push((Arc::clone(&topic), resume.is_some(), replayed));
                        }
                        Ok(_) => {}
                        Err(e) => failed.push((Arc::clone(&topic), e.to_string())),
                    }
                    if show_positions {
                        positions.insert(
                            topic.to_string(),
                            serde_json::json!({
                                "epoch": sub.position.epoch.to_string(),
                                "seq": sub.position.seq,
                            }),
                        );
                    }
                    subscribed.push(topic);
                }
                Err(
                    e @ (SubscribeError::TooMany { .. }
                    | SubscribeError::Topic(TopicError::Quota { .. })
                    | SubscribeError::Topic(TopicError::TooManyTopics { .. })
                    | SubscribeError::Topic(TopicError::TooManyUnclaimed { .. })),
                ) => limited.push((name.as_str(), e.to_string())),
                Err(e @ SubscribeError::Topic(_)) => unknown.push((name.as_str(), e.to_string())),
            }
        }
        if show_positions {
            ctx.send(json_frame(&AckWithPositions {
                kind: "ack",
                action: "subscribe",
                channels: &subscribed,
                positions: &positions,
            }));
        } else {
            ctx.send(ack("subscribe", &subscribed));
        }
        report(ctx, ErrorCode::Forbidden, "not allowed", &forbidden);
        report(ctx, ErrorCode::UnknownChannel, "unknown channels", &unknown);
        report(ctx, ErrorCode::LimitReached, "limit reached for", &limited);
        for (channel, why) in &failed {
            let message = format!("cannot resume {:?}: {why}", truncate(channel, MAX_NAME_LEN));
            ctx.send_error(channel_error_frame(
                ErrorCode::ResumeFailed,
                channel,
                &message,
            ));
        }
        for (channel, resumed, replayed) in &replays {
            let queued = ctx.send_replay(replayed);
            if *resumed && queued < replayed.messages.len() {
                // Live events would follow a hole: leave the channel, and say
                // where the events that were queued end.
                ctx.unsubscribe(channel);
                let through = replayed.messages[queued].seq - 1;
                let message = format!(
                    "resume of {:?} cut short after seq {through}: the connection's outbox is full, so the channel was left; subscribe again with resume from seq {through}",
                    truncate(channel, MAX_NAME_LEN)
                );
                ctx.send_error(channel_error_frame(
                    ErrorCode::ResumeFailed,
                    channel,
                    &message,
                ));
            }
        }
    }

    fn unsubscribe(&self, ctx: &mut ConnCtx<'_>, channels: &[String]) {
        let mut left = Vec::with_capacity(channels.len());
        let mut not_held = Vec::new();
        for name in channels {
            if ctx.unsubscribe(name) {
                left.push(Arc::from(name.as_str()));
            } else {
                not_held.push(truncate(name, MAX_NAME_LEN));
            }
        }
        ctx.send(ack("unsubscribe", &left));
        if !not_held.is_empty() {
            let message = format!("not subscribed to: {}", not_held.join(", "));
            ctx.send_error(error_frame(ErrorCode::NotSubscribed, &message));
        }
    }

    /// Replaces the connection's token with a newer one of the same user;
    /// ends the subscriptions the new token's scope no longer covers.
    fn refresh(&mut self, ctx: &mut ConnCtx<'_>, token: &str) {
        let principal = match self.app.config.auth.refresh(&self.principal, token) {
            Ok(principal) => principal,
            Err(e) => {
                ctx.send_error(error_frame(refresh_error_code(&e), &e.to_string()));
                return;
            }
        };
        let ended: Vec<Arc<str>> = ctx
            .subscriptions()
            .into_iter()
            .filter(|name| !principal.may_subscribe(name))
            .collect();
        for name in &ended {
            ctx.unsubscribe(name);
        }
        ctx.close_at(
            principal
                .deadline()
                .map(|at| (at, CloseReason::TokenExpired)),
        );
        info!(client = %ctx.client_id(), owner = %principal.name, ended = ended.len(), "token refreshed");
        ctx.send(json_frame(&Ack {
            kind: "ack",
            action: "refresh",
            channels: &ended,
            expires_at: principal.expires_at.map(iso),
        }));
        self.principal = principal;
    }
}

impl Session for TelemetrySession {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        let config = &self.app.config;
        let expires_at = self.principal.expires_at;
        ctx.send(json_frame(&Welcome {
            kind: "welcome",
            client_id: ctx.client_id(),
            heartbeat_interval_seconds: config.telemetry.heartbeat_interval.as_secs(),
            heartbeat_timeout_seconds: config.telemetry.heartbeat_timeout.as_secs(),
            rate_limit_per_second: config.telemetry.rate_limit_per_second,
            replay_limit: config.telemetry.replay_limit,
            expires_at: expires_at.map(iso),
        }));
        if let Some(at) = self.principal.deadline() {
            ctx.close_at(Some((at, CloseReason::TokenExpired)));
        }
        if !self.initial_channels.is_empty() {
            let channels = std::mem::take(&mut self.initial_channels);
            let request = SubscribeRequest {
                channels: &channels,
                replay: self.initial_replay,
                resume: &[],
                positions: false,
                max_rate: None,
            };
            self.subscribe(ctx, &request);
        }
    }

    fn topics_at_open(&self) -> (Vec<String>, Option<Arc<shardcast_engine::TopicQuota>>) {
        let names = self
            .initial_channels
            .iter()
            .filter(|name| self.principal.may_subscribe(name))
            .cloned()
            .collect();
        (names, Some(Arc::clone(&self.principal.quota)))
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let limit = self.app.config.telemetry.commands;
        let now_ns = self.opened.elapsed().as_nanos() as u64;
        // A command held for its channels was admitted when it first came.
        if !ctx.redelivered() && !self.commands.try_acquire(limit, now_ns) {
            ctx.send_error(error_frame(
                ErrorCode::RateLimited,
                "too many commands: see telemetry.commands_per_second; this one was ignored",
            ));
            return;
        }
        let max = self.app.config.engine.max_subscriptions;
        match parse_command(text, max) {
            Ok(Command::Subscribe { ref channels, .. })
                if !ctx.prepare(
                    channels
                        .iter()
                        .filter(|name| self.principal.may_subscribe(name))
                        .map(String::as_str),
                    Some(&self.principal.quota),
                ) =>
            {
                // Handed over again once the channels are caught up with the bus.
            }
            Ok(Command::Subscribe {
                channels,
                replay,
                resume,
                positions,
                max_rate,
            }) => self.subscribe(
                ctx,
                &SubscribeRequest {
                    channels: &channels,
                    replay,
                    resume: &resume,
                    positions,
                    max_rate,
                },
            ),
            Ok(Command::Unsubscribe { channels }) => self.unsubscribe(ctx, &channels),
            Ok(Command::Heartbeat) => {
                if let Some(frame) = self.heartbeats.reply(Instant::now()) {
                    ctx.send(frame);
                }
            }
            Ok(Command::Refresh { token }) => self.refresh(ctx, &token),
            Err(e) => {
                debug!(client = %ctx.client_id(), code = ?e.code, "bad client command");
                ctx.send_error(error_frame(e.code, &e.message));
            }
        }
    }
}
