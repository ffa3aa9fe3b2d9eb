//! Why a connection ends, and the close code each reason sends.
//!
//! One exhaustive `match` maps every reason to its WebSocket close code and to
//! the label used in logs and metrics, so a new reason cannot be added
//! without deciding both.

use std::borrow::Cow;

/// Why a connection was closed. Owned by the connection's shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame.
    ClientClosed,
    /// The TCP connection ended or failed without a close handshake.
    ConnectionLost,
    /// The server is shutting down.
    ServerShutdown,
    /// The server is draining before it stops (lame duck): the client
    /// should reconnect, to another server (1001, `SERVER_DRAINING`).
    Draining,
    /// The client broke RFC 6455 framing.
    ProtocolError(&'static str),
    /// A binary frame arrived where the protocol takes text.
    UnsupportedData,
    /// A text frame was not valid UTF-8.
    InvalidPayload,
    /// A frame or reassembled message exceeded the configured maximum size.
    MessageTooBig,
    /// Nothing was received within the heartbeat timeout.
    HeartbeatTimeout,
    /// The outbox overflowed and the slow-consumer policy is `disconnect`.
    SlowConsumer,
    /// A high-priority event could not be queued even after every normal
    /// event queued for the client was dropped to make room: closed rather
    /// than let the client miss it (4429, `PRIORITY_OVERFLOW`).
    PriorityOverflow,
    /// Missing or invalid API key.
    Unauthorized,
    /// The API key lacks the role this endpoint needs.
    Forbidden,
    /// Another connection took over this client id.
    Replaced,
    /// The credentials the connection was opened with (a token) expired.
    TokenExpired,
    /// An operator closed the connection; the reason is theirs.
    Kicked(String),
    /// The server failed handling this connection's input (a bug, logged).
    InternalError,
    /// A protocol's own close, with the code and reason text its clients
    /// expect (FastWS closes with 1003 and a sentence naming the rule).
    ByProtocol {
        /// The close code.
        code: ProtocolCloseCode,
        /// A stable snake_case label for logs and metrics.
        label: &'static str,
        /// The close frame's reason text (at most 123 bytes are sent).
        text: Cow<'static, str>,
    },
}

/// A close code a protocol may send: one RFC 6455 lets a server put in a
/// close frame (1000–1003, 1007–1014, 3000–4999), checked when made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolCloseCode(u16);

impl ProtocolCloseCode {
    /// `code`, which must be one a server may send; a constant made with
    /// another fails to compile.
    pub const fn new(code: u16) -> Self {
        assert!(
            matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
            "not a close code a server may send"
        );
        Self(code)
    }

    /// The code.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl CloseReason {
    /// The close code sent to the client.
    pub fn code(&self) -> u16 {
        match self {
            Self::ClientClosed => 1000,
            Self::ConnectionLost => 1006,
            Self::ServerShutdown | Self::Draining => 1001,
            Self::ProtocolError(_) => 1002,
            Self::UnsupportedData => 1003,
            Self::InvalidPayload => 1007,
            Self::MessageTooBig => 1009,
            Self::HeartbeatTimeout => 4408,
            Self::SlowConsumer | Self::PriorityOverflow => 4429,
            Self::Unauthorized => 4401,
            Self::Forbidden => 4403,
            Self::Replaced => 4409,
            Self::TokenExpired => 4440,
            Self::Kicked(_) => 4000,
            Self::InternalError => 1011,
            Self::ByProtocol { code, .. } => code.0,
        }
    }

    /// A stable snake_case label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ConnectionLost => "connection_lost",
            Self::ServerShutdown => "server_shutdown",
            Self::Draining => "draining",
            Self::ProtocolError(_) => "protocol_error",
            Self::UnsupportedData => "unsupported_data",
            Self::InvalidPayload => "invalid_payload",
            Self::MessageTooBig => "message_too_big",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::PriorityOverflow => "priority_overflow",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Replaced => "replaced",
            Self::TokenExpired => "token_expired",
            Self::Kicked(_) => "kicked",
            Self::InternalError => "internal_error",
            Self::ByProtocol { label, .. } => label,
        }
    }

    /// The reason text carried in the close frame.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::ClientClosed => "".into(),
            Self::ConnectionLost => "".into(),
            Self::ServerShutdown => "SERVER_SHUTDOWN".into(),
            Self::Draining => "SERVER_DRAINING".into(),
            Self::ProtocolError(what) => (*what).into(),
            Self::UnsupportedData => "BINARY_NOT_SUPPORTED".into(),
            Self::InvalidPayload => "INVALID_UTF8".into(),
            Self::MessageTooBig => "MESSAGE_TOO_BIG".into(),
            Self::HeartbeatTimeout => "HEARTBEAT_TIMEOUT".into(),
            Self::SlowConsumer => "SLOW_CONSUMER".into(),
            Self::PriorityOverflow => "PRIORITY_OVERFLOW".into(),
            Self::Unauthorized => "VIOLATED_POLICY".into(),
            Self::Forbidden => "FORBIDDEN".into(),
            Self::Replaced => "CLIENT_REPLACED".into(),
            Self::TokenExpired => "TOKEN_EXPIRED".into(),
            Self::Kicked(reason) => reason.as_str().into(),
            Self::InternalError => "INTERNAL_ERROR".into(),
            Self::ByProtocol { text, .. } => text.as_ref().into(),
        }
    }

    /// Whether a close frame is sent (not when the socket is already gone).
    pub(crate) fn sends_close_frame(&self) -> bool {
        !matches!(self, Self::ConnectionLost)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.label(), self.code())
    }
}
