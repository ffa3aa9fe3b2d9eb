//! Who is asking, and what they may do.
//!
//! Read-only after start-up and shared by every shard (except the token
//! quota table, locked only when a token user's first connection opens).
//!
//! A request names itself with exactly one credential ([`credentials`]):
//! an API key (`X-API-Key`, or `apiKey` on a WebSocket upgrade) or a JWT
//! (`Authorization: Bearer`, or `token` on a WebSocket upgrade). The
//! [`Authenticator`] turns it into a [`Principal`]: a name (which owns the
//! client ids it opens), roles, a channel [`Scope`] per role, an expiry
//! (tokens), and the [`TopicQuota`] its topic creations are charged to.
//! Every subscribe and publish of every protocol checks the principal's scope.

pub mod credentials;
pub mod origin;
pub mod scope;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use shardcast_engine::{QuotaLimits, TopicQuota};

pub use credentials::Credential;
pub use scope::Scope;
use token::{TokenError, TokenVerifier};

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connect to `/ws/telemetry` and subscribe.
    Subscribe,
    /// Publish over HTTP or `/ws/publish`.
    Publish,
    /// Use the admin endpoints.
    Admin,
}

impl Role {
    /// The role's name in configuration and tokens.
    pub fn name(self) -> &'static str {
        match self {
            Role::Subscribe => "subscribe",
            Role::Publish => "publish",
            Role::Admin => "admin",
        }
    }
}

/// A set of roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);
    /// Every role.
    pub const ALL: Roles = Roles(0b111);

    fn bit(role: Role) -> u8 {
        match role {
            Role::Subscribe => 1,
            Role::Publish => 2,
            Role::Admin => 4,
        }
    }

    /// These roles plus `role`.
    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | Self::bit(role))
    }

    /// Whether `role` is in the set.
    pub fn has(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }
}

/// An authenticated caller. Shared by all its connections; immutable.
#[derive(Debug)]
pub struct Principal {
    /// `key:<name>` or `token:<sub>`: owns client ids, labels logs.
    pub name: Arc<str>,
    /// What it may do.
    pub roles: Roles,
    /// Channels it may subscribe to.
    pub subscribe: Scope,
    /// Channels it may publish into.
    pub publish: Scope,
    /// When its credentials stop being valid (tokens only).
    pub expires_at: Option<SystemTime>,
    /// Its topic creations are charged here.
    pub quota: Arc<TopicQuota>,
}

impl Principal {
    /// The instant (on the monotonic clock) its credentials expire.
    pub fn deadline(&self) -> Option<Instant> {
        let at = self.expires_at?;
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        Some(Instant::now() + left)
    }

    /// Whether it may subscribe to `channel`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.roles.has(Role::Subscribe) && self.subscribe.allows(channel)
    }

    /// Whether it may publish into `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        self.roles.has(Role::Publish) && self.publish.allows(channel)
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential.
    #[error("missing credentials: send X-API-Key or Authorization: Bearer <token>")]
    Missing,
    /// An API key that is not configured.
    #[error("unknown API key")]
    UnknownKey,
    /// A token that does not verify, or is expired.
    #[error("{0}")]
    Token(TokenError),
    /// Tokens are not configured on this server.
    #[error("this server accepts no tokens ([jwt] is not configured)")]
    TokensDisabled,
    /// A valid credential without the needed role.
    #[error("these credentials lack the {} role this endpoint needs", .0.name())]
    Forbidden(Role),
}

/// Why a `refresh` was refused; the connection keeps its current token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The connection was opened with an API key.
    #[error("refresh is for connections opened with a token")]
    NotToken,
    /// The new token does not verify.
    #[error("{0}")]
    Invalid(AuthError),
    /// The new token is another user's.
    #[error("a refresh token must be for the same user")]
    OtherUser,
    /// The new token does not expire later.
    #[error("the new token must expire later than the current one")]
    NotLater,
}

