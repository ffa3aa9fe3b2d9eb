//! `[fastws]`: the Trading API (FastWS) protocol's settings, raw and validated.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{in_range, ConfigError};

/// `[fastws]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawFastws {
    pub require_api_key: Option<bool>,
    #[serde(
        default,
        deserialize_with = "crate::config::duration::fractional_seconds"
    )]
    pub heartbeat_interval_seconds: Option<f64>,
    #[serde(
        default,
        deserialize_with = "crate::config::duration::fractional_seconds"
    )]
    pub max_connection_lifespan_seconds: Option<f64>,
}

/// The FastWS protocol's settings. Read-only.
#[derive(Clone, Debug)]
pub struct FastwsConfig {
    /// Whether `/api/v1/ws` needs an API key (or token) with the subscribe role.
    pub require_api_key: bool,
    /// Longest a client may go without a valid operation.
    pub heartbeat_interval: Duration,
    /// Longest a connection lives.
    pub max_connection_lifespan: Duration,
}

impl FastwsConfig {
    /// The close reason of a timed-out connection, with the configured
    /// values written as FastWS writes them (`30.0`).
    pub fn timeout_reason(&self) -> String {
        format!(
            "Connection timed out. Heartbeat interval {:?}. Max connection lifespan {:?}",
            self.heartbeat_interval.as_secs_f64(),
            self.max_connection_lifespan.as_secs_f64()
        )
    }
}

impl RawFastws {
    /// Checks every value.
    pub fn validate(&self) -> Result<FastwsConfig, ConfigError> {
        let heartbeat = in_range(
            "fastws.heartbeat_interval_seconds",
            self.heartbeat_interval_seconds,
            30.0,
            0.5..=86_400.0,
            " seconds",
        )?;
        let lifespan = in_range(
            "fastws.max_connection_lifespan_seconds",
            self.max_connection_lifespan_seconds,
            3600.0,
            1.0..=31_536_000.0,
            " seconds",
        )?;
        Ok(FastwsConfig {
            require_api_key: self.require_api_key.unwrap_or(false),
            heartbeat_interval: Duration::from_secs_f64(heartbeat),
            max_connection_lifespan: Duration::from_secs_f64(lifespan),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_reason_names_the_configured_values_as_fastws_does() {
        let config = RawFastws::default().validate().unwrap();
        assert_eq!(
            config.timeout_reason(),
            "Connection timed out. Heartbeat interval 30.0. Max connection lifespan 3600.0"
        );
        let short = RawFastws {
            heartbeat_interval_seconds: Some(1.5),
            max_connection_lifespan_seconds: Some(4.0),
            ..RawFastws::default()
        };
        assert_eq!(
            short.validate().unwrap().timeout_reason(),
            "Connection timed out. Heartbeat interval 1.5. Max connection lifespan 4.0"
        );
        let bad = RawFastws {
            heartbeat_interval_seconds: Some(0.0),
            ..RawFastws::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("heartbeat"));
    }
}
