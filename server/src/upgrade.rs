//! WebSocket upgrades: the handshake checked as RFC 6455 requires, the
//! credentials, the client id, a connection slot reserved before the `101`,
//! and the hand-off of the raw socket to the shard that accepted it.
//!
//! In order:
//! 1. not an upgrade → 426; not HTTP/1.1, or a malformed
//!    `Sec-WebSocket-Key` → 400; a `Sec-WebSocket-Version` other than 13 →
//!    426 naming 13;
//!    The server draining before it stops → 503 `SERVER_DRAINING` with
//!    `Retry-After`, before anything else is looked at;
//! 2. a browser page from an origin that may not use credentials → 403;
//! 3. a bad `clientId` → 400 (ids are per principal: another principal's
//!    client with the same id is not affected);
//! 4. no WebSocket slot left → 503 with `Retry-After` (the slot is reserved
//!    here, so a burst of upgrades can never overshoot `max_connections`);
//! 5. otherwise the handshake completes — even when the credentials are
//!    wrong, so that a browser, which cannot read a refused handshake,
//!    learns why from the close code: 4401 (missing, unknown, ambiguous or
//!    invalid credentials), 4403 (no role), 4440 (token expired);
//! 6. a permessage-deflate offer is accepted when `[compression] enabled`
//!    and the server can honour it (`extensions.rs`), answered in the
//!    `101`, and recorded in the connection's [`Delivery`](shardcast_engine::Delivery);
//! 7. the raw `TcpStream` is recovered from hyper and attached to this
//!    shard with its session; hyper holds nothing of it from then on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, RETRY_AFTER, SEC_WEBSOCKET_EXTENSIONS};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use shardcast_engine::{frame, Attachment, CloseReason, Delivery, LocalShard, Transport};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use crate::auth::credentials::{self, CredentialError};
use crate::auth::token::TokenError;
use crate::auth::AuthError;
use crate::extensions;
use crate::http::{error, Body, PermitSlot};
use crate::input::sanitize;
use crate::metrics::UpgradeRefusal;
use crate::protocol::common::ApiCode;
use crate::protocol::{Auth, Descriptor, Opening, Params, Refusal, WebSocketEndpoint};
use crate::request::{valid_client_id, Query};
use crate::stall::StallLimited;
use crate::App;

/// An upgrade request routed to a WebSocket endpoint.
pub(crate) struct Upgrade<'a> {
    pub(crate) descriptor: &'a Descriptor,
    pub(crate) endpoint: &'a Arc<dyn WebSocketEndpoint>,
    pub(crate) params: Params,
    pub(crate) query: Query,
    pub(crate) peer: SocketAddr,
}

fn refusal(e: &AuthError) -> Refusal {
    let (code, text) = match e {
        AuthError::Forbidden(_) => (CloseReason::Forbidden.code(), "FORBIDDEN"),
        AuthError::Token(TokenError::Expired) => {
            (CloseReason::TokenExpired.code(), "TOKEN_EXPIRED")
        }
        AuthError::Token(_) | AuthError::TokensDisabled => {
            (CloseReason::Unauthorized.code(), "INVALID_TOKEN")
        }
        AuthError::Missing | AuthError::UnknownKey => {
            (CloseReason::Unauthorized.code(), "VIOLATED_POLICY")
        }
    };
    Refusal {
        code,
        reason: text,
        why: e.to_string(),
        message: None,
    }
}

fn credential_refusal(e: &CredentialError) -> Refusal {
    let text = match e {
        CredentialError::Ambiguous => "AMBIGUOUS_CREDENTIALS",
        CredentialError::InvalidHeader(_) | CredentialError::QueryOnHttp(_) => {
            "INVALID_CREDENTIALS"
        }
    };
    Refusal {
        code: CloseReason::Unauthorized.code(),
        reason: text,
        why: e.to_string(),
        message: None,
    }
}

