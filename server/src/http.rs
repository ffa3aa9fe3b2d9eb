//! HTTP on each shard: limits, routing, credentials, and the hand-off of
//! WebSocket upgrades to `upgrade.rs`.
//!
//! Every accepted TCP connection is served by hyper on the shard the engine
//! chose for it, with its [`PeerPermit`] (its place in the connection gate).
//! A request, in order:
//! 1. its head must arrive within `request_timeout_seconds` (the connection
//!    is closed otherwise; an idle keep-alive connection too) and fit in
//!    `max_header_bytes` (431 otherwise), and the client must keep reading
//!    the answers (a write stalled that long closes the connection);
//! 2. its path is looked up in the route table the protocols registered
//!    ([`crate::protocol::Routes`]; 404 for no endpoint, 405 for another
//!    method) and its query parses strictly (400: repeated parameters, too
//!    many channels);
//! 3. unless the path is open, its one credential is found (400 when
//!    ambiguous or unreadable; for upgrades, see `upgrade.rs`; a bearer
//!    token that is an API key counts as the key where the endpoint takes
//!    one, as `/metrics` does for scrapers), a browser's `Origin` is
//!    checked (403), and the credential must hold the endpoint's role
//!    (401, 403);
//! 4. the endpoint runs. One that takes a body reads it with
//!    [`read_json_body`]: JSON (415), within its size limit (413), within
//!    `request_timeout_seconds` (408).
//!
//! Nothing here names a protocol: what a path means is the registered
//! endpoint's business.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, VARY,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use shardcast_engine::{ConnectionHandler, LocalShard, PeerPermit};
use tokio::net::TcpStream;
use tracing::debug;

use crate::auth::credentials::{self, CredentialError};
use crate::auth::origin::Cors;
use crate::auth::{AuthError, Credential, Principal};
use crate::protocol::common::{ApiCode, ApiError};
use crate::protocol::{Auth, Call, Descriptor, Handler};
use crate::request::Query;
use crate::stall::StallLimited;
use crate::tls::Tls;
use crate::upgrade;
use crate::App;

/// A response body.
pub type Body = Full<Bytes>;

/// The socket's place in the connection gate, until an upgrade takes it.
pub(crate) type PermitSlot = Rc<RefCell<Option<PeerPermit>>>;

/// Serves HTTP on the shard that owns the connection. Shared by all shards.
#[derive(Clone, Debug)]
pub struct HttpHandler {
    app: Arc<App>,
    /// Serve only these paths, without credentials (the metrics listener,
    /// the plain listener of a TLS server).
    only: Option<&'static [&'static str]>,
    /// Serve HTTPS: the handshake comes first.
    tls: Option<Arc<Tls>>,
}

impl HttpHandler {
    /// A handler for `app`: every registered endpoint, over TLS if `tls`.
    pub fn new(app: Arc<App>, tls: Option<Arc<Tls>>) -> Self {
        Self {
            app,
            only: None,
            tls,
        }
    }

    /// A handler serving only `GET /metrics`, without credentials: for the
    /// second listener of `--metrics-listen`, which an operator binds where
    /// only scrapers reach it.
    pub fn metrics_only(app: Arc<App>) -> Self {
        Self {
            app,
            only: Some(&["/metrics"]),
            tls: None,
        }
    }

    /// A handler serving only `/health` and `/ready`, plain: for the second
    /// listener of a TLS server (`--listen-plain`), for a load balancer.
    pub fn health_only(app: Arc<App>) -> Self {
        Self {
            app,
            only: Some(&["/health", "/ready"]),
            tls: None,
        }
    }
}

impl ConnectionHandler for HttpHandler {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: PeerPermit,
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let app = Arc::clone(&self.app);
        let only = self.only;
        let tls = self.tls.clone();
        Box::pin(async move {
            let timeout = app.config.request_timeout;
            let served = match tls {
                None => {
                    let io = StallLimited::new(stream, timeout);
                    serve_http(app, io, peer, permit, shard, only).await
                }
                Some(tls) => {
                    // The permit is held through the handshake.
                    let Some(stream) = tls.accept(stream, shard.index()).await else {
                        return;
                    };
                    let io = StallLimited::new(stream, timeout);
                    serve_http(app, io, peer, permit, shard, only).await
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        })
    }
}

/// Serves HTTP/1.1 (and upgrades) on `io`, plain or TLS.
async fn serve_http<IO>(
    app: Arc<App>,
    io: IO,
    peer: SocketAddr,
    permit: PeerPermit,
    shard: LocalShard,
    only: Option<&'static [&'static str]>,
) -> hyper::Result<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = &app.config;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_timeout)
        .max_buf_size(config.max_header_bytes);
    let slot: PermitSlot = Rc::new(RefCell::new(Some(permit)));
    let service = {
        let app = Arc::clone(&app);
        service_fn(move |req| {
            let app = Arc::clone(&app);
            let shard = shard.clone();
            let slot = Rc::clone(&slot);
            async move { Ok::<_, Infallible>(route(app, shard, peer, slot, req, only).await) }
        })
    };
    // A client that stops reading its answers is cut off, too (`io` is
    // `StallLimited`).
    builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
}

