//! `[metrics]`: how much of the server `/metrics` describes.
//!
//! Validated once at start-up; read-only afterwards.

use serde::Deserialize;

use crate::config::{in_range, ConfigError};

/// Most channels given series of their own when the setting is absent.
pub const DEFAULT_MAX_CHANNEL_LABELS: usize = 100;

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Each field is its key; docs/configuration.md describes them.
pub struct RawMetrics {
    pub max_channel_labels: Option<usize>,
}

/// `[metrics]`, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Most channels given series of their own in each per-channel family
    /// (the rest share `channel="other"`).
    pub max_channel_labels: usize,
}

impl RawMetrics {
    /// Checks the values and applies the defaults.
    pub fn validate(&self) -> Result<MetricsConfig, ConfigError> {
        let max_channel_labels = in_range(
            "metrics.max_channel_labels",
            self.max_channel_labels,
            DEFAULT_MAX_CHANNEL_LABELS,
            0..=10_000,
            " channels",
        )?;
        Ok(MetricsConfig { max_channel_labels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_defaults_to_100_and_is_bounded() {
        let config = RawMetrics::default().validate().unwrap();
        assert_eq!(config.max_channel_labels, 100);
        let none = RawMetrics {
            max_channel_labels: Some(0),
        };
        assert_eq!(none.validate().unwrap().max_channel_labels, 0);
        let huge = RawMetrics {
            max_channel_labels: Some(10_001),
        };
        let err = huge.validate().unwrap_err().to_string();
        assert!(err.contains("metrics.max_channel_labels"), "{err}");
    }
}
