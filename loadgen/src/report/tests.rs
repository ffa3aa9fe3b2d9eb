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
