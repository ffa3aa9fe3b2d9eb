//! The report: its targets and checks, what it says for a person
//! (`print.rs`), the `--report` directory (`html.rs`, `svg.rs`), the
//! measurements it takes from outside the loadgen (`server.rs`), and the
//! per-node breakdown of a run with several `--urls` (`nodes.rs`).
//!
//! The report itself is one JSON value built by `window.rs`; everything
//! here reads it, so the text, the JSON and the HTML say the same thing.

mod html;
mod nodes;
mod print;
mod server;
mod svg;

use std::path::Path;

use serde_json::{json, Value};

pub use nodes::{to_json as nodes_json, NodeFigures};
pub use print::print;
pub use server::{cpu_seconds, cpu_seconds_of, rss_kib_of, server_figures, ServerFigures};

use crate::refusal;
use crate::state::quantile_ms;

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
            format!("{samples} samples; the server sent {errors} error frames (see refused)")
        } else {
            format!("{samples} samples")
        },
        target: "> 0 when publishing".into(),
        ok: samples > 0 || !publishing,
    }
}

/// Every channel asked for was subscribed, every publish taken: a refusal
/// means the run measured less than it was asked to, whatever the figures.
fn accepted(report: &Value) -> Check {
    let r = &report["refused"];
    let subscriptions = r["subscriptions"].as_u64().unwrap_or(0);
    let publishes = r["publishes"].as_u64().unwrap_or(0);
    let value = if subscriptions == 0 && publishes == 0 {
        "none refused".to_owned()
    } else {
        let names: Vec<&str> = r["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let distinct = r["distinct_channels"].as_u64().unwrap_or(0) as usize;
        let more = match distinct.saturating_sub(names.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!(
            "{subscriptions} subscriptions refused ({}{more}), {publishes} publishes refused",
            names.join(", ")
        )
    };
    Check {
        name: "channels accepted",
        value,
        target: "none refused".into(),
        ok: subscriptions == 0 && publishes == 0,
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
        accepted(report),
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
        // light load the two should be close. With several --urls the
        // server's figures are the publishing node's (server.rs), so they
        // are compared with the latency of that node's subscribers.
        let client = match report["nodes"].get(0) {
            Some(node) => {
                let ms = |q: &str| node[q].as_f64().unwrap_or(f64::NAN);
                (ms("p50_ms"), ms("p99_ms"))
            }
            None => (f(&["latency_ms", "p50"]), f(&["latency_ms", "p99"])),
        };
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

/// `json!` with the histogram's percentiles in milliseconds.
pub fn latency_json(h: &hdrhistogram::Histogram<u64>) -> Value {
    let q = |q: f64| quantile_ms(h, q);
    json!({
        "samples": h.len(),
        "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "p999": q(0.999),
        "max": h.max() as f64 / 1000.0,
        "mean": h.mean() / 1000.0,
    })
}

/// The report with its checks: what `--json` prints and `report.json` holds.
pub fn with_checks(report: &Value, checks: &[Check]) -> Value {
    let mut out = report.clone();
    out["checks"] = checks
        .iter()
        .map(|c| json!({"name": c.name, "value": c.value, "target": c.target, "ok": c.ok}))
        .collect();
    out
}

/// Writes the `--report` directory: `index.html`, `report.json` (`json`,
/// as `--json` prints it) and, when kept, `latency.hlog`.
pub fn write_dir(
    dir: &Path,
    report: &Value,
    checks: &[Check],
    json: &str,
    hlog: Option<&[u8]>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("index.html"), html::page(report, checks))?;
    std::fs::write(dir.join("report.json"), json)?;
    if let Some(hlog) = hlog {
        std::fs::write(dir.join("latency.hlog"), hlog)?;
    }
    Ok(())
}

/// What to change when the run was held back by the server's settings
/// rather than by load: one line per cause found in the report.
pub fn hints(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = report["connections"]["first_failure"].as_str() {
        out.push(format!("connections: {}", refusal::handshake_fix(why)));
    }
    // One line per fix, naming every refusal it answers.
    let mut fixes: Vec<(&str, Vec<String>)> = Vec::new();
    for error in report["refused"]["errors"].as_array().into_iter().flatten() {
        let fix = error["fix"].as_str().unwrap_or_default();
        let what = format!(
            "{} {}",
            error["side"].as_str().unwrap_or("?"),
            error["code"].as_str().unwrap_or("?")
        );
        match fixes.iter_mut().find(|(f, _)| *f == fix) {
            Some((_, whats)) => whats.push(what),
            None => fixes.push((fix, vec![what])),
        }
    }
    out.extend(
        fixes
            .into_iter()
            .map(|(fix, whats)| format!("{}: {fix}", whats.join(", "))),
    );
    if report["server"]["rate_limited"].as_u64().unwrap_or(0) > 0 {
        out.push("the server rate-limited deliveries (telemetry.rate_limit_per_second, 120 events/s per connection by default): start it with --rate-limit 0, or lower --rate or --subs".into());
    }
    out
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests;
