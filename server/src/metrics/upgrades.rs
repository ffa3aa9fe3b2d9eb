//! WebSocket upgrade requests and their refusals, by reason.
//!
//! Shared by all shards: relaxed atomic counters, bumped once per request to
//! a WebSocket endpoint (never per message) and read when `/metrics` is
//! rendered. Nothing orders by them, so `Relaxed` is enough.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why an upgrade request did not become a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// Not an upgrade request, or a WebSocket version other than 13 (426).
    UpgradeRequired,
    /// A malformed handshake: not HTTP/1.1, a bad `Sec-WebSocket-Key`, a
    /// second upgrade on one connection (400).
    BadHandshake,
    /// A `clientId` that is not a valid id (400).
    BadClientId,
    /// A browser page from an origin that may not present credentials (403).
    Origin,
    /// No WebSocket slot left: `max_connections` (503).
    Full,
    /// Missing, unknown, ambiguous or invalid credentials (close 4401).
    Unauthorized,
    /// Credentials without the endpoint's role (close 4403).
    Forbidden,
    /// An expired token (close 4440).
    TokenExpired,
    /// The server is draining before it stops (503).
    Draining,
}

impl UpgradeRefusal {
    /// Every reason, in label order.
    pub const ALL: [UpgradeRefusal; 9] = [
        Self::UpgradeRequired,
        Self::BadHandshake,
        Self::BadClientId,
        Self::Origin,
        Self::Full,
        Self::Unauthorized,
        Self::Forbidden,
        Self::TokenExpired,
        Self::Draining,
    ];

    /// A stable snake_case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::UpgradeRequired => "upgrade_required",
            Self::BadHandshake => "bad_handshake",
            Self::BadClientId => "bad_client_id",
            Self::Origin => "origin",
            Self::Full => "full",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::TokenExpired => "token_expired",
            Self::Draining => "draining",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::UpgradeRequired => 0,
            Self::BadHandshake => 1,
            Self::BadClientId => 2,
            Self::Origin => 3,
            Self::Full => 4,
            Self::Unauthorized => 5,
            Self::Forbidden => 6,
            Self::TokenExpired => 7,
            Self::Draining => 8,
        }
    }

    /// The reason of a refusal sent as a close code after the handshake
    /// (4403 forbidden, 4440 token expired, any other code unauthorized).
    pub fn of_close_code(code: u16) -> Self {
        match code {
            4403 => Self::Forbidden,
            4440 => Self::TokenExpired,
            _ => Self::Unauthorized,
        }
    }
}

/// Upgrade requests and refusals since start. Shared by all shards.
#[derive(Debug, Default)]
pub struct Upgrades {
    requests: AtomicU64,
    refused: [AtomicU64; UpgradeRefusal::ALL.len()],
}

impl Upgrades {
    /// Counts a request to a WebSocket endpoint.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused one.
    pub fn refuse(&self, why: UpgradeRefusal) {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Refusals so far, by [`UpgradeRefusal::ALL`] order.
    pub fn refused(&self) -> [(UpgradeRefusal, u64); UpgradeRefusal::ALL.len()] {
        UpgradeRefusal::ALL.map(|why| (why, self.refused[why.index()].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_counter() {
        let upgrades = Upgrades::default();
        for (i, why) in UpgradeRefusal::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                upgrades.refuse(why);
            }
        }
        upgrades.request();
        let counts: Vec<u64> = upgrades.refused().iter().map(|(_, n)| *n).collect();
        let expected: Vec<u64> = (1..=UpgradeRefusal::ALL.len() as u64).collect();
        assert_eq!(counts, expected);
        assert_eq!(upgrades.requests(), 1);
        assert_eq!(
            UpgradeRefusal::of_close_code(4401),
            UpgradeRefusal::Unauthorized
        );
        assert_eq!(
            UpgradeRefusal::of_close_code(4440),
            UpgradeRefusal::TokenExpired
        );
    }
}
