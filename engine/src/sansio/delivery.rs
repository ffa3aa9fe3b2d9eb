//! Per-connection delivery settings, chosen by the protocol when it attaches
//! a connection: the wire format, what a full outbox does, and how the
//! connection proves it is alive.
//!
//! Plain values, copied into each connection; sans-IO ([`Liveness::is_alive`]
//! takes the kind of an inbound frame and answers).

use std::time::Duration;

use crate::sansio::format::{FormatId, FrameKind, Variant};
use crate::sansio::outbox::SlowConsumerPolicy;
use crate::sansio::rate::RateLimit;

/// How one connection is served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delivery {
    /// The wire format its events are encoded in.
    pub format: FormatId,
    /// What happens to an event that does not fit its outbox.
    pub overflow: SlowConsumerPolicy,
    /// Live events per second it may be sent (past it they are dropped and
    /// counted as `rate_limited`); a protocol whose clients expect every
    /// update sets it unlimited.
    pub rate_limit: RateLimit,
    /// When its silence closes it.
    pub liveness: Liveness,
    /// Whether it negotiated permessage-deflate (RFC 7692, with no context
    /// takeover either way): its events go compressed from the size the
    /// formats say ([`crate::Formats::deflate_min_size`]), and its client
    /// may compress what it sends (RSV1 on a message's first frame).
    pub deflate: bool,
}

impl Delivery {
    /// The variant this connection receives for `kind`.
    #[inline]
    pub fn variant(&self, kind: FrameKind) -> Variant {
        self.format.variant(kind).deflated_if(self.deflate)
    }
}

/// When a silent connection is closed, and what breaks the silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Silence after which the connection is closed with 4408
    /// (`HEARTBEAT_TIMEOUT`). Checked every shard tick (250 ms).
    pub timeout: Duration,
    /// Which inbound frames count as a sign of life.
    pub alive_on: AliveOn,
}

/// Inbound frames that reset a connection's silence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AliveOn {
    /// Anything the client sends: every read of its socket, even of a frame
    /// still arriving (a large message on a slow link keeps it alive).
    #[default]
    Anything,
    /// Data messages only: for protocols whose heartbeat is an application
    /// message, so a client library that answers pings by itself does not
    /// keep a dead application's connection open.
    Messages,
    /// Pings and pongs only: for protocols that use WebSocket control
    /// frames as their heartbeat.
    ControlFrames,
}

/// The kind of an inbound frame, as liveness sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundKind {
    /// A text or binary message (complete).
    Message,
    /// A ping or a pong.
    Control,
    /// A close frame.
    Close,
}

impl Liveness {
    /// Whether every read of the socket resets the connection's silence
    /// ([`AliveOn::Anything`]), whole frames or not.
    #[inline]
    pub fn on_every_read(&self) -> bool {
        self.alive_on == AliveOn::Anything
    }

    /// Whether an inbound frame of `kind` resets the connection's silence.
    #[inline]
    pub fn is_alive(&self, kind: InboundKind) -> bool {
        match (self.alive_on, kind) {
            (AliveOn::Anything, _) => true,
            (AliveOn::Messages, InboundKind::Message) => true,
            (AliveOn::ControlFrames, InboundKind::Control) => true,
            (AliveOn::Messages | AliveOn::ControlFrames, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_counts_only_its_frames() {
        let liveness = |alive_on| Liveness {
            timeout: Duration::from_secs(1),
            alive_on,
        };
        let kinds = [
            InboundKind::Message,
            InboundKind::Control,
            InboundKind::Close,
        ];
        let alive = |on| kinds.map(|k| liveness(on).is_alive(k));
        assert_eq!(alive(AliveOn::Anything), [true, true, true]);
        assert_eq!(alive(AliveOn::Messages), [true, false, false]);
        assert_eq!(alive(AliveOn::ControlFrames), [false, true, false]);
    }
}