/// One configured API key.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// The secret.
    pub key: String,
    /// A name for logs and client-id ownership (never the secret).
    pub name: String,
    /// Its roles.
    pub roles: Roles,
    /// Channels it may subscribe to.
    pub subscribe: Scope,
    /// Channels it may publish into.
    pub publish: Scope,
    /// Its topic-creation limits.
    pub quota: QuotaLimits,
}

/// Token users' quotas, by name: a user's connections share one quota.
///
/// Entries indistinguishable from a new quota (no charge, bucket full) are
/// pruned when the table has doubled since the last prune, so the table is
/// bounded by the users active recently and pruning costs O(1) amortized.
#[derive(Debug)]
struct TokenQuotas {
    limits: QuotaLimits,
    table: Mutex<QuotaTable>,
}

#[derive(Debug)]
struct QuotaTable {
    by_name: HashMap<Arc<str>, Arc<TopicQuota>>,
    prune_at: usize,
}

impl TokenQuotas {
    fn get(&self, name: &Arc<str>) -> Arc<TopicQuota> {
        let mut table = self.table.lock();
        if let Some(quota) = table.by_name.get(name) {
            return Arc::clone(quota);
        }
        if table.by_name.len() >= table.prune_at {
            let now = Instant::now();
            // A quota a live connection still holds is not forgotten, or the
            // user's next connection would get a second, fresh one.
            table
                .by_name
                .retain(|_, q| Arc::strong_count(q) > 1 || !q.is_idle(now));
            table.prune_at = (2 * table.by_name.len()).max(1024);
        }
        let quota = Arc::new(TopicQuota::new(self.limits));
        table.by_name.insert(Arc::clone(name), Arc::clone(&quota));
        quota
    }
}

/// Turns credentials into principals. Shared by all shards.
#[derive(Debug)]
pub struct Authenticator {
    keys: HashMap<String, Arc<Principal>>,
    tokens: Option<TokenVerifier>,
    token_quotas: TokenQuotas,
}

impl Authenticator {
    /// Keys and an optional token verifier; token users get `token_quota`.
    pub fn new(
        keys: Vec<KeySpec>,
        tokens: Option<TokenVerifier>,
        token_quota: QuotaLimits,
    ) -> Self {
        let keys = keys
            .into_iter()
            .map(|spec| {
                let principal = Principal {
                    name: format!("key:{}", spec.name).into(),
                    roles: spec.roles,
                    subscribe: spec.subscribe,
                    publish: spec.publish,
                    expires_at: None,
                    quota: Arc::new(TopicQuota::new(spec.quota)),
                };
                (spec.key, Arc::new(principal))
            })
            .collect();
        Self {
            keys,
            tokens,
            token_quotas: TokenQuotas {
                limits: token_quota,
                table: Mutex::new(QuotaTable {
                    by_name: HashMap::new(),
                    prune_at: 1024,
                }),
            },
        }
    }

    /// The principal behind `credential`, if it holds `role`.
    pub fn authorize(
        &self,
        credential: Option<&Credential<'_>>,
        role: Role,
    ) -> Result<Arc<Principal>, AuthError> {
        let principal = self.authenticate(credential.ok_or(AuthError::Missing)?)?;
        if principal.roles.has(role) {
            Ok(principal)
        } else {
            Err(AuthError::Forbidden(role))
        }
    }

    /// Whether `key` is a configured API key.
    pub fn knows_key(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// The principal behind `credential`.
    pub fn authenticate(&self, credential: &Credential<'_>) -> Result<Arc<Principal>, AuthError> {
        match credential {
            Credential::ApiKey(key) => self.keys.get(*key).cloned().ok_or(AuthError::UnknownKey),
            Credential::Token(token) => {
                let verifier = self.tokens.as_ref().ok_or(AuthError::TokensDisabled)?;
                let grant = verifier.verify(token).map_err(AuthError::Token)?;
                let name: Arc<str> = format!("token:{}", grant.subject).into();
                let quota = self.token_quotas.get(&name);
                Ok(Arc::new(Principal {
                    name,
                    roles: grant.roles,
                    subscribe: grant.channels.clone(),
                    publish: grant.channels,
                    expires_at: Some(grant.expires_at),
                    quota,
                }))
            }
        }
    }
}

impl Authenticator {
    /// The topic-creation quota of the user called `name` (shared by all
    /// its connections), for protocols that verify their own tokens.
    pub fn token_quota(&self, name: &Arc<str>) -> Arc<TopicQuota> {
        self.token_quotas.get(name)
    }