async fn route(
    app: Arc<App>,
    shard: LocalShard,
    peer: SocketAddr,
    slot: PermitSlot,
    req: Request<Incoming>,
    only: Option<&'static [&'static str]>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let found = match only {
        Some(only) if !only.contains(&path.as_str()) => None,
        _ => app.routes.find(&path),
    };
    let Some((descriptor, params)) = found else {
        return error(StatusCode::NOT_FOUND, ApiCode::NotFound, "no such endpoint");
    };
    if req.method() == Method::OPTIONS {
        return preflight(&app, &req);
    }
    let method = descriptor.handler.method();
    if req.method() != method {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiCode::MethodNotAllowed,
            &format!("{} is not served on {path}; use {method}", req.method()),
        );
    }
    let query = match Query::parse(req.uri().query()) {
        Ok(query) => query,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidQuery,
                &e.to_string(),
            )
        }
    };
    let endpoint = match &descriptor.handler {
        Handler::WebSocket(endpoint) => {
            let upgrade = upgrade::Upgrade {
                descriptor,
                endpoint,
                params,
                query,
                peer,
            };
            return upgrade::handle(&app, &shard, &slot, req, upgrade);
        }
        Handler::Http(_, endpoint) => Arc::clone(endpoint),
    };
    let public = descriptor.auth == Auth::Public;
    let (principal, cors) = if only.is_some() || public || app.config.open_paths.contains(&path) {
        (None, Cors::None)
    } else {
        match authorize(&app, &req, &query, descriptor) {
            Ok((principal, cors)) => (Some(principal), cors),
            Err(resp) => return resp,
        }
    };
    let call = Call {
        app: Arc::clone(&app),
        shard,
        principal,
        query,
        params,
        req,
    };
    let mut resp = endpoint.answer(call).await;
    if let Cors::Allow(origin) = cors {
        allow_origin(&mut resp, &origin);
    }
    resp
}

/// The caller's principal for the endpoint's role, or the response refusing
/// it. Credentials in the query are refused here: this is not an upgrade.
#[allow(clippy::result_large_err)] // The error is the response itself, built once.
fn authorize(
    app: &App,
    req: &Request<Incoming>,
    query: &Query,
    descriptor: &Descriptor,
) -> Result<(Arc<Principal>, Cors), Response<Body>> {
    // Plain HTTP endpoints all take the server's credentials
    // (`Auth::Endpoint` is a WebSocket endpoint's own check); a scraper's
    // may take an API key as a bearer token.
    let credential =
        credentials::extract(req.headers(), query, false).map_err(|e| credential_error(&e))?;
    let credential = match (descriptor.auth, credential) {
        (Auth::CredentialsOrBearerKey, Some(Credential::Token(key)))
            if app.config.auth.knows_key(key) =>
        {
            Some(Credential::ApiKey(key))
        }
        (
            Auth::Credentials | Auth::CredentialsOrBearerKey | Auth::Endpoint | Auth::Public,
            credential,
        ) => credential,
    };
    // Without a credential there is nothing for a foreign page to misuse:
    // the request is refused below in any case.
    let cors = match credential {
        Some(_) => app.config.origins.check(req.headers()).map_err(|e| {
            error(
                StatusCode::FORBIDDEN,
                ApiCode::OriginNotAllowed,
                &e.to_string(),
            )
        })?,
        None => Cors::None,
    };
    let principal = app
        .config
        .auth
        .authorize(credential.as_ref(), descriptor.role)
        .map_err(|e| auth_error(&e))?;
    Ok((principal, cors))
}

fn credential_error(e: &CredentialError) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        ApiCode::InvalidCredentials,
        &e.to_string(),
    )
}

fn auth_error(e: &AuthError) -> Response<Body> {
    match e {
        AuthError::Forbidden(_) => error(StatusCode::FORBIDDEN, ApiCode::Forbidden, &e.to_string()),
        AuthError::Missing
        | AuthError::UnknownKey
        | AuthError::Token(_)
        | AuthError::TokensDisabled => error(
            StatusCode::UNAUTHORIZED,
            ApiCode::Unauthorized,
            &e.to_string(),
        ),
    }
}

/// Answers a CORS preflight: allowed only for origins listed in `allowed_origins`.
fn preflight(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let Some(origin) = app.config.origins.preflight(req.headers()) else {
        return error(
            StatusCode::FORBIDDEN,
            ApiCode::OriginNotAllowed,
            "cross-origin requests are served only for origins in allowed_origins",
        );
    };
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    allow_origin(&mut resp, &origin);
    let headers = resp.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, X-API-Key"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

fn allow_origin(resp: &mut Response<Body>, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        resp.headers_mut()
            .insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("Origin"));
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The whole JSON body of `req`, at most `limit` bytes, arriving within
/// `timeout`; otherwise the response refusing it (415, 413, 408, 400).
/// `what` names the bodies in the refusals ("publish bodies").
pub async fn read_json_body(
    req: Request<Incoming>,
    what: &str,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Response<Body>> {
    if !is_json(&req) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiCode::UnsupportedMediaType,
            &format!("{what} are JSON: send Content-Type: application/json"),
        ));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect());
    match collected.await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            ApiCode::RequestTimeout,
            &format!("the body did not arrive within {} s", timeout.as_secs()),
        )),
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiCode::TooLarge,
            &format!("{what} are limited to {limit} bytes"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            ApiCode::InvalidMessage,
            &e.to_string(),
        )),
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: ApiError,
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON error response: `{"error":{"code":…,"message":…}}`.
pub fn error(status: StatusCode, code: ApiCode, message: &str) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: ApiError::new(code, message),
        },
    )
}
