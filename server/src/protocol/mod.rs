//! Protocols: each a self-contained module that registers what it serves.
//!
//! Read-only after start-up and shared by all shards. A protocol (or the
//! admin API) registers, at start-up, its wire formats (before the engine
//! starts: the engine frames messages in them) and one [`Descriptor`] per
//! endpoint: where it is served ([`PathTemplate`]), how a client
//! authenticates ([`Auth`]) and which [`Role`] it needs, and a [`Handler`]
//! — for a WebSocket, its per-connection [`Delivery`] settings and how to
//! make the [`Session`] of a new connection; for plain HTTP, the method and
//! the function that answers. `http.rs` looks every request up in the
//! resulting [`Routes`] and names no protocol.
//!
//! Adding a protocol, step by step (docs/architecture.md says the same):
//! 1. a module under `protocol/` with its wire format ([`WireFormat`]), its
//!    session ([`Session`]) and its parser of client messages (bounded, with
//!    a fuzz target);
//! 2. its config section, validated into a typed struct in that module;
//! 3. a `register` function that registers its formats and descriptors;
//! 4. one line in [`register_all`].
//!
//! What protocols share lives in [`common`]: the error vocabulary, JSON
//! framing, the heartbeat-reply limiter.

pub mod bondx;
pub mod common;
pub mod fastws;
pub mod open;
pub mod path;
pub mod publish;
pub mod simple;
pub mod telemetry;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response};
use shardcast_engine::{Delivery, Details, FormatId, Formats, LocalShard, Session, WireFormat};

use crate::auth::credentials::CredentialError;
use crate::auth::{Credential, Principal, Role};
use crate::config::ServerConfig;
use crate::http::Body;
use crate::request::Query;
use crate::App;
pub use path::{Params, PathTemplate};

/// Registers every protocol and the admin API: one line each.
pub fn register_all(registry: &mut Registry, config: &ServerConfig) -> anyhow::Result<()> {
    telemetry::register(registry, config)?;
    publish::register(registry, config)?;
    bondx::register(registry, config)?;
    fastws::register(registry, config)?;
    simple::register(registry, config)?;
    crate::admin::register(registry)?;
    crate::dashboard::register(registry)?;
    Ok(())
}

/// How a client of an endpoint proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// One of the server's credentials — an API key or a JWT, in a header
    /// or (for WebSocket upgrades) the query — checked against the role by
    /// the [`Authenticator`](crate::auth::Authenticator).
    Credentials,
    /// As `Credentials`, and an API key may also come as
    /// `Authorization: Bearer <key>`: what a Prometheus scraper sends with
    /// its `authorization` setting. Plain HTTP endpoints only (an upgrade
    /// treats it as `Credentials`).
    CredentialsOrBearerKey,
    /// The endpoint checks the credential itself
    /// ([`WebSocketEndpoint::authenticate`]), for protocols with their own
    /// tokens; the role is not consulted.
    Endpoint,
    /// Anyone, without credentials (a plain HTTP endpoint serving nothing
    /// private: the dashboard's page). Not for WebSocket endpoints.
    Public,
}

/// A refused WebSocket: the handshake completes (a browser cannot read a
/// refused handshake), then the client gets `message` if any, and a close
/// frame with `code` and `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The close code.
    pub code: u16,
    /// The close frame's reason: a short code such as `INVALID_TOKEN`.
    pub reason: &'static str,
    /// Why, for the log.
    pub why: String,
    /// A frame of the protocol's own sent before the close frame.
    pub message: Option<bytes::Bytes>,
}

/// One endpoint of a protocol. Shared by all shards; immutable.
#[derive(Debug)]
pub struct Descriptor {
    /// The protocol's name, for logs.
    pub protocol: &'static str,
    /// Where it is served.
    pub path: PathTemplate,
    /// How a client authenticates.
    pub auth: Auth,
    /// The role it needs.
    pub role: Role,
    /// What serves it.
    pub handler: Handler,
}

/// What serves an endpoint.
pub enum Handler {
    /// A WebSocket endpoint (`GET` with an upgrade).
    WebSocket(Arc<dyn WebSocketEndpoint>),
    /// A plain HTTP endpoint taking `method`.
    Http(Method, Arc<dyn HttpEndpoint>),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::WebSocket(_) => f.write_str("WebSocket"),
            Handler::Http(method, _) => write!(f, "Http({method})"),
        }
    }
}

