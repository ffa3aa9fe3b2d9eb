//! HTTP on each shard: routing, authentication, and the WebSocket upgrade
//! that hands a socket to the shard that accepted it.
//!
//! Every accepted TCP connection is served by hyper on the shard the engine
//! chose for it. An upgrade to WebSocket:
//! 1. is refused with 426 when it is not an upgrade request, 503 (with
//!    `Retry-After`) past `max_connections`, 400 for a bad `clientId`;
//! 2. otherwise completes the handshake even when the key is wrong, so the
//!    client learns why from a close code (4401 no or bad key, 4403 no role);
//! 3. recovers the raw `TcpStream` from hyper and attaches it to this shard
//!    with the endpoint's session. hyper is out of the picture from then on.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use shardcast_engine::{frame, CloseReason, ConnectionHandler, LocalShard, Session};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::auth::{AuthError, Role};
use crate::publish::{publish_http, ApiError, HttpOutcome, PublishSession};
use crate::telemetry::TelemetrySession;
use crate::{admin, metrics, App};

/// A response body.
pub type Body = Full<Bytes>;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
        shard: LocalShard,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let app = Arc::clone(&self.app);
        Box::pin(async move {
            let service = service_fn(move |req| {
                let app = Arc::clone(&app);
                let shard = shard.clone();
                async move { Ok::<_, Infallible>(route(app, shard, peer, req).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        })
    }
}

/// The query parameters this server reads.
#[derive(Default, Debug)]
struct Query {
    api_key: Option<String>,
    client_id: Option<String>,
    channels: Vec<String>,
    replay: bool,
    reason: Option<String>,
}

fn parse_query(query: Option<&str>) -> Query {
    let mut out = Query::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "apiKey" => out.api_key = Some(value.into_owned()),
            "clientId" => out.client_id = Some(value.into_owned()),
            "channels" => out.channels.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            ),
            "replay" => out.replay = matches!(value.as_ref(), "true" | "1"),
            "reason" => out.reason = Some(value.into_owned()),
            _ => {}
        }
    }
    out
}

async fn route(
    app: Arc<App>,
    shard: LocalShard,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let query = parse_query(req.uri().query());
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(role) = required_role(&path) {
        if !app.config.open_paths.contains(&path) && !path.starts_with("/ws/") {
            match app
                .config
                .api_keys
                .authorize(req.headers(), query.api_key.as_deref(), role)
            {
                Ok(()) => {}
                Err(AuthError::Unauthorized) => {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "missing or invalid API key (X-API-Key header or apiKey query parameter)",
                    )
                }
                Err(AuthError::Forbidden) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        "FORBIDDEN",
                        "this API key lacks the role this endpoint needs",
                    )
                }
            }
        }
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/ws/telemetry") => {
            upgrade(&app, &shard, peer, req, query, Endpoint::Telemetry)
        }
        (&Method::GET, "/ws/publish") => upgrade(&app, &shard, peer, req, query, Endpoint::Publish),
        (&Method::POST, "/api/v1/publish") => publish(&app, &shard, req).await,
        (&Method::GET, "/api/v1/websocket/stats") => {
            json(StatusCode::OK, &admin::stats(&app).await)
        }
        (&Method::GET, "/api/v1/websocket/clients") => {
            json(StatusCode::OK, &admin::clients(&app).await)
        }
        (&Method::DELETE, p) if p.starts_with(admin::CLIENTS_PREFIX) => {
            let id = &p[admin::CLIENTS_PREFIX.len()..];
            let id = percent_decode(id);
            let (status, body) = admin::disconnect(&app, &id, query.reason);
            json(status, &body)
        }
        (&Method::GET, "/metrics") => {
            let text = metrics::render(&app).await;
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&Method::GET, "/health") => json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "connections": app.engine.connections(),
                "uptimeSeconds": app.started.elapsed().as_secs(),
            }),
        ),
        (_, p) if required_role(p).is_some() => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("{method} is not served on {p}"),
        ),
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
    }
}

