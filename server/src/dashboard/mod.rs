//! The live dashboard: a page at `/` and the admin stream it reads.
//!
//! - `GET /` (and `/dashboard/app.js`, `/dashboard/app.css`): the page,
//!   embedded in the binary from `server/assets/`, served to anyone — it
//!   holds no data. The operator types an admin key into it once; the page
//!   keeps it in session storage and sends it only in headers.
//! - `POST /api/v1/dashboard/ticket` (admin): a one-time ticket, valid
//!   for [`TICKET_TTL`], that opens the stream. Browsers cannot put headers
//!   on a WebSocket handshake, and the key must never be in a URL (logs,
//!   history); the ticket is useless once used or expired.
//! - `GET /api/v1/dashboard/ws` (a WebSocket; `?token=<ticket>`, or an
//!   admin key in a header): a `stats` frame about once a second (see
//!   [`sample`]), and on request the live tail of one channel, limited to
//!   [`TAIL_RATE`] rounds a second. The figures are sampled once a second
//!   for all dashboards together, and only while one is connected.

mod command;
mod sample;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use shardcast_engine::{Delivery, FormatId, Session};

use crate::auth::credentials::{Credential, CredentialError};
use crate::auth::{Principal, Role};
use crate::http::json as json_response;
use crate::protocol::telemetry::{self, TelemetryFormat};
use crate::protocol::{
    Answer, Auth, Call, Descriptor, Handler, HttpEndpoint, Opening, Params, PathTemplate, Refusal,
    Registry, WebSocketEndpoint,
};
use crate::App;
pub use command::{parse_command, Command, MAX_ERROR_LEN};
pub use sample::Sampler;
use sample::SAMPLE_EVERY;

/// How long a ticket opens the stream.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Tickets outstanding at once; the oldest goes when more are asked for.
const MAX_TICKETS: usize = 256;
/// Rounds of tail events a second (each the latest of every key).
pub const TAIL_RATE: u32 = 20;

const INDEX: &[u8] = include_bytes!("../../assets/index.html");
const APP_JS: &[u8] = include_bytes!("../../assets/app.js");
const APP_CSS: &[u8] = include_bytes!("../../assets/app.css");

/// Registers the page, its assets, the ticket endpoint and the stream.
pub fn register(registry: &mut Registry) -> anyhow::Result<()> {
    let assets = [
        ("/", Asset::Index),
        ("/dashboard/app.js", Asset::Script),
        ("/dashboard/app.css", Asset::Style),
    ];
    for (path, asset) in assets {
        registry.endpoint(Descriptor {
            protocol: "dashboard",
            path: PathTemplate::parse(path)?,
            auth: Auth::Public,
            role: Role::Admin,
            handler: Handler::Http(Method::GET, Arc::new(asset)),
        })?;
    }
    registry.endpoint(Descriptor {
        protocol: "dashboard",
        path: PathTemplate::parse("/api/v1/dashboard/ticket")?,
        auth: Auth::Credentials,
        role: Role::Admin,
        handler: Handler::Http(Method::POST, Arc::new(TicketEndpoint)),
    })?;
    let format = registry.format(Arc::new(TelemetryFormat))?;
    registry.endpoint(Descriptor {
        protocol: "dashboard",
        path: PathTemplate::parse("/api/v1/dashboard/ws")?,
        auth: Auth::Endpoint,
        role: Role::Admin,
        handler: Handler::WebSocket(Arc::new(StreamEndpoint { format })),
    })?;
    Ok(())
}

/// What all dashboards share. Shared by all shards.
#[derive(Debug, Default)]
pub struct Dashboard {
    tickets: Mutex<HashMap<String, (Arc<Principal>, Instant)>>,
    /// The latest `stats` frame: what sessions read, every shard tick.
    latest: Mutex<Latest>,
    /// The state between samples: taken only by the sampling task, so
    /// building a frame never holds up a session.
    sampler: Mutex<Sampler>,
    /// A sample is being taken (at most one at a time, engine-wide). Only a
    /// claim: the mutexes order the data, so `Relaxed` is enough.
    sampling: AtomicBool,
}

/// The latest `stats` frame, its number (one more per sample) and when it
/// was taken.
#[derive(Debug, Default)]
struct Latest {
    number: u64,
    frame: Option<Bytes>,
    at: Option<Instant>,
}

impl Latest {
    fn due(&self) -> bool {
        self.at.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY)
    }
}

/// Frees the sampling claim however the sampling task ends (a panic in it
/// must not freeze every dashboard).
struct Claim(Arc<App>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.dashboard.sampling.store(false, Ordering::Relaxed);
    }
}

