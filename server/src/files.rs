//! Fitting the connections to the process's open-file limit.
//!
//! Every socket is a file descriptor. If sockets could outnumber the
//! descriptors the process may open, idle sockets would use them up and
//! `accept` would fail for everyone. So at start-up the soft limit is raised
//! to the hard limit, and the connection gate is told how many sockets fit
//! beside the process's own descriptors (`max_sockets`): past that, new
//! connections meet a 503 from the gate, and connections already open go on.
//! `max_connections` and `max_http_connections` stay as configured; a warning
//! says when together they exceed what fits.

use shardcast_engine::GateLimits;
use tracing::{info, warn};

/// Descriptors kept for the process itself: listener, each shard's
/// (its runtime's epoll and event descriptors, its own poll of its
/// connections and that poll's registry: 4, with room to spare), log and
/// key files, the acceptor's spare.
fn reserved(shards: usize) -> u64 {
    64 + 6 * shards as u64
}

/// `gate` with its socket budget set from `open_files`; and whether the
/// configured connection limits exceed it.
pub fn fit(gate: GateLimits, open_files: u64, shards: usize) -> (GateLimits, bool) {
    let budget = open_files.saturating_sub(reserved(shards)).max(2);
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let fitted = GateLimits {
        max_sockets: gate.max_sockets.min(budget),
        ..gate
    };
    let wanted = gate.max_connections.saturating_add(gate.max_http);
    (fitted, wanted > budget)
}

/// Raises the soft open-file limit to the hard one and fits `gate` under it.
pub fn fit_to_process(gate: GateLimits, shards: usize) -> GateLimits {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit; sockets are not capped by it");
            return gate;
        }
    };
    let (fitted, short) = fit(gate, limit, shards);
    if short {
        warn!(
            open_files = limit,
            sockets = fitted.max_sockets,
            max_connections = gate.max_connections,
            max_http_connections = gate.max_http,
            "the open-file limit allows fewer sockets than max_connections + max_http_connections; connections beyond it are refused (raise it with ulimit -n or LimitNOFILE)"
        );
    } else {
        info!(
            open_files = limit,
            sockets = fitted.max_sockets,
            "open-file limit"
        );
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: GateLimits = GateLimits {
        max_connections: 100_000,
        max_per_address: 4096,
        max_http: 1024,
        max_http_per_address: 128,
        max_sockets: usize::MAX,
    };

    #[test]
    fn limits_that_fit_are_kept_with_the_socket_budget_set() {
        let (fitted, short) = fit(GATE, 1 << 20, 2);
        assert!(!short);
        assert_eq!(fitted.max_sockets, (1 << 20) - reserved(2) as usize);
        assert_eq!(fitted.max_connections, GATE.max_connections);
    }

    #[test]
    fn a_low_limit_caps_sockets_below_the_descriptors() {
        let (fitted, short) = fit(GATE, 1024, 2);
        assert!(short);
        assert_eq!(fitted.max_sockets, 1024 - reserved(2) as usize);
        assert_eq!((fitted.max_connections, fitted.max_http), (100_000, 1024));
        let (tiny, _) = fit(GATE, 10, 1);
        assert!(tiny.max_sockets >= 2);
    }
}
