//! One `/api/v1/ws` connection's session. Owned by the connection's shard.
//!
//! - Each valid operation answers with its `.response` and counts as the
//!   client's heartbeat; a message the protocol cannot act on closes the
//!   connection with 1003 and FastWS's reason (`message.rs`).
//! - Silence: the session asks to be woken `[fastws]
//!   heartbeat_interval_seconds` after the last valid operation and closes
//!   the connection (1003, `Connection timed out. …`) if none came since.
//!   WebSocket pings do not count: FastWS counts operations only.
//! - Lifespan: the connection closes the same way once it is
//!   `max_connection_lifespan_seconds` old.
//! - Several servers as one: a subscribe waits until its topic is caught
//!   up with the bus ([`ConnCtx::prepare`]), so its response and the
//!   updates after it come in the order they do on a single server.
//! - Producers: the first subscription of a bars or quotes topic (on this
//!   server, by any FastWS client) starts the simulated feed of that topic
//!   and the last one to leave stops it (`demo::Producers`); this session
//!   holds one reference per such topic it subscribed to, and gives each
//!   back on unsubscribe or when its connection ends (on drop, so a
//!   connection that ends any way at all gives them back).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use shardcast_engine::{CloseReason, ConnCtx, ProtocolCloseCode, Replay, Session, SubscribeError};
use tracing::debug;

use super::message::{parse, Operation, Request};
use crate::auth::Principal;
use crate::demo::Feed;
use crate::protocol::common::json_frame;
use crate::App;

/// The code of every FastWS close: 1003, the reason says why.
const UNSUPPORTED_DATA: ProtocolCloseCode = ProtocolCloseCode::new(1003);

#[derive(Serialize)]
struct Response<'a> {
    #[serde(rename = "type")]
    kind: String,
    payload: ResponsePayload<'a>,
}

#[derive(Serialize)]
struct ResponsePayload<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    message: String,
    topic: &'a str,
}

/// One `/api/v1/ws` connection. Owned by its shard.
#[derive(Debug)]
pub struct FastwsSession {
    app: Arc<App>,
    principal: Arc<Principal>,
    last_operation: Instant,
    /// Topics this connection holds a producer reference for.
    produced: HashSet<String>,
    /// The client's address, which its producer references are charged to.
    peer: Option<IpAddr>,
}

impl FastwsSession {
    /// A session for `principal`.
    pub fn new(app: Arc<App>, principal: Arc<Principal>) -> Self {
        Self {
            app,
            principal,
            last_operation: Instant::now(),
            produced: HashSet::new(),
            peer: None,
        }
    }

    fn timed_out(&self) -> CloseReason {
        CloseReason::ByProtocol {
            code: UNSUPPORTED_DATA,
            label: "fastws_timeout",
            text: self.app.config.fastws.timeout_reason().into(),
        }
    }

    fn respond(ctx: &mut ConnCtx<'_>, request: &Request, ok: bool, message: String) {
        let frame = json_frame(&Response {
            kind: format!(
                "{}.{}.response",
                request.route.name,
                request.operation.name()
            ),
            payload: ResponsePayload {
                status: if ok { "ok" } else { "error" },
                symbol: request.symbol(),
                message,
                topic: &request.topic,
            },
        });
        if ok {
            ctx.send(frame);
        } else {
            ctx.send_error(frame);
        }
    }

