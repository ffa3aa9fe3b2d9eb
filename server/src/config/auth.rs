//! `[[api_keys]]` and `[jwt]`: keys with their roles, scopes and quotas;
//! token verification keys. Secrets are checked for a minimum length and
//! never echoed in errors.

use std::net::SocketAddr;
use std::time::Duration;

use shardcast_engine::QuotaLimits;

use super::validate::{burst, rate};
use super::{invalid, ConfigError, RawApiKey, RawJwt, DEV_API_KEY};
use crate::auth::token::{TokenKeys, TokenVerifier};
use crate::auth::{default_key_name, KeySpec, Role, Roles, Scope};

/// Shortest API key or HS256 secret accepted.
const MIN_SECRET_LEN: usize = 8;

/// Shortest HS256 secret accepted: 32 bytes, the hash's own size.
const MIN_HS256_SECRET_LEN: usize = 32;

/// The configured keys and, in development mode, the key made up for it.
pub(super) struct Keys {
    pub(super) keys: Vec<KeySpec>,
    pub(super) dev_key: Option<String>,
}

impl Keys {
    pub(super) fn from_raw(
        raw: Option<Vec<RawApiKey>>,
        listen: SocketAddr,
        quota: QuotaLimits,
    ) -> Result<Self, ConfigError> {
        let list = match raw {
            Some(list) if !list.is_empty() => list,
            _ => {
                let key = if listen.ip().is_loopback() {
                    DEV_API_KEY.to_owned()
                } else {
                    // Reachable from other machines: never a well-known key.
                    format!("dev-{}", uuid::Uuid::new_v4().simple())
                };
                let dev = KeySpec {
                    key: key.clone(),
                    name: "dev".into(),
                    roles: Roles::ALL,
                    subscribe: Scope::All,
                    publish: Scope::All,
                    quota,
                };
                return Ok(Self {
                    keys: vec![dev],
                    dev_key: Some(key),
                });
            }
        };
        let mut keys: Vec<KeySpec> = Vec::with_capacity(list.len());
        for raw in list {
            let roles = parse_roles(&raw.roles).map_err(|m| invalid("api_keys.roles", m))?;
            if raw.key.len() < MIN_SECRET_LEN {
                return Err(invalid(
                    "api_keys.key",
                    format!("keys must be at least {MIN_SECRET_LEN} characters"),
                ));
            }
            if !raw.key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "api_keys.key",
                    "keys are visible ASCII characters without spaces (they travel in a header)",
                ));
            }
            let name = match raw.name {
                Some(name) if crate::request::valid_client_id(&name) => name,
                Some(_) => {
                    return Err(invalid(
                        "api_keys.name",
                        "1-128 characters from A-Z a-z 0-9 - _ . : @",
                    ))
                }
                None => default_key_name(&raw.key),
            };
            let scope = |field: &'static str, list: Option<Vec<String>>| match list {
                None => Ok(Scope::All),
                Some(list) => Scope::parse(&list).map_err(|e| invalid(field, e.to_string())),
            };
            let spec = KeySpec {
                subscribe: scope("api_keys.subscribe", raw.subscribe)?,
                publish: scope("api_keys.publish", raw.publish)?,
                quota: QuotaLimits {
                    rate_per_second: rate(
                        "api_keys.topic_creation_rate",
                        raw.topic_creation_rate,
                        quota.rate_per_second,
                    )?,
                    burst: burst(
                        "api_keys.topic_creation_burst",
                        raw.topic_creation_burst,
                        quota.burst,
                    )?,
                    max_live: quota.max_live,
                },
                key: raw.key,
                name,
                roles,
            };
            if keys.iter().any(|k| k.name == spec.name) {
                return Err(invalid(
                    "api_keys.name",
                    format!("{:?} names two keys", spec.name),
                ));
            }
            // A later entry for the same key replaces the earlier one.
            keys.retain(|k| k.key != spec.key);
            keys.push(spec);
        }
        Ok(Self {
            keys,
            dev_key: None,
        })
    }
}