impl Handler {
    /// The method it takes.
    pub fn method(&self) -> Method {
        match self {
            Handler::WebSocket(_) => Method::GET,
            Handler::Http(method, _) => method.clone(),
        }
    }
}

/// What a WebSocket endpoint gets to make a session: the connection's
/// principal, its query, and the path's parameters.
#[derive(Debug)]
pub struct Opening {
    /// The server.
    pub app: Arc<App>,
    /// Who connected.
    pub principal: Arc<Principal>,
    /// The upgrade request's query (strictly parsed).
    pub query: Query,
    /// The path's parameters.
    pub params: Params,
    /// What the endpoint recorded of the upgrade request
    /// ([`WebSocketEndpoint::details`]).
    pub details: Details,
}

/// A WebSocket endpoint. Shared by all shards.
pub trait WebSocketEndpoint: Send + Sync + 'static {
    /// How its connections are served: format, overflow, liveness.
    fn delivery(&self, app: &App) -> Delivery;

    /// The session of a new connection, once its upgrade is done and its
    /// principal holds the endpoint's role.
    fn open(&self, opening: Opening) -> Box<dyn Session>;

    /// For [`Auth::Endpoint`]: the principal behind the request's one
    /// credential (if any; or why the request's credentials could not be
    /// read), for the path `params`, or the refusal.
    fn authenticate(
        &self,
        app: &App,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
        params: &Params,
    ) -> Result<Arc<Principal>, Refusal> {
        let _ = (app, credential, params);
        Err(Refusal {
            code: shardcast_engine::CloseReason::Unauthorized.code(),
            reason: "VIOLATED_POLICY",
            why: "this endpoint authenticates no one".into(),
            message: None,
        })
    }

    /// What to record of the upgrade request's headers for the client
    /// listing and the session (a device type, a client version); nothing
    /// by default.
    fn details(&self, headers: &HeaderMap) -> Details {
        let _ = headers;
        Details::default()
    }
}

/// A request to a plain HTTP endpoint, authorized.
#[derive(Debug)]
pub struct Call {
    /// The server.
    pub app: Arc<App>,
    /// The shard serving it.
    pub shard: LocalShard,
    /// Who asked (`None` on a path served without credentials).
    pub principal: Option<Arc<Principal>>,
    /// The query (strictly parsed).
    pub query: Query,
    /// The path's parameters.
    pub params: Params,
    /// The request.
    pub req: Request<Incoming>,
}

/// The answer of a plain HTTP endpoint, produced on the shard.
pub type Answer = Pin<Box<dyn Future<Output = Response<Body>>>>;

/// A plain HTTP endpoint. Shared by all shards.
pub trait HttpEndpoint: Send + Sync + 'static {
    /// Answers `call`.
    fn answer(&self, call: Call) -> Answer;
}

/// What the protocols registered. Built once at start-up.
#[derive(Debug, Default)]
pub struct Registry {
    formats: Formats,
    routes: Vec<Descriptor>,
    channels: Vec<&'static str>,
}

/// Two endpoints that would serve the same path.
#[derive(Debug, thiserror::Error)]
#[error("{second} registers {path:?}, which {first} already serves")]
pub struct Overlap {
    first: &'static str,
    second: &'static str,
    path: &'static str,
}

impl Registry {
    /// Registers a wire format; its id goes into the descriptors that use
    /// it. A format of a name already registered is that format: protocols
    /// that share a wire vocabulary share its id (and its heartbeat, encoded
    /// once per tick).
    pub fn format(&mut self, format: Arc<dyn WireFormat>) -> anyhow::Result<FormatId> {
        if let Some((id, _)) = self.formats.iter().find(|(_, f)| f.name() == format.name()) {
            return Ok(id);
        }
        Ok(self.formats.register(format)?)
    }