/// Whether `key` is what RFC 6455 §4.1 requires: the base64 encoding of 16
/// bytes (24 characters, the last two `==`).
fn valid_key(key: &[u8]) -> bool {
    fn base64(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let [body @ .., last, b'=', b'='] = key else {
        return false;
    };
    // 16 bytes = 21 full characters plus one carrying 2 bits (4 zero bits).
    body.len() == 21
        && body.iter().all(|&c| base64(c).is_some())
        && base64(*last).is_some_and(|v| v & 0x0F == 0)
}

/// Checks step 1 of the module docs.
#[allow(clippy::result_large_err)] // The error is the response itself, built once.
fn check_handshake(req: &Request<Incoming>) -> Result<(), Response<Body>> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Err(error(
            StatusCode::UPGRADE_REQUIRED,
            ApiCode::UpgradeRequired,
            "this endpoint speaks WebSocket",
        ));
    }
    if req.version() != Version::HTTP_11 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            ApiCode::BadHandshake,
            "WebSocket upgrades need HTTP/1.1",
        ));
    }
    let mut keys = req.headers().get_all("sec-websocket-key").iter();
    let key_ok = match (keys.next(), keys.next()) {
        (Some(key), None) => valid_key(key.as_bytes()),
        _ => false,
    };
    if !key_ok {
        return Err(error(
            StatusCode::BAD_REQUEST,
            ApiCode::BadHandshake,
            "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
        ));
    }
    if req
        .headers()
        .get("sec-websocket-version")
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut resp = error(
            StatusCode::UPGRADE_REQUIRED,
            ApiCode::BadHandshake,
            "this server speaks WebSocket version 13",
        );
        resp.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return Err(resp);
    }
    Ok(())
}

/// A refused upgrade closes its connection: the client asked for a
/// WebSocket, and a half-answered upgrade is nothing to keep alive.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Handles an upgrade request (steps in the module docs).
pub(crate) fn handle(
    app: &Arc<App>,
    shard: &LocalShard,
    slot: &PermitSlot,
    mut req: Request<Incoming>,
    upgrade: Upgrade<'_>,
) -> Response<Body> {
    let Upgrade {
        descriptor,
        endpoint,
        params,
        query,
        peer,
    } = upgrade;
    app.upgrades.request();
    let refused = |why: UpgradeRefusal, resp: Response<Body>| {
        app.upgrades.refuse(why);
        closing(resp)
    };
    if let Err(resp) = check_handshake(&req) {
        let why = if resp.status() == StatusCode::UPGRADE_REQUIRED {
            UpgradeRefusal::UpgradeRequired
        } else {
            UpgradeRefusal::BadHandshake
        };
        return refused(why, resp);
    }
    // Before the credentials are looked at: a ticket or token is not used up
    // for a connection that cannot be kept.
    if app.is_draining() {
        debug!(%peer, "websocket refused: draining");
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiCode::ServerDraining,
            "the server is shutting down; connect to another",
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return refused(UpgradeRefusal::Draining, resp);
    }
    let verdict = match credentials::extract(req.headers(), &query, true) {
        // An endpoint with its own authentication says why in its own words.
        Err(e) if descriptor.auth == Auth::Endpoint => endpoint.authenticate(app, Err(e), &params),
        Err(e) => Err(credential_refusal(&e)),
        Ok(credential) => {
            if credential.is_some() {
                if let Err(e) = app.config.origins.check(req.headers()) {
                    info!(%peer, error = %e, "websocket refused: origin");
                    let resp = error(
                        StatusCode::FORBIDDEN,
                        ApiCode::OriginNotAllowed,
                        &e.to_string(),
                    );
                    return refused(UpgradeRefusal::Origin, resp);
                }
            }
            match descriptor.auth {
                // Registration refuses public WebSocket endpoints.
                Auth::Credentials | Auth::CredentialsOrBearerKey | Auth::Public => app
                    .config
                    .auth
                    .authorize(credential.as_ref(), descriptor.role)
                    .map_err(|e| refusal(&e)),
                Auth::Endpoint => endpoint.authenticate(app, Ok(credential.as_ref()), &params),
            }
        }
    };
    let details = endpoint.details(req.headers());
    let client_id: Arc<str> = match query.client_id.as_deref() {
        Some(id) if valid_client_id(id) => id.into(),
        Some(_) => {
            let resp = error(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidClientId,
                "clientId must be 1-128 characters from A-Z a-z 0-9 - _ . : @",
            );
            return refused(UpgradeRefusal::BadClientId, resp);
        }
        None => uuid::Uuid::new_v4().to_string().into(),
    };
    let Some(mut permit) = slot.borrow_mut().take() else {
        let resp = error(
            StatusCode::BAD_REQUEST,
            ApiCode::BadHandshake,
            "this connection has already been upgraded",
        );
        return refused(UpgradeRefusal::BadHandshake, resp);
    };
    if verdict.is_ok() {
        if let Err(full) = permit.establish() {
            *slot.borrow_mut() = Some(permit);
            warn!(%peer, error = %full, "websocket refused: server full");
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiCode::ServerFull,
                "the server holds its maximum number of connections; retry later",
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return refused(UpgradeRefusal::Full, resp);
        }
    }
    let deflate = (verdict.is_ok() && app.config.compression.enabled)
        .then(|| {
            let offers = req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
            extensions::negotiate(offers.iter().map(HeaderValue::as_bytes))
        })
        .flatten();
    let (mut response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            // Checked above, so not expected; the socket stays counted.
            *slot.borrow_mut() = Some(permit);
            let resp = error(
                StatusCode::BAD_REQUEST,
                ApiCode::BadHandshake,
                &e.to_string(),
            );
            return refused(UpgradeRefusal::BadHandshake, resp);
        }
    };
    // Refused by its credentials: told after the handshake (step 5).
    if let Err(refusal) = &verdict {
        app.upgrades
            .refuse(UpgradeRefusal::of_close_code(refusal.code));
    }
    if let Some(deflate) = deflate {
        response.headers_mut().insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(deflate.response()),
        );
    }
    let app = Arc::clone(app);
    let shard = shard.clone();
    let endpoint = Arc::clone(endpoint);
    let protocol = descriptor.protocol;
    tokio::task::spawn_local(async move {
        let ws = match upgraded.await {
            Ok(ws) => ws,
            Err(e) => {
                debug!(%peer, error = %e, "upgrade did not complete");
                return;
            }
        };
        let Some((transport, read_buf)) = recover(ws.into_inner().into_inner()) else {
            warn!(%peer, "upgraded connection is neither TCP nor TLS over TCP");
            return;
        };
        let principal = match verdict {
            Ok(principal) => principal,
            Err(refusal) => {
                info!(%peer, protocol, code = refusal.code, reason = refusal.reason, why = %sanitize(&refusal.why, 200), "websocket refused");
                refuse(transport, &refusal).await;
                // The permit (still in its HTTP stage) goes with the socket.
                drop(permit);
                return;
            }
        };
        let delivery = Delivery {
            deflate: deflate.is_some(),
            ..endpoint.delivery(&app)
        };
        let owner = Arc::clone(&principal.name);
        let session = endpoint.open(Opening {
            app,
            principal,
            query,
            params,
            details: details.clone(),
        });
        debug!(%peer, protocol, "websocket opened");
        let attached = shard.attach(Attachment {
            transport,
            read_buf,
            client_id,
            owner,
            delivery,
            session,
            permit,
            details,
        });
        if let Err(e) = attached {
            warn!(%peer, error = %e, "websocket dropped");
        }
    });
    response.map(|_| Body::default())
}

