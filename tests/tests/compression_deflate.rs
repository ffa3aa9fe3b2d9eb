//! permessage-deflate with a client of another implementation: the Python
//! `websockets` package (tests/deflate/clients.py), which offers the
//! extension by default. Two clients of each protocol endpoint (telemetry,
//! BondX, FastWS, simple) negotiate it, subscribe to one FastWS topic, and
//! decode the same published event; each protocol compresses it once
//! (stats and metrics), and a tokio-tungstenite client on the same topic,
//! which does not offer the extension, gets it plain and unaffected. The
//! same again over `wss://`: compressed frames inside TLS records.
//!
//! Needs `python3` with `websockets` (`pip install websockets`); without it
//! the test says so in one line and passes, except under CI (`CI` set),
//! where it fails.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

const TOPIC: &str = r#"executions:{"accountId":"A-1","symbol":"AAPL"}"#;

/// Why the Python client cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
    {
        Err(_) => Some("no python3 on PATH".into()),
        Ok(out) if !out.status.success() => {
            Some("python3 lacks websockets (pip install websockets)".into())
        }
        Ok(_) => None,
    }
}

/// The clients' specs: two per protocol, each subscribing to [`TOPIC`].
fn specs(server: &TestServer, until: &str, ca: Option<&str>) -> Vec<(&'static str, Value)> {
    let subscribe = json!({"action": "subscribe", "channels": [TOPIC]}).to_string();
    let bondx = json!({"type": "subscribe", "topic": TOPIC}).to_string();
    let payload = json!({"accountId": "A-1", "symbol": "AAPL"});
    let fastws = json!({"type": "executions.subscribe", "payload": payload}).to_string();
    let token = user_token("carol");
    let one = |protocol, path: String, headers: Value, send: &str, ready: &str| {
        let spec = json!({
            "url": server.ws_url(&path),
            "headers": headers,
            "send": [send],
            "ready": ready,
            "until": until,
            "ca": ca,
        });
        (protocol, spec)
    };
    let mut out = Vec::new();
    for _ in 0..2 {
        out.extend([
            one(
                "telemetry",
                "/ws/telemetry".into(),
                json!({"X-API-Key": ADMIN}),
                &subscribe,
                r#""type":"ack""#,
            ),
            one(
                "bondx",
                format!("/api/v1/ws/market/M1?token={token}"),
                json!({}),
                &bondx,
                r#""type":"ack""#,
            ),
            one(
                "fastws",
                "/api/v1/ws".into(),
                json!({}),
                &fastws,
                "executions.subscribe.response",
            ),
            one(
                "simple",
                "/ws".into(),
                json!({}),
                r#"{"type":"ping"}"#,
                "pong",
            ),
        ]);
    }
    out
}

/// Whether the test can run; `false` (said in one line) when Python or
/// its package is missing, except under CI, where that fails the test.
fn can_run(test: &str) -> bool {
    let Some(missing) = missing_prerequisite() else {
        return true;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the deflate test: {missing}"
    );
    eprintln!("SKIPPED {test}: {missing}");
    false
}

fn config() -> String {
    format!(
        "[simple.feeds]\ntrades = '{TOPIC}'\n{}",
        bondx_section("extra_scope = [\"executions:*\"]")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_negotiates_deflate_and_compresses_once() {
    if can_run("every_protocol_negotiates_deflate_and_compresses_once") {
        negotiates_and_compresses_once(&TestServer::start(&config()), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_works_the_same_over_wss() {
    if can_run("deflate_works_the_same_over_wss") {
        let cert = TestCert::new();
        let server = TestServer::start_tls(&config(), "", &cert);
        negotiates_and_compresses_once(&server, cert.cert.to_str()).await;
    }
}

/// Two Python clients per protocol on `server` (trusting `ca` over TLS)
/// negotiate deflate and decode one published event, compressed once per
/// protocol; a client without the extension gets it plain.
async fn negotiates_and_compresses_once(server: &TestServer, ca: Option<&str>) {
    let mut plain = server.subscriber(&[TOPIC]).await;
    // Long enough to compress (above the 256-byte threshold), and varied.
    let note: String = (0..40)
        .map(|i| format!("fill {i} at {}.25; ", 150 + i))
        .collect();
    let marker = "deflate-marker-7";
    let data =
        json!({"symbol": "AAPL", "side": "BUY", "quantity": 10, "note": note, "tag": marker});
    let specs = specs(server, marker, ca);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deflate/clients.py");
    let list = Value::Array(specs.iter().map(|(_, s)| s.clone()).collect());
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(list.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = move || {
        let line = lines.next().expect("a line from clients.py").unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let (ready, mut next_line) = tokio::task::spawn_blocking(move || (next_line(), next_line))
        .await
        .unwrap();
    for answer in ready["extensions"].as_array().unwrap() {
        let answer = answer.as_str().unwrap();
        assert!(answer.starts_with("permessage-deflate"), "{answer}");
        assert!(answer.contains("server_no_context_takeover"), "{answer}");
        assert!(answer.contains("client_no_context_takeover"), "{answer}");
    }
    let before = server.stats().await["protocols"].clone();

    server.publish(TOPIC, data.clone(), Some("AAPL")).await;
    writeln!(stdin, "go").unwrap();
    let count = specs.len();
    let received = tokio::task::spawn_blocking(move || (0..count).map(|_| next_line()).collect())
        .await
        .unwrap();
    let received: Vec<Value> = received;
    assert!(child.wait().unwrap().success());

    let mut texts: Vec<(&str, String)> = Vec::new();
    for line in &received {
        let i = line["client"].as_u64().unwrap() as usize;
        let text = line["text"].as_str().unwrap().to_owned();
        // Decoded whole: every field of the data is in the event.
        for (field, value) in data.as_object().unwrap() {
            assert!(text.contains(&format!("\"{field}\":{value}")), "{text}");
        }
        texts.push((specs[i].0, text));
    }
    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let same: Vec<&String> = texts
            .iter()
            .filter(|(p, _)| *p == protocol)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(same.len(), 2, "{protocol}");
        assert_eq!(same[0], same[1], "{protocol}");
    }
    // The plain client got the same telemetry event, uncompressed.
    let event = next_of_type(&mut plain, "event").await;
    assert_eq!(event["data"], data);

    let stats = eventually_stats(server, |s| {
        s["protocols"]["simple"]["sent"] == before["simple"]["sent"].as_u64().unwrap() + 2
    })
    .await;
    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let figures = &stats["protocols"][protocol];
        let was = &before[protocol]["deflate"];
        let delta = |field: &str| {
            figures["deflate"][field].as_u64().unwrap() - was[field].as_u64().unwrap()
        };
        assert_eq!(
            delta("compressions"),
            1,
            "{protocol}: once for two subscribers"
        );
        assert!(
            delta("bytesOut") < delta("bytesIn"),
            "{protocol}: {figures}"
        );
        let encodings = figures["encodings"].as_u64().unwrap();
        assert_eq!(
            encodings - before[protocol]["encodings"].as_u64().unwrap(),
            1
        );
    }
    assert_eq!(stats["protocols"]["telemetry"]["connections"], 1);
    assert_eq!(stats["protocols"]["telemetry"]["deflate"]["connections"], 0);
    let metrics = server.metrics().await;
    let line = "shardcast_protocol_deflate_compressions_total{protocol=\"bondx\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}
