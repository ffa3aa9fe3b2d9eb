//! Out of file descriptors, the server refuses new connections and keeps
//! serving the ones it has. Run against the real binary under a low
//! `ulimit -n`: idle sockets used to exhaust the descriptors, after which
//! `accept` failed for everyone and new clients hung in the backlog.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "files-test-key";
const WAIT: Duration = Duration::from_secs(5);

/// The server, killed on drop.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn start(open_files: u32) -> (Child, SocketAddr) {
    let addr = free_port();
    let script = format!(
        "ulimit -n {open_files} && exec \"$0\" --listen {addr} --no-demo --no-pin --shards 1 --log warn --max-http-connections-per-ip 0 --api-key {KEY}:subscribe+publish+admin"
    );
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_shardcast"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("sh runs the server");
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return (Child(child), addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not start");
}

async fn websocket(
    addr: SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-API-Key", KEY.parse().unwrap());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("handshake");
    ws
}

async fn next_event(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "event" {
                return value;
            }
        }
    }
}

/// Whether the server closes `stream` within `wait` (after any answer).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(wait, stream.read_to_end(&mut sink)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_flood_of_idle_sockets_is_refused_and_existing_clients_keep_their_data() {
    let (_server, addr) = start(200).await;
    let mut subscriber = websocket(addr, "/ws/telemetry?channels=market-data").await;
    let mut publisher = websocket(addr, "/ws/publish").await;

    // Far more idle sockets than the process may hold.
    let mut idle = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(addr).await {
            Ok(mut stream) => {
                let _ = stream.write_all(b"GET /health HTTP/1.1\r\n").await;
                idle.push(stream);
            }
            Err(e) => panic!("the kernel refused a connection: {e}"),
        }
    }
    // Every socket is either held by the server or closed at once; none is
    // left hanging unanswered in the backlog, and the server holds fewer
    // than its 200 descriptors.
    let checks = idle
        .iter_mut()
        .map(|stream| closed_within(stream, Duration::from_millis(500)));
    let held = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .filter(|closed| !closed)
        .count();
    assert!(held > 0 && held < 200, "{held} sockets held");

    // Existing connections are served as before.
    publisher
        .send(Message::text(
            json!({"action": "publish", "channel": "market-data", "data": {"v": "flowing"}})
                .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_event(&mut subscriber).await["data"]["v"], "flowing");

    // A newcomer is answered promptly (refused while the idle sockets hold
    // the slots), not left waiting in the backlog.
    let mut late = TcpStream::connect(addr).await.unwrap();
    let _ = late
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert!(closed_within(&mut late, WAIT).await, "a new client hung");

    // When the idle sockets go, new clients are served again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    fresh
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, fresh.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
