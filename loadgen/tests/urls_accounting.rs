//! `--urls`: the loadgen binary given several urls. Against one real server
//! (started in-process on an ephemeral port) named twice, every check of a
//! short fan-out run passes with exact accounting — the server's stats are
//! read once per distinct address, so nothing is counted twice — and the
//! report breaks latency down per node. Urls of mixed schemes, and `--url`
//! with `--urls`, are refused before anything connects.
//!
//! Two distinct nodes joined through Redis (a `redis-server` of the test's
//! own): subscribers on both, publishers on the first, exact accounting
//! summed over both nodes, a breakdown per node.

mod common;

use common::{loadgen, text};
use serde_json::Value;
use shardcast_server::Server;

fn server() -> Server {
    common::server(&["load.*"], "")
}

/// A short fan-out run against `urls` with exact accounting, which must
/// pass every check (accounting among them): its JSON report, and the
/// stdout it came in (for messages).
fn short_run(urls: &str) -> (Value, String) {
    let out = loadgen(&[
        "--urls",
        urls,
        "--connections",
        "20",
        "--topics",
        "4",
        "--rate",
        "200",
        "--warmup",
        "0.5",
        "--duration",
        "2.5",
        "--exact-accounting",
        "--quiet",
        "--json",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["name"] == "accounting"));
    for check in checks {
        assert_eq!(check["ok"], true, "{check}\n{stderr}");
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (report, stdout)
}

#[test]
fn one_server_named_twice_is_counted_once_and_every_check_passes() {
    let server = server();
    let url = format!("ws://{}", server.local_addr());
    let urls = format!("{url},{url}");
    let (report, stdout) = short_run(&urls);
    server.shutdown();

    // Read twice, the server's sent would be twice the deliveries.
    let delivered = report["delivery"]["delivered"].as_u64().unwrap();
    assert!(delivered > 0, "{stdout}");
    assert_eq!(report["accounting"]["balanced"], true, "{stdout}");
    assert_eq!(report["accounting"]["server_sent"], delivered, "{stdout}");
    assert_eq!(report["server"]["sent"], delivered, "{stdout}");

    // Both urls are the publishing node: one node, every subscriber on it,
    // and no other node to compare it with.
    assert_eq!(report["config"]["urls"], serde_json::json!([url, url]));
    assert_eq!(report["config"]["url"], url.as_str());
    let nodes = report["nodes"].as_array().expect("a per-node breakdown");
    assert_eq!(nodes.len(), 1, "{stdout}");
    assert_eq!(nodes[0]["url"], url.as_str());
    assert_eq!(nodes[0]["subscribers"], 20);
    assert_eq!(nodes[0]["delivered"], delivered);
    for q in ["p50_ms", "p99_ms", "p999_ms"] {
        assert!(
            nodes[0][q].as_f64().is_some_and(|ms| ms > 0.0),
            "{q}: {stdout}"
        );
    }
    let overhead = &report["cross_node_overhead_ms"];
    assert!(
        overhead["p50"].is_null() && overhead["p99"].is_null(),
        "{overhead}"
    );
}

#[test]
fn urls_of_mixed_schemes_are_refused_naming_both() {
    let out = loadgen(&["--urls", "ws://127.0.0.1:1,wss://127.0.0.1:2"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ws://127.0.0.1:1") && stderr.contains("wss://127.0.0.1:2"),
        "{stderr}"
    );
}

#[test]
fn url_and_urls_together_are_refused() {
    let out = loadgen(&["--url", "ws://127.0.0.1:1", "--urls", "ws://127.0.0.1:2"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
    assert!(
        stderr.contains("--url") && stderr.contains("--urls"),
        "{stderr}"
    );
}

#[test]
fn two_nodes_joined_through_redis_pass_every_check_with_exact_accounting() {
    let Some(redis) = common::Redis::start() else {
        return;
    };
    let a = common::server(&["load.*"], &redis.broker("a"));
    let b = common::server(&["load.*"], &redis.broker("b"));
    let (url_a, url_b) = (
        format!("ws://{}", a.local_addr()),
        format!("ws://{}", b.local_addr()),
    );
    let urls = format!("{url_a},{url_b}");
    let (report, stdout) = short_run(&urls);
    a.shutdown();
    b.shutdown();
    let delivered = report["delivery"]["delivered"].as_u64().unwrap();
    assert_eq!(report["accounting"]["balanced"], true, "{stdout}");
    assert_eq!(report["server"]["sent"], delivered, "{stdout}");
    let nodes = report["nodes"].as_array().expect("a per-node breakdown");
    assert_eq!(nodes.len(), 2, "{stdout}");
    for (node, url) in nodes.iter().zip([&url_a, &url_b]) {
        assert_eq!(node["url"], url.as_str());
        assert_eq!(node["subscribers"], 10, "{node}");
        assert!(node["delivered"].as_u64().unwrap() > 0, "{node}");
    }
    let overhead = &report["cross_node_overhead_ms"];
    assert!(overhead["p99"].is_f64(), "{overhead}");
}
