//! Endpoints open to anyone unless configured otherwise (FastWS, simple):
//! who a client is, with or without a key.
//!
//! Read-only after start-up; shared by all shards. Without a required key,
//! each connection is its own principal (`<protocol>:anonymous:<uuid>`), so
//! no anonymous client can take over another's client id; it may subscribe
//! within the protocol's scope, and the topics all of them create are
//! charged to one quota. With a required key, the server's API keys and
//! tokens apply with the `subscribe` role, refused with 4401 / 4403.

use std::sync::Arc;

use shardcast_engine::{CloseReason, TopicQuota};

use super::Refusal;
use crate::auth::credentials::CredentialError;
use crate::auth::{AuthError, Authenticator, Credential, Principal, Role, Roles, Scope};

/// Who may connect to an open endpoint. Shared by all shards.
#[derive(Debug)]
pub struct OpenAccess {
    protocol: &'static str,
    scope: Scope,
    quota: Arc<TopicQuota>,
}

impl OpenAccess {
    /// Anonymous clients of `protocol` subscribe within `scope`.
    pub fn new(protocol: &'static str, scope: Scope, auth: &Authenticator) -> Self {
        let quota = auth.token_quota(&format!("{protocol}:anonymous").into());
        Self {
            protocol,
            scope,
            quota,
        }
    }

    /// The principal of a new connection: an anonymous one unless
    /// `require_key`, otherwise the one behind its credential.
    pub fn authenticate(
        &self,
        auth: &Authenticator,
        require_key: bool,
        credential: Result<Option<&Credential<'_>>, CredentialError>,
    ) -> Result<Arc<Principal>, Refusal> {
        if !require_key {
            return Ok(Arc::new(Principal {
                name: format!("{}:anonymous:{}", self.protocol, uuid::Uuid::new_v4()).into(),
                roles: Roles::NONE.with(Role::Subscribe),
                subscribe: self.scope.clone(),
                publish: Scope::Only(Vec::new()),
                expires_at: None,
                quota: Arc::clone(&self.quota),
            }));
        }
        let refusal = |code: CloseReason, reason: &'static str, why: String| Refusal {
            code: code.code(),
            reason,
            why,
            message: None,
        };
        let credential = credential.map_err(|e| {
            refusal(
                CloseReason::Unauthorized,
                "INVALID_CREDENTIALS",
                e.to_string(),
            )
        })?;
        auth.authorize(credential, Role::Subscribe)
            .map_err(|e| match e {
                AuthError::Forbidden(_) => {
                    refusal(CloseReason::Forbidden, "FORBIDDEN", e.to_string())
                }
                AuthError::Missing
                | AuthError::UnknownKey
                | AuthError::Token(_)
                | AuthError::TokensDisabled => {
                    refusal(CloseReason::Unauthorized, "VIOLATED_POLICY", e.to_string())
                }
            })
    }
}
