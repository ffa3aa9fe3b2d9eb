//! One dashboard's stream: `stats` frames as they are sampled, and the
//! events of the channel it tails.
//!
//! Frames (JSON text): `hello` once; `stats` about once a second (see
//! `sample.rs`); `tail` when a tail starts (`channel`) or stops (`null`);
//! tail events as the telemetry protocol frames them (`type: event`);
//! `error` for a command refused. A session opened with a token closes
//! with 4440 when the token expires, like every other.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shardcast_engine::{CloseReason, ConnCtx, RateLimit, RateLimiter, Replay, Session};

use super::{parse_command, Command, TAIL_RATE};
use crate::auth::Principal;
use crate::protocol::common::{error_frame, json_frame, ErrorCode};
use crate::App;

/// How often the session looks for a new sample (the shard tick).
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// Events replayed when a tail starts, so that a quiet channel shows something.
const TAIL_REPLAY: usize = 20;
/// Commands a second.
const COMMANDS_PER_SECOND: u32 = 20;

/// A dashboard's session. Owned by its shard thread.
pub struct DashboardSession {
    app: Arc<App>,
    principal: Arc<Principal>,
    /// The number of the last `stats` frame sent.
    sent: u64,
    tail: Option<Arc<str>>,
    commands: RateLimiter,
    opened: Instant,
}

impl DashboardSession {
    /// A session of `app` for `principal`.
    pub fn new(app: Arc<App>, principal: Arc<Principal>) -> Self {
        Self {
            app,
            principal,
            sent: 0,
            tail: None,
            commands: RateLimiter::default(),
            opened: Instant::now(),
        }
    }

    /// Sends the latest `stats` frame if it is newer than the last sent.
    fn send_stats(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some((number, frame)) = self.app.dashboard.latest(&self.app) {
            if number > self.sent {
                self.sent = number;
                ctx.send(frame);
            }
        }
        ctx.wake_at(Some(Instant::now() + LOOK_EVERY));
    }

    fn untail(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some(channel) = self.tail.take() {
            ctx.unsubscribe(&channel);
        }
    }

    fn tail(&mut self, ctx: &mut ConnCtx<'_>, channel: &str) {
        // Reading a channel's events takes the right to subscribe to it.
        if !self.principal.may_subscribe(channel) {
            ctx.send_error(error_frame(
                ErrorCode::Forbidden,
                "this credential may not subscribe to that channel",
            ));
            return;
        }
        // Only a channel that exists: a dashboard creates nothing.
        if self.app.engine.topics().get(channel).is_none() {
            ctx.send_error(error_frame(
                ErrorCode::UnknownChannel,
                "no such channel now; choose one from the list",
            ));
            return;
        }
        self.untail(ctx);
        match ctx.subscribe(channel, Replay::Recent(TAIL_REPLAY), None) {
            Ok(subscribed) => {
                let rate = NonZeroU32::new(TAIL_RATE);
                ctx.limit_rate(channel, rate);
                self.tail = Some(Arc::clone(subscribed.topic.name()));
                ctx.send(json_frame(&json!({"type": "tail", "channel": channel})));
                if let Ok(replayed) = &subscribed.replay {
                    ctx.send_replay(replayed);
                }
            }
            Err(e) => ctx.send_error(error_frame(ErrorCode::LimitReached, &e.to_string())),
        }
    }
}

impl Session for DashboardSession {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        let formats = self.app.engine.formats();
        ctx.send(json_frame(&json!({
            "type": "hello",
            "version": env!("CARGO_PKG_VERSION"),
            "shards": self.app.config.engine.shards.get(),
            "protocols": formats.iter().map(|(_, f)| f.name()).collect::<Vec<_>>(),
            "tailRate": TAIL_RATE,
            "heartbeatTimeoutSeconds": self.app.config.telemetry.heartbeat_timeout.as_secs(),
        })));
        if let Some(at) = self.principal.deadline() {
            ctx.close_at(Some((at, CloseReason::TokenExpired)));
        }
        self.send_stats(ctx);
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let now_ns = self.opened.elapsed().as_nanos() as u64;
        if !self
            .commands
            .try_acquire(RateLimit::per_second(COMMANDS_PER_SECOND), now_ns)
        {
            ctx.send_error(error_frame(
                ErrorCode::RateLimited,
                "too many commands; this one was ignored",
            ));
            return;
        }
        match parse_command(text) {
            Ok(Command::Tail { channel }) => self.tail(ctx, &channel),
            Ok(Command::Untail {}) => {
                self.untail(ctx);
                ctx.send(json_frame(&json!({"type": "tail", "channel": null})));
            }
            Ok(Command::Heartbeat {}) => {}
            Err(e) => ctx.send_error(error_frame(ErrorCode::InvalidMessage, &e)),
        }
    }

    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        self.send_stats(ctx);
    }
}
