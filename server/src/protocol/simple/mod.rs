//! The simple trading protocol at `/ws`, on the same engine as every other
//! protocol, and its status at `/websocket/status`.
//!
//! Clients send `{"type":"ping"}` and `subscribe` / `unsubscribe` of four
//! channels, optionally narrowed to symbols; they get `price_update`,
//! `signal`, `trade_executed` and `portfolio_update` frames. Each channel
//! is fed by one engine topic (`[simple.feeds]`), so a publish to that
//! topic by any publisher reaches `/ws` clients and every other protocol's
//! subscribers of it. Signals and trades are framed once per message for
//! every `/ws` subscriber ([`SimpleFormat`]); prices and the portfolio are
//! conflated: built once per interval per distinct subscription on each
//! shard (`conflate.rs`).
//!
//! Pieces: `message.rs` (client messages), `frames.rs` (server frames and
//! symbol sets), `conflate.rs` (the per-shard frame cache), `session.rs`
//! (one connection), `status.rs` (the status endpoint and stream health),
//! `config.rs` (`[simple]`). docs/protocol.md, *Simple trading protocol*,
//! is the reference.

mod config;
mod conflate;
mod frames;
mod message;
mod session;
mod status;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::Method;
use shardcast_engine::{
    AliveOn, Delivery, FormatId, FrameKind, GapField, Liveness, Message, RateLimit, Session,
    WireFormat,
};

use super::open::OpenAccess;
use super::{
    Auth, Descriptor, Handler, Opening, Params, PathTemplate, Refusal, Registry, WebSocketEndpoint,
};
use crate::auth::credentials::CredentialError;
use crate::auth::{Credential, Principal, Role, Scope};
use crate::config::ServerConfig;
use crate::App;
pub use config::{Feeds, RawFeeds, RawSimple, SimpleConfig};
pub use frames::{
    annotate, live_event, portfolio_update, price_update, symbol_of, Entry, SymbolFilter, Symbols,
};
pub use message::{parse, Channel, Invalid, Request};
pub use session::SimpleSession;

/// Registers the simple format, `/ws` (unless `[simple] enabled = false`)
/// and `/websocket/status`.
pub fn register(registry: &mut Registry, config: &ServerConfig) -> anyhow::Result<()> {
    let simple = &config.simple;
    let format = registry.format(Arc::new(SimpleFormat {
        signals: simple.feeds.signals.clone(),
        trades: simple.feeds.trades.clone(),
    }))?;
    let feeds = &simple.feeds;
    let scope = Scope::parse(&[
        &feeds.price_updates,
        &feeds.signals,
        &feeds.trades,
        &feeds.portfolio,
    ])?;
    // A feed no channel rule allows could never carry data: say so at
    // start-up (the protocols registered before this one have declared
    // their families by now).
    let mut rules = config.engine.channels.clone();
    for rule in registry.declared_channels() {
        rules.declare(rule)?;
    }
    for channel in Channel::ALL {
        let feed = simple.feeds.get(channel);
        if !rules.allows(feed) {
            anyhow::bail!(
                "[simple.feeds] {} = {feed:?} is not a declared channel: add it (or a rule matching it) to `channels`",
                channel.name()
            );
        }
    }
    let shared = Arc::new(Shared::new(simple.clone()));
    if simple.enabled {
        registry.endpoint(Descriptor {
            protocol: "simple",
            path: PathTemplate::parse("/ws")?,
            auth: Auth::Endpoint,
            role: Role::Subscribe,
            handler: Handler::WebSocket(Arc::new(Endpoint {
                format,
                shared: Arc::clone(&shared),
                access: OpenAccess::new("simple", scope, &config.auth),
            })),
        })?;
    }
    registry.endpoint(Descriptor {
        protocol: "simple",
        path: PathTemplate::parse("/websocket/status")?,
        auth: Auth::Credentials,
        role: Role::Subscribe,
        handler: Handler::Http(Method::GET, Arc::new(status::Status(shared))),
    })?;
    Ok(())
}

