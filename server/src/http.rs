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
//! 2. its path names an endpoint (404, 405 otherwise) and its query parses
//!    strictly (400: repeated parameters, too many channels);
//! 3. unless the path is open, its one credential is found (400 when
//!    ambiguous or unreadable; for upgrades, see `upgrade.rs`), a browser's
//!    `Origin` is checked (403), and the credential must hold the
//!    endpoint's role (401, 403);
//! 4. the endpoint runs; a body must be JSON (415), fit `max_publish_body`
//!    (413) and arrive within `request_timeout_seconds` (408).

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
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, RETRY_AFTER, VARY,
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
use crate::auth::{AuthError, Principal, Role};
use crate::publish::{parse_body, publish_item, ApiError, PublishBody, PublishResult};
use crate::request::{percent_decode_segment, Query};
use crate::stall::StallLimited;
use crate::upgrade::{self, Endpoint as WsEndpoint};
use crate::{admin, metrics, App};

/// A response body.
pub type Body = Full<Bytes>;

/// How long one `/metrics` exposition is served again (Prometheus scrapes
/// every 15 s or so; a second is invisible to it).
const METRICS_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// The socket's place in the connection gate, until an upgrade takes it.
pub(crate) type PermitSlot = Rc<RefCell<Option<PeerPermit>>>;

/// Serves HTTP on the shard that owns the connection. Shared by all shards.
#[derive(Clone, Debug)]
pub struct HttpHandler {
    app: Arc<App>,
}

impl HttpHandler {
    /// A handler for `app`.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
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
        Box::pin(async move {
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
                    async move { Ok::<_, Infallible>(route(app, shard, peer, slot, req).await) }
                })
            };
            // A client that stops reading its answers is cut off, too.
            let io = StallLimited::new(stream, config.request_timeout);
            let served = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        })
    }
}

/// What a path and method name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    WebSocket(WsEndpoint),
    Publish,
    Stats,
    Clients,
    Disconnect(String),
    Metrics,
    Health,
}

impl Endpoint {
    /// The endpoint at `path`, whatever the method, and the method it takes.
    fn at(path: &str) -> Option<(Endpoint, Method)> {
        Some(match path {
            "/ws/telemetry" => (Endpoint::WebSocket(WsEndpoint::Telemetry), Method::GET),
            "/ws/publish" => (Endpoint::WebSocket(WsEndpoint::Publish), Method::GET),
            "/api/v1/publish" => (Endpoint::Publish, Method::POST),
            "/api/v1/websocket/stats" => (Endpoint::Stats, Method::GET),
            "/api/v1/websocket/clients" => (Endpoint::Clients, Method::GET),
            "/metrics" => (Endpoint::Metrics, Method::GET),
            "/health" => (Endpoint::Health, Method::GET),
            p => {
                let id = p.strip_prefix(admin::CLIENTS_PREFIX)?;
                let id = percent_decode_segment(id).into_owned();
                (Endpoint::Disconnect(id), Method::DELETE)
            }
        })
    }

    fn role(&self) -> Role {
        match self {
            Endpoint::WebSocket(WsEndpoint::Telemetry) => Role::Subscribe,
            Endpoint::WebSocket(WsEndpoint::Publish) | Endpoint::Publish => Role::Publish,
            Endpoint::Stats
            | Endpoint::Clients
            | Endpoint::Disconnect(_)
            | Endpoint::Metrics
            | Endpoint::Health => Role::Admin,
        }
    }
}

async fn route(
    app: Arc<App>,
    shard: LocalShard,
    peer: SocketAddr,
    slot: PermitSlot,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some((endpoint, method)) = Endpoint::at(&path) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    };
    if req.method() == Method::OPTIONS {
        return preflight(&app, &req);
    }
    if req.method() != method {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("{} is not served on {path}; use {method}", req.method()),
        );
    }
    let query = match Query::parse(req.uri().query()) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_QUERY", &e.to_string()),
    };
    if let Endpoint::WebSocket(ws) = endpoint {
        return upgrade::handle(&app, &shard, peer, &slot, req, query, ws);
    }
    let (principal, cors) = if app.config.open_paths.contains(&path) {
        (None, Cors::None)
    } else {
        match authorize(&app, &req, &query, endpoint.role()) {
            Ok((principal, cors)) => (Some(principal), cors),
            Err(resp) => return resp,
        }
    };
    let mut resp = match endpoint {
        // Configuration never opens the publish path, so there is a principal.
        Endpoint::Publish => match principal {
            Some(principal) => publish(&app, &shard, &principal, req).await,
            None => auth_error(&AuthError::Missing),
        },
        Endpoint::Stats => json(StatusCode::OK, &admin::stats(&app).await),
        Endpoint::Clients => json(StatusCode::OK, &admin::clients(&app).await),
        Endpoint::Disconnect(id) => {
            let (status, body) =
                admin::disconnect(&app, &id, query.owner.as_deref(), query.reason.as_deref());
            json(status, &body)
        }
        Endpoint::Metrics => {
            let cached = app
                .metrics_cache
                .lock()
                .clone()
                .filter(|(at, _)| at.elapsed() < METRICS_CACHE);
            let text = match cached {
                Some((_, text)) => text,
                None => {
                    let text = Bytes::from(metrics::render(&app).await);
                    *app.metrics_cache.lock() = Some((std::time::Instant::now(), text.clone()));
                    text
                }
            };
            let mut resp = Response::new(Full::new(text));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Endpoint::Health => json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "connections": app.engine.connections(),
                "uptimeSeconds": app.started.elapsed().as_secs(),
            }),
        ),
        Endpoint::WebSocket(_) => unreachable!("handled above"),
    };
    if let Cors::Allow(origin) = cors {
        allow_origin(&mut resp, &origin);
    }
    resp
}

