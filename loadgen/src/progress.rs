//! The progress line: every `--progress-every` seconds, in every scenario,
//! on stderr (stdout holds the report, which `--json` keeps pure JSON).
//!
//! ```text
//! [    14s] measuring  9,870 deliveries/s  p99 1.214 ms  drops: clients 0, server 0  connections 200/200  refused 0  server rss 14,212 KiB
//! ```
//!
//! - deliveries/s: over the interval since the previous line;
//! - p99: of the measured window so far; during the connect phase and
//!   warm-up it says so instead;
//! - drops: messages missing from the clients' sequences, and the server's
//!   dropped count for the loadgen's channels from its stats endpoint (one
//!   request per line; `?` when the stats cannot be read), both since the
//!   run began (a server drop is usually also a client's gap);
//! - connections: subscriber connections open / asked for;
//! - refused: subscriptions the server refused (the first refusal of each
//!   kind is told on its own line as it happens, refusal.rs);
//! - server rss: with `--server-pid` (summed over several).
//!
//! With several `--urls` the server's drops are those of every node, summed
//! (report/server.rs).
//!
//! A task of its own on the loadgen's thread, ended by the run's stop signal.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::report;
use crate::series::gaps;
use crate::state::{quantile_ms, Phase, Shared};
use crate::tasks::Target;

/// What one progress line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub phase: Phase,
    pub deliveries_per_second: f64,
    /// p99 of the measured window so far, ms; `None` when it has no sample.
    pub p99_ms: Option<f64>,
    pub client_drops: u64,
    pub server_drops: Option<u64>,
    pub open: u64,
    pub connections: usize,
    pub refused: u64,
    pub server_rss_kib: Option<u64>,
}

impl Progress {
    pub fn line(&self) -> String {
        let p99 = match (self.phase, self.p99_ms) {
            (Phase::Connecting | Phase::WarmingUp, _) => "p99 - (warmup)".to_owned(),
            (_, Some(ms)) => format!("p99 {ms:.3} ms"),
            (_, None) => "p99 - (no sample yet)".to_owned(),
        };
        let server = self.server_drops.map_or_else(|| "?".to_owned(), thousands);
        let mut line = format!(
            "[{:>6.0}s] {:<10} {} deliveries/s  {p99}  drops: clients {}, server {server}  connections {}/{}  refused {}",
            self.elapsed.as_secs_f64(),
            self.phase.as_str(),
            thousands(self.deliveries_per_second.round() as u64),
            thousands(self.client_drops),
            thousands(self.open),
            thousands(self.connections as u64),
            thousands(self.refused),
        );
        if let Some(rss) = self.server_rss_kib {
            line.push_str(&format!("  server rss {} KiB", thousands(rss)));
        }
        line
    }
}

/// Prints a progress line every `every` until the run stops.
pub async fn run(
    shared: Rc<Shared>,
    target: Rc<Target>,
    every: Duration,
    connections: usize,
    server_pids: Vec<u32>,
) {
    let started = Instant::now();
    let baseline =
        report::server_figures(target.nodes.addrs(), &target.api_key, &target.prefix).await;
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    let (mut last_at, mut last_delivered) = (Instant::now(), shared.delivered.get());
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shared.stopped() => return,
        }
        let now = Instant::now();
        let delivered = shared.delivered.get();
        let rate = (delivered - last_delivered) as f64
            / now.duration_since(last_at).as_secs_f64().max(1e-9);
        (last_at, last_delivered) = (now, delivered);
        let server =
            report::server_figures(target.nodes.addrs(), &target.api_key, &target.prefix).await;
        let server_drops = match (&baseline, server) {
            (Some(before), Some(after)) => Some(after.since(before).dropped),
            (None, Some(after)) => Some(after.dropped),
            _ => None,
        };
        // The window so far: its whole seconds and the current one.
        let mut latency = shared.latency.borrow().clone();
        let _ = latency.add(&*shared.second_latency.borrow());
        let progress = Progress {
            elapsed: started.elapsed(),
            phase: shared.phase.get(),
            deliveries_per_second: rate,
            p99_ms: (!latency.is_empty()).then(|| quantile_ms(&latency, 0.99)),
            client_drops: gaps(&shared),
            server_drops,
            open: shared.open.get(),
            connections,
            refused: shared.refusals.borrow().subscriptions(),
            server_rss_kib: report::rss_kib_of(&server_pids),
        };
        eprintln!("{}", progress.line());
    }
}

/// `n` with a comma every three digits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(phase: Phase) -> Progress {
        Progress {
            elapsed: Duration::from_secs(14),
            phase,
            deliveries_per_second: 9870.4,
            p99_ms: Some(1.2144),
            client_drops: 3,
            server_drops: Some(1200),
            open: 199,
            connections: 200,
            refused: 0,
            server_rss_kib: None,
        }
    }

    #[test]
    fn the_line_says_rate_p99_drops_and_connections() {
        let line = progress(Phase::Measuring).line();
        assert_eq!(
            line,
            "[    14s] measuring  9,870 deliveries/s  p99 1.214 ms  drops: clients 3, server 1,200  connections 199/200  refused 0"
        );
    }

    #[test]
    fn warmup_has_no_p99_and_unread_stats_say_so() {
        let mut p = progress(Phase::WarmingUp);
        p.server_drops = None;
        p.server_rss_kib = Some(20_480);
        let line = p.line();
        assert!(line.contains("p99 - (warmup)"), "{line}");
        assert!(line.contains("server ?"), "{line}");
        assert!(line.ends_with("server rss 20,480 KiB"), "{line}");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
