//! The telemetry protocol (`/ws/telemetry`): its wire format and its session.
//!
//! Server → client text frames are JSON objects named by `type`: `welcome`,
//! `ack`, `event`, `heartbeat`, `error`. Client → server frames are JSON
//! objects named by `action`: `subscribe`, `unsubscribe`, `heartbeat`,
//! `refresh`. docs/protocol.md is the reference.
//!
//! Events are encoded once per message by [`TelemetryFormat`], with the
//! publisher's `data` copied byte for byte (key order and spacing kept),
//! the same way live, replayed or from a snapshot. Client commands are
//! parsed in place with simd-json; every malformed one gets an `error`
//! frame and changes nothing. Its settings are the `[telemetry]` section
//! (`config.rs`).

mod command;
mod config;
mod session;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{BufMut, Bytes};
use shardcast_engine::frame::{FrameBuf, OpCode};
use shardcast_engine::{
    json, write_iso8601, AliveOn, Delivery, FormatId, FrameKind, Liveness, Message, Session,
    WireFormat,
};

use super::common::heartbeat_frame;
use super::{Auth, Descriptor, Handler, Opening, PathTemplate, Registry, WebSocketEndpoint};
use crate::auth::Role;
use crate::config::ServerConfig;
use crate::App;
pub use command::{parse_command, Command, CommandError};
pub use config::{RawTelemetry, TelemetryConfig};
pub use session::TelemetrySession;

/// Registers the telemetry format and `/ws/telemetry`.
pub fn register(registry: &mut Registry, _config: &ServerConfig) -> anyhow::Result<()> {
    let format = registry.format(Arc::new(TelemetryFormat))?;
    registry.endpoint(Descriptor {
        protocol: "telemetry",
        path: PathTemplate::parse("/ws/telemetry")?,
        auth: Auth::Credentials,
        role: Role::Subscribe,
        handler: Handler::WebSocket(Arc::new(Endpoint { format })),
    })?;
    Ok(())
}

/// `/ws/telemetry`. Shared by all shards.
struct Endpoint {
    format: FormatId,
}

/// How connections in the telemetry format are served: the engine's
/// outbox settings, alive on any frame within the heartbeat timeout.
pub fn delivery(app: &App, format: FormatId) -> Delivery {
    Delivery {
        liveness: Liveness {
            timeout: app.config.telemetry.heartbeat_timeout,
            alive_on: AliveOn::Anything,
        },
        ..app.config.engine.delivery(format)
    }
}

impl WebSocketEndpoint for Endpoint {
    fn delivery(&self, app: &App) -> Delivery {
        delivery(app, self.format)
    }

    fn open(&self, opening: Opening) -> Box<dyn Session> {
        Box::new(TelemetrySession::new(
            opening.app,
            opening.principal,
            opening.query.channels,
            opening.query.replay,
        ))
    }
}

/// The telemetry wire format. Shared by all shards.
#[derive(Debug, Default)]
pub struct TelemetryFormat;

impl WireFormat for TelemetryFormat {
    fn name(&self) -> &'static str {
        "telemetry"
    }

    fn encode_event(&self, msg: &Message, _kind: FrameKind) -> Bytes {
        let key_len = msg.key.as_ref().map_or(0, |k| k.len() + 12);
        let mut frame =
            FrameBuf::with_capacity(96 + msg.topic_name.len() + key_len + msg.data.len());
        let out = frame.payload();
        out.put_slice(b"{\"type\":\"event\",\"channel\":");
        json::write_str(out, &msg.topic_name);
        out.put_slice(b",\"seq\":");
        out.put_slice(itoa::Buffer::new().format(msg.seq).as_bytes());
        out.put_slice(b",\"ts\":\"");
        write_iso8601(out, msg.timestamp);
        out.put_u8(b'"');
        if let Some(key) = &msg.key {
            out.put_slice(b",\"key\":");
            json::write_str(out, key);
        }
        out.put_slice(b",\"data\":");
        out.put_slice(&msg.data);
        out.put_u8(b'}');
        frame.finish(OpCode::Text)
    }

    fn heartbeat(&self, now: SystemTime) -> Option<Bytes> {
        Some(heartbeat_frame(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_engine::{Stamp, TopicId};

    #[test]
    fn events_carry_the_data_exactly_as_published() {
        let data = r#"{"z":1, "a":[true,null],"m":"\u00e9"}"#;
        let mut msg = Message::new(
            TopicId::new(0, 0),
            "market-data".into(),
            shardcast_engine::Epoch::from_u64(1),
            7,
            Some("A\"B".into()),
            Bytes::from(data),
            Stamp::now(),
        );
        msg.timestamp = SystemTime::UNIX_EPOCH;
        let frame = TelemetryFormat.encode_event(&msg, FrameKind::Live);
        // Text frame, 126-length form, payload after a 4-byte header.
        assert_eq!(frame[0], 0x81);
        let payload = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(
            payload,
            format!(
                r#"{{"type":"event","channel":"market-data","seq":7,"ts":"1970-01-01T00:00:00.000Z","key":"A\"B","data":{data}}}"#
            )
        );
        let parsed: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(parsed["key"], "A\"B");
    }
}
