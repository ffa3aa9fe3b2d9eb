//! The BondX protocol: the bond-trading platform's WebSocket endpoints, on
//! the same engine as every other protocol.
//!
//! Endpoints (`/api/v1/ws/…`), each an endpoint class with its topics and
//! its limit on client messages ([`Class`]): `market/{isin}` →
//! `prices.{isin}`; `auction/{auction_id}` → `auctions.{auction_id}`;
//! `trading/{user_id}` → `trading.{user_id}`, `portfolio.{user_id}`;
//! `risk/{user_id}` → `risk.{user_id}`, `risk.{user_id}.alerts`;
//! `mobile/{user_id}` → `mobile.{user_id}`. These topic families exist
//! without a channel rule; their messages come through the ordinary publish
//! API. Plus `GET /api/v1/ws/health` and `GET /api/v1/ws/topics` (`ops.rs`).
//!
//! Pieces: `auth.rs` (HS256 tokens, the user's scope), `command.rs` (client
//! messages), `envelope.rs` (server frames), `session.rs` (what a
//! connection does), `resync.rs` (a fresh snapshot after a gap in a
//! topic's sequence), `config.rs` (`[bondx]`). A delta or alert is encoded
//! once per message by [`BondxFormat`] and shared by every BondX
//! subscriber; snapshots, acks and errors are per connection.
//! docs/protocol.md, *BondX*, is the reference.

mod auth;
mod background;
mod command;
mod config;
mod envelope;
mod ops;
mod resync;
mod session;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::HeaderMap;
use shardcast_engine::frame::{FrameBuf, OpCode};
use shardcast_engine::{
    AliveOn, CloseReason, Delivery, Details, FormatId, FrameKind, GapField, Liveness, Message,
    MessageKind, RateLimit, Session, SlowConsumerPolicy, WireFormat,
};
use tracing::warn;

use super::{
    Auth, Descriptor, Handler, Opening, Params, PathTemplate, Refusal, Registry, WebSocketEndpoint,
};
use crate::auth::credentials::CredentialError;
use crate::auth::{Credential, Principal, Role};
use crate::config::ServerConfig;
use crate::App;
pub use auth::{BondxAuthError, USER_SCOPE};
pub use command::{parse, Code, Command, CommandError, Parsed, Subscribe};
pub use config::{BondxConfig, ClassLimit, RawBondx, RawRate, RawRateLimits};
pub use session::BondxSession;

/// The topic families BondX endpoints serve, declared at start-up.
pub const CHANNEL_RULES: [&str; 7] = [
    "prices.*",
    "auctions.*",
    "trading.*",
    "portfolio.*",
    "risk.*",
    "risk.*.alerts",
    "mobile.*",
];

/// The detail recording `x-background-mode` as the client connected (the
/// mode changes later by message; the listing shows how it started).
const BACKGROUND_AT_CONNECT: &str = "backgroundAtConnect";

/// An endpoint class: its path, its topics, its limit on client messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `/api/v1/ws/market/{isin}`.
    Market = 0,
    /// `/api/v1/ws/auction/{auction_id}`.
    Auction = 1,
    /// `/api/v1/ws/trading/{user_id}`.
    Trading = 2,
    /// `/api/v1/ws/risk/{user_id}`.
    Risk = 3,
    /// `/api/v1/ws/mobile/{user_id}`.
    Mobile = 4,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 5] = [
        Class::Market,
        Class::Auction,
        Class::Trading,
        Class::Risk,
        Class::Mobile,
    ];

    /// Its name in `[bondx.rate_limits]` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Class::Market => "market",
            Class::Auction => "auction",
            Class::Trading => "trading",
            Class::Risk => "risk",
            Class::Mobile => "mobile",
        }
    }

    /// Where it is served.
    pub fn path(self) -> &'static str {
        match self {
            Class::Market => "/api/v1/ws/market/{isin}",
            Class::Auction => "/api/v1/ws/auction/{auction_id}",
            Class::Trading => "/api/v1/ws/trading/{user_id}",
            Class::Risk => "/api/v1/ws/risk/{user_id}",
            Class::Mobile => "/api/v1/ws/mobile/{user_id}",
        }
    }

    /// The path parameter naming the stream.
    pub fn param(self) -> &'static str {
        match self {
            Class::Market => "isin",
            Class::Auction => "auction_id",
            Class::Trading | Class::Risk | Class::Mobile => "user_id",
        }
    }

    /// Whether the stream is a user's own (the token's `sub` must be it).
    pub fn user_scoped(self) -> bool {
        matches!(self, Class::Trading | Class::Risk | Class::Mobile)
    }

    /// The topics a connection to stream `id` subscribes to.
    pub fn topics(self, id: &str) -> Vec<String> {
        match self {
            Class::Market => vec![format!("prices.{id}")],
            Class::Auction => vec![format!("auctions.{id}")],
            Class::Trading => vec![format!("trading.{id}"), format!("portfolio.{id}")],
            Class::Risk => vec![format!("risk.{id}"), format!("risk.{id}.alerts")],
            Class::Mobile => vec![format!("mobile.{id}")],
        }
    }

    /// The reference document's limit: (burst, per minute).
    pub fn default_limit(self) -> (u32, u32) {
        match self {
            Class::Market => (1000, 100),
            Class::Auction => (500, 50),
            Class::Trading => (200, 20),
            Class::Risk => (100, 10),
            Class::Mobile => (300, 30),
        }
    }
}