    /// The principal a connection of `current` continues as with `token`:
    /// the same user, a token that verifies and expires later.
    pub fn refresh(
        &self,
        current: &Principal,
        token: &str,
    ) -> Result<Arc<Principal>, RefreshError> {
        let now_expires = current.expires_at.ok_or(RefreshError::NotToken)?;
        let next = self
            .authenticate(&Credential::Token(token))
            .map_err(RefreshError::Invalid)?;
        if next.name != current.name {
            return Err(RefreshError::OtherUser);
        }
        if next.expires_at.is_none_or(|at| at <= now_expires) {
            return Err(RefreshError::NotLater);
        }
        Ok(next)
    }
}

/// A stable, non-secret name for a key without one: `key-` and 8 hex digits
/// of an FNV-1a hash of the key.
pub fn default_key_name(key: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("key-{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, roles: Roles, subscribe: Scope) -> KeySpec {
        KeySpec {
            key: key.into(),
            name: default_key_name(key),
            roles,
            subscribe,
            publish: Scope::All,
            quota: QuotaLimits::UNLIMITED,
        }
    }

    #[test]
    fn roles_and_scopes_are_enforced() {
        let auth = Authenticator::new(
            vec![spec(
                "sub-key-1",
                Roles::NONE.with(Role::Subscribe),
                Scope::parse(&["prices.*"]).unwrap(),
            )],
            None,
            QuotaLimits::UNLIMITED,
        );
        assert_eq!(
            auth.authorize(None, Role::Subscribe).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            auth.authorize(Some(&Credential::ApiKey("wrong")), Role::Subscribe)
                .unwrap_err(),
            AuthError::UnknownKey
        );
        let principal = auth
            .authorize(Some(&Credential::ApiKey("sub-key-1")), Role::Subscribe)
            .unwrap();
        assert!(principal.may_subscribe("prices.AAPL"));
        assert!(!principal.may_subscribe("positions"));
        assert!(!principal.may_publish("prices.AAPL"));
        assert_eq!(
            auth.authorize(Some(&Credential::ApiKey("sub-key-1")), Role::Admin)
                .unwrap_err(),
            AuthError::Forbidden(Role::Admin)
        );
        assert_eq!(
            auth.authenticate(&Credential::Token("a.b.c")).unwrap_err(),
            AuthError::TokensDisabled
        );
        assert!(principal.name.starts_with("key:key-"));
        assert!(!principal.name.contains("sub-key-1"));
    }

    #[test]
    fn token_quotas_are_shared_per_user_and_idle_ones_are_pruned() {
        let quotas = TokenQuotas {
            limits: QuotaLimits {
                rate_per_second: 1.0,
                burst: 1,
                max_live: 10,
            },
            table: Mutex::new(QuotaTable {
                by_name: HashMap::new(),
                prune_at: 1024,
            }),
        };
        let alice: Arc<str> = "token:alice".into();
        let a = quotas.get(&alice);
        assert!(Arc::ptr_eq(&a, &quotas.get(&alice)));
        // Bob holds his quota (a connection) but has charged nothing.
        let bob: Arc<str> = "token:bob".into();
        let b = quotas.get(&bob);
        a.try_charge(Instant::now()).unwrap();
        for i in 0..2000 {
            quotas.get(&format!("token:u{i}").into());
        }
        assert!(Arc::ptr_eq(&b, &quotas.get(&bob)), "bob's quota survived");
        let table = quotas.table.lock();
        // Alice holds a charge, so she survived the prunes; idle users did not pile up.
        assert!(table.by_name.contains_key(&alice));
        assert!(table.by_name.len() < 2000, "{}", table.by_name.len());
    }
}
