//! A WebSocket client's side of a test: sending JSON, reading the next
//! message, frame or close, and asserting silence, each within [`WAIT`].

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{Ws, WAIT};

pub async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next frame of any kind; panics on timeout or end of stream.
pub async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame in time")
        .expect("stream open")
        .expect("frame read")
}

/// The next text frame as JSON, skipping heartbeats.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("server frames are JSON");
                if value["type"] != "heartbeat" {
                    return value;
                }
            }
            Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
            _ => {}
        }
    }
}

/// The next text frame as JSON (heartbeats included), or `None` once the
/// server has closed the connection.
pub async fn next_json_or_close(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("server frames are JSON"))
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Every text frame (heartbeats included) until two seconds pass with none,
/// or the server closes.
pub async fn drain(ws: &mut Ws) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Ok(Some(frame)) =
        tokio::time::timeout(Duration::from_secs(2), next_json_or_close(ws)).await
    {
        frames.push(frame);
    }
    frames
}

/// The next frame of `type`, failing on any other non-heartbeat frame.
pub async fn next_of_type(ws: &mut Ws, kind: &str) -> Value {
    let value = next_json(ws).await;
    assert_eq!(value["type"], kind, "expected {kind}, got {value}");
    value
}

/// Waits for the close frame; returns its code and reason.
pub async fn close_code(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT * 2, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error before close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Asserts nothing but heartbeats arrive for `quiet`.
pub async fn assert_silent(ws: &mut Ws, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["type"], "heartbeat", "unexpected frame {value}");
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}