pub(super) fn token_verifier(raw: RawJwt) -> Result<TokenVerifier, ConfigError> {
    let secret = match (raw.hs256_secret, raw.hs256_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "jwt.hs256_secret",
                "give hs256_secret or hs256_secret_file, not both",
            ))
        }
        (Some(secret), None) => Some(secret.into_bytes()),
        (None, Some(path)) => Some(
            std::fs::read(&path)
                .map_err(|e| invalid("jwt.hs256_secret_file", format!("{path}: {e}")))?
                .trim_ascii()
                .to_vec(),
        ),
        (None, None) => None,
    };
    if secret
        .as_ref()
        .is_some_and(|s| s.len() < MIN_HS256_SECRET_LEN)
    {
        return Err(invalid(
            "jwt.hs256_secret",
            format!("at least {MIN_HS256_SECRET_LEN} bytes"),
        ));
    }
    let read_all = |field: &'static str, paths: Option<Vec<String>>| {
        paths
            .unwrap_or_default()
            .into_iter()
            .map(|path| std::fs::read(&path).map_err(|e| invalid(field, format!("{path}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
    };
    let keys = TokenKeys {
        hs256_secret: secret,
        rs256_public_keys: read_all("jwt.rs256_public_keys", raw.rs256_public_keys)?,
        es256_public_keys: read_all("jwt.es256_public_keys", raw.es256_public_keys)?,
    };
    let leeway = raw.leeway_seconds.unwrap_or(0);
    if leeway > 3600 {
        return Err(invalid("jwt.leeway_seconds", "at most 3600 seconds"));
    }
    let default_channels = raw.default_channels.unwrap_or_default();
    // Checked here with a stand-in subject, so a bad template fails at boot.
    Scope::for_subject(&default_channels, "subject")
        .map_err(|e| invalid("jwt.default_channels", e.to_string()))?;
    TokenVerifier::new(
        &keys,
        raw.issuer.as_deref(),
        raw.audience.as_deref(),
        Duration::from_secs(leeway),
        default_channels,
    )
    .map_err(|m| {
        invalid(
            "jwt",
            format!("{m}: set hs256_secret, rs256_public_keys or es256_public_keys"),
        )
    })
}

/// Parses role names: `subscribe`, `publish`, `admin`.
pub fn parse_roles<S: AsRef<str>>(names: &[S]) -> Result<Roles, String> {
    let mut roles = Roles::NONE;
    for name in names {
        roles = roles.with(match name.as_ref().trim() {
            "subscribe" => Role::Subscribe,
            "publish" => Role::Publish,
            "admin" => Role::Admin,
            other => {
                return Err(format!(
                    "unknown role {other:?}: use subscribe, publish or admin"
                ))
            }
        });
    }
    if roles == Roles::NONE {
        return Err("a key needs at least one role".into());
    }
    Ok(roles)
}

/// Parses `KEY:role+role` as given to `--api-key` and `SHARDCAST_API_KEYS`.
pub fn parse_key_spec(spec: &str) -> Result<RawApiKey, String> {
    let (key, roles) = spec
        .rsplit_once(':')
        .ok_or_else(|| "expected KEY:role+role, e.g. s3cret-key:subscribe+publish".to_owned())?;
    Ok(RawApiKey {
        key: key.to_owned(),
        roles: roles.split('+').map(str::to_owned).collect(),
        ..RawApiKey::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_parse() {
        let key = parse_key_spec("abc:def:subscribe+admin").unwrap();
        assert_eq!(key.key, "abc:def");
        assert_eq!(
            parse_roles(&key.roles).unwrap(),
            Roles::NONE.with(Role::Subscribe).with(Role::Admin)
        );
        assert!(parse_key_spec("nocolon").is_err());
        // The error does not echo the secret.
        assert!(!parse_key_spec("hunter2-key")
            .unwrap_err()
            .contains("hunter2"));
    }

    #[test]
    fn keys_get_scopes_names_and_quotas() {
        let raw = vec![
            RawApiKey {
                key: "desk-ui-7f3c9a".into(),
                roles: vec!["subscribe".into()],
                subscribe: Some(vec!["market-data".into(), "prices.*".into()]),
                ..RawApiKey::default()
            },
            RawApiKey {
                key: "pricer-1b44e0".into(),
                name: Some("pricer".into()),
                roles: vec!["publish".into()],
                topic_creation_burst: Some(20_000),
                ..RawApiKey::default()
            },
        ];
        let quota = QuotaLimits {
            rate_per_second: 50.0,
            burst: 500,
            max_live: 1000,
        };
        let keys = Keys::from_raw(Some(raw), "127.0.0.1:1".parse().unwrap(), quota)
            .ok()
            .unwrap();
        assert!(keys.dev_key.is_none());
        let desk = &keys.keys[0];
        assert!(desk.subscribe.allows("prices.X") && !desk.subscribe.allows("positions"));
        assert_eq!(desk.publish, Scope::All);
        assert_eq!(desk.quota, quota);
        assert_eq!(keys.keys[1].name, "pricer");
        assert_eq!(keys.keys[1].quota.burst, 20_000);
    }
}
