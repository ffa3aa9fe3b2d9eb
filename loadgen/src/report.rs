//! Measurements from outside the loadgen (the server's stats endpoint,
//! /proc) and the report with its targets.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clock ticks per second of /proc/*/stat times (USER_HZ; 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) of process `pid`, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server's figures for channels starting with `prefix`, from its stats endpoint.
#[derive(Clone, Debug, Default)]
pub struct ServerFigures {
    pub published: u64,
    pub sent: u64,
    pub dropped: u64,
    /// Replaced in an outbox by a newer value of their key (not drops).
    pub conflated: u64,
    /// Left out by a subscription's filter (not drops; the stats list it
    /// per channel only where the server exposes it, else 0).
    pub filtered: u64,
    pub outbox_full: u64,
    pub rate_limited: u64,
    pub shard_overflow: u64,
    pub closed: u64,
    pub connections: u64,
    pub queued_frames: u64,
    pub max_queue_depth: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl ServerFigures {
    /// The counters' change since `before` (gauges and latency as of now).
    pub fn since(&self, before: &ServerFigures) -> ServerFigures {
        ServerFigures {
            published: self.published - before.published,
            sent: self.sent - before.sent,
            dropped: self.dropped - before.dropped,
            conflated: self.conflated - before.conflated,
            filtered: self.filtered - before.filtered,
            outbox_full: self.outbox_full - before.outbox_full,
            rate_limited: self.rate_limited - before.rate_limited,
            shard_overflow: self.shard_overflow - before.shard_overflow,
            closed: self.closed - before.closed,
            ..self.clone()
        }
    }
}

pub async fn server_figures(
    server: SocketAddr,
    api_key: &str,
    prefix: &str,
) -> Option<ServerFigures> {
    let stats = get_json(server, api_key, "/api/v1/websocket/stats").await?;
    let mut figures = ServerFigures {
        connections: stats["activeConnections"].as_u64().unwrap_or(0),
        queued_frames: stats["queuedFrames"].as_u64().unwrap_or(0),
        max_queue_depth: stats["maxQueueDepth"].as_u64().unwrap_or(0),
        latency_p50_ms: stats["deliveryLatencyMs"]["p50"].as_f64().unwrap_or(0.0),
        latency_p99_ms: stats["deliveryLatencyMs"]["p99"].as_f64().unwrap_or(0.0),
        ..ServerFigures::default()
    };
    for channel in stats["channels"].as_array()? {
        if !channel["channel"]
            .as_str()
            .is_some_and(|n| n.starts_with(prefix))
        {
            continue;
        }
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        figures.published += n(&channel["published"]);
        figures.sent += n(&channel["sent"]);
        figures.dropped += n(&channel["dropped"]);
        figures.conflated += n(&channel["conflated"]);
        figures.filtered += n(&channel["filtered"]);
        let reasons = &channel["droppedByReason"];
        figures.outbox_full += n(&reasons["outboxFull"]);
        figures.rate_limited += n(&reasons["rateLimited"]);
        figures.shard_overflow += n(&reasons["shardOverflow"]);
        figures.closed += n(&reasons["closed"]);
    }
    Some(figures)
}

async fn get_json(server: SocketAddr, api_key: &str, path: &str) -> Option<Value> {
    let fetch = async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nX-API-Key: {api_key}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let at = crate::ws::find(&response, b"\r\n\r\n")?;
        if !response.starts_with(b"HTTP/1.1 200") {
            return None;
        }
        serde_json::from_slice(&response[at + 4..]).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .ok()
        .flatten()
}

/// Pass/fail thresholds.
#[derive(Clone, Debug)]
pub struct Targets {
    pub p95_ms: f64,
    pub p99_ms: Option<f64>,
    pub max_drop_rate: f64,
    pub min_connect_success: f64,
    pub max_queue_overflow: u64,
    pub exact_accounting: bool,
    /// Largest allowed gap between the loadgen's and the server's p50 latency, ms.
    pub max_latency_gap_ms: Option<f64>,
    /// Scenario burst: the slowest client's freshness after a burst, ms.
    pub max_freshness_ms: Option<f64>,
}

/// One check against a target.
pub struct Check {
    pub name: &'static str,
    pub value: String,
    pub target: String,
    pub ok: bool,
}

/// A run that published to subscribers but measured no delivery proves
/// nothing: latency and drop figures of zero samples are not a pass.
fn measured(report: &Value) -> Check {
    let samples = report["latency_ms"]["samples"].as_u64().unwrap_or(0);
    let publishing = report["config"]["rate"].as_f64().unwrap_or(0.0) > 0.0
        && report["config"]["connections"].as_u64().unwrap_or(0) > 0;
    let errors = report["delivery"]["error_frames"].as_u64().unwrap_or(0);
    Check {
        name: "events measured",
        value: if errors > 0 {
            format!("{samples} samples; the server sent {errors} error frames (are the channels declared, e.g. --channel 'load.*', and may the key publish?)")
        } else {
            format!("{samples} samples")
        },
        target: "> 0 when publishing".into(),
        ok: samples > 0 || !publishing,
    }
}

pub fn checks(report: &Value, targets: &Targets) -> Vec<Check> {
    let f = |path: &[&str]| {
        path.iter()
            .fold(report, |v, k| &v[*k])
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let mut out = vec![
        measured(report),
        Check {
            name: "connection success",
            value: format!("{:.2}%", f(&["connections", "success"]) * 100.0),
            target: format!(">= {:.1}%", targets.min_connect_success * 100.0),
            ok: f(&["connections", "success"]) >= targets.min_connect_success,
        },
        Check {
            name: "p95 latency",
            value: format!("{:.3} ms", f(&["latency_ms", "p95"])),
            target: format!("<= {} ms", targets.p95_ms),
            ok: f(&["latency_ms", "p95"]) <= targets.p95_ms,
        },
        Check {
            name: "drop rate",
            value: format!("{:.4}%", f(&["delivery", "drop_rate"]) * 100.0),
            target: format!("<= {}%", targets.max_drop_rate * 100.0),
            ok: f(&["delivery", "drop_rate"]) <= targets.max_drop_rate,
        },
        Check {
            name: "queue overflow",
            value: format!("{}", f(&["server", "queue_overflow"])),
            target: format!("<= {}", targets.max_queue_overflow),
            ok: f(&["server", "queue_overflow"]).is_nan()
                || f(&["server", "queue_overflow"]) <= targets.max_queue_overflow as f64,
        },
    ];
    if let Some(p99) = targets.p99_ms {
        out.push(Check {
            name: "p99 latency",
            value: format!("{:.3} ms", f(&["latency_ms", "p99"])),
            target: format!("<= {p99} ms"),
            ok: f(&["latency_ms", "p99"]) <= p99,
        });
    }
    if let Some(gap) = targets.max_latency_gap_ms {
        // The server measures publish → socket write; the loadgen publish →
        // arrival. Arrival comes after the write, so the server's figures may
        // not exceed the loadgen's (0.1 ms for histogram rounding), and at
        // light load the two should be close.
        let client = (f(&["latency_ms", "p50"]), f(&["latency_ms", "p99"]));
        let server = (
            f(&["server", "latency_p50_ms"]),
            f(&["server", "latency_p99_ms"]),
        );
        let ok =
            server.0 <= client.0 + 0.1 && server.1 <= client.1 + 0.1 && client.0 - server.0 <= gap;
        out.push(Check {
            name: "metrics cross-check",
            value: format!(
                "server p50/p99 {:.3}/{:.3} ms vs loadgen {:.3}/{:.3} ms",
                server.0, server.1, client.0, client.1
            ),
            target: format!("server <= loadgen, p50 gap <= {gap} ms"),
            ok,
        });
    }
    if targets.exact_accounting {
        let ok = report["accounting"]["balanced"].as_bool().unwrap_or(false);
        out.push(Check {
            name: "accounting",
            value: if ok {
                "delivered + dropped + conflated = published × subscribers".into()
            } else {
                "unbalanced".into()
            },
            target: "exact".into(),
            ok,
        });
    }
    let wrong = f(&["skipped", "wrong"]);
    out.push(Check {
        name: "skipped exact",
        value: format!("{wrong} wrong of {}", f(&["skipped", "checked"])),
        target: "0 wrong".into(),
        ok: wrong == 0.0,
    });
    if report["burst"].is_object() {
        out.extend(burst_checks(&report["burst"], targets));
    }
    out
}

/// Scenario burst: every (client, burst) pair fresh before the next burst,
/// within the target if one is given.
fn burst_checks(burst: &Value, targets: &Targets) -> Vec<Check> {
    let stale = f(&burst["never_fresh"]);
    let mut out = vec![Check {
        name: "fresh before next burst",
        value: format!("{stale} stale of {} pairs", f(&burst["pairs"])),
        target: "0 stale".into(),
        ok: stale == 0.0 && f(&burst["pairs"]) > 0.0,
    }];
    if let Some(max) = targets.max_freshness_ms {
        let worst = f(&burst["freshness_ms"]["max"]);
        out.push(Check {
            name: "freshness",
            value: format!("max {worst:.3} ms"),
            target: format!("<= {max} ms"),
            ok: worst <= max,
        });
    }
    out
}

/// Prints the report for a person.
pub fn print(report: &Value, checks: &[Check]) {
    let l = &report["latency_ms"];
    let d = &report["delivery"];
    let c = &report["connections"];
    println!(
        "scenario {}  ({} s measured)",
        report["scenario"].as_str().unwrap_or("?"),
        report["measured_seconds"]
    );
    println!(
        "connections  {} of {} connected ({:.2}%), {} failed, {} closed unexpectedly",
        c["connected"],
        c["attempted"],
        c["success"].as_f64().unwrap_or(0.0) * 100.0,
        c["failed"],
        c["unexpected_closes"]
    );
    if let Some(why) = c["first_failure"].as_str() {
        println!("             first failure: {why}");
    }
    println!(
        "published    {} msgs ({:.0}/s in window; publisher lag {} skipped)",
        report["publish"]["published"],
        report["publish"]["rate_in_window"].as_f64().unwrap_or(0.0),
        report["publish"]["lag_skipped"]
    );
    println!(
        "delivered    {} of {} expected; {:.0} deliveries/s in window",
        d["delivered"],
        d["expected"],
        d["per_second"].as_f64().unwrap_or(0.0)
    );
    println!(
        "drops        {} ({:.4}%): {} seq gaps, {} never arrived; {} duplicates, {} reordered",
        d["dropped"],
        d["drop_rate"].as_f64().unwrap_or(0.0) * 100.0,
        d["seq_gaps"],
        d["never_arrived"],
        d["duplicates"],
        d["reordered"]
    );
    if report["reconnect"]["reconnects"].as_u64().unwrap_or(0) > 0 {
        let r = &report["reconnect"];
        println!(
            "reconnects   {} ({} replayed overlap, {} gaps not covered by replay)",
            r["reconnects"], r["replay_overlap"], r["gaps"]
        );
    }
    println!(
        "latency      p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  ({} samples)",
        f(&l["p50"]), f(&l["p90"]), f(&l["p95"]), f(&l["p99"]), f(&l["p999"]), f(&l["max"]), l["samples"]
    );
    let s = &report["server"];
    if !s.is_null() {
        println!(
            "server       sent {} conflated {} dropped {} (outbox_full {}, rate_limited {}, shard_overflow {}, closed {}); its latency p50 {:.3} p99 {:.3} ms; queued at window end {} (deepest {})",
            s["sent"], s["conflated"], s["dropped"], s["outbox_full"], s["rate_limited"], s["shard_overflow"], s["closed"], f(&s["latency_p50_ms"]), f(&s["latency_p99_ms"]),
            s["queued_at_window_end"], s["max_queue_depth_at_window_end"]
        );
    }
    let p = &report["process"];
    if !p["server_cpu_percent"].is_null() {
        println!(
            "server cpu   {:.1}% of a core, {:.3} µs per delivery; rss {} KiB",
            f(&p["server_cpu_percent"]),
            f(&p["server_cpu_us_per_delivery"]),
            p["server_rss_kib"]
        );
    }
    // Memory per connection means something only while connections are idle.
    let idle = report["scenario"] == "connections";
    if let Some(per) = p["server_rss_per_connection_kib"].as_f64().filter(|_| idle) {
        println!(
            "server rss   {} KiB before connecting, {} KiB just connected, {} KiB at the end: {:.2} KiB per connection ({:.2} just after connecting)",
            p["server_rss_before_kib"],
            p["server_rss_connected_kib"],
            p["server_rss_kib"],
            per,
            f(&p["server_rss_per_connection_at_connect_kib"])
        );
    }
    println!(
        "loadgen cpu  {:.1}% of a core",
        f(&p["loadgen_cpu_percent"])
    );
    if report["accounting"]["checked"].as_bool() == Some(true) {
        let a = &report["accounting"];
        println!(
            "accounting   loadgen delivered {} + server dropped {} + conflated {} + filtered {} vs published × subscribers {}: {}",
            a["delivered"], a["server_dropped"], a["server_conflated"], a["server_filtered"], a["expected"],
            if report["accounting"]["balanced"].as_bool() == Some(true) { "exact" } else { "UNBALANCED" }
        );
    }
    println!(
        "skipped      {} events checked against their seq jump, {} wrong",
        report["skipped"]["checked"], report["skipped"]["wrong"]
    );
    let b = &report["burst"];
    if b.is_object() {
        let fm = &b["freshness_ms"];
        println!(
            "bursts       {} measured ({}× for {} s every {} s, {} keys per topic): {} (client, burst) pairs, {} never fresh before the next burst",
            b["bursts"], b["factor"], b["for_seconds"], b["every_seconds"], b["keys"], b["pairs"], b["never_fresh"]
        );
        println!(
            "freshness    p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3} ms  (mean {:.3}; publish errors {})",
            f(&fm["p50"]), f(&fm["p90"]), f(&fm["p99"]), f(&fm["max"]), f(&fm["mean"]), b["publish_errors"]
        );
    }
    for check in checks {
        println!(
            "{}  {:<20} {:>14}  (target {})",
            if check.ok { "PASS" } else { "FAIL" },
            check.name,
            check.value,
            check.target
        );
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `json!` with the histogram's percentiles in milliseconds.
pub fn latency_json(h: &hdrhistogram::Histogram<u64>) -> Value {
    let q = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    json!({
        "samples": h.len(),
        "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "p999": q(0.999),
        "max": h.max() as f64 / 1000.0,
        "mean": h.mean() / 1000.0,
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