impl Dashboard {
    /// A new ticket for `principal`.
    fn issue(&self, principal: Arc<Principal>) -> String {
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        let mut tickets = self.tickets.lock();
        tickets.retain(|_, (_, at)| now.duration_since(*at) < TICKET_TTL);
        if tickets.len() >= MAX_TICKETS {
            let oldest = tickets
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                tickets.remove(&oldest);
            }
        }
        tickets.insert(ticket.clone(), (principal, now));
        ticket
    }

    /// The principal of `ticket`, which is used up; `None` if it is
    /// unknown, used or expired.
    fn redeem(&self, ticket: &str) -> Option<Arc<Principal>> {
        let (principal, at) = self.tickets.lock().remove(ticket)?;
        (at.elapsed() < TICKET_TTL).then_some(principal)
    }

    /// The latest stats frame and its number, sampling first (in a task on
    /// the calling shard) when it is due and no sample is under way.
    fn latest(&self, app: &Arc<App>) -> Option<(u64, Bytes)> {
        let (due, latest) = {
            let latest = self.latest.lock();
            let frame = latest.frame.clone().map(|f| (latest.number, f));
            (latest.due(), frame)
        };
        if due && !self.sampling.swap(true, Ordering::Relaxed) {
            let claim = Claim(Arc::clone(app));
            tokio::task::spawn_local(async move {
                let app = &claim.0;
                // Another sample may have landed since `due` was read.
                if !app.dashboard.latest.lock().due() {
                    return;
                }
                let stats = app.engine.stats().await;
                let slowest = app.engine.slowest_clients().await;
                let frame = app.dashboard.sampler.lock().record(app, &stats, &slowest);
                let mut latest = app.dashboard.latest.lock();
                latest.number += 1;
                latest.frame = Some(frame);
                latest.at = Some(Instant::now());
            });
        }
        latest
    }
}

/// One of the page's files.
#[derive(Clone, Copy, Debug)]
enum Asset {
    Index,
    Script,
    Style,
}

impl HttpEndpoint for Asset {
    fn answer(&self, _call: Call) -> Answer {
        let (body, kind) = match self {
            Asset::Index => (INDEX, "text/html; charset=utf-8"),
            Asset::Script => (APP_JS, "text/javascript; charset=utf-8"),
            Asset::Style => (APP_CSS, "text/css; charset=utf-8"),
        };
        Box::pin(async move {
            let mut resp = Response::new(Bytes::from_static(body).into());
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            resp
        })
    }
}

/// `POST /api/v1/dashboard/ticket`.
struct TicketEndpoint;

impl HttpEndpoint for TicketEndpoint {
    fn answer(&self, call: Call) -> Answer {
        Box::pin(async move {
            // The route needs credentials, so there is a principal.
            let Some(principal) = call.principal else {
                return json_response(StatusCode::UNAUTHORIZED, &json!({"error": "UNAUTHORIZED"}));
            };
            let ticket = call.app.dashboard.issue(principal);
            json_response(
                StatusCode::OK,
                &json!({"ticket": ticket, "expiresInSeconds": TICKET_TTL.as_secs()}),
            )
        })
    }
}

/// `/api/v1/dashboard/ws`. Shared by all shards.
struct StreamEndpoint {
    format: FormatId,
}

impl WebSocketEndpoint for StreamEndpoint {
    fn delivery(&self, app: &App) -> Delivery {
        telemetry::delivery(app, self.format)
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        Box::new(session::DashboardSession::new(
            opening.app,
            opening.principal,
        ))
    }

    fn authenticate(
        &self,
        app: &App,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
        _params: &Params,
    ) -> Result<Arc<Principal>, Refusal> {
        let refuse = |why: &str| Refusal {
            code: shardcast_engine::CloseReason::Unauthorized.code(),
            reason: "INVALID_TICKET",
            why: why.into(),
            message: None,
        };
        match credential {
            Ok(Some(Credential::Token(ticket))) => app
                .dashboard
                .redeem(ticket)
                .ok_or_else(|| refuse("unknown, used or expired dashboard ticket")),
            Ok(Some(key @ Credential::ApiKey(_))) => app
                .config
                .auth
                .authorize(Some(key), Role::Admin)
                .map_err(|e| refuse(&e.to_string())),
            Ok(None) => Err(refuse(
                "no ticket: POST /api/v1/dashboard/ticket with an admin key first",
            )),
            Err(e) => Err(refuse(&e.to_string())),
        }
    }
}
