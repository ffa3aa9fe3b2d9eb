//! The Trading API's FastWS protocol at `/api/v1/ws`, on the same engine as
//! every other protocol.
//!
//! Clients send `{"type":"<route>.subscribe"|"<route>.unsubscribe","payload":…}`
//! and get `<route>.subscribe.response` / `.unsubscribe.response`, then
//! `{"type":"<route>.update","payload":<published data>}` for every message
//! of the topic the payload names (`route.rs`: one definition per route
//! drives validation, topic names and the AsyncAPI document). Topics are
//! ordinary engine topics: a publish to `orders:{"accountId":"TEST-001"}`
//! reaches FastWS subscribers and anyone else's. An update is encoded once
//! per message for every FastWS subscriber ([`FastwsFormat`]).
//!
//! Pieces: `route.rs`, `message.rs` (client messages and the 1003 rules),
//! `session.rs` (subscriptions, heartbeat and lifespan, on-demand
//! producers), `asyncapi.rs` (the AsyncAPI 2.4.0 document and its HTML
//! page), `config.rs` (`[fastws]`). docs/protocol.md, *FastWS*, is the
//! reference.

mod asyncapi;
mod config;
mod message;
mod route;
mod session;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{BufMut, Bytes};
use hyper::Method;
use shardcast_engine::frame::{FrameBuf, OpCode};
use shardcast_engine::{
    json, AliveOn, Delivery, FormatId, FrameKind, Liveness, Message, RateLimit, Session,
    SlowConsumerPolicy, WireFormat,
};

use super::open::OpenAccess;
use super::{
    Auth, Descriptor, Handler, Opening, Params, PathTemplate, Refusal, Registry, WebSocketEndpoint,
};
use crate::auth::credentials::CredentialError;
use crate::auth::{Credential, Principal, Role, Scope};
use crate::config::ServerConfig;
use crate::App;
pub use config::{FastwsConfig, RawFastws};
pub use message::{parse, Operation, Request, Violation};
pub use route::{build_topic_params, route, FieldType, PayloadError, Route, RESOLUTIONS, ROUTES};
pub use session::FastwsSession;

/// The topic families FastWS serves (every route's name and a `:`),
/// declared at start-up, and what an anonymous client may subscribe to.
pub const CHANNEL_RULES: [&str; 7] = [
    "bars:*",
    "quotes:*",
    "orders:*",
    "positions:*",
    "executions:*",
    "equity:*",
    "broker-connection:*",
];

/// Registers the FastWS format, `/api/v1/ws`, its AsyncAPI document and
/// page, and its topic families.
pub fn register(registry: &mut Registry, config: &ServerConfig) -> anyhow::Result<()> {
    let format = registry.format(Arc::new(FastwsFormat))?;
    registry.channels(&CHANNEL_RULES);
    let access = OpenAccess::new("fastws", Scope::parse(&CHANNEL_RULES)?, &config.auth);
    registry.endpoint(Descriptor {
        protocol: "fastws",
        path: PathTemplate::parse("/api/v1/ws")?,
        auth: Auth::Endpoint,
        role: Role::Subscribe,
        handler: Handler::WebSocket(Arc::new(Endpoint { format, access })),
    })?;
    for (path, document) in [
        ("/api/v1/ws/asyncapi.json", asyncapi::Document::Json),
        ("/api/v1/ws/asyncapi", asyncapi::Document::Html),
    ] {
        registry.endpoint(Descriptor {
            protocol: "fastws",
            path: PathTemplate::parse(path)?,
            auth: Auth::Credentials,
            role: Role::Subscribe,
            handler: Handler::Http(Method::GET, Arc::new(document)),
        })?;
    }
    Ok(())
}

/// `/api/v1/ws`. Shared by all shards.
struct Endpoint {
    format: FormatId,
    /// Anyone, for FastWS topics only, unless `[fastws] require_api_key`.
    access: OpenAccess,
}

impl WebSocketEndpoint for Endpoint {
    fn delivery(&self, app: &App) -> Delivery {
        let config = &app.config.fastws;
        Delivery {
            // The session closes silent and old connections itself, with
            // FastWS's words; the engine's timeout is only a backstop.
            liveness: Liveness {
                timeout: config.max_connection_lifespan + config.heartbeat_interval,
                alive_on: AliveOn::Messages,
            },
            // Updates carry no sequence numbers: a client cannot tell a
            // gap. Quotes are keyed by symbol, so a client that falls behind
            // keeps the latest quote of each instead of losing the newest.
            overflow: SlowConsumerPolicy::Conflate,
            rate_limit: RateLimit::per_second(0),
            ..app.config.engine.delivery(self.format)
        }
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        Box::new(FastwsSession::new(opening.app, opening.principal))
    }

    fn authenticate(
        &self,
        app: &App,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
        _params: &Params,
    ) -> Result<Arc<Principal>, Refusal> {
        let require_key = app.config.fastws.require_api_key;
        self.access
            .authenticate(&app.config.auth, require_key, credential)
    }
}

/// The FastWS wire format: `{"type":"<route>.update","payload":<data>}`,
/// the route being the topic's name up to its first `:`. Shared by all shards.
#[derive(Debug, Default)]
pub struct FastwsFormat;

impl WireFormat for FastwsFormat {
    fn name(&self) -> &'static str {
        "fastws"
    }

    fn encode_event(&self, msg: &Message, _kind: FrameKind) -> Bytes {
        let route = msg.topic_name.split(':').next().unwrap_or_default();
        let mut frame = FrameBuf::with_capacity(40 + route.len() + msg.data.len());
        let out = frame.payload();
        out.put_slice(b"{\"type\":");
        let mut kind = String::with_capacity(route.len() + 7);
        kind.push_str(route);
        kind.push_str(".update");
        json::write_str(out, &kind);
        out.put_slice(b",\"payload\":");
        out.put_slice(&msg.data);
        out.put_u8(b'}');
        frame.finish(OpCode::Text)
    }

    /// FastWS has no server heartbeat: clients keep their connection
    /// alive with operations.
    fn heartbeat(&self, _now: SystemTime) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::{Epoch, Stamp, TopicId};

    #[test]
    fn updates_are_the_route_and_the_data() {
        let msg = Message::new(
            TopicId::new(0, 0),
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#.into(),
            Epoch::from_u64(1),
            3,
            None,
            Bytes::from_static(br#"{"time":1,"open":1.5}"#),
            Stamp::now(),
        );
        let frame = FastwsFormat.encode_event(&msg, FrameKind::Live);
        assert_eq!(frame[0], 0x81);
        let payload = std::str::from_utf8(&frame[2..]).unwrap();
        assert_eq!(
            payload,
            r#"{"type":"bars.update","payload":{"time":1,"open":1.5}}"#
        );
    }

    #[test]
    fn every_route_is_a_declared_family() {
        let mut rules = shardcast_engine::ChannelRules::default();
        for rule in CHANNEL_RULES {
            rules.declare(rule).unwrap();
        }
        for route in ROUTES {
            assert!(rules.allows(&format!("{}:{{\"a\":\"b.c\"}}", route.name)));
        }
    }
}
