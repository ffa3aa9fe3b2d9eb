//! `[bondx]`: the BondX protocol's settings, raw and validated.
//!
//! Without a JWT secret the BondX endpoints refuse every connection (they
//! never accept unsigned tokens); the server says so once at start-up.

use std::time::Duration;

use serde::Deserialize;
use shardcast_engine::RateLimit;

use super::Class;
use crate::config::{in_range, invalid, ConfigError};

/// Shortest secret accepted: HS256 with fewer than 32 bytes of key is
/// guessable offline from one captured token.
const MIN_SECRET_LEN: usize = 32;

/// `[bondx]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawBondx {
    pub jwt_secret: Option<String>,
    pub jwt_secret_file: Option<String>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub jwt_leeway_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub heartbeat_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub connection_timeout_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub background_interval_seconds: Option<u64>,
    pub extra_scope: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
}

/// `[bondx.rate_limits]`: one table per endpoint class.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRateLimits {
    pub market: Option<RawRate>,
    pub auction: Option<RawRate>,
    pub trading: Option<RawRate>,
    pub risk: Option<RawRate>,
    pub mobile: Option<RawRate>,
}

/// One class's limit on client messages.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRate {
    pub burst: Option<u32>,
    pub per_minute: Option<u32>,
}

/// A limit on one connection's messages: a burst, then so many per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimit {
    /// Messages admitted at once.
    pub burst: u32,
    /// Messages per minute after the burst.
    pub per_minute: u32,
    /// The bucket.
    pub rate: RateLimit,
}

impl ClassLimit {
    fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst,
            per_minute,
            rate: RateLimit::new(per_minute, Duration::from_secs(60), burst),
        }
    }
}

/// The BondX protocol's settings. Read-only.
#[derive(Clone)]
pub struct BondxConfig {
    /// The HS256 secret tokens are signed with; `None`: every connection is refused.
    pub secret: Option<Vec<u8>>,
    /// Allowed clock skew on `exp` and `nbf`.
    pub leeway: Duration,
    /// Interval between `heartbeat` envelopes.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is closed.
    pub connection_timeout: Duration,
    /// How often a connection in background mode gets the latest state.
    pub background_interval: Duration,
    /// Limits on client messages, by endpoint class.
    pub rate_limits: [ClassLimit; 5],
    /// Topics every BondX user may subscribe to beyond BondX's own
    /// families (another protocol's topics), as scope templates (`{sub}`:
    /// the token's user).
    pub extra_scope: Vec<String>,
}

impl std::fmt::Debug for BondxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BondxConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("leeway", &self.leeway)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("connection_timeout", &self.connection_timeout)
            .field("background_interval", &self.background_interval)
            .field("rate_limits", &self.rate_limits)
            .field("extra_scope", &self.extra_scope)
            .finish()
    }
}

impl BondxConfig {
    /// The limit on messages of connections of `class`.
    pub fn limit(&self, class: Class) -> ClassLimit {
        self.rate_limits[class as usize]
    }
}

impl RawBondx {
    /// Checks every value.
    pub fn validate(&self) -> Result<BondxConfig, ConfigError> {
        let secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "bondx.jwt_secret",
                    "give jwt_secret or jwt_secret_file, not both",
                ))
            }
            (Some(secret), None) => Some(secret.trim().as_bytes().to_vec()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("bondx.jwt_secret_file", format!("cannot read {path}: {e}"))
                })?;
                Some(text.trim().as_bytes().to_vec())
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_LEN) {
            return Err(invalid(
                "bondx.jwt_secret",
                format!("at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        let leeway = self.jwt_leeway_seconds.unwrap_or(30);
        if leeway > 300 {
            return Err(invalid("bondx.jwt_leeway_seconds", "at most 300 seconds"));
        }
        let heartbeat = in_range(
            "bondx.heartbeat_interval_seconds",
            self.heartbeat_interval_seconds,
            30,
            1..=3600,
            " seconds",
        )?;
        let timeout = self.connection_timeout_seconds.unwrap_or(90);
        if timeout < heartbeat {
            return Err(invalid(
                "bondx.connection_timeout_seconds",
                "must be at least bondx.heartbeat_interval_seconds",
            ));
        }
        let extra_scope = self.extra_scope.clone().unwrap_or_default();
        if let Err(e) = crate::auth::Scope::for_subject(&extra_scope, "user") {
            return Err(invalid("bondx.extra_scope", e.to_string()));
        }
        let background = in_range(
            "bondx.background_interval_seconds",
            self.background_interval_seconds,
            30,
            1..=3600,
            " seconds",
        )?;
        let raw = &self.rate_limits;
        let mut rate_limits = [ClassLimit::new(1, 1); 5];
        for (class, given, field) in [
            (Class::Market, raw.market, "bondx.rate_limits.market"),
            (Class::Auction, raw.auction, "bondx.rate_limits.auction"),
            (Class::Trading, raw.trading, "bondx.rate_limits.trading"),
            (Class::Risk, raw.risk, "bondx.rate_limits.risk"),
            (Class::Mobile, raw.mobile, "bondx.rate_limits.mobile"),
        ] {
            let (burst, per_minute) = class.default_limit();
            let given = given.unwrap_or_default();
            let burst = given.burst.unwrap_or(burst);
            let per_minute = given.per_minute.unwrap_or(per_minute);
            if burst == 0 || per_minute == 0 {
                return Err(invalid(field, "burst and per_minute must be at least 1"));
            }
            rate_limits[class as usize] = ClassLimit::new(burst, per_minute);
        }
        Ok(BondxConfig {
            secret,
            leeway: Duration::from_secs(leeway),
            heartbeat_interval: Duration::from_secs(heartbeat),
            connection_timeout: Duration::from_secs(timeout),
            background_interval: Duration::from_secs(background),
            rate_limits,
            extra_scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documents() {
        let config = RawBondx::default().validate().unwrap();
        assert!(config.secret.is_none());
        assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(config.connection_timeout, Duration::from_secs(90));
        let limits: Vec<(u32, u32)> = config
            .rate_limits
            .iter()
            .map(|l| (l.burst, l.per_minute))
            .collect();
        assert_eq!(
            limits,
            [(1000, 100), (500, 50), (200, 20), (100, 10), (300, 30)]
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let short = RawBondx {
            jwt_secret: Some("short".into()),
            ..RawBondx::default()
        };
        let err = short.validate().unwrap_err().to_string();
        assert!(err.contains("bondx.jwt_secret"), "{err}");
        let zero = RawBondx {
            rate_limits: RawRateLimits {
                risk: Some(RawRate {
                    burst: Some(0),
                    per_minute: None,
                }),
                ..RawRateLimits::default()
            },
            ..RawBondx::default()
        };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("bondx.rate_limits.risk"), "{err}");
        let timeout = RawBondx {
            heartbeat_interval_seconds: Some(30),
            connection_timeout_seconds: Some(10),
            ..RawBondx::default()
        };
        let err = timeout.validate().unwrap_err().to_string();
        assert!(err.contains("connection_timeout"), "{err}");
    }
}
