//! The measured window and the report built from it.
//!
//! The window owns the per-second [`Recorder`] (series.rs): it is ticked
//! once a second while measuring ([`Window::measure`]) and closed with the
//! window, so the window's latency histogram is complete only once closed.
//! With several `--urls` it also resets and reads each node's latency
//! (`NodeTally`, state.rs) for the per-node breakdown (report/nodes.rs).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nodes::Nodes;
use crate::report::{self, NodeFigures, ServerFigures};
use crate::series::{Recorder, Series};
use crate::state::{quantile_ms, Phase, Shared};
use crate::{Args, Scenario};

/// Counters at the start of the measured window. Owned by the loadgen's single thread.
pub struct Window {
    at: Instant,
    delivered: u64,
    published: u64,
    server_cpu: Option<f64>,
    own_cpu: Option<f64>,
    recorder: Recorder,
}

pub struct ClosedWindow {
    pub seconds: f64,
    pub delivered: u64,
    pub published: u64,
    pub server_cpu: Option<f64>,
    pub own_cpu: Option<f64>,
    pub latency: hdrhistogram::Histogram<u64>,
    /// Per node with several `--urls`, the latency of its subscribers.
    pub nodes: Vec<hdrhistogram::Histogram<u64>>,
    pub series: Series,
}

impl Window {
    /// Opens the window; `hlog`: keep an HDR interval log of its latency.
    pub fn open(shared: &Shared, server_pids: &[u32], hlog: bool) -> Self {
        shared.latency.borrow_mut().reset();
        shared.second_latency.borrow_mut().reset();
        for node in shared.nodes.borrow_mut().iter_mut() {
            node.latency.reset();
        }
        shared.measure_from_ns.set(shared.now_ns());
        shared.phase.set(Phase::Measuring);
        Self {
            at: Instant::now(),
            delivered: shared.delivered.get(),
            published: shared.published.borrow().iter().sum(),
            server_cpu: report::cpu_seconds_of(server_pids),
            own_cpu: report::cpu_seconds(std::process::id()),
            recorder: Recorder::open(shared, server_pids, hlog),
        }
    }

    /// Measures for `length`, taking a point every second; `true` when
    /// `ctrl_c` cut it short.
    pub async fn measure<F: Future<Output = std::io::Result<()>>>(
        &mut self,
        shared: &Shared,
        length: Duration,
        ctrl_c: &mut Pin<&mut F>,
    ) -> bool {
        let mut second = tokio::time::interval(Duration::from_secs(1));
        // A late tick starts the next second late, rather than adding
        // near-empty points to catch up.
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        second.tick().await;
        while self.at.elapsed() < length {
            tokio::select! {
                () = tokio::time::sleep(length.saturating_sub(self.at.elapsed())) => {}
                _ = second.tick() => self.recorder.tick(shared),
                _ = ctrl_c.as_mut() => return true,
            }
        }
        false
    }

    pub fn close(self, shared: &Shared, server_pids: &[u32]) -> ClosedWindow {
        shared.measure_from_ns.set(u64::MAX);
        shared.phase.set(Phase::Finishing);
        let series = self.recorder.close(shared);
        let delta = |start: Option<f64>, end: Option<f64>| Some(end? - start?);
        ClosedWindow {
            seconds: self.at.elapsed().as_secs_f64(),
            delivered: shared.delivered.get() - self.delivered,
            published: shared.published.borrow().iter().sum::<u64>() - self.published,
            server_cpu: delta(self.server_cpu, report::cpu_seconds_of(server_pids)),
            own_cpu: delta(self.own_cpu, report::cpu_seconds(std::process::id())),
            latency: shared.latency.borrow().clone(),
            nodes: shared
                .nodes
                .borrow()
                .iter()
                .map(|n| n.latency.clone())
                .collect(),
            series,
        }
    }
}

