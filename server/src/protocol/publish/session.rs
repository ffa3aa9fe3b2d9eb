//! One `/ws/publish` connection's session: each text frame is a command —
//! publish, heartbeat, refresh — answered only when it fails (or, for a
//! heartbeat, with a heartbeat). A refused publish gets an `error` frame
//! with the code an HTTP publish of the same message would get.
//!
//! Owned by the connection's shard.

use std::sync::Arc;

use shardcast_engine::{CloseReason, ConnCtx, Session};

use super::parse::{parse_frame, PublishCommand};
use super::publish_error;
use crate::auth::Principal;
use crate::protocol::common::{
    api_error_frame, error_frame, iso, json_frame, refresh_error_code, Ack, HeartbeatReplies,
};
use crate::App;

/// One `/ws/publish` connection. Owned by its shard. Opened with a token,
/// it closes with 4440 when the token expires, unless `refresh` brought a
/// newer one of the same user.
#[derive(Debug)]
pub struct PublishSession {
    app: Arc<App>,
    principal: Arc<Principal>,
    heartbeats: HeartbeatReplies,
}

impl PublishSession {
    /// A session publishing on behalf of `principal`.
    pub fn new(app: Arc<App>, principal: Arc<Principal>) -> Self {
        Self {
            app,
            principal,
            heartbeats: HeartbeatReplies::default(),
        }
    }

    fn refresh(&mut self, ctx: &mut ConnCtx<'_>, token: &str) {
        match self.app.config.auth.refresh(&self.principal, token) {
            Ok(principal) => {
                ctx.close_at(
                    principal
                        .deadline()
                        .map(|at| (at, CloseReason::TokenExpired)),
                );
                ctx.send(json_frame(&Ack {
                    kind: "ack",
                    action: "refresh",
                    channels: &[],
                    expires_at: principal.expires_at.map(iso),
                }));
                self.principal = principal;
            }
            Err(e) => ctx.send_error(error_frame(refresh_error_code(&e), &e.to_string())),
        }
    }
}

impl Session for PublishSession {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some(at) = self.principal.deadline() {
            ctx.close_at(Some((at, CloseReason::TokenExpired)));
        }
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let item = match parse_frame(text) {
            Ok(PublishCommand::Publish(item)) => item,
            Ok(PublishCommand::Heartbeat) => {
                if let Some(frame) = self.heartbeats.reply(std::time::Instant::now()) {
                    ctx.send(frame);
                }
                return;
            }
            Ok(PublishCommand::Refresh(token)) => {
                let token = token.into_owned();
                self.refresh(ctx, &token);
                return;
            }
            Err(e) => {
                ctx.send_error(api_error_frame(&e));
                return;
            }
        };
        let publication = match item.admit(&self.principal) {
            Ok(publication) => publication,
            Err(e) => {
                ctx.send_error(api_error_frame(&e));
                return;
            }
        };
        match ctx.publish(&item.channel, publication, Some(&self.principal.quota)) {
            Ok(published) => {
                ctx.refuse_later(published, |e| api_error_frame(&publish_error(e)));
            }
            Err(e) => ctx.send_error(api_error_frame(&publish_error(&e))),
        }
    }
}
