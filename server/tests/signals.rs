//! SIGTERM on the real binary: the server drains (lame duck) — clients are
//! told 1001 `SERVER_DRAINING` — then exits 0; a second signal cuts the
//! drain short.

mod common;

use common::{free_port, start_binary, wait_for_log, Logs, WAIT};

use futures_util::StreamExt;
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server on a free port with a drain of `drain_seconds`.
async fn start(drain_seconds: u64) -> (Child, u16, Logs) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let drain = drain_seconds.to_string();
    let (child, logs) = start_binary(&["--listen", &listen, "--drain-seconds", &drain]).await;
    (child, port, logs)
}

async fn client(port: u16) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/ws/telemetry?apiKey=dev-api-key&channels=market-data");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_string().contains("welcome"), "{welcome}");
    ws
}

async fn close_of(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(WAIT, async {
        while let Some(frame) = ws.next().await {
            if let Ok(Message::Close(Some(close))) = frame {
                return (u16::from(close.code), close.reason.to_string());
            }
        }
        panic!("no close frame");
    })
    .await
    .expect("closed in time")
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_drains_clients_then_exits_zero() {
    let (mut child, port, mut logs) = start(1).await;
    let mut ws = client(port).await;
    signal(&child, "TERM");
    assert_eq!(close_of(&mut ws).await, (1001, "SERVER_DRAINING".into()));
    wait_for_log(&mut logs, "drained").await;
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_second_signal_cuts_the_drain_short() {
    let (mut child, port, mut logs) = start(600).await;
    // Several clients: the first step of a ten-minute drain closes none.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(client(port).await);
    }
    signal(&child, "TERM");
    wait_for_log(&mut logs, "draining").await;
    signal(&child, "INT");
    wait_for_log(&mut logs, "drain cut short").await;
    for ws in &mut clients {
        assert_eq!(close_of(ws).await, (1001, "SERVER_SHUTDOWN".into()));
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
