//! Unit tests of the report's checks and fixes.

use serde_json::json;

use super::*;

fn targets() -> Targets {
    Targets {
        p95_ms: 100.0,
        p99_ms: None,
        max_drop_rate: 0.01,
        min_connect_success: 0.95,
        max_queue_overflow: 1000,
        exact_accounting: false,
        max_latency_gap_ms: None,
        max_freshness_ms: None,
    }
}

/// A report of a run at `rate` that measured `samples` deliveries.
fn report(rate: f64, samples: u64, error_frames: u64) -> Value {
    json!({
        "config": {"connections": 10, "rate": rate},
        "connections": {"success": 1.0},
        "latency_ms": {"samples": samples, "p95": 0.0, "p99": 0.0},
        "delivery": {"drop_rate": 0.0, "error_frames": error_frames},
        "server": {},
    })
}

fn measured_ok(report: &Value) -> (bool, String) {
    let check = checks(report, &targets())
        .into_iter()
        .find(|c| c.name == "events measured")
        .expect("always checked");
    (check.ok, check.value)
}

#[test]
fn zero_samples_while_publishing_is_not_a_pass() {
    let (ok, value) = measured_ok(&report(1000.0, 0, 3));
    assert!(!ok);
    assert!(value.contains("3 error frames"), "{value}");
    assert!(measured_ok(&report(1000.0, 5, 0)).0);
    // Nothing published (the connections scenario): nothing to measure.
    assert!(measured_ok(&report(0.0, 0, 0)).0);
}

#[test]
fn refused_channels_fail_the_run_and_each_fix_is_said_once() {
    let accepted = |r: &Value| {
        checks(r, &targets())
            .into_iter()
            .find(|c| c.name == "channels accepted")
            .expect("always checked")
    };
    let mut r = report(1000.0, 5, 2);
    assert!(accepted(&r).ok, "nothing refused");
    r["refused"] = json!({
        "subscriptions": 20, "publishes": 5, "channels": ["load.0", "load.1"], "distinct_channels": 3,
        "errors": [
            {"side": "subscribe", "code": "UNKNOWN_CHANNEL", "fix": "declare them"},
            {"side": "publish", "code": "UNKNOWN_CHANNEL", "fix": "declare them"},
        ],
    });
    let check = accepted(&r);
    assert!(!check.ok);
    assert!(
        check.value.contains("(load.0, load.1 and 1 more)"),
        "{}",
        check.value
    );
    assert_eq!(
        hints(&r),
        vec!["subscribe UNKNOWN_CHANNEL, publish UNKNOWN_CHANNEL: declare them"]
    );
}

#[test]
fn with_several_urls_the_cross_check_reads_the_publishing_nodes_subscribers() {
    let cross_check = |r: &Value| {
        let targets = Targets {
            max_latency_gap_ms: Some(1.0),
            ..targets()
        };
        checks(r, &targets)
            .into_iter()
            .find(|c| c.name == "metrics cross-check")
            .expect("asked for")
    };
    let mut r = report(1000.0, 5, 0);
    r["server"] = json!({"latency_p50_ms": 0.4, "latency_p99_ms": 0.9});
    // Every subscriber together: slowed by those on another node.
    r["latency_ms"] = json!({"samples": 5, "p50": 3.0, "p95": 4.0, "p99": 5.0});
    assert!(!cross_check(&r).ok, "a 2.6 ms gap on one url");
    r["nodes"] = json!([
        {"url": "ws://a:1", "p50_ms": 0.5, "p99_ms": 1.0},
        {"url": "ws://b:2", "p50_ms": 5.0, "p99_ms": 9.0},
    ]);
    let check = cross_check(&r);
    assert!(check.ok, "{}", check.value);
    assert!(
        check.value.contains("loadgen 0.500/1.000 ms"),
        "{}",
        check.value
    );
}
