//! The report for a person: lines of text, printed on stdout and shown as
//! they are on the `--report` page.

use serde_json::Value;

use super::{f, hints, Check};

/// Prints the report for a person.
pub fn print(report: &Value, checks: &[Check]) {
    for line in lines(report, checks) {
        println!("{line}");
    }
}

/// The report for a person, one line each; `checks` last.
pub fn lines(report: &Value, checks: &[Check]) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! say {
        ($($arg:tt)*) => { out.push(format!($($arg)*)) };
    }
    let l = &report["latency_ms"];
    let d = &report["delivery"];
    let c = &report["connections"];
    say!(
        "scenario {}  ({} s measured)",
        report["scenario"].as_str().unwrap_or("?"),
        report["measured_seconds"]
    );
    say!(
        "connections  {} of {} connected ({:.2}%), {} failed, {} closed unexpectedly",
        c["connected"],
        c["attempted"],
        c["success"].as_f64().unwrap_or(0.0) * 100.0,
        c["failed"],
        c["unexpected_closes"]
    );
    if let Some(why) = c["first_failure"].as_str() {
        say!("             first failure: {why}");
    }
    say!(
        "published    {} msgs ({:.0}/s in window; publisher lag {} skipped)",
        report["publish"]["published"],
        report["publish"]["rate_in_window"].as_f64().unwrap_or(0.0),
        report["publish"]["lag_skipped"]
    );
    say!(
        "delivered    {} of {} expected; {:.0} deliveries/s in window",
        d["delivered"],
        d["expected"],
        d["per_second"].as_f64().unwrap_or(0.0)
    );
    say!(
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
        say!(
            "reconnects   {} ({} replayed overlap, {} gaps not covered by replay)",
            r["reconnects"],
            r["replay_overlap"],
            r["gaps"]
        );
    }
    say!(
        "latency      p50 {:.3}  p90 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  ({} samples)",
        f(&l["p50"]), f(&l["p90"]), f(&l["p95"]), f(&l["p99"]), f(&l["p999"]), f(&l["max"]), l["samples"]
    );
    out.extend(super::nodes::lines(report));
    let s = &report["server"];
    if !s.is_null() {
        say!(
            "server       sent {} conflated {} dropped {} (outbox_full {}, rate_limited {}, shard_overflow {}, closed {}); its latency p50 {:.3} p99 {:.3} ms; queued at window end {} (deepest {})",
            s["sent"], s["conflated"], s["dropped"], s["outbox_full"], s["rate_limited"], s["shard_overflow"], s["closed"], f(&s["latency_p50_ms"]), f(&s["latency_p99_ms"]),
            s["queued_at_window_end"], s["max_queue_depth_at_window_end"]
        );
    }
    let p = &report["process"];
    if !p["server_cpu_percent"].is_null() {
        say!(
            "server cpu   {:.1}% of a core, {:.3} µs per delivery; rss {} KiB",
            f(&p["server_cpu_percent"]),
            f(&p["server_cpu_us_per_delivery"]),
            p["server_rss_kib"]
        );
    }
    // Memory per connection means something only while connections are idle.
    let idle = report["scenario"] == "connections";
    if let Some(per) = p["server_rss_per_connection_kib"].as_f64().filter(|_| idle) {
        say!(
            "server rss   {} KiB before connecting, {} KiB just connected, {} KiB at the end: {:.2} KiB per connection ({:.2} just after connecting)",
            p["server_rss_before_kib"],
            p["server_rss_connected_kib"],
            p["server_rss_kib"],
            per,
            f(&p["server_rss_per_connection_at_connect_kib"])
        );
    }
    say!(
        "loadgen cpu  {:.1}% of a core",
        f(&p["loadgen_cpu_percent"])
    );
    if report["accounting"]["checked"].as_bool() == Some(true) {
        let a = &report["accounting"];
        say!(
            "accounting   loadgen delivered {} + server dropped {} + conflated {} + filtered {} vs published × subscribers {}: {}",
            a["delivered"], a["server_dropped"], a["server_conflated"], a["server_filtered"], a["expected"],
            if report["accounting"]["balanced"].as_bool() == Some(true) { "exact" } else { "UNBALANCED" }
        );
    }
    say!(
        "skipped      {} events checked against their seq jump, {} wrong",
        report["skipped"]["checked"],
        report["skipped"]["wrong"]
    );
    let b = &report["burst"];
    if b.is_object() {
        let fm = &b["freshness_ms"];
        say!(
            "bursts       {} measured ({}× for {} s every {} s, {} keys per topic): {} (client, burst) pairs, {} never fresh before the next burst",
            b["bursts"], b["factor"], b["for_seconds"], b["every_seconds"], b["keys"], b["pairs"], b["never_fresh"]
        );
        say!(
            "freshness    p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3} ms  (mean {:.3}; publish errors {})",
            f(&fm["p50"]), f(&fm["p90"]), f(&fm["p99"]), f(&fm["max"]), f(&fm["mean"]), b["publish_errors"]
        );
    }
    let refused = &report["refused"];
    if let Some(names) = refused["channels"].as_array().filter(|n| !n.is_empty()) {
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        say!(
            "refused      {} subscriptions, to {} channels: {}",
            refused["subscriptions"],
            refused["distinct_channels"],
            names.join(", ")
        );
    }
    for e in refused["errors"].as_array().into_iter().flatten() {
        say!(
            "server said  {} {} ×{}: {}",
            e["side"].as_str().unwrap_or("?"),
            e["code"].as_str().unwrap_or("?"),
            e["count"],
            e["message"].as_str().unwrap_or("")
        );
    }
    for hint in hints(report) {
        say!("fix          {hint}");
    }
    for check in checks {
        say!(
            "{}  {:<20} {:>14}  (target {})",
            if check.ok { "PASS" } else { "FAIL" },
            check.name,
            check.value,
            check.target
        );
    }
    out
}
