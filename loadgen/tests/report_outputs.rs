//! The loadgen binary against a real server started in-process on an
//! ephemeral port: what it writes where (the JSON report alone on stdout,
//! progress on stderr), what it says when the server refuses its channels,
//! and the files of `--report DIR`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use base64::Engine as _;
use common::text;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;
use shardcast_server::Server;

/// Runs the loadgen against `server`: few connections, a short run, and `extra` flags.
fn loadgen(server: &Server, extra: &[&str]) -> Output {
    let url = format!("ws://{}", server.local_addr());
    let mut flags = vec!["--url", &url, "--connections", "20", "--topics", "4"];
    flags.extend([
        "--warmup",
        "0.5",
        "--duration",
        "2.5",
        "--progress-every",
        "0.5",
    ]);
    flags.extend(extra);
    common::loadgen(&flags)
}

#[test]
fn json_goes_alone_to_stdout_and_progress_to_stderr() {
    let server = common::server(&["load.*"], "");
    let out = loadgen(&server, &["--rate", "200", "--json"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    assert!(
        report["latency_ms"]["samples"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(report["checks"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(report["refused"]["subscriptions"], 0, "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("deliveries/s") && l.contains("connections")),
        "no progress line on stderr:\n{stderr}"
    );
    server.shutdown();
}

#[test]
fn the_connections_scenario_passes_without_publishing() {
    // Idle connections: nothing is published, so no sample is owed.
    let server = common::server(&["load.*"], "");
    let out = loadgen(&server, &["--scenario", "connections"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("PASS  events measured"), "{stdout}");
    server.shutdown();
}

#[test]
fn channels_the_server_refuses_are_named_with_a_fix_and_fail_the_run() {
    // The server's own channels only: nothing under load.* exists.
    let server = common::server(&[], "");
    let out = loadgen(&server, &["--rate", "200"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for needed in ["load.0", "load.3", "UNKNOWN_CHANNEL", "--channel 'load.*'"] {
        assert!(
            stdout.contains(needed),
            "report lacks {needed:?}:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("channels accepted")),
        "{stdout}"
    );
    // Told as it happened, too.
    assert!(
        stderr.contains("server refused a subscribe: UNKNOWN_CHANNEL"),
        "{stderr}"
    );
    server.shutdown();
}

#[test]
fn the_report_dir_holds_a_page_the_json_and_an_hlog_of_every_sample() {
    let server = common::server(&["load.*"], "");
    let dir = scratch_dir("report");
    let report = dir.to_str().unwrap();
    let out = loadgen(&server, &["--rate", "200", "--json", "--report", report]);
    server.shutdown();
    let stdout = text(&out.stdout);
    let printed: Value = serde_json::from_str(&stdout).expect("stdout is JSON");

    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap())
        .expect("report.json is JSON");
    assert_eq!(saved, printed, "report.json is what --json prints");
    let samples = saved["latency_ms"]["samples"].as_u64().unwrap();
    assert!(samples > 0, "{stdout}");

    let (intervals, total) = hlog_counts(&dir.join("latency.hlog"));
    assert_eq!(total, samples, "the hlog holds every sample of the window");
    let seconds = saved["series"]["t"].as_array().unwrap().len();
    assert_eq!(intervals, seconds, "one histogram per point of the series");

    let html = String::from_utf8(std::fs::read(dir.join("index.html")).unwrap()).unwrap();
    balanced(&html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    let charts = html.matches("<svg").count();
    assert!(
        charts >= 4,
        "latency, deliveries, drops, connections: {charts}"
    );
    assert!(html.contains("<polyline") && html.contains("points=\""));
    assert!(
        html.contains("server CPU: not measured"),
        "no --server-pid given"
    );
    assert!(html.contains("channels accepted") && html.contains("p95 latency"));
    // Readable offline: nothing to run, nothing to fetch.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Intervals in an interval log and their histograms' total count.
fn hlog_counts(path: &Path) -> (usize, u64) {
    let log = std::fs::read(path).expect("latency.hlog written");
    let mut deserializer = Deserializer::new();
    let (mut intervals, mut total) = (0, 0);
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(interval) = entry.expect("the log parses") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(interval.encoded_histogram())
                .expect("base64");
            let h: Histogram<u64> = deserializer
                .deserialize(&mut &bytes[..])
                .expect("a histogram");
            intervals += 1;
            total += h.len();
        }
    }
    (intervals, total)
}

/// Every element is closed, in order (void and self-closed ones aside).
fn balanced(html: &str) {
    let void: HashSet<&str> = ["meta", "br", "hr", "img", "link", "input"].into();
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        let end = rest[at..].find('>').expect("every tag ends") + at;
        let tag = &rest[at + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap();
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(closing.trim()), "mismatched </{closing}>");
        } else if !tag.ends_with('/') && !void.contains(name) {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardcast-loadgen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
