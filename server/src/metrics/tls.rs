//! The TLS families, present only on a server that serves TLS: handshakes
//! by outcome and certificate reloads by outcome.

use std::sync::atomic::Ordering;

use super::text::{Exposition, Kind};
use crate::tls::Tls;

/// Writes the TLS families of `tls`.
pub(super) fn render(out: &mut Exposition, tls: &Tls) {
    let counts = tls.counts();
    let name = "shardcast_tls_handshakes_total";
    out.family(
        name,
        Kind::Counter,
        "TLS handshakes on the listener, by result: completed, failed (not TLS, no common parameters, an alert), timeout.",
    );
    for (result, count) in [
        ("completed", &counts.completed),
        ("failed", &counts.failed),
        ("timeout", &counts.timed_out),
    ] {
        out.sample(name, &[("result", result)], count.load(Ordering::Relaxed));
    }
    let name = "shardcast_tls_certificate_reloads_total";
    out.family(
        name,
        Kind::Counter,
        "Certificate reloads (SIGHUP), by result; after a failed one the previous certificate stays in force.",
    );
    for (result, count) in [
        ("reloaded", &counts.reloaded),
        ("failed", &counts.reload_failed),
    ] {
        out.sample(name, &[("result", result)], count.load(Ordering::Relaxed));
    }
}