/// The caller's principal for `role`, or the response refusing it.
/// Credentials in the query are refused here: this is not an upgrade.
#[allow(clippy::result_large_err)] // The error is the response itself, built once.
fn authorize(
    app: &App,
    req: &Request<Incoming>,
    query: &Query,
    role: Role,
) -> Result<(Arc<Principal>, Cors), Response<Body>> {
    let credential =
        credentials::extract(req.headers(), query, false).map_err(|e| credential_error(&e))?;
    // Without a credential there is nothing for a foreign page to misuse:
    // the request is refused below in any case.
    let cors = match credential {
        Some(_) => app
            .config
            .origins
            .check(req.headers())
            .map_err(|e| error(StatusCode::FORBIDDEN, "ORIGIN_NOT_ALLOWED", &e.to_string()))?,
        None => Cors::None,
    };
    let principal = app
        .config
        .auth
        .authorize(credential.as_ref(), role)
        .map_err(|e| auth_error(&e))?;
    Ok((principal, cors))
}

fn credential_error(e: &CredentialError) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_CREDENTIALS",
        &e.to_string(),
    )
}

fn auth_error(e: &AuthError) -> Response<Body> {
    match e {
        AuthError::Forbidden(_) => error(StatusCode::FORBIDDEN, "FORBIDDEN", &e.to_string()),
        AuthError::Missing
        | AuthError::UnknownKey
        | AuthError::Token(_)
        | AuthError::TokensDisabled => {
            error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &e.to_string())
        }
    }
}

/// Answers a CORS preflight: allowed only for origins listed in `allowed_origins`.
fn preflight(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let Some(origin) = app.config.origins.preflight(req.headers()) else {
        return error(
            StatusCode::FORBIDDEN,
            "ORIGIN_NOT_ALLOWED",
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
fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

async fn publish(
    app: &App,
    shard: &LocalShard,
    principal: &Principal,
    req: Request<Incoming>,
) -> Response<Body> {
    if !is_json(&req) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "publish bodies are JSON: send Content-Type: application/json",
        );
    }
    let limit = app.config.max_publish_body;
    let timeout = app.config.request_timeout;
    let collected = tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect());
    let body = match collected.await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                &format!("the body did not arrive within {} s", timeout.as_secs()),
            )
        }
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                &format!("publish bodies are limited to {limit} bytes"),
            )
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", &e.to_string()),
    };
    match parse_body(&body, app.config.max_publish_batch) {
        Ok(PublishBody::Single(item)) => match publish_item(shard, principal, item) {
            result @ PublishResult::Ok { .. } => json(StatusCode::OK, &result),
            PublishResult::Err { error: e, .. } => {
                let status = match e.code {
                    "FORBIDDEN" => StatusCode::FORBIDDEN,
                    "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let retry_after = e.retry_after;
                let mut resp = json(status, &ErrorBody { error: e });
                if let Some(after) = retry_after {
                    let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
                    resp.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(seconds));
                }
                resp
            }
        },
        Ok(PublishBody::Batch(items)) => {
            let results: Vec<PublishResult> = items
                .into_iter()
                .map(|item| publish_item(shard, principal, item))
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "results": results }))
        }
        Err(e) => json(StatusCode::BAD_REQUEST, &ErrorBody { error: e }),
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
pub fn error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: ApiError::new(code, message),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_names_one_endpoint_and_method() {
        assert_eq!(
            Endpoint::at("/ws/telemetry"),
            Some((Endpoint::WebSocket(WsEndpoint::Telemetry), Method::GET))
        );
        assert_eq!(
            Endpoint::at("/api/v1/websocket/clients/desk%207"),
            Some((Endpoint::Disconnect("desk 7".into()), Method::DELETE))
        );
        assert_eq!(Endpoint::at("/nope"), None);
        assert_eq!(Endpoint::at("/health").unwrap().0.role(), Role::Admin);
        assert_eq!(
            Endpoint::at("/api/v1/publish").unwrap().0.role(),
            Role::Publish
        );
    }
}
