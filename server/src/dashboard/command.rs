//! What a dashboard may ask on its stream: `{"action":"tail","channel":…}`,
//! `{"action":"untail"}` and `{"action":"heartbeat"}`.
//!
//! Bounded: the frame is at most `max_frame_size` (the engine closes the
//! connection beyond it), the channel name at most
//! [`MAX_NAME_LEN`](shardcast_engine::MAX_NAME_LEN) bytes, and JSON nesting
//! is refused past [`MAX_COMMAND_DEPTH`] before it is parsed.

use serde::Deserialize;
use shardcast_engine::MAX_NAME_LEN;

use crate::input::{check_depth, truncate, MAX_COMMAND_DEPTH};

/// A dashboard's command.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// Show the events of `channel` (replacing the channel shown before).
    Tail {
        /// The channel.
        channel: String,
    },
    /// Stop showing events.
    Untail {},
    /// Keeps the connection alive; answers nothing.
    Heartbeat {},
}

/// Longest error text: the parser's message may quote the input.
pub const MAX_ERROR_LEN: usize = 200;

/// Parses one command, or says what is wrong with it (in at most
/// [`MAX_ERROR_LEN`] bytes).
pub fn parse_command(text: &[u8]) -> Result<Command, String> {
    check_depth(text, MAX_COMMAND_DEPTH).map_err(|e| e.to_string())?;
    let command: Command = serde_json::from_slice(text)
        .map_err(|e| truncate(&e.to_string(), MAX_ERROR_LEN).to_owned())?;
    if let Command::Tail { channel } = &command {
        if channel.is_empty() || channel.len() > MAX_NAME_LEN {
            return Err(format!("channel must be 1-{MAX_NAME_LEN} bytes"));
        }
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_command(br#"{"action":"tail","channel":"market-data"}"#),
            Ok(Command::Tail {
                channel: "market-data".into()
            })
        );
        assert_eq!(
            parse_command(br#"{"action":"untail"}"#),
            Ok(Command::Untail {})
        );
        assert!(parse_command(br#"{"action":"tail","channel":""}"#).is_err());
        assert!(parse_command(br#"{"action":"tail"}"#).is_err());
        assert!(parse_command(br#"{"action":"publish","channel":"x"}"#).is_err());
        assert!(parse_command(br#"{"action":"untail","extra":1}"#).is_err());
        let long = format!(
            r#"{{"action":"tail","channel":"{}"}}"#,
            "a".repeat(MAX_NAME_LEN + 1)
        );
        assert!(parse_command(long.as_bytes()).is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_command(deep.as_bytes()).is_err());
        assert!(parse_command(b"\xff\xfe").is_err());
        let echoed = format!(r#"{{"action":"{}"}}"#, "z".repeat(10_000));
        let error = parse_command(echoed.as_bytes()).unwrap_err();
        assert!(error.len() <= MAX_ERROR_LEN, "{}", error.len());
    }
}
