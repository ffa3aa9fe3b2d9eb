//! `shardcast sub`: a minimal telemetry client that prints events, so the
//! README's tour needs no other tool. It answers each server heartbeat with
//! `{"action":"heartbeat"}`, as the protocol asks of clients.
//!
//! Frames go to stdout as JSON lines, except `error` frames: those go to
//! stderr as `server error CODE: message`. A channel the server refuses
//! gets a warning; when it refuses every one, `sub` reads the errors that
//! say why and exits with status 1 rather than wait for nothing:
//!
//! 1. The first `ack` lists the channels taken; the errors for the others
//!    follow it at once (the server queues them together).
//! 2. With none taken, `sub` sends a heartbeat: the server answers commands
//!    in order, so its reply comes after those errors.
//! 3. At that heartbeat (or the server's own tick), every error has been
//!    printed, and `sub` exits.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::net::TcpStream;

/// How often `sub` answers the server's heartbeats at most.
const HEARTBEAT_REPLY: Duration = Duration::from_secs(5);

/// Flags of `shardcast sub`.
#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    /// Channels to subscribe to (comma-separated or repeated).
    #[arg(required = true, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Server address.
    #[arg(long, default_value = "ws://127.0.0.1:8000", env = "SHARDCAST_URL")]
    pub url: String,
    /// API key with the subscribe role.
    #[arg(long, default_value = crate::config::DEV_API_KEY, env = "SHARDCAST_API_KEY")]
    pub api_key: String,
    /// Replay each channel's recent messages first.
    #[arg(long)]
    pub replay: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Connects, subscribes, and prints every frame's JSON on its own line.
pub async fn run(args: SubArgs) -> anyhow::Result<()> {
    let Some(rest) = args.url.strip_prefix("ws://") else {
        bail!("--url must start with ws:// (for example ws://127.0.0.1:8000)");
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let stream = TcpStream::connect(host)
        .await
        .with_context(|| format!("cannot connect to {host}"))?;
    // One whole, encoded name per parameter: names may hold commas.
    let mut path = format!("/ws/telemetry?replay={}", args.replay);
    for channel in &args.channels {
        path.push_str("&channel=");
        path.extend(form_urlencoded::byte_serialize(channel.as_bytes()));
    }
    let request = Request::builder()
        .method("GET")
        .uri(path)
        .header(HOST, host)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .header("X-API-Key", &args.api_key)
        .body(Empty::<Bytes>::new())?;
    let (ws, _) = fastwebsockets::handshake::client(&TokioExecutor::new(), request, stream)
        .await
        .context("websocket handshake failed")?;
    let mut ws = FragmentCollector::new(ws);
    let mut events = 0u64;
    let mut last_heartbeat: Option<Instant> = None;
    // Until the server's first `ack` says which of the channels it took.
    let mut awaiting_ack = true;
    // None was taken: reading the errors that say why, up to a heartbeat.
    let mut refused_all = false;
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Text => {
                let text = String::from_utf8_lossy(&frame.payload).into_owned();
                if text.starts_with("{\"type\":\"error\"") {
                    report_error(&text);
                    continue;
                }
                let heartbeat_tick = text.starts_with("{\"type\":\"heartbeat\"");
                if heartbeat_tick && refused_all {
                    bail!("the server refused every channel asked for");
                }
                println!("{text}");
                if heartbeat_tick {
                    // Answer the server's ticks, not its answers to ours.
                    let due = last_heartbeat.is_none_or(|at| at.elapsed() >= HEARTBEAT_REPLY);
                    if due {
                        last_heartbeat = Some(Instant::now());
                        ws.write_frame(heartbeat()).await?;
                    }
                } else if text.starts_with("{\"type\":\"ack\"") && awaiting_ack {
                    awaiting_ack = false;
                    let held = serde_json::from_str::<Ack>(&text)
                        .map(|ack| ack.channels)
                        .unwrap_or_default();
                    if held.is_empty() {
                        // The server sends the reasons right after the ack,
                        // so its answer to a heartbeat sent now follows them.
                        refused_all = true;
                        last_heartbeat = Some(Instant::now());
                        ws.write_frame(heartbeat()).await?;
                    } else {
                        for name in args.channels.iter().filter(|c| !held.contains(c)) {
                            eprintln!("shardcast: warning: not subscribed to {name:?}");
                        }
                    }
                } else if text.starts_with("{\"type\":\"event\"") {
                    events += 1;
                    if args.count.is_some_and(|n| events >= n) {
                        // Say goodbye properly; the server answers and closes.
                        ws.write_frame(Frame::close(1000, b"")).await?;
                        return Ok(());
                    }
                }
            }
            OpCode::Close => {
                let payload = &frame.payload;
                if payload.len() >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8_lossy(&payload[2..]);
                    bail!("server closed the connection: {code} {reason}");
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

/// The channels of an `ack`.
#[derive(Deserialize)]
struct Ack {
    channels: Vec<String>,
}

/// An `error` frame.
#[derive(Deserialize)]
struct ServerError {
    code: String,
    message: String,
}

/// Prints an `error` frame on stderr as its code and message.
fn report_error(text: &str) {
    match serde_json::from_str::<ServerError>(text) {
        Ok(error) => eprintln!("shardcast: server error {}: {}", error.code, error.message),
        Err(_) => eprintln!("shardcast: server error: {text}"),
    }
}

fn heartbeat() -> Frame<'static> {
    Frame::text(Payload::Borrowed(b"{\"action\":\"heartbeat\"}"))
}
