//! Per-user tokens: JWTs signed by the user's backend (HS256 with a shared
//! secret, RS256 or ES256 with configured public keys), verified with the
//! `jsonwebtoken` crate.
//!
//! Read-only after start-up; shared by all shards. A token's claims:
//! - `sub` (required): the user; the principal is `token:<sub>`;
//! - `exp` (required): expiry, seconds since the epoch; a connection opened
//!   with the token is closed with 4440 when it passes, unless the client
//!   sent a newer token first;
//! - `channels` (optional): channel patterns the token grants, with `{sub}`
//!   standing for the subject (e.g. `positions.{sub}`); absent, the
//!   configured `default_channels` apply;
//! - `roles` (optional): `subscribe` and/or `publish` (default `subscribe`);
//!   tokens never grant `admin`.
//!
//! Bounds: a token is at most [`MAX_TOKEN_LEN`] bytes and at most
//! [`MAX_CLAIM_ITEMS`] channels or roles; only the configured algorithms
//! are accepted, each only with its own kind of key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::scope::{Scope, ScopeError};
use super::{Role, Roles};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Most entries in a token's `channels` or `roles`.
pub const MAX_CLAIM_ITEMS: usize = 256;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not a JWT, or its header or claims are not the expected JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed with an algorithm this server does not accept.
    #[error("token algorithm not accepted by this server")]
    Algorithm,
    /// The signature does not verify with any configured key.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `iss` or `aud` is not the configured one.
    #[error("token issuer or audience not accepted")]
    Audience,
    /// The claims grant something a token cannot have.
    #[error("token claims refused: {0}")]
    Claims(String),
}

/// What a verified token grants.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The `sub` claim.
    pub subject: String,
    /// Roles granted.
    pub roles: Roles,
    /// Channels granted, `{sub}` substituted.
    pub channels: Scope,
    /// `exp` (plus the configured leeway).
    pub expires_at: SystemTime,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// The keys a server verifies tokens with.
#[derive(Clone, Debug, Default)]
pub struct TokenKeys {
    /// The HS256 shared secret.
    pub hs256_secret: Option<Vec<u8>>,
    /// RS256 public keys, PEM.
    pub rs256_public_keys: Vec<Vec<u8>>,
    /// ES256 public keys, PEM.
    pub es256_public_keys: Vec<Vec<u8>>,
}

