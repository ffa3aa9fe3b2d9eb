//! `--tls` and `--deflate`: the loadgen drives a TLS server (a certificate
//! made for the test, checked with `--tls-ca`), with and without
//! permessage-deflate, and every check of a short fan-out run passes, exact
//! accounting included; without the right root it refuses to run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

mod common;

use serde_json::Value;
use shardcast_server::Server;

/// The certificate's PEM files, removed on drop.
struct Cert(PathBuf);

impl Cert {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardcast-loadgen-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_server(cert: &Cert) -> Server {
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"",
        cert.file("cert.pem"),
        cert.file("key.pem")
    );
    common::server(&["load.*"], &tls)
}

#[test]
fn a_fan_out_run_over_tls_passes_every_check() {
    let cert = Cert::new();
    let server = tls_server(&cert);
    fan_out_passes(&server, &cert, &[]);
    server.shutdown();
}

#[test]
fn a_fan_out_run_with_deflate_over_tls_passes_every_check() {
    let cert = Cert::new();
    let server = tls_server(&cert);
    // 512-byte payloads: above the server's 256-byte threshold.
    fan_out_passes(&server, &cert, &["--deflate", "--payload", "512"]);
    let stats = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(server.engine().stats());
    let compressed: u64 = stats.deflate_by_format().iter().map(|c| c.messages).sum();
    assert!(compressed > 0, "the run's events went compressed");
    server.shutdown();
}

/// A short fan-out run over TLS with `extra` flags: every check passes.
fn fan_out_passes(server: &Server, cert: &Cert, extra: &[&str]) {
    let mut flags = vec!["--connections", "20", "--topics", "4", "--rate", "200"];
    flags.extend(["--warmup", "0.5", "--duration", "2.5", "--json"]);
    flags.extend(extra);
    let out = loadgen(server, &cert.file("cert.pem"), &flags);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    assert!(
        report["latency_ms"]["samples"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty());
    for check in checks {
        assert_eq!(check["ok"], true, "{check}\n{stderr}");
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_server_certificate_the_roots_do_not_hold_is_refused() {
    let cert = Cert::new();
    let server = tls_server(&cert);
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let roots = cert.0.join("other.pem");
    std::fs::write(&roots, other.cert.pem()).unwrap();
    let out = loadgen(
        &server,
        roots.to_str().unwrap(),
        &[
            "--connections",
            "2",
            "--topics",
            "1",
            "--rate",
            "10",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--json",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    server.shutdown();
}

/// Runs the loadgen over TLS against `server`, trusting the roots in `ca`.
fn loadgen(server: &Server, ca: &str, flags: &[&str]) -> std::process::Output {
    let url = format!("wss://{}", server.local_addr());
    let mut all = vec!["--url", &url, "--tls-ca", ca];
    all.extend(flags);
    common::loadgen(&all)
}
