//! `shardcast sub`: a minimal telemetry client that prints events, so the
//! README's tour needs no other tool. It answers each server heartbeat with
//! `{"action":"heartbeat"}`, as the protocol asks of clients.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;

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
    let mut last_heartbeat: Option<std::time::Instant> = None;
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Text => {
                let text = String::from_utf8_lossy(&frame.payload).into_owned();
                println!("{text}");
                // Answer the server's ticks, not its answers to ours.
                let due = last_heartbeat
                    .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(5));
                if text.starts_with("{\"type\":\"heartbeat\"") && due {
                    last_heartbeat = Some(std::time::Instant::now());
                    let reply = Frame::text(Payload::Borrowed(b"{\"action\":\"heartbeat\"}"));
                    ws.write_frame(reply).await?;
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