    /// Registers an endpoint; no two may serve the same path.
    ///
    /// # Panics
    /// If a WebSocket endpoint is [`Auth::Public`]: a programming error,
    /// caught by the registration test.
    pub fn endpoint(&mut self, descriptor: Descriptor) -> Result<(), Overlap> {
        assert!(
            !(descriptor.auth == Auth::Public
                && matches!(descriptor.handler, Handler::WebSocket(_))),
            "{} registers a public WebSocket endpoint",
            descriptor.protocol
        );
        if let Some(first) = self
            .routes
            .iter()
            .find(|d| d.path.overlaps(&descriptor.path))
        {
            return Err(Overlap {
                first: first.protocol,
                second: descriptor.protocol,
                path: descriptor.path.as_str(),
            });
        }
        self.routes.push(descriptor);
        Ok(())
    }

    /// Declares channel rules that exist whatever the configuration says:
    /// a protocol's own topic families (BondX's `prices.*`).
    pub fn channels(&mut self, rules: &[&'static str]) {
        self.channels.extend_from_slice(rules);
    }

    /// The formats for the engine and the routes for the HTTP layer.
    pub fn finish(self) -> (Formats, Routes) {
        (self.formats, Routes(self.routes))
    }

    /// The channel rules the protocols declared.
    pub fn declared_channels(&self) -> &[&'static str] {
        &self.channels
    }
}

/// Every endpoint, looked up by path. Shared by all shards; immutable.
#[derive(Debug)]
pub struct Routes(Vec<Descriptor>);

impl Routes {
    /// The endpoint serving `path`, with its parameters (registration
    /// refuses overlapping templates, so at most one matches).
    pub fn find(&self, path: &str) -> Option<(&Descriptor, Params)> {
        self.0
            .iter()
            .find_map(|d| d.path.matches(path).map(|params| (d, params)))
    }

    /// Every endpoint.
    pub fn iter(&self) -> impl Iterator<Item = &Descriptor> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn routes() -> Routes {
        let config = RawConfig::default().validate().unwrap();
        let mut registry = Registry::default();
        register_all(&mut registry, &config).unwrap();
        registry.finish().1
    }

    #[test]
    fn every_path_names_one_endpoint_with_its_method_and_role() {
        let routes = routes();
        let at = |path: &str| {
            routes
                .find(path)
                .map(|(d, params)| (d.protocol, d.handler.method(), d.role, params))
        };
        let (protocol, method, role, _) = at("/ws/telemetry").unwrap();
        assert_eq!(
            (protocol, method, role),
            ("telemetry", Method::GET, Role::Subscribe)
        );
        assert_eq!(at("/ws/publish").unwrap().2, Role::Publish);
        let (_, method, role, _) = at("/api/v1/publish").unwrap();
        assert_eq!((method, role), (Method::POST, Role::Publish));
        let (_, method, role, params) = at("/api/v1/websocket/clients/desk%207").unwrap();
        assert_eq!((method, role), (Method::DELETE, Role::Admin));
        assert_eq!(params.get("clientId"), Some("desk 7"));
        assert_eq!(at("/health").unwrap().2, Role::Admin);
        assert!(at("/nope").is_none());
        assert!(at("/ws/telemetry/x").is_none());
    }

    #[test]
    fn protocols_sharing_a_wire_format_share_its_id() {
        let config = RawConfig::default().validate().unwrap();
        let mut registry = Registry::default();
        register_all(&mut registry, &config).unwrap();
        let (formats, _) = registry.finish();
        let names: Vec<&str> = formats.iter().map(|(_, f)| f.name()).collect();
        assert_eq!(names, ["telemetry", "bondx", "fastws", "simple"]);
    }

    #[test]
    fn a_simple_feed_no_rule_allows_stops_the_start() {
        let mut raw = RawConfig::from_toml("[simple.feeds]\ntrades = \"nowhere\"").unwrap();
        let mut registry = Registry::default();
        let config = raw.clone().validate().unwrap();
        let err = register_all(&mut registry, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trades = \"nowhere\""), "{err}");
        // A FastWS family, declared by that protocol, is a valid feed.
        raw.simple.feeds.trades = Some(r#"executions:{"accountId":"A-1"}"#.into());
        let config = raw.validate().unwrap();
        register_all(&mut Registry::default(), &config).unwrap();
    }

    #[test]
    fn two_endpoints_cannot_serve_one_path() {
        let config = RawConfig::default().validate().unwrap();
        let mut registry = Registry::default();
        register_all(&mut registry, &config).unwrap();
        let err = crate::admin::register(&mut registry).unwrap_err();
        assert!(err.to_string().contains("/api/v1/websocket/stats"), "{err}");
    }
}
