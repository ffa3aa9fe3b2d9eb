//! BondX tokens: HS256 JWTs signed with `[bondx] jwt_secret`, verified
//! with the `jsonwebtoken` crate.
//!
//! Read-only; shared by all shards. A token needs `sub` (the user) and
//! `exp`; `nbf`, when present, is checked too; both allow the configured
//! leeway (30 s by default) for clocks that disagree. Only HS256 is
//! accepted (never `none`, never another algorithm with the secret as a
//! public key). The user becomes the principal `bondx:<sub>`, who may
//! subscribe to the public families (`prices.*`, `auctions.*`) and to its
//! own user's topics, and publish nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::config::BondxConfig;
use crate::auth::credentials::CredentialError;
use crate::auth::token::MAX_TOKEN_LEN;
use crate::auth::{Authenticator, Principal, Role, Roles, Scope};

/// What a BondX user may subscribe to; `{sub}` is the token's user.
pub const USER_SCOPE: [&str; 7] = [
    "prices.*",
    "auctions.*",
    "trading.{sub}",
    "portfolio.{sub}",
    "risk.{sub}",
    "risk.{sub}.alerts",
    "mobile.{sub}",
];

/// Why a connection was refused `AUTH_REQUIRED`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BondxAuthError {
    /// No `[bondx] jwt_secret`: BondX endpoints accept no one.
    #[error("BondX endpoints are disabled on this server: no [bondx] jwt_secret is configured")]
    Disabled,
    /// No token.
    #[error("authentication required: send a token in ?token= or Authorization: Bearer")]
    Missing,
    /// Credentials that cannot be read: a token in the query and a header
    /// too, a repeated header, another `Authorization` scheme.
    #[error("{0}")]
    Credentials(CredentialError),
    /// An API key instead of a token.
    #[error("BondX endpoints take a JWT in ?token= or Authorization: Bearer, not an API key")]
    NotAToken,
    /// Too long, not a JWT, the wrong algorithm, a bad signature, missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// A `sub` that cannot name a user's topics.
    #[error("token subject cannot name topics: use 1-128 characters from A-Z a-z 0-9 _ - :")]
    Subject,
    /// A user-scoped endpoint of another user.
    #[error("this token is for another user than the endpoint's")]
    OtherUser,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// A verified token: its user and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondxUser {
    /// `sub`.
    pub id: String,
    /// `exp`, plus the leeway.
    pub expires_at: SystemTime,
}

/// Verifies `token` with `config`'s secret.
pub fn verify(config: &BondxConfig, token: &str) -> Result<BondxUser, BondxAuthError> {
    let secret = config.secret.as_ref().ok_or(BondxAuthError::Disabled)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(BondxAuthError::Invalid(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = config.leeway.as_secs();
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = DecodingKey::from_secret(secret)
        .map_err(|e| BondxAuthError::Invalid(format!("secret: {e}")))?;
    let data =
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => BondxAuthError::Expired,
            ErrorKind::ImmatureSignature => BondxAuthError::NotYetValid,
            ErrorKind::InvalidSignature => {
                BondxAuthError::Invalid("signature does not verify".into())
            }
            ErrorKind::InvalidAlgorithm => BondxAuthError::Invalid("only HS256 is accepted".into()),
            _ => BondxAuthError::Invalid(e.to_string()),
        })?;
    let expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(data.claims.exp))
        .and_then(|at| at.checked_add(config.leeway))
        .ok_or_else(|| BondxAuthError::Invalid("exp out of range".into()))?;
    Ok(BondxUser {
        id: data.claims.sub,
        expires_at,
    })
}

/// The principal of `user`: its scope (BondX's families and `extra`, the
/// configured `[bondx] extra_scope`) and its topic-creation quota (shared
/// with every connection of the same name).
pub fn principal(
    auth: &Authenticator,
    user: &BondxUser,
    extra: &[String],
) -> Result<Principal, BondxAuthError> {
    let templates: Vec<&str> = USER_SCOPE
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    let subscribe =
        Scope::for_subject(&templates, &user.id).map_err(|_| BondxAuthError::Subject)?;
    let name: Arc<str> = format!("bondx:{}", user.id).into();
    Ok(Principal {
        quota: auth.token_quota(&name),
        name,
        roles: Roles::NONE.with(Role::Subscribe),
        subscribe,
        publish: Scope::Only(Vec::new()),
        expires_at: Some(user.expires_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bondx::config::RawBondx;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    fn config() -> BondxConfig {
        RawBondx {
            jwt_secret: Some(SECRET.into()),
            ..RawBondx::default()
        }
        .validate()
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn tokens_verify_by_signature_exp_and_nbf() {
        let config = config();
        let good = token(
            serde_json::json!({"sub": "u1", "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(verify(&config, &good).unwrap().id, "u1");
        let forged = token(
            serde_json::json!({"sub": "u1", "exp": now() + 60}),
            "another-secret-of-at-least-32-bytes!!",
            Algorithm::HS256,
        );
        assert!(matches!(
            verify(&config, &forged),
            Err(BondxAuthError::Invalid(_))
        ));
        let expired = token(
            serde_json::json!({"sub": "u1", "exp": now() - 120}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(verify(&config, &expired), Err(BondxAuthError::Expired));
        // Within the leeway: still accepted.
        let just = token(
            serde_json::json!({"sub": "u1", "exp": now() - 5}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(verify(&config, &just).is_ok());
        let early = token(
            serde_json::json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 300}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(verify(&config, &early), Err(BondxAuthError::NotYetValid));
        let other_alg = token(
            serde_json::json!({"sub": "u1", "exp": now() + 60}),
            SECRET,
            Algorithm::HS384,
        );
        assert!(verify(&config, &other_alg).is_err());
        let no_sub = token(
            serde_json::json!({"exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(verify(&config, &no_sub).is_err());
        assert!(matches!(
            verify(&config, "not.a.jwt"),
            Err(BondxAuthError::Invalid(_))
        ));
        let disabled = RawBondx::default().validate().unwrap();
        assert_eq!(verify(&disabled, &good), Err(BondxAuthError::Disabled));
    }
}