/// The role each known path needs; `None` for unknown paths.
fn required_role(path: &str) -> Option<Role> {
    match path {
        "/ws/telemetry" => Some(Role::Subscribe),
        "/ws/publish" | "/api/v1/publish" => Some(Role::Publish),
        "/api/v1/websocket/stats" | "/api/v1/websocket/clients" | "/metrics" | "/health" => {
            Some(Role::Admin)
        }
        p if p.starts_with(admin::CLIENTS_PREFIX) => Some(Role::Admin),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn publish(app: &App, shard: &LocalShard, req: Request<Incoming>) -> Response<Body> {
    let limit = app.config.max_publish_body;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                &format!("publish bodies are limited to {limit} bytes"),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", &e.to_string()),
    };
    match publish_http(shard, &body, app.config.max_publish_batch) {
        HttpOutcome::Single(result @ crate::publish::PublishResult::Ok { .. }) => {
            json(StatusCode::OK, &result)
        }
        HttpOutcome::Single(crate::publish::PublishResult::Err { error: e, .. }) => {
            json(StatusCode::UNPROCESSABLE_ENTITY, &ErrorBody { error: e })
        }
        HttpOutcome::Batch(results) => {
            json(StatusCode::OK, &serde_json::json!({ "results": results }))
        }
        HttpOutcome::BadRequest(e) => json(StatusCode::BAD_REQUEST, &ErrorBody { error: e }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Telemetry,
    Publish,
}

/// Longest accepted `clientId`.
const MAX_CLIENT_ID: usize = 128;

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

fn upgrade(
    app: &Arc<App>,
    shard: &LocalShard,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    query: Query,
    endpoint: Endpoint,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "UPGRADE_REQUIRED",
            "this endpoint speaks WebSocket",
        );
    }
    if app.engine.connections() >= app.config.max_connections {
        warn!(%peer, limit = app.config.max_connections, "connection refused: server full");
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    }
    let client_id = match query.client_id {
        Some(id) if valid_client_id(&id) => id,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_CLIENT_ID",
                "clientId must be 1-128 characters from A-Z a-z 0-9 - _ . : @",
            )
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let role = match endpoint {
        Endpoint::Telemetry => Role::Subscribe,
        Endpoint::Publish => Role::Publish,
    };
    let auth = app
        .config
        .api_keys
        .authorize(req.headers(), query.api_key.as_deref(), role);
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BAD_HANDSHAKE", &e.to_string()),
    };
    let app = Arc::clone(app);
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        let ws = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                debug!(%peer, error = %e, "upgrade did not complete");
                return;
            }
        };
        let Ok(parts) = ws
            .into_inner()
            .into_inner()
            .downcast::<TokioIo<TcpStream>>()
        else {
            warn!(%peer, "upgraded connection is not a TCP stream");
            return;
        };
        let stream = parts.io.into_inner();
        let refusal = match auth {
            Ok(()) => None,
            Err(AuthError::Unauthorized) => Some(CloseReason::Unauthorized),
            Err(AuthError::Forbidden) => Some(CloseReason::Forbidden),
        };
        if let Some(reason) = refusal {
            info!(%peer, reason = %reason, "websocket refused");
            refuse(stream, &reason).await;
            return;
        }
        let session: Box<dyn Session> = match endpoint {
            Endpoint::Telemetry => Box::new(TelemetrySession::new(
                Arc::clone(&app),
                query.channels,
                query.replay,
            )),
            Endpoint::Publish => Box::new(PublishSession::default()),
        };
        shard.attach(
            stream,
            parts.read_buf,
            client_id.into(),
            app.telemetry,
            session,
        );
    });
    response.map(|_| Full::default())
}

/// Sends a close frame on a connection that is never attached, then closes it.
async fn refuse(mut stream: TcpStream, reason: &CloseReason) {
    let frame = frame::encode_close(reason.code(), &reason.text());
    let closing = async {
        stream.write_all(&frame).await?;
        stream.shutdown().await?;
        // Wait for the client's EOF so the close frame is not lost to a reset.
        let mut sink = [0u8; 256];
        loop {
            stream.readable().await?;
            match stream.try_read(&mut sink) {
                Ok(0) => return Ok::<_, std::io::Error>(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
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
    fn query_parameters_are_decoded() {
        let q = parse_query(Some(
            "apiKey=a%20b&clientId=desk-1&channels=market-data,%20positions,,&replay=true",
        ));
        assert_eq!(q.api_key.as_deref(), Some("a b"));
        assert_eq!(q.client_id.as_deref(), Some("desk-1"));
        assert_eq!(q.channels, vec!["market-data", "positions"]);
        assert!(q.replay);
        assert!(!parse_query(Some("replay=yes")).replay);
    }

    #[test]
    fn client_ids_are_bounded_and_plain() {
        assert!(valid_client_id("desk-7@ny:1"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id(&"x".repeat(129)));
    }
}