/// What every `/ws` connection shares: the settings, the connection count,
/// the interval origin, the streams' health. Shared by all shards.
#[derive(Debug)]
pub struct Shared {
    config: SimpleConfig,
    /// `/ws` connections open now.
    connections: AtomicUsize,
    /// Every conflation interval is counted from here.
    origin: Instant,
    started_at: SystemTime,
    health: status::Health,
    /// Conflated frames built at interval boundaries, over all shards.
    frames_built: AtomicU64,
}

impl Shared {
    fn new(config: SimpleConfig) -> Self {
        Self {
            config,
            connections: AtomicUsize::new(0),
            origin: Instant::now(),
            started_at: SystemTime::now(),
            health: status::Health::default(),
            frames_built: AtomicU64::new(0),
        }
    }

    /// The topic feeding `channel`.
    fn feed(&self, channel: Channel) -> &str {
        self.config.feeds.get(channel)
    }

    /// The interval of `channel`: its own for conflated channels, the
    /// price interval for the live ones (which have none).
    fn interval(&self, channel: Channel) -> Duration {
        match channel {
            Channel::Portfolio => self.config.portfolio_update_interval,
            Channel::PriceUpdates | Channel::Signals | Channel::Trades => {
                self.config.price_update_interval
            }
        }
    }

    /// The number of `channel`'s interval that `now` falls in.
    fn tick(&self, channel: Channel, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_millis();
        (since / self.interval(channel).as_millis().max(1)) as u64
    }

    /// When `channel`'s next interval after `now` begins.
    fn boundary(&self, channel: Channel, now: Instant) -> Instant {
        let next = self.tick(channel, now) + 1;
        let next = u32::try_from(next).unwrap_or(u32::MAX);
        self.origin + self.interval(channel) * next
    }
}

/// `/ws`. Shared by all shards.
struct Endpoint {
    format: FormatId,
    shared: Arc<Shared>,
    /// Anyone, for the four feed topics only, unless `[simple]
    /// require_api_key`.
    access: OpenAccess,
}

impl WebSocketEndpoint for Endpoint {
    fn delivery(&self, app: &App) -> Delivery {
        Delivery {
            // Browsers answer the session's pings by themselves.
            liveness: Liveness {
                timeout: self.shared.config.ping_interval * 3,
                alive_on: AliveOn::Anything,
            },
            // Clients expect every signal and trade (prices are conflated
            // before they reach the outbox).
            rate_limit: RateLimit::per_second(0),
            ..app.config.engine.delivery(self.format)
        }
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        Box::new(SimpleSession::new(
            opening.app,
            Arc::clone(&self.shared),
            opening.principal,
        ))
    }

    fn authenticate(
        &self,
        app: &App,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
        _params: &Params,
    ) -> Result<Arc<Principal>, Refusal> {
        let require_key = self.shared.config.require_api_key;
        self.access
            .authenticate(&app.config.auth, require_key, credential)
    }
}

/// The simple wire format: a message of the signals feed becomes a
/// `signal`, one of the trades feed a `trade_executed` ([`live_event`]).
/// Shared by all shards.
#[derive(Debug)]
pub struct SimpleFormat {
    signals: String,
    trades: String,
}

impl WireFormat for SimpleFormat {
    fn name(&self) -> &'static str {
        "simple"
    }

    fn encode_event(&self, msg: &Message, _kind: FrameKind) -> Bytes {
        let kind = if *msg.topic_name == *self.signals {
            "signal"
        } else if *msg.topic_name == *self.trades {
            "trade_executed"
        } else {
            // Not a topic a session subscribes to; named after it.
            "update"
        };
        live_event(kind, msg)
    }

    /// First in the frame, as in the other protocols, except when the
    /// published data (merged into the frame) has a `skipped` of its own:
    /// a frame never holds a key twice, so the gap then shows in nothing
    /// but the missing events.
    fn gap_field(&self) -> Option<GapField> {
        Some(|payload| {
            const FIELD: &[u8] = b"\"skipped\":";
            let merged = payload.windows(FIELD.len()).any(|w| w == FIELD);
            (!merged && payload.first() == Some(&b'{')).then_some(1)
        })
    }

    /// The session pings silent clients itself.
    fn heartbeat(&self, _now: SystemTime) -> Option<Bytes> {
        None
    }
}