/// Verifies tokens. Shared by all shards; read-only.
pub struct TokenVerifier {
    keys: Vec<(DecodingKey, Validation)>,
    default_channels: Vec<String>,
    leeway: Duration,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("default_channels", &self.default_channels)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `keys`. `issuer` and `audience`, when set, must match
    /// the token's `iss` and `aud`; `leeway` is allowed past `exp`.
    pub fn new(
        keys: &TokenKeys,
        issuer: Option<&str>,
        audience: Option<&str>,
        leeway: Duration,
        default_channels: Vec<String>,
    ) -> Result<Self, String> {
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = leeway.as_secs();
            v.set_required_spec_claims(&["exp", "sub"]);
            if let Some(issuer) = issuer {
                v.set_issuer(&[issuer]);
            }
            match audience {
                Some(audience) => v.set_audience(&[audience]),
                None => v.validate_aud = false,
            }
            v
        };
        let mut list = Vec::new();
        if let Some(secret) = &keys.hs256_secret {
            let key = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
            list.push((key, validation(Algorithm::HS256)));
        }
        for pem in &keys.rs256_public_keys {
            let key = DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RS256 key: {e}"))?;
            list.push((key, validation(Algorithm::RS256)));
        }
        for pem in &keys.es256_public_keys {
            let key = DecodingKey::from_ec_pem(pem).map_err(|e| format!("ES256 key: {e}"))?;
            list.push((key, validation(Algorithm::ES256)));
        }
        if list.is_empty() {
            return Err("no key configured".into());
        }
        Ok(Self {
            keys: list,
            default_channels,
            leeway,
        })
    }

    /// Verifies `token` and returns what it grants.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let mut refusal = TokenError::Algorithm;
        for (key, validation) in &self.keys {
            if !validation.algorithms.contains(&header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => return self.grant(data.claims),
                Err(e) => {
                    refusal = match e.kind() {
                        ErrorKind::InvalidSignature => TokenError::Signature,
                        ErrorKind::ExpiredSignature => TokenError::Expired,
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                            TokenError::Audience
                        }
                        _ => TokenError::Malformed(e.to_string()),
                    };
                    // Another key of the same kind may verify it.
                    if refusal != TokenError::Signature {
                        break;
                    }
                }
            }
        }
        Err(refusal)
    }

    fn grant(&self, claims: Claims) -> Result<Grant, TokenError> {
        let channels = claims.channels.as_ref().unwrap_or(&self.default_channels);
        if channels.len() > MAX_CLAIM_ITEMS {
            return Err(TokenError::Claims(format!(
                "more than {MAX_CLAIM_ITEMS} channels"
            )));
        }
        let channels = Scope::for_subject(channels, &claims.sub).map_err(|e| match e {
            ScopeError::Pattern(_) | ScopeError::Subject(_) => TokenError::Claims(e.to_string()),
        })?;
        let roles = match claims.roles {
            None => Roles::NONE.with(Role::Subscribe),
            Some(names) if names.len() > MAX_CLAIM_ITEMS => {
                return Err(TokenError::Claims("too many roles".into()))
            }
            Some(names) => {
                let mut roles = Roles::NONE;
                for name in &names {
                    roles = roles.with(match name.as_str() {
                        "subscribe" => Role::Subscribe,
                        "publish" => Role::Publish,
                        _ => {
                            return Err(TokenError::Claims(
                                "roles may be \"subscribe\" and \"publish\"".into(),
                            ))
                        }
                    });
                }
                roles
            }
        };
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .and_then(|at| at.checked_add(self.leeway))
            .ok_or_else(|| TokenError::Claims("exp is out of range".into()))?;
        Ok(Grant {
            subject: claims.sub,
            roles,
            channels,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-test-secret-of-decent-length!!";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(
            &TokenKeys {
                hs256_secret: Some(SECRET.to_vec()),
                ..TokenKeys::default()
            },
            None,
            None,
            Duration::ZERO,
            vec!["market-data".into()],
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_valid_token_grants_its_subjects_channels() {
        let token =
            sign(json!({"sub": "t-17", "exp": now() + 60, "channels": ["positions.{sub}"]}));
        let grant = verifier().verify(&token).unwrap();
        assert_eq!(grant.subject, "t-17");
        assert!(grant.channels.allows("positions.t-17"));
        assert!(!grant.channels.allows("positions.t-18"));
        assert!(grant.roles.has(Role::Subscribe) && !grant.roles.has(Role::Publish));
        // Without a channels claim, the defaults apply.
        let token = sign(json!({"sub": "t-17", "exp": now() + 60}));
        assert!(verifier()
            .verify(&token)
            .unwrap()
            .channels
            .allows("market-data"));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let v = verifier();
        assert_eq!(
            v.verify(&sign(json!({"sub": "a", "exp": now() - 10})))
                .unwrap_err(),
            TokenError::Expired
        );
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a", "exp": now() + 60}),
            &EncodingKey::from_secret(b"another-secret-another-secret!!!").unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&other).unwrap_err(), TokenError::Signature);
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "a", "exp": now() + 60}),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&hs384).unwrap_err(), TokenError::Algorithm);
        assert!(matches!(
            v.verify(&sign(
                json!({"sub": "a", "exp": now() + 60, "roles": ["admin"]})
            ))
            .unwrap_err(),
            TokenError::Claims(_)
        ));
        assert!(matches!(
            v.verify(&sign(json!({"sub": "*", "exp": now() + 60})))
                .unwrap_err(),
            TokenError::Claims(_)
        ));
        assert!(matches!(
            v.verify("not-a-token").unwrap_err(),
            TokenError::Malformed(_)
        ));
        assert_eq!(
            v.verify(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(),
            TokenError::TooLong
        );
        assert!(matches!(
            v.verify(&sign(json!({"exp": now() + 60}))).unwrap_err(),
            TokenError::Malformed(_)
        ));
        assert!(matches!(
            v.verify(&sign(json!({"sub": "a", "exp": u64::MAX})))
                .unwrap_err(),
            TokenError::Claims(_) | TokenError::Malformed(_)
        ));
    }
}
