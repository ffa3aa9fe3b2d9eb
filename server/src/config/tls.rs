//! `[tls]` and `listen_plain`: the raw settings and their validation.
//!
//! Validation loads the certificate and key once (see `crate::tls`), so a
//! missing, unreadable, expired or mismatched file stops the server at
//! start (and `check-config`) with an error naming the file, not at the
//! first handshake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, in_range, invalid, ConfigError, ServerConfig};
use crate::tls::{Tls, TlsSettings};

/// Handshake time allowed by default: a client on a slow mobile link
/// completes in a few round trips, well within it.
const HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;

/// Handshakes a shard starts per second by default. A TLS 1.3 handshake
/// with an ECDSA P-256 certificate costs the server about 0.75 ms of CPU on
/// the development VM (docs/benchmarks.md), so a flood takes at most about
/// 40% of a shard, leaving the rest to deliveries, while a reconnect storm
/// of 2000 clients per shard is through in 4 s.
const HANDSHAKES_PER_SECOND: u32 = 500;

/// `[tls]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[allow(missing_docs)] // Its keys are documented in docs/configuration.md.
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(default, deserialize_with = "duration::whole_seconds")]
    pub handshake_timeout_seconds: Option<u64>,
    pub handshakes_per_second: Option<u32>,
}

impl RawTls {
    /// The TLS settings, or `None` for a plain server; the files are loaded
    /// once to prove they can be.
    pub(super) fn validate(
        &self,
        listen_plain: Option<&str>,
    ) -> Result<(Option<TlsSettings>, Option<SocketAddr>), ConfigError> {
        let settings = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "tls.key",
                    "tls.cert is set: set tls.key to its private key's PEM file too",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls.cert",
                    "tls.key is set: set tls.cert to the certificate's PEM file too",
                ))
            }
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
                handshake_timeout: Duration::from_secs(in_range(
                    "tls.handshake_timeout_seconds",
                    self.handshake_timeout_seconds,
                    HANDSHAKE_TIMEOUT_SECONDS,
                    1..=300,
                    " seconds",
                )?),
                handshakes_per_second: in_range(
                    "tls.handshakes_per_second",
                    self.handshakes_per_second,
                    HANDSHAKES_PER_SECOND,
                    1..=1_000_000,
                    " per shard",
                )?,
            }),
        };
        if let Some(settings) = &settings {
            Tls::load(settings.clone(), 1).map_err(|e| {
                let field = match e {
                    crate::tls::TlsError::Read { ref path, .. }
                    | crate::tls::TlsError::Pem { ref path, .. }
                        if std::path::Path::new(path) == settings.key =>
                    {
                        "tls.key"
                    }
                    _ => "tls.cert",
                };
                invalid(field, e.to_string())
            })?;
        }
        let listen_plain = match listen_plain {
            None => None,
            Some(_) if settings.is_none() => {
                return Err(invalid(
                    "listen_plain",
                    "a second, plain listener for health checks is for a TLS server: set tls.cert and tls.key, or leave listen_plain out",
                ))
            }
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "listen_plain",
                    format!("{text:?} is not an address like 127.0.0.1:8080"),
                )
            })?),
        };
        Ok((settings, listen_plain))
    }
}

/// `listen_plain` and `[tls]` as `check-config` lists them: only when set.
pub(super) fn show(config: &ServerConfig, top: &mut toml::Table) {
    if let Some(address) = config.listen_plain {
        top.insert("listen_plain".into(), address.to_string().into());
    }
    if let Some(tls) = &config.tls {
        let mut section = toml::Table::new();
        section.insert("cert".into(), tls.cert.display().to_string().into());
        section.insert("key".into(), tls.key.display().to_string().into());
        let timeout = i64::try_from(tls.handshake_timeout.as_secs()).unwrap_or(i64::MAX);
        section.insert("handshake_timeout_seconds".into(), timeout.into());
        let rate = i64::from(tls.handshakes_per_second);
        section.insert("handshakes_per_second".into(), rate.into());
        top.insert("tls".into(), section.into());
    }
}
