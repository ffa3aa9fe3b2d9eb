//! API keys and roles.
//!
//! Read-only after start-up and shared by every shard. A key comes from the
//! `X-API-Key` header or, for clients that cannot set headers (browsers'
//! WebSocket API), the `apiKey` query parameter.

use std::collections::HashMap;

use hyper::HeaderMap;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connect to `/ws/telemetry` and subscribe.
    Subscribe,
    /// Publish over HTTP or `/ws/publish`.
    Publish,
    /// Use the admin endpoints.
    Admin,
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

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No key, or a key that is not configured.
    Unauthorized,
    /// A valid key without the needed role.
    Forbidden,
}

/// The configured keys. Shared by all shards; read-only.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    keys: HashMap<String, Roles>,
}

impl ApiKeys {
    /// Adds a key (a later entry for the same key replaces the earlier one).
    pub fn insert(&mut self, key: String, roles: Roles) {
        self.keys.insert(key, roles);
    }

    /// Checks the request's key for `role`.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        query_key: Option<&str>,
        role: Role,
    ) -> Result<(), AuthError> {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or(query_key)
            .ok_or(AuthError::Unauthorized)?;
        let roles = self.keys.get(key).ok_or(AuthError::Unauthorized)?;
        if roles.has(role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_and_roles_are_enforced() {
        let mut keys = ApiKeys::default();
        keys.insert("sub-key-1".into(), Roles::NONE.with(Role::Subscribe));
        let mut headers = HeaderMap::new();
        assert_eq!(
            keys.authorize(&headers, None, Role::Subscribe),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            keys.authorize(&headers, Some("sub-key-1"), Role::Subscribe),
            Ok(())
        );
        headers.insert("x-api-key", "wrong".parse().unwrap());
        assert_eq!(
            keys.authorize(&headers, Some("sub-key-1"), Role::Subscribe),
            Err(AuthError::Unauthorized)
        );
        headers.insert("x-api-key", "sub-key-1".parse().unwrap());
        assert_eq!(
            keys.authorize(&headers, None, Role::Admin),
            Err(AuthError::Forbidden)
        );
    }
}
