//! The dashboard in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against a server with
//! the demo feed. The page loads, takes the admin key, its numbers move, the
//! live tail shows events, and its disconnect button disconnects a client.
//! A screenshot goes to `target/test-artifacts/dashboard.png`.
//!
//! Needs `node`, `/usr/bin/chromium` (or `$CHROMIUM`) and
//! `npm ci --prefix tests/browser`; without them the test says so in one
//! line and passes, except under CI (`CI` set), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn missing_prerequisite(browser_dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium} (apt install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH (apt install nodejs)".into());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            browser_dir.display()
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("browser");
    if let Some(missing) = missing_prerequisite(&browser_dir) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: {missing}"
        );
        eprintln!("SKIPPED the_dashboard_works_in_a_real_browser: {missing}");
        return;
    }
    let server = TestServer::start("demo = true\n[telemetry]\nrate_limit_per_second = 0");
    // A client that never reads falls behind: the dashboard lists it among
    // the slowest, with a disconnect button.
    let stuck = stuck_client(&server, "stuck-1").await;

    let artifacts = root.join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        move || {
            Command::new("node")
                .arg(browser_dir.join("dashboard.mjs"))
                .args([url.as_str(), ADMIN, "stuck-1"])
                .arg(&screenshot)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");

    // The button's request reached the server: the client is gone (once its
    // close has been given up on: it reads nothing, not even the close frame).
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let clients = server
            .http("GET", "/api/v1/websocket/clients", Some(ADMIN), None)
            .await
            .1;
        if !clients.to_string().contains("stuck-1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck-1 still connected: {clients}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    drop(stuck);
}
