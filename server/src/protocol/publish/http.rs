//! `POST /api/v1/publish`: one message or a batch, answered with each
//! message's sequence number or error.
//!
//! Runs on the shard that serves the HTTP connection. A body must be JSON
//! (415), fit `max_publish_body` (413) and arrive within
//! `request_timeout_seconds` (408); a batch holds at most
//! `max_publish_batch` messages (400). A body that is not JSON, or not the
//! shape of a publish, answers 400 (`INVALID_JSON`, `INVALID_MESSAGE`), and
//! so does a single message whose `data` breaks the contract, except for
//! its depth (422 `TOO_DEEP`). A single message refused otherwise answers
//! 403 (scope), 429 (creation rate, with `Retry-After`), 503 (shutting
//! down, with `Retry-After`) or 422. A batch answers 200 with a result per
//! message, unless the body as a whole is refused.

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::StatusCode;
use serde::Serialize;

use super::{parse_body, publish_item, submit_item, PublishBody, PublishResult, Submitted};
use crate::http::{error, json, read_json_body};
use crate::protocol::common::{ApiCode, ApiError};
use crate::protocol::{Answer, Call, HttpEndpoint};

/// `POST /api/v1/publish`. Shared by all shards.
pub(super) struct PublishOverHttp;

#[derive(Serialize)]
struct ErrorBody {
    error: ApiError,
}

impl HttpEndpoint for PublishOverHttp {
    fn answer(&self, call: Call) -> Answer {
        Box::pin(async move {
            // Configuration never opens this path, so there is a principal.
            let Some(principal) = call.principal else {
                return error(
                    StatusCode::UNAUTHORIZED,
                    ApiCode::Unauthorized,
                    "credentials required",
                );
            };
            let config = &call.app.config;
            let body = match read_json_body(
                call.req,
                "publish bodies",
                config.publish.max_body,
                config.request_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            match parse_body(&body, config.publish.max_batch) {
                Ok(PublishBody::Single(item)) => {
                    match publish_item(&call.shard, &principal, item).await {
                        result @ PublishResult::Ok { .. } => json(StatusCode::OK, &result),
                        PublishResult::Err { error: e, .. } => {
                            let status = match e.code {
                                ApiCode::InvalidJson | ApiCode::InvalidMessage => {
                                    StatusCode::BAD_REQUEST
                                }
                                ApiCode::Forbidden => StatusCode::FORBIDDEN,
                                ApiCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                                ApiCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
                    }
                }
                Ok(PublishBody::Batch(items)) => {
                    // Every message is handed over first, in order; then
                    // the answers are collected (one bus round trip, not one
                    // per message).
                    let submitted: Vec<Submitted> = items
                        .into_iter()
                        .map(|item| submit_item(&call.shard, &principal, item))
                        .collect();
                    let mut results: Vec<PublishResult> = Vec::with_capacity(submitted.len());
                    for item in submitted {
                        results.push(item.answer().await);
                    }
                    json(StatusCode::OK, &serde_json::json!({ "results": results }))
                }
                Err(e) => json(StatusCode::BAD_REQUEST, &ErrorBody { error: e }),
            }
        })
    }
}