/// The socket hyper upgraded, as the engine's transport, with the bytes
/// hyper read past the request. A TLS session keeps what it decrypted and
/// has not handed out; the transport reads that first.
fn recover(upgraded: hyper::upgrade::Upgraded) -> Option<(Transport, bytes::Bytes)> {
    let plain = match upgraded.downcast::<TokioIo<StallLimited<TcpStream>>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner().into_inner();
            return Some((Transport::plain(stream), parts.read_buf));
        }
        Err(upgraded) => upgraded,
    };
    let parts = plain
        .downcast::<TokioIo<StallLimited<TlsStream<TcpStream>>>>()
        .ok()?;
    let (stream, session) = parts.io.into_inner().into_inner().into_inner();
    Some((Transport::tls(stream, session), parts.read_buf))
}

/// Sends a close frame on a connection that is never attached, then closes it.
async fn refuse(mut transport: Transport, refusal: &Refusal) {
    let mut frame = bytes::BytesMut::new();
    if let Some(message) = &refusal.message {
        frame.extend_from_slice(message);
    }
    frame.extend_from_slice(&frame::encode_close(refusal.code, refusal.reason));
    let closing = async {
        let mut unsent = &frame[..];
        loop {
            // A TLS session's records first, then more of the frame.
            let wrote = transport.push().and_then(|()| match unsent {
                [] => Ok(None),
                _ => transport
                    .write_vectored(&[std::io::IoSlice::new(unsent)])
                    .map(Some),
            });
            match wrote {
                Ok(None) => break,
                Ok(Some(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Some(n)) => unsent = &unsent[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    transport.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        transport.shutdown().await?;
        // Wait for the client's EOF so the close frame is not lost to a reset.
        transport.drain_until_eof().await;
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_base64_of_sixteen_bytes() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ=")); // 23 characters
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZR==")); // stray low bits
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!valid_key(b"c2hvcnQ=")); // 5 bytes
    }
}