    /// The simulated feed of `request`'s topic, for routes that have one.
    fn feed(request: &Request) -> Option<Feed> {
        let text = |name: &str| {
            request
                .parameters
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let list = |name: &str| -> Vec<String> {
            request
                .parameters
                .get(name)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        match request.route.name {
            "bars" => Some(Feed::Bars {
                symbol: text("symbol")?,
                resolution: text("resolution")?,
            }),
            "quotes" => Some(Feed::Quotes {
                symbols: list("symbols"),
                fast: list("fast_symbols"),
            }),
            _ => None,
        }
    }

    fn subscribe(&mut self, ctx: &mut ConnCtx<'_>, request: &Request) {
        let topic = request.topic.as_str();
        if !self.principal.may_subscribe(topic) {
            let message = format!("these credentials may not subscribe to {topic}");
            return Self::respond(ctx, request, false, message);
        }
        match ctx.subscribe(topic, Replay::None, Some(&self.principal.quota)) {
            Ok(sub) => {
                if sub.new {
                    if let (Some(producers), Some(feed)) =
                        (&self.app.producers, Self::feed(request))
                    {
                        if let Err(refused) = producers.acquire(topic, feed, ctx.peer().ip()) {
                            ctx.unsubscribe(topic);
                            return Self::respond(ctx, request, false, refused.to_string());
                        }
                        self.produced.insert(topic.to_owned());
                    }
                }
                Self::respond(ctx, request, true, format!("Subscribed to {topic}"));
            }
            Err(e @ SubscribeError::TooMany { .. }) => {
                Self::respond(ctx, request, false, e.to_string());
            }
            Err(e @ SubscribeError::Topic(_)) => {
                Self::respond(ctx, request, false, e.to_string());
            }
        }
    }

    fn unsubscribe(&mut self, ctx: &mut ConnCtx<'_>, request: &Request) {
        let topic = request.topic.as_str();
        if !ctx.unsubscribe(topic) {
            let message = format!("not subscribed to {topic}");
            return Self::respond(ctx, request, false, message);
        }
        if self.produced.remove(topic) {
            if let Some(producers) = &self.app.producers {
                producers.release(topic, ctx.peer().ip());
            }
        }
        Self::respond(ctx, request, true, format!("Unsubscribed from {topic}"));
    }
}

impl Session for FastwsSession {
    fn on_open(&mut self, ctx: &mut ConnCtx<'_>) {
        self.peer = Some(ctx.peer().ip());
        let config = &self.app.config.fastws;
        let now = Instant::now();
        let lifespan = (now + config.max_connection_lifespan, self.timed_out());
        // A token expiring before the lifespan ends the connection first.
        let close = match self.principal.deadline() {
            Some(at) if at < lifespan.0 => (at, CloseReason::TokenExpired),
            _ => lifespan,
        };
        ctx.close_at(Some(close));
        ctx.wake_at(Some(now + config.heartbeat_interval));
    }

    fn on_text(&mut self, ctx: &mut ConnCtx<'_>, text: &mut [u8]) {
        let request = match parse(text) {
            Ok(request) => request,
            Err(violation) => {
                debug!(client = %ctx.client_id(), reason = violation.reason(), detail = violation.detail(), "fastws message refused");
                return ctx.close(CloseReason::ByProtocol {
                    code: UNSUPPORTED_DATA,
                    label: "fastws_refused",
                    text: violation.reason().into(),
                });
            }
        };
        // An operation, even one held for the bus below: the heartbeat
        // counts from it.
        self.last_operation = Instant::now();
        ctx.wake_at(Some(
            self.last_operation + self.app.config.fastws.heartbeat_interval,
        ));
        if request.operation == Operation::Subscribe
            && self.principal.may_subscribe(&request.topic)
            && !ctx.prepare([request.topic.as_str()], Some(&self.principal.quota))
        {
            // Handed over again once the topic is caught up with the bus.
            return;
        }
        match request.operation {
            Operation::Subscribe => self.subscribe(ctx, &request),
            Operation::Unsubscribe => self.unsubscribe(ctx, &request),
        }
    }

    fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, _data: &mut [u8]) {
        ctx.close(CloseReason::ByProtocol {
            code: UNSUPPORTED_DATA,
            label: "fastws_refused",
            text: "Unsupported Data".into(),
        });
    }

    fn on_close(&mut self, _reason: &CloseReason) {
        // At once, not when the connection's close has finished flushing:
        // a feed nobody reads any more stops now.
        self.release_all();
    }

    fn on_wake(&mut self, ctx: &mut ConnCtx<'_>) {
        let due = self.last_operation + self.app.config.fastws.heartbeat_interval;
        if Instant::now() >= due {
            ctx.close(self.timed_out());
        } else {
            ctx.wake_at(Some(due));
        }
    }
}

impl FastwsSession {
    /// Gives back every producer reference this connection holds.
    fn release_all(&mut self) {
        if let (Some(producers), Some(peer)) = (&self.app.producers, self.peer) {
            for topic in self.produced.drain() {
                producers.release(&topic, peer);
            }
        }
    }
}

/// Gives back the producer references if the connection ended without
/// `on_close` (a panicking callback: the session is dropped unclosed).
impl Drop for FastwsSession {
    fn drop(&mut self) {
        self.release_all();
    }
}
