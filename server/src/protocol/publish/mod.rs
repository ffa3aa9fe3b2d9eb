//! The publish API: `POST /api/v1/publish` (`http.rs`) and the
//! `/ws/publish` WebSocket (`session.rs`), over one contract (`parse.rs`,
//! reading requests with `members.rs`): the same message gets the same
//! verdict, with the same error code, on every path.
//!
//! Every publish is checked against the principal's publish scope, and any
//! topic it creates is charged to the principal's quota. Its limits are the
//! top-level keys `max_publish_body` and `max_publish_batch`
//! ([`PublishConfig`]).

mod http;
mod members;
mod parse;
mod session;

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde::Serialize;
use shardcast_engine::{
    Delivery, FormatId, LocalShard, PublishError, Published, QuotaError, Session, TopicError,
    MAX_NAME_LEN,
};

use super::{Auth, Descriptor, Handler, Opening, PathTemplate, Registry, WebSocketEndpoint};
use crate::auth::{Principal, Role};
use crate::config::ServerConfig;
use crate::input::truncate;
use crate::protocol::common::{ApiCode, ApiError};
use crate::App;
pub use parse::{parse_body, parse_frame, Kind, PublishBody, PublishCommand, PublishItem};
pub use session::PublishSession;

/// The publish API's limits. Read-only.
#[derive(Clone, Copy, Debug)]
pub struct PublishConfig {
    /// Largest HTTP publish body, in bytes.
    pub max_body: usize,
    /// Most messages in one batch publish.
    pub max_batch: usize,
}

/// Registers `POST /api/v1/publish` and `/ws/publish`.
///
/// `/ws/publish` speaks the telemetry protocol's JSON vocabulary (its
/// errors, acks and heartbeats), so its connections are attached with the
/// telemetry format: they receive no events, and its heartbeat is theirs.
pub fn register(registry: &mut Registry, _config: &ServerConfig) -> anyhow::Result<()> {
    registry.endpoint(Descriptor {
        protocol: "publish",
        path: PathTemplate::parse("/api/v1/publish")?,
        auth: Auth::Credentials,
        role: Role::Publish,
        handler: Handler::Http(Method::POST, Arc::new(http::PublishOverHttp)),
    })?;
    let format = registry.format(Arc::new(super::telemetry::TelemetryFormat))?;
    registry.endpoint(Descriptor {
        protocol: "publish",
        path: PathTemplate::parse("/ws/publish")?,
        auth: Auth::Credentials,
        role: Role::Publish,
        handler: Handler::WebSocket(Arc::new(PublishOverWebSocket { format })),
    })?;
    Ok(())
}

/// `/ws/publish`. Shared by all shards.
struct PublishOverWebSocket {
    format: FormatId,
}

impl WebSocketEndpoint for PublishOverWebSocket {
    fn delivery(&self, app: &App) -> Delivery {
        app.config.engine.delivery(self.format)
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        Box::new(PublishSession::new(opening.app, opening.principal))
    }
}

/// Publishes one parsed message from `shard` on behalf of `principal`;
/// with an external broker the answer waits for the bus.
pub async fn publish_item(
    shard: &LocalShard,
    principal: &Principal,
    item: PublishItem<'_>,
) -> PublishResult {
    submit_item(shard, principal, item).answer().await
}

/// Hands one parsed message to the broker without waiting for its answer:
/// a batch submits every message first, in order, then waits for them all.
pub fn submit_item(shard: &LocalShard, principal: &Principal, item: PublishItem<'_>) -> Submitted {
    let outcome = item.admit(principal).and_then(|publication| {
        shard
            .publish(&item.channel, publication, Some(&principal.quota))
            .map_err(|e| publish_error(&e))
    });
    Submitted {
        channel: item.channel.into_owned(),
        outcome,
    }
}

/// A message handed to the broker, its answer to come.
#[derive(Debug)]
pub struct Submitted {
    channel: String,
    outcome: Result<Published, ApiError>,
}

impl Submitted {
    /// The message's answer, once the broker has one.
    pub async fn answer(self) -> PublishResult {
        let result = match self.outcome {
            Ok(published) => published.seq().await.map_err(|e| publish_error(&e)),
            Err(error) => Err(error),
        };
        match result {
            Ok(seq) => PublishResult::Ok {
                channel: self.channel,
                seq,
            },
            Err(error) => PublishResult::Err {
                channel: truncate(&self.channel, MAX_NAME_LEN).to_owned(),
                error,
            },
        }
    }
}

/// The answer for one published message.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum PublishResult {
    /// Accepted with its sequence number.
    Ok {
        /// The channel.
        channel: String,
        /// Its sequence number in the channel.
        seq: u64,
    },
    /// Refused.
    Err {
        /// The channel as sent.
        channel: String,
        /// Why.
        error: ApiError,
    },
}

/// Maps a publish failure to its error code, the same over HTTP and
/// `/ws/publish`.
pub fn publish_error(e: &PublishError) -> ApiError {
    let code = match e {
        PublishError::Topic(TopicError::Undeclared(_)) => ApiCode::UnknownChannel,
        PublishError::Topic(TopicError::InvalidName(_)) => ApiCode::InvalidChannel,
        PublishError::Topic(
            TopicError::TooManyTopics { .. } | TopicError::TooManyUnclaimed { .. },
        ) => ApiCode::LimitReached,
        PublishError::Topic(TopicError::Quota {
            quota: QuotaError::Rate { .. },
            ..
        }) => ApiCode::RateLimited,
        PublishError::Topic(TopicError::Quota {
            quota: QuotaError::Live { .. },
            ..
        }) => ApiCode::LimitReached,
        PublishError::InvalidKey => ApiCode::InvalidKey,
        PublishError::TooLarge { .. } => ApiCode::TooLarge,
        PublishError::Retired
        | PublishError::Unavailable(_)
        | PublishError::Overloaded { .. }
        | PublishError::ShuttingDown => ApiCode::Unavailable,
    };
    let mut error = ApiError::new(code, e.to_string());
    match e {
        // Long enough for a restart, or for a balancer to move the client.
        PublishError::ShuttingDown => error.retry_after = Some(Duration::from_secs(5)),
        // The bus may be back by then; the broker reconnects on its own.
        PublishError::Unavailable(_) => error.retry_after = Some(Duration::from_secs(1)),
        PublishError::Overloaded { retry_after, .. } => error.retry_after = Some(*retry_after),
        _ => {}
    }
    if let PublishError::Topic(TopicError::Quota {
        quota: QuotaError::Rate { retry_after, .. },
        ..
    }) = e
    {
        error.retry_after = Some(*retry_after);
    }
    error
}
