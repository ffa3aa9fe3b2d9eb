//! `[simple]` and `[simple.feeds]`: the simple trading protocol's settings,
//! raw and validated. The `WEBSOCKET_*` environment variables of that
//! protocol's deployments map onto these keys (`cli.rs`).

use std::time::Duration;

use serde::Deserialize;
use shardcast_engine::{validate_name, RateLimit};

use super::message::Channel;
use crate::config::{in_range, invalid, ConfigError};

/// `[simple]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawSimple {
    pub enabled: Option<bool>,
    pub require_api_key: Option<bool>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub ping_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub price_update_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::duration::whole_seconds")]
    pub portfolio_update_interval_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_symbols: Option<usize>,
    pub stale_after_intervals: Option<u32>,
    pub messages_per_second: Option<u32>,
    #[serde(default)]
    pub feeds: RawFeeds,
}

/// `[simple.feeds]` as written: the engine topic feeding each channel.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)]
pub struct RawFeeds {
    pub price_updates: Option<String>,
    pub signals: Option<String>,
    pub trades: Option<String>,
    pub portfolio: Option<String>,
}

/// The engine topic feeding each channel. Read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feeds {
    /// `price_updates`: latest price per symbol, conflated.
    pub price_updates: String,
    /// `signals`: every message, as it happens.
    pub signals: String,
    /// `trades`: every message, as it happens.
    pub trades: String,
    /// `portfolio`: latest position per symbol, conflated.
    pub portfolio: String,
}

impl Feeds {
    /// The topic feeding `channel`.
    pub fn get(&self, channel: Channel) -> &str {
        match channel {
            Channel::PriceUpdates => &self.price_updates,
            Channel::Signals => &self.signals,
            Channel::Trades => &self.trades,
            Channel::Portfolio => &self.portfolio,
        }
    }
}

/// The simple protocol's settings. Read-only.
#[derive(Clone, Debug)]
pub struct SimpleConfig {
    /// Whether `/ws` is served (otherwise it answers 404).
    pub enabled: bool,
    /// Whether `/ws` needs an API key (or token) with the subscribe role.
    pub require_api_key: bool,
    /// A client silent this long is sent a WebSocket ping; one silent for
    /// three of these is closed.
    pub ping_interval: Duration,
    /// How often conflated `price_update` frames go out.
    pub price_update_interval: Duration,
    /// How often conflated `portfolio_update` frames go out.
    pub portfolio_update_interval: Duration,
    /// Most `/ws` connections at once (within the server's own limit).
    pub max_connections: usize,
    /// Most symbols in one channel's subscription.
    pub max_symbols: usize,
    /// A stream whose feed has been silent for this many of its intervals
    /// is reported unhealthy (signals and trades: of the price interval).
    pub stale_after_intervals: u32,
    /// Client messages a connection may send per second (twice that at once).
    pub messages_per_second: u32,
    /// That limit as a token bucket.
    pub message_rate: RateLimit,
    /// The topic feeding each channel.
    pub feeds: Feeds,
}

impl RawSimple {
    /// Checks every value; `max_connections` defaults to the server's.
    pub fn validate(&self, server_max_connections: usize) -> Result<SimpleConfig, ConfigError> {
        let seconds = |field: &'static str, value: Option<u64>, default: u64| {
            in_range(field, value, default, 1..=86_400, " seconds").map(Duration::from_secs)
        };
        let max_connections = self.max_connections.unwrap_or(server_max_connections);
        if max_connections == 0 {
            return Err(invalid(
                "simple.max_connections",
                "at least 1 (turn the endpoint off with enabled = false)",
            ));
        }
        let max_symbols = in_range("simple.max_symbols", self.max_symbols, 1000, 1..=10_000, "")?;
        let stale_after_intervals = in_range(
            "simple.stale_after_intervals",
            self.stale_after_intervals,
            3,
            1..=1000,
            "",
        )?;
        let messages_per_second = in_range(
            "simple.messages_per_second",
            self.messages_per_second,
            20,
            1..=10_000,
            "",
        )?;
        let feed = |field: &'static str, value: &Option<String>, default: &str| {
            let name = value.clone().unwrap_or_else(|| default.into());
            validate_name(&name).map_err(|e| invalid(field, e.to_string()))?;
            Ok::<_, ConfigError>(name)
        };
        let raw = &self.feeds;
        let signals = feed("simple.feeds.signals", &raw.signals, "signals")?;
        let trades = feed("simple.feeds.trades", &raw.trades, "trades")?;
        if signals == trades {
            return Err(invalid(
                "simple.feeds.trades",
                "must differ from simple.feeds.signals: the topic decides whether a message is a signal or a trade",
            ));
        }
        Ok(SimpleConfig {
            enabled: self.enabled.unwrap_or(true),
            require_api_key: self.require_api_key.unwrap_or(false),
            ping_interval: seconds(
                "simple.ping_interval_seconds",
                self.ping_interval_seconds,
                30,
            )?,
            price_update_interval: seconds(
                "simple.price_update_interval_seconds",
                self.price_update_interval_seconds,
                3,
            )?,
            portfolio_update_interval: seconds(
                "simple.portfolio_update_interval_seconds",
                self.portfolio_update_interval_seconds,
                5,
            )?,
            max_connections,
            max_symbols,
            stale_after_intervals,
            messages_per_second,
            message_rate: RateLimit::new(
                messages_per_second,
                Duration::from_secs(1),
                messages_per_second.saturating_mul(2),
            ),
            feeds: Feeds {
                price_updates: feed(
                    "simple.feeds.price_updates",
                    &raw.price_updates,
                    "market-data",
                )?,
                signals,
                trades,
                portfolio: feed("simple.feeds.portfolio", &raw.portfolio, "positions")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference_deployment_and_the_built_in_feed() {
        let config = RawSimple::default().validate(500).unwrap();
        assert!(config.enabled && !config.require_api_key);
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert_eq!(config.price_update_interval, Duration::from_secs(3));
        assert_eq!(config.portfolio_update_interval, Duration::from_secs(5));
        assert_eq!(config.max_connections, 500);
        assert_eq!(config.feeds.price_updates, "market-data");
        assert_eq!(config.feeds.portfolio, "positions");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                RawSimple {
                    price_update_interval_seconds: Some(0),
                    ..RawSimple::default()
                },
                "simple.price_update_interval_seconds",
            ),
            (
                RawSimple {
                    max_connections: Some(0),
                    ..RawSimple::default()
                },
                "simple.max_connections",
            ),
            (
                RawSimple {
                    feeds: RawFeeds {
                        trades: Some("has space".into()),
                        ..RawFeeds::default()
                    },
                    ..RawSimple::default()
                },
                "simple.feeds.trades",
            ),
        ];
        for (raw, field) in cases {
            let err = raw.validate(10).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
