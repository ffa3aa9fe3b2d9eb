//! Retained history costs what its data costs, within the configured bytes:
//! a publish key once grew the server from 19 MB to 2.4 GB in 12 s.
//!
//! One test in this binary, so that the resident set it measures is this
//! server's alone (the server runs in the test process).

mod common;

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_flood_of_padded_and_large_publishes_stays_within_the_history_budget() {
    let budget = 16 * MIB;
    let server = TestServer::start(&format!(
        "max_publish_body = 4194304\n[topics]\nhistory_bytes = {}\nmax_total_bytes = {budget}\ncreation_burst = 10000",
        4 * MIB
    ));
    // Warm up allocator and sockets, then take the baseline.
    server.publish_batch("t1", 100).await;
    let before = rss();

    // 1. Tiny data padded with whitespace, each under its own key: every
    //    message is retained (snapshot), so each one's padding would stay
    //    alive if a retained message kept the request around it.
    let padding = " ".repeat(256 * 1024);
    for i in 0..200 {
        let body = format!(r#"{{"channel":"t2","key":"k{i}","data":{padding}{{}}{padding}}}"#);
        let (status, answer) = server
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let stats = server.stats().await;
    let t2 = channel(&stats, "t2");
    assert_eq!(t2["snapshotCount"], 200, "{t2}");
    // 200 two-byte messages retained: a few hundred bytes each, all in.
    assert!(t2["historyBytes"].as_u64().unwrap() < 200 * 1024, "{t2}");

    // 2. Real data, far more than the budget: 40 channels x 40 messages of
    //    48 KiB (75 MiB published) against 16 MiB of history.
    let data = format!(r#"{{"p":"{}"}}"#, "x".repeat(48 * 1024));
    // The most held after any batch: shard 0's sweep (every 5 s) may trim
    // every channel to a share when the budget is nearly spent, so the
    // figure after the last batch alone may be low by design.
    let mut peak = 0;
    for c in 0..40 {
        let messages: Vec<Value> = (0..40)
            .map(|_| {
                serde_json::from_str(&format!(r#"{{"channel":"prices.c{c}","data":{data}}}"#))
                    .unwrap()
            })
            .collect();
        let body = serde_json::json!({ "messages": messages }).to_string();
        let (status, answer) = server
            .http("POST", "/api/v1/publish", Some(PUB), Some(&body))
            .await;
        assert_eq!(status, 200, "{}", &answer.to_string()[..200]);
        let held = server.stats().await["historyBytes"].as_u64().unwrap();
        assert!(
            held <= budget,
            "history holds {held} bytes, budget {budget}"
        );
        peak = peak.max(held);
    }
    assert!(peak > budget / 2, "the budget is used, not wasted: {peak}");
    let stats = server.stats().await;
    let held = stats["historyBytes"].as_u64().unwrap();
    assert!(
        held <= budget,
        "history holds {held} bytes, budget {budget}"
    );
    for c in 0..40 {
        let channel = channel(&stats, &format!("prices.c{c}"));
        assert!(
            channel["historyBytes"].as_u64().unwrap() <= 4 * MIB,
            "{channel}"
        );
    }
    let metrics = server.metrics().await;
    let refused_line = metrics
        .lines()
        .find(|l| l.starts_with("shardcast_history_refused_total "))
        .unwrap();
    let refused: u64 = refused_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        refused > 0,
        "channels past the budget count what they could not keep"
    );

    // What the process grew by stays within the budget plus a margin for
    // the allocator and buffers, far below the 50 MiB of padding and the
    // 75 MiB of data that went through.
    let grown = rss().saturating_sub(before);
    eprintln!(
        "resident set grew by {:.1} MiB; history holds {:.1} MiB",
        grown as f64 / MIB as f64,
        held as f64 / MIB as f64
    );
    assert!(
        grown < budget + 24 * MIB,
        "resident set grew by {} MiB with a {} MiB history budget",
        grown / MIB,
        budget / MIB
    );
}
