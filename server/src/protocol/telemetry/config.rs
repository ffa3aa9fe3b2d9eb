//! `[telemetry]`: the telemetry protocol's settings, raw and validated.
//!
//! The heartbeat interval is also the engine's (every format's heartbeat
//! goes out on the same tick); the timeout is this protocol's liveness.

use std::time::Duration;

use serde::Deserialize;
use shardcast_engine::RateLimit;

use crate::config::{invalid, ConfigError};

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawTelemetry {
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub heartbeat_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub heartbeat_timeout_seconds: Option<u64>,
    pub rate_limit_per_second: Option<u32>,
    pub replay_limit: Option<usize>,
    pub commands_per_second: Option<u32>,
}

/// The telemetry protocol's settings. Read-only.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Interval between server heartbeats (the engine's tick for every format).
    pub heartbeat_interval: Duration,
    /// Silence after which a telemetry connection is closed.
    pub heartbeat_timeout: Duration,
    /// Events per second per connection (0 = unlimited), as announced in `welcome`.
    pub rate_limit_per_second: u32,
    /// Most messages replayed per channel.
    pub replay_limit: usize,
    /// Client commands per second per connection.
    pub commands_per_second: u32,
    /// That limit as a token bucket (one-second burst).
    pub commands: RateLimit,
}

impl RawTelemetry {
    /// Checks every value; `history` and `max_keys` are the topics' bounds,
    /// which a replay limit larger than both could never fill.
    pub fn validate(
        &self,
        history: usize,
        max_keys: usize,
    ) -> Result<TelemetryConfig, ConfigError> {
        let heartbeat_interval = self.heartbeat_interval_seconds.unwrap_or(15);
        let heartbeat_timeout = self.heartbeat_timeout_seconds.unwrap_or(45);
        if heartbeat_interval == 0 {
            return Err(invalid(
                "telemetry.heartbeat_interval_seconds",
                "must be at least 1",
            ));
        }
        if heartbeat_timeout < heartbeat_interval {
            return Err(invalid(
                "telemetry.heartbeat_timeout_seconds",
                "must be at least telemetry.heartbeat_interval_seconds",
            ));
        }
        let replay_limit = self.replay_limit.unwrap_or(50);
        if replay_limit > history.max(max_keys) {
            return Err(invalid(
                "telemetry.replay_limit",
                "larger than both topics.history and topics.max_keys: nothing could fill it",
            ));
        }
        let commands_per_second = self.commands_per_second.unwrap_or(50);
        if commands_per_second == 0 {
            return Err(invalid(
                "telemetry.commands_per_second",
                "must be at least 1",
            ));
        }
        Ok(TelemetryConfig {
            heartbeat_interval: Duration::from_secs(heartbeat_interval),
            heartbeat_timeout: Duration::from_secs(heartbeat_timeout),
            rate_limit_per_second: self.rate_limit_per_second.unwrap_or(120),
            replay_limit,
            commands_per_second,
            commands: RateLimit::per_second(commands_per_second),
        })
    }
}