/// Registers the BondX format, its five endpoints, its two HTTP endpoints
/// and its topic families.
pub fn register(registry: &mut Registry, config: &ServerConfig) -> anyhow::Result<()> {
    let format = registry.format(Arc::new(BondxFormat::new(config.bondx.heartbeat_interval)))?;
    registry.channels(&CHANNEL_RULES);
    for class in Class::ALL {
        registry.endpoint(Descriptor {
            protocol: "bondx",
            path: PathTemplate::parse(class.path())?,
            auth: Auth::Endpoint,
            role: Role::Subscribe,
            handler: Handler::WebSocket(Arc::new(Endpoint { class, format })),
        })?;
    }
    ops::register(registry)?;
    if config.bondx.secret.is_none() {
        warn!("BondX endpoints (/api/v1/ws/...) refuse every connection: set [bondx] jwt_secret (or SHARDCAST_BONDX_JWT_SECRET) to enable them");
    }
    Ok(())
}

/// One BondX endpoint class. Shared by all shards.
struct Endpoint {
    class: Class,
    format: FormatId,
}

impl WebSocketEndpoint for Endpoint {
    fn delivery(&self, app: &App) -> Delivery {
        Delivery {
            liveness: Liveness {
                timeout: app.config.bondx.connection_timeout,
                alive_on: AliveOn::Anything,
            },
            // BondX clients expect every delta: the telemetry protocol's
            // per-client event rate is not theirs, and a client that falls
            // a whole outbox behind is closed (4429) rather than left with a
            // silent hole; it reconnects with `resume_from_seq` and gets the
            // deltas it missed, or a snapshot saying why not.
            rate_limit: RateLimit::per_second(0),
            overflow: SlowConsumerPolicy::Disconnect,
            ..app.config.engine.delivery(self.format)
        }
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        let id = opening.params.get(self.class.param()).unwrap_or_default();
        let background = opening
            .details
            .iter()
            .any(|(name, value)| *name == BACKGROUND_AT_CONNECT && &**value == "true");
        Box::new(BondxSession::new(
            opening.app,
            opening.principal,
            self.class,
            self.class.topics(id),
            background,
        ))
    }

    fn authenticate(
        &self,
        app: &App,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
        params: &Params,
    ) -> Result<Arc<Principal>, Refusal> {
        let config = &app.config.bondx;
        let result = match credential {
            _ if config.secret.is_none() => Err(BondxAuthError::Disabled),
            Err(e) => Err(BondxAuthError::Credentials(e)),
            Ok(None) => Err(BondxAuthError::Missing),
            Ok(Some(Credential::ApiKey(_))) => Err(BondxAuthError::NotAToken),
            Ok(Some(Credential::Token(token))) => auth::verify(config, token),
        }
        .and_then(|user| {
            let id = params.get(self.class.param()).unwrap_or_default();
            if self.class.user_scoped() && user.id != id {
                return Err(BondxAuthError::OtherUser);
            }
            auth::principal(&app.config.auth, &user, &config.extra_scope)
        });
        let id = params.get(self.class.param());
        let topic = id.map(|id| self.class.topics(id).swap_remove(0));
        result.map(Arc::new).map_err(|e| Refusal {
            code: CloseReason::Unauthorized.code(),
            reason: "AUTH_REQUIRED",
            why: e.to_string(),
            message: Some(envelope::error(
                Code::AuthRequired,
                &e.to_string(),
                topic.as_deref(),
                None,
                None,
            )),
        })
    }

    fn details(&self, headers: &HeaderMap) -> Details {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| crate::input::sanitize(v.trim(), 64).into_owned())
                .filter(|v| !v.is_empty())
        };
        let mut details = Vec::new();
        if let Some(device) = header("x-device-type") {
            details.push(("deviceType", device.into_boxed_str()));
        }
        if let Some(version) = header("x-client-version") {
            details.push(("clientVersion", version.into_boxed_str()));
        }
        if let Some(background) = header("x-background-mode") {
            let on = background.eq_ignore_ascii_case("true") || background == "1";
            details.push((
                BACKGROUND_AT_CONNECT,
                if on { "true" } else { "false" }.into(),
            ));
        }
        details.into_boxed_slice()
    }
}