#[allow(clippy::too_many_arguments)] // One call site; the figures are all distinct.
pub fn build_report(
    args: &Args,
    nodes: &Nodes,
    shared: &Shared,
    window: &ClosedWindow,
    server: Option<ServerFigures>,
    connect_seconds: f64,
    rss_before: Option<u64>,
    rss_connected: Option<u64>,
    rss_end: Option<u64>,
    started: Instant,
    interrupted: bool,
) -> Value {
    let attempted = shared.connect_attempts.get() - shared.reconnects.get();
    let connected = shared.connected.get();
    let expected = shared.expected();
    let delivered = shared.delivered.get();
    let never_arrived = {
        // Per topic: published × subscribers − received − gaps already counted.
        expected
            .saturating_sub(delivered)
            .saturating_sub(shared.gaps.get() + shared.reconnect_gaps.get())
    };
    // Conflated messages were replaced by newer values of their key: not
    // delivered, not dropped either.
    let conflated = server.as_ref().map_or(0, |s| s.conflated + s.filtered);
    let dropped = expected.saturating_sub(delivered).saturating_sub(conflated);
    let drop_rate = if expected == 0 {
        0.0
    } else {
        dropped as f64 / expected as f64
    };
    let server_json = server.as_ref().map(|s| {
        json!({
            "sent": s.sent, "dropped": s.dropped, "conflated": s.conflated, "filtered": s.filtered,
            "outbox_full": s.outbox_full, "rate_limited": s.rate_limited,
            "shard_overflow": s.shard_overflow, "closed": s.closed, "queue_overflow": s.outbox_full + s.shard_overflow,
            "latency_p50_ms": s.latency_p50_ms, "latency_p99_ms": s.latency_p99_ms, "connections": s.connections,
        })
    });
    let accounting = match &server {
        Some(s) if args.scenario != Scenario::Reconnect => json!({
            "checked": true,
            "expected": expected,
            "delivered": delivered,
            "server_sent": s.sent,
            "server_dropped": s.dropped,
            "server_conflated": s.conflated,
            "server_filtered": s.filtered,
            "balanced": delivered + s.dropped + s.conflated + s.filtered == expected && s.sent == delivered,
        }),
        _ => json!({"checked": false}),
    };
    // Per idle connection, once the run has settled (right after a burst of
    // handshakes the allocator still holds their freed buffers).
    let per_conn = |rss: Option<u64>| match (rss_before, rss) {
        (Some(a), Some(b)) if connected > 0 => Some(b.saturating_sub(a) as f64 / connected as f64),
        _ => None,
    };
    let mut report = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "interrupted": interrupted,
        "measured_seconds": (window.seconds * 10.0).round() / 10.0,
        "elapsed_seconds": started.elapsed().as_secs_f64(),
        "config": {
            "url": nodes.urls()[0], "prefix": args.prefix,
            "connections": args.connections, "topics": args.topics, "subs": args.subs, "rate": args.publish_rate(),
            "publishers": args.publishers, "payload": args.payload, "via": format!("{:?}", args.via).to_lowercase(),
            "connect_rate": args.connect_rate, "warmup_seconds": args.warmup, "duration_seconds": args.duration,
            "server_pid": match args.server_pid.as_slice() {
                [] => Value::Null,
                [pid] => json!(pid),
                pids => json!(pids),
            },
        },
        "connections": {
            "attempted": attempted, "connected": connected, "failed": shared.connect_failures.get(),
            "success": if attempted == 0 { 0.0 } else { connected as f64 / attempted as f64 },
            "unexpected_closes": shared.unexpected_closes.get(),
            "first_failure": *shared.first_failure.borrow(),
            "connect_seconds": connect_seconds,
        },
        "publish": {
            "published": shared.published.borrow().iter().sum::<u64>(),
            "rate_in_window": window.published as f64 / window.seconds.max(1e-9),
            "lag_skipped": shared.publish_lag.get(),
        },
        "delivery": {
            "expected": expected, "delivered": delivered, "dropped": dropped, "drop_rate": drop_rate,
            "seq_gaps": shared.gaps.get(), "never_arrived": never_arrived,
            "duplicates": shared.duplicates.get(), "reordered": shared.reordered.get(),
            "per_second": window.delivered as f64 / window.seconds.max(1e-9),
            "error_frames": shared.error_frames.get(),
        },
        "reconnect": {
            "reconnects": shared.reconnects.get(), "replay_overlap": shared.replay_overlap.get(), "gaps": shared.reconnect_gaps.get(),
        },
        "skipped": {"checked": shared.skipped_checked.get(), "wrong": shared.skipped_wrong.get()},
        "burst": burst_json(args, shared),
        "refused": shared.refusals.borrow().to_json(),
        "latency_ms": report::latency_json(&window.latency),
        "series": window.series.to_json(),
        "server": server_json,
        "accounting": accounting,
        "process": {
            "server_cpu_percent": window.server_cpu.map(|c| c / window.seconds * 100.0),
            "server_cpu_us_per_delivery": window.server_cpu.filter(|_| window.delivered > 0).map(|c| c * 1e6 / window.delivered as f64),
            "server_rss_kib": rss_end,
            "server_rss_before_kib": rss_before,
            "server_rss_connected_kib": rss_connected,
            "server_rss_per_connection_kib": per_conn(rss_end),
            "server_rss_per_connection_at_connect_kib": per_conn(rss_connected),
            "loadgen_cpu_percent": window.own_cpu.map(|c| c / window.seconds * 100.0),
        },
    });
    if nodes.several() {
        report["config"]["urls"] = json!(nodes.urls());
        let tallies = shared.nodes.borrow();
        let figures: Vec<NodeFigures<'_>> = (tallies.iter().zip(&window.nodes).enumerate())
            .map(|(n, (tally, latency))| NodeFigures {
                url: nodes.label(n),
                subscribers: tally.subscribers,
                delivered: tally.delivered,
                latency,
            })
            .collect();
        let (list, overhead) = report::nodes_json(&figures);
        report["nodes"] = list;
        report["cross_node_overhead_ms"] = overhead;
    }
    report
}

/// Scenario burst: the freshness figures (`freshness.rs`); `null` otherwise.
fn burst_json(args: &Args, shared: &Shared) -> Value {
    let board = shared.board.borrow();
    let Some(board) = board.as_ref() else {
        return Value::Null;
    };
    let h = &board.fresh_us;
    let q = |q: f64| quantile_ms(h, q);
    // Pairs still behind when the run stopped waiting count as never fresh.
    let never_fresh = board.stale + board.unsettled() as u64;
    json!({
        "every_seconds": args.burst_every, "for_seconds": args.burst_for, "factor": args.burst_factor,
        "keys": args.keys, "bursts": board.bursts, "pairs": board.pairs() + board.unsettled() as u64,
        "never_fresh": never_fresh, "publish_errors": shared.publish_errors.get(),
        "freshness_ms": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0,
        },
    })
}
