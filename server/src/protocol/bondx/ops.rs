//! `GET /api/v1/ws/health` and `GET /api/v1/ws/topics`, as BondX
//! operators call them.
//!
//! Health is served without credentials by default (it says nothing a
//! load balancer should not know); the topic list names users' topics, so
//! it needs the admin role unless `open_paths` lists it.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::auth::Role;
use crate::http::json as json_response;
use crate::protocol::Registry;
use crate::protocol::{Answer, Auth, Call, Descriptor, Handler, HttpEndpoint, PathTemplate};

/// Most topics `/api/v1/ws/topics` lists (the busiest first).
const MAX_LISTED: usize = 1000;

/// Registers both endpoints.
pub fn register(registry: &mut Registry) -> anyhow::Result<()> {
    for (path, op) in [
        ("/api/v1/ws/health", Ops::Health),
        ("/api/v1/ws/topics", Ops::Topics),
    ] {
        registry.endpoint(Descriptor {
            protocol: "bondx",
            path: PathTemplate::parse(path)?,
            auth: Auth::Credentials,
            role: Role::Admin,
            handler: Handler::Http(Method::GET, Arc::new(op)),
        })?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Ops {
    Health,
    Topics,
}

impl HttpEndpoint for Ops {
    fn answer(&self, call: Call) -> Answer {
        let op = *self;
        Box::pin(async move {
            let app = &call.app;
            let engine = &app.engine;
            match op {
                Ops::Health => {
                    let shutting_down = engine.is_shutting_down();
                    let status = if shutting_down {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    let (kind, broker) = app.broker_status();
                    let word = match (shutting_down, broker) {
                        (true, _) => "shutting_down",
                        (false, "ok") => "healthy",
                        (false, _) => "degraded",
                    };
                    let body = json!({
                        "status": word,
                        "connections": engine.connections(),
                        "topics": engine.topics().len(),
                        "broker": {"type": kind, "status": broker},
                        "uptime_seconds": app.started.elapsed().as_secs(),
                    });
                    json_response(status, &body)
                }
                Ops::Topics => {
                    let mut topics: Vec<_> =
                        engine.topics().all().iter().map(|t| t.stats()).collect();
                    topics.sort_by(|a, b| {
                        b.subscribers
                            .cmp(&a.subscribers)
                            .then_with(|| a.name.cmp(&b.name))
                    });
                    let total = topics.len();
                    let listed: Vec<_> = topics
                        .iter()
                        .take(MAX_LISTED)
                        .map(|t| {
                            json!({
                                "topic": &*t.name,
                                "subscribers": t.subscribers,
                                "seq": t.published,
                                "history": t.history,
                                "snapshot_keys": t.snapshot_keys,
                            })
                        })
                        .collect();
                    let body = json!({
                        "count": total,
                        "listed": listed.len(),
                        "topics": listed,
                    });
                    json_response(StatusCode::OK, &body)
                }
            }
        })
    }
}