/// The BondX wire format: deltas and alerts in the BondX envelope. Shared
/// by all shards.
#[derive(Debug)]
pub struct BondxFormat {
    heartbeat_interval: Duration,
}

impl BondxFormat {
    /// The format, with a heartbeat every `heartbeat_interval`.
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self { heartbeat_interval }
    }
}

impl WireFormat for BondxFormat {
    fn name(&self) -> &'static str {
        "bondx"
    }

    fn encode_event(&self, msg: &Message, _kind: FrameKind) -> Bytes {
        let kind = match msg.kind {
            MessageKind::Event => "delta",
            MessageKind::Alert => "alert",
        };
        let key_len = msg.key.as_ref().map_or(0, |k| k.len() + 12);
        let mut frame =
            FrameBuf::with_capacity(128 + msg.topic_name.len() + key_len + msg.data.len());
        envelope::delta(&mut frame, msg, kind);
        frame.finish(OpCode::Text)
    }

    /// Two frames in one buffer: a WebSocket ping — which browsers and
    /// client libraries answer by themselves, so a client that only listens
    /// stays alive, as with the platform's own server, which pings every 30 s
    /// — then the `heartbeat` envelope.
    fn heartbeat(&self, now: SystemTime) -> Option<Bytes> {
        let head = envelope::Head {
            kind: "heartbeat",
            topic: None,
            seq: 0,
            correlation_id: None,
        };
        let mut frame = FrameBuf::with_capacity(128);
        let out = frame.payload();
        envelope::begin(out, &head, now);
        out.extend_from_slice(b"{}");
        envelope::finish(out, b"{}", None);
        let envelope = frame.finish(OpCode::Text);
        let ping = shardcast_engine::frame::encode(OpCode::Ping, b"");
        let mut both = bytes::BytesMut::with_capacity(ping.len() + envelope.len());
        both.extend_from_slice(&ping);
        both.extend_from_slice(&envelope);
        Some(both.freeze())
    }

    fn gap_field(&self) -> Option<GapField> {
        Some(envelope::gap_field)
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        Some(self.heartbeat_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::{Epoch, Stamp, TopicId};

    fn message(key: Option<&str>, kind: MessageKind) -> Message {
        let mut msg = Message::new(
            TopicId::new(0, 0),
            "prices.IN0001".into(),
            Epoch::from_u64(1),
            42,
            key.map(Into::into),
            Bytes::from_static(br#"{"bid":99.5}"#),
            Stamp::now(),
        );
        msg.kind = kind;
        msg.timestamp = SystemTime::UNIX_EPOCH;
        msg
    }

    #[test]
    fn deltas_and_alerts_carry_the_envelope() {
        let format = BondxFormat::new(Duration::from_secs(30));
        let frame = format.encode_event(&message(Some("L1"), MessageKind::Event), FrameKind::Live);
        let v = envelope::tests::parse(&frame);
        assert_eq!(
            v,
            serde_json::json!({
                "type": "delta", "topic": "prices.IN0001", "seq": 42,
                "ts": "1970-01-01T00:00:00.000Z", "payload": {"bid": 99.5},
                "meta": {"epoch": "0000000000000001", "key": "L1"}, "correlation_id": null,
            })
        );
        let frame = format.encode_event(&message(None, MessageKind::Alert), FrameKind::Live);
        let v = envelope::tests::parse(&frame);
        assert_eq!(v["type"], "alert");
        assert_eq!(v["meta"], serde_json::json!({"epoch": "0000000000000001"}));
        let both = format.heartbeat(SystemTime::now()).unwrap();
        // A ping with no payload, then the envelope.
        assert_eq!(&both[..2], &[0x89, 0x00]);
        let beat = envelope::tests::parse(&both[2..]);
        assert_eq!(beat["type"], "heartbeat");
        assert_eq!(beat["topic"], serde_json::Value::Null);
    }

    #[test]
    fn every_class_has_its_documented_topics() {
        assert_eq!(Class::Market.topics("IN1"), ["prices.IN1"]);
        assert_eq!(Class::Auction.topics("A7"), ["auctions.A7"]);
        assert_eq!(Class::Trading.topics("u1"), ["trading.u1", "portfolio.u1"]);
        assert_eq!(Class::Risk.topics("u1"), ["risk.u1", "risk.u1.alerts"]);
        assert_eq!(Class::Mobile.topics("u1"), ["mobile.u1"]);
        let mut rules = shardcast_engine::ChannelRules::default();
        for rule in CHANNEL_RULES {
            rules.declare(rule).unwrap();
        }
        for class in Class::ALL {
            for topic in class.topics("x1") {
                assert!(rules.allows(&topic), "{topic}");
            }
            let template = PathTemplate::parse(class.path()).unwrap();
            let path = format!("/api/v1/ws/{}/x1", class.name());
            let params = template.matches(&path).unwrap();
            assert_eq!(params.get(class.param()), Some("x1"));
        }
    }
}
