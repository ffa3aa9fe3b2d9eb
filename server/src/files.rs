//! Fitting the connection limits to the process's open-file limit.
//!
//! Every socket is a file descriptor. If `max_connections` plus
//! `max_http_connections` exceeded what the process may open, idle sockets
//! could use up the descriptors and `accept` would fail for everyone; with
//! the limits fitted below the descriptor limit, a flood of sockets meets a
//! refusal from the connection gate instead. At start-up the soft limit is
//! raised to the hard limit, and the connection limits are lowered (with a
//! warning naming both) when they still do not fit.

use shardcast_engine::GateLimits;
use tracing::{info, warn};

/// Descriptors kept for the process itself: listener, epoll and event
/// descriptors of each shard, log and key files, the acceptor's spare.
fn reserved(shards: usize) -> u64 {
    64 + 4 * shards as u64
}

/// `gate` lowered, if needed, so that every socket it admits fits in
/// `open_files` descriptors; the lowered limits and whether they changed.
pub fn fit(gate: GateLimits, open_files: u64, shards: usize) -> (GateLimits, bool) {
    let budget = open_files.saturating_sub(reserved(shards)).max(2);
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let wanted = gate.max_connections.saturating_add(gate.max_http);
    if wanted <= budget {
        return (gate, false);
    }
    // Keep an eighth for the HTTP stage (publishers, handshakes), at least 1.
    let max_http = gate.max_http.min((budget / 8).max(1));
    let max_connections = gate.max_connections.min(budget - max_http).max(1);
    let fitted = GateLimits {
        max_connections,
        max_http,
        ..gate
    };
    (fitted, true)
}

/// Raises the soft open-file limit to the hard one and fits `gate` under it.
pub fn fit_to_process(gate: GateLimits, shards: usize) -> GateLimits {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit; connection limits left as configured");
            return gate;
        }
    };
    let (fitted, changed) = fit(gate, limit, shards);
    if changed {
        warn!(
            open_files = limit,
            max_connections = fitted.max_connections,
            max_http_connections = fitted.max_http,
            configured_max_connections = gate.max_connections,
            configured_max_http_connections = gate.max_http,
            "connection limits lowered to fit the open-file limit (raise it with ulimit -n or LimitNOFILE)"
        );
    } else {
        info!(open_files = limit, "open-file limit");
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
    };

    #[test]
    fn limits_that_fit_are_kept() {
        assert_eq!(fit(GATE, 1 << 20, 2), (GATE, false));
    }

    #[test]
    fn limits_that_do_not_fit_are_lowered_below_the_descriptor_limit() {
        let (fitted, changed) = fit(GATE, 1024, 2);
        assert!(changed);
        assert!(fitted.max_connections + fitted.max_http <= 1024 - reserved(2) as usize);
        assert_eq!(fitted.max_http, (1024 - reserved(2) as usize) / 8);
        assert_eq!(fitted.max_per_address, GATE.max_per_address);
        let (tiny, _) = fit(GATE, 10, 1);
        assert!(tiny.max_connections >= 1 && tiny.max_http >= 1);
    }
}
