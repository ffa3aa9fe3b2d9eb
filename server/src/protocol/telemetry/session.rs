//! One `/ws/telemetry` connection's session: what its commands do.
//!
//! Owned by the connection's shard. The session holds the connection's
//! [`Principal`]: every subscribe is checked against its subscribe scope
//! before the engine sees the name (so a refused name never creates a
//! topic), and topics it creates are charged to its quota. A connection
//! opened with a token closes with 4440 when the token expires, unless a
//! `refresh` brought a newer token of the same user; a refresh narrows or
//! widens the scope, ending subscriptions it no longer covers.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use shardcast_engine::{
    CloseReason, ConnCtx, RateLimiter, Replay, Session, SubscribeError, TopicError,
};
use tracing::{debug, info};

use super::{parse_command, Command};
use crate::auth::Principal;
use crate::input::truncate;
use crate::protocol::common::{
    ack, error_frame, iso, json_frame, refresh_error_code, Ack, ErrorCode, HeartbeatReplies,
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
        [(_, message)] => ctx.send(error_frame(code, message)),
        [(_, first), ..] => {
            let list: Vec<&str> = names.iter().map(|(n, _)| truncate(n, 128)).collect();
            let message = format!("{what}: {}; {first}", list.join(", "));
            ctx.send(error_frame(code, &message));
        }
    }
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
    /// request), an error per kind of refusal naming its channels
    /// (`FORBIDDEN`, `UNKNOWN_CHANNEL`, `LIMIT_REACHED`), the replay.
    fn subscribe(&self, ctx: &mut ConnCtx<'_>, channels: &[String], replay: bool) {
        let request = if replay {
            Replay::Recent(self.app.config.telemetry.replay_limit)
        } else {
            Replay::None
        };
        let mut subscribed = Vec::with_capacity(channels.len());
        let mut replays = Vec::new();
        let mut forbidden = Vec::new();
        let mut unknown = Vec::new();
        let mut limited = Vec::new();
        for name in channels {
            if !self.principal.may_subscribe(name) {
                let message = format!(
                    "these credentials may not subscribe to {:?}",
                    truncate(name, 128)
                );
                forbidden.push((name.as_str(), message));
                continue;
            }
            match ctx.subscribe(name, request, Some(&self.principal.quota)) {
                Ok(sub) => {
                    // A request for the recent past is always answerable.
                    if let Ok(replayed) = sub.replay {
                        if !replayed.messages.is_empty() {
                            replays.push(replayed);
                        }
                    }
                    subscribed.push(Arc::clone(sub.topic.name()));
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
        ctx.send(ack("subscribe", &subscribed));
        report(ctx, ErrorCode::Forbidden, "not allowed", &forbidden);
        report(ctx, ErrorCode::UnknownChannel, "unknown channels", &unknown);
        report(ctx, ErrorCode::LimitReached, "limit reached for", &limited);
        for replayed in &replays {
            ctx.send_replay(replayed);
        }
    }

    fn unsubscribe(&self, ctx: &mut ConnCtx<'_>, channels: &[String]) {
        let mut left = Vec::with_capacity(channels.len());
        let mut not_held = Vec::new();
        for name in channels {
            if ctx.unsubscribe(name) {
                left.push(Arc::from(name.as_str()));
            } else {
                not_held.push(truncate(name, 128));
            }
        }
        ctx.send(ack("unsubscribe", &left));
        if !not_held.is_empty() {
            let message = format!("not subscribed to: {}", not_held.join(", "));
            ctx.send(error_frame(ErrorCode::NotSubscribed, &message));
        }
    }

    /// Replaces the connection's token with a newer one of the same user;
    /// ends the subscriptions the new token's scope no longer covers.
    fn refresh(&mut self, ctx: &mut ConnCtx<'_>, token: &str) {
        let principal = match self.app.config.auth.refresh(&self.principal, token) {
            Ok(principal) => principal,
            Err(e) => {
                ctx.send(error_frame(refresh_error_code(&e), &e.to_string()));
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
            self.subscribe(ctx, &channels, self.initial_replay);
        }
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let limit = self.app.config.telemetry.commands;
        let now_ns = self.opened.elapsed().as_nanos() as u64;
        if !self.commands.try_acquire(limit, now_ns) {
            ctx.send(error_frame(
                ErrorCode::RateLimited,
                "too many commands: see telemetry.commands_per_second; this one was ignored",
            ));
            return;
        }
        let max = self.app.config.engine.max_subscriptions;
        match parse_command(text, max) {
            Ok(Command::Subscribe { channels, replay }) => self.subscribe(ctx, &channels, replay),
            Ok(Command::Unsubscribe { channels }) => self.unsubscribe(ctx, &channels),
            Ok(Command::Heartbeat) => {
                if let Some(frame) = self.heartbeats.reply(Instant::now()) {
                    ctx.send(frame);
                }
            }
            Ok(Command::Refresh { token }) => self.refresh(ctx, &token),
            Err(e) => {
                debug!(client = %ctx.client_id(), code = ?e.code, "bad client command");
                ctx.send(error_frame(e.code, &e.message));
            }
        }
    }
}
