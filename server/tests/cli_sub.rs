//! `shardcast sub` against a real server: a refused channel gets a warning
//! and the server's reason on stderr; when every channel is refused, `sub`
//! prints the reasons and exits 1 instead of waiting for events that will
//! never come.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shardcast_server::{RawConfig, Server};

const KEY: &str = "cli-sub-test-key";

/// Longest a `sub` may run before the test calls it stuck.
const STUCK: Duration = Duration::from_secs(20);

fn start() -> Server {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nshards = 1\npin_threads = false\ndemo = false\n\
         [[api_keys]]\nkey = \"{KEY}\"\nroles = [\"subscribe\", \"publish\"]\n"
    );
    let config = RawConfig::from_toml(&toml).unwrap().validate().unwrap();
    Server::start(config).expect("server starts")
}

/// Publishes `data` to `channel` over the HTTP API.
fn publish(addr: SocketAddr, channel: &str, data: &str) {
    let body = format!("{{\"channel\":\"{channel}\",\"data\":{data}}}");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /api/v1/publish HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Runs `shardcast sub` with `args` against `addr`, killing it if stuck.
fn sub(addr: SocketAddr, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .arg("sub")
        .args(args)
        .args(["--url", &format!("ws://{addr}"), "--api-key", KEY])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > STUCK {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`sub {args:?}` did not exit; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn every_channel_refused_prints_the_servers_error_and_exits_1() {
    let server = start();
    let out = sub(server.local_addr(), &["no-such-channel"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("UNKNOWN_CHANNEL") && stderr.contains("no-such-channel"),
        "the code and message: {stderr}"
    );
    assert!(stderr.contains("refused every channel"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("\"error\""),
        "errors go to stderr: {stdout}"
    );
    server.shutdown();
}

#[test]
fn a_channel_refused_among_others_is_a_warning_and_events_flow() {
    let server = start();
    let addr = server.local_addr();
    publish(addr, "market-data", "{\"px\":101}");
    let out = sub(
        addr,
        &["no-such-channel,market-data", "--replay", "--count", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: not subscribed to \"no-such-channel\""),
        "{stderr}"
    );
    assert!(stderr.contains("UNKNOWN_CHANNEL"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"px\":101"), "{stdout}");
    server.shutdown();
}
