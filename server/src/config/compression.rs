//! `[compression]`: permessage-deflate (RFC 7692) on WebSocket connections,
//! raw and typed. Read at start-up; the typed settings are read-only after.
//!
//! `enabled` decides whether an offer is answered (`extensions.rs` does the
//! negotiating); `min_size` goes to the engine, which compresses each
//! message at most once per wire format and frame kind for every
//! connection that negotiated it.

use serde::Deserialize;
use toml::Value;

use super::{in_range, ConfigError};

/// Payload bytes below which a message goes plain, by default: below a few
/// hundred bytes deflate's block overhead eats most of what it saves on
/// JSON events, and the CPU is spent for nothing.
pub const MIN_SIZE: usize = 256;

/// The largest `min_size` accepted (16 MiB, more than any frame): to never
/// compress, set `enabled = false`.
const MAX_MIN_SIZE: usize = 16 << 20;

/// `[compression]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Its keys are documented in docs/configuration.md.
pub struct RawCompression {
    pub enabled: Option<bool>,
    pub min_size: Option<usize>,
}

/// `[compression]`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Whether a client's permessage-deflate offer is accepted.
    pub enabled: bool,
    /// Payload bytes from which events are sent compressed.
    pub min_size: usize,
}

impl RawCompression {
    /// The typed settings, or an error naming the key.
    pub fn validate(&self) -> Result<CompressionConfig, ConfigError> {
        Ok(CompressionConfig {
            enabled: self.enabled.unwrap_or(true),
            min_size: in_range(
                "compression.min_size",
                self.min_size,
                MIN_SIZE,
                0..=MAX_MIN_SIZE,
                " bytes",
            )?,
        })
    }
}

impl CompressionConfig {
    /// The section as `check-config` shows it.
    pub fn shown(&self) -> Value {
        let mut table = toml::Table::new();
        table.insert("enabled".into(), self.enabled.into());
        table.insert("min_size".into(), Value::Integer(self.min_size as i64));
        Value::Table(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let checked = RawCompression::default().validate().unwrap();
        assert_eq!(
            checked,
            CompressionConfig {
                enabled: true,
                min_size: 256
            }
        );
        let raw = |min_size| RawCompression {
            enabled: Some(false),
            min_size: Some(min_size),
        };
        assert_eq!(raw(0).validate().unwrap().min_size, 0);
        assert!(!raw(0).validate().unwrap().enabled);
        let error = raw(MAX_MIN_SIZE + 1).validate().unwrap_err().to_string();
        assert!(error.contains("compression.min_size"), "{error}");
    }
}
