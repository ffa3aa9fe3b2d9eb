//! Client commands of the telemetry protocol, parsed in place with
//! simd-json after a depth check (the parser recurses per nesting level).
//! Bounded: at most `max_channels` channels, and as many `resume` entries.

use std::collections::HashSet;
use std::num::NonZeroU32;

use shardcast_engine::{Epoch, Position, MAX_NAME_LEN};
use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::input::{check_depth, truncate, MAX_COMMAND_DEPTH};
use crate::protocol::common::{max_rate, ErrorCode};

/// A parsed client command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Subscribe to channels, optionally replaying their history.
    Subscribe {
        /// Channel names as sent.
        channels: Vec<String>,
        /// Replay after the ack.
        replay: bool,
        /// Channels to resume after a position (each also in `channels`).
        resume: Vec<(String, Position)>,
        /// Show each channel's position in the ack.
        positions: bool,
        /// At most so many updates a second of each key (`maxRate`).
        max_rate: Option<NonZeroU32>,
    },
    /// Leave channels.
    Unsubscribe {
        /// Channel names as sent.
        channels: Vec<String>,
    },
    /// Liveness; answered with a heartbeat.
    Heartbeat,
    /// A newer token for a connection opened with one.
    Refresh {
        /// The token.
        token: String,
    },
}

/// Why a client frame is not a command.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The error code to send.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
}

fn command_error(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// Parses a client command in place. At most `max_channels` channels per
/// command, and at most [`MAX_COMMAND_DEPTH`] levels of nesting, checked
/// before the parser (which recurses per level) sees the text.
pub fn parse_command(text: &mut [u8], max_channels: usize) -> Result<Command, CommandError> {
    check_depth(text, MAX_COMMAND_DEPTH)
        .map_err(|e| command_error(ErrorCode::TooDeep, format!("command refused: {e}")))?;
    let value = simd_json::to_borrowed_value(text)
        .map_err(|e| command_error(ErrorCode::InvalidJson, format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(command_error(
            ErrorCode::InvalidMessage,
            "a command must be a JSON object",
        ));
    }
    let action = match value.get("action") {
        None => {
            return Err(command_error(
                ErrorCode::InvalidMessage,
                "missing \"action\"",
            ))
        }
        Some(action) => action.as_str().ok_or_else(|| {
            command_error(ErrorCode::InvalidMessage, "\"action\" must be a string")
        })?,
    };
    let channels = || -> Result<Vec<String>, CommandError> {
        let list = value
            .get("channels")
            .and_then(|c| c.as_array())
            .ok_or_else(|| {
                command_error(
                    ErrorCode::InvalidMessage,
                    "\"channels\" must be an array of strings",
                )
            })?;
        if list.len() > max_channels {
            return Err(command_error(
                ErrorCode::LimitReached,
                format!("at most {max_channels} channels per command"),
            ));
        }
        list.iter()
            .map(|c| {
                c.as_str().map(str::to_owned).ok_or_else(|| {
                    command_error(
                        ErrorCode::InvalidMessage,
                        "\"channels\" must be an array of strings",
                    )
                })
            })
            .collect()
    };
    let flag = |name: &str| -> Result<bool, CommandError> {
        match value.get(name) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| {
                command_error(
                    ErrorCode::InvalidMessage,
                    format!("\"{name}\" must be true or false"),
                )
            }),
        }
    };
    match action {
        "subscribe" => {
            let replay = flag("replay")?;
            let positions = flag("positions")?;
            let max_rate = max_rate("maxRate", value.get("maxRate"))
                .map_err(|message| command_error(ErrorCode::InvalidMessage, message))?;
            let channels = channels()?;
            let resume = match value.get("resume") {
                None => Vec::new(),
                Some(resume) => parse_resume(resume, &channels, max_channels)?,
            };
            Ok(Command::Subscribe {
                channels,
                replay,
                resume,
                positions,
                max_rate,
            })
        }
        "unsubscribe" => Ok(Command::Unsubscribe {
            channels: channels()?,
        }),
        "heartbeat" => Ok(Command::Heartbeat),
        "refresh" => match value.get("token").and_then(|t| t.as_str()) {
            Some(token) => Ok(Command::Refresh {
                token: token.to_owned(),
            }),
            None => Err(command_error(
                ErrorCode::InvalidMessage,
                "refresh needs \"token\" (a string)",
            )),
        },
        other => Err(command_error(
            ErrorCode::UnknownAction,
            format!(
                "unknown action {:?}: use subscribe, unsubscribe, heartbeat or refresh",
                truncate(other, 64)
            ),
        )),
    }
}

/// `"resume": {"<channel>": {"epoch": "<16 hex digits>", "seq": <n ≥ 0>}, …}`.
fn parse_resume(
    resume: &BorrowedValue<'_>,
    channels: &[String],
    max_channels: usize,
) -> Result<Vec<(String, Position)>, CommandError> {
    let shape = || {
        command_error(
            ErrorCode::InvalidMessage,
            "\"resume\" must map channels to {\"epoch\":\"…\",\"seq\":n}, as the ack's positions give them",
        )
    };
    let entries = resume.as_object().ok_or_else(shape)?;
    if entries.len() > max_channels {
        return Err(command_error(
            ErrorCode::LimitReached,
            format!("at most {max_channels} channels per command"),
        ));
    }
    let listed: HashSet<&str> = channels.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(entries.len());
    for (name, position) in entries.iter() {
        let shown = truncate(name, MAX_NAME_LEN);
        if !listed.contains(name.as_ref()) {
            return Err(command_error(
                ErrorCode::InvalidMessage,
                format!("resume names {shown:?}, which is not in \"channels\""),
            ));
        }
        if !position.is_object() {
            return Err(shape());
        }
        let epoch = position
            .get("epoch")
            .and_then(|e| e.as_str())
            .and_then(|e| e.parse::<Epoch>().ok())
            .ok_or_else(|| {
                command_error(
                    ErrorCode::InvalidMessage,
                    format!("resume of {shown:?}: \"epoch\" must be the 16 hexadecimal digits the ack gave"),
                )
            })?;
        let seq = position
            .get("seq")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| {
                command_error(
                    ErrorCode::InvalidMessage,
                    format!("resume of {shown:?}: \"seq\" must be a whole number, 0 or more"),
                )
            })?;
        out.push((name.to_string(), Position { epoch, seq }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command, CommandError> {
        parse_command(&mut text.as_bytes().to_vec(), 4)
    }

    #[test]
    fn max_rate_is_a_whole_number_within_bounds() {
        let rate = |text: &str| match parse(text) {
            Ok(Command::Subscribe { max_rate, .. }) => Ok(max_rate.map(NonZeroU32::get)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.code),
        };
        let with = |r: &str| format!(r#"{{"action":"subscribe","channels":["a"],"maxRate":{r}}}"#);
        assert_eq!(rate(&with("1")), Ok(Some(1)));
        assert_eq!(rate(&with("10000")), Ok(Some(10_000)));
        assert_eq!(rate(r#"{"action":"subscribe","channels":["a"]}"#), Ok(None));
        for bad in ["0", "10001", "-3", "1.5", "\"5\"", "null", "1e3"] {
            assert_eq!(rate(&with(bad)), Err(ErrorCode::InvalidMessage), "{bad}");
        }
    }

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            parse(r#"{"action":"subscribe","channels":["a","b"],"replay":true}"#),
            Ok(Command::Subscribe {
                channels: vec!["a".into(), "b".into()],
                replay: true,
                resume: Vec::new(),
                positions: false,
                max_rate: None,
            })
        );
        assert_eq!(
            parse(r#"{"action":"unsubscribe","channels":["a"]}"#),
            Ok(Command::Unsubscribe {
                channels: vec!["a".into()]
            })
        );
        assert_eq!(parse(r#"{"action":"heartbeat"}"#), Ok(Command::Heartbeat));
        assert_eq!(
            parse(r#"{"action":"refresh","token":"a.b.c"}"#),
            Ok(Command::Refresh {
                token: "a.b.c".into()
            })
        );
        assert_eq!(
            parse(r#"{"action":"refresh"}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn malformed_commands_get_precise_codes() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"channels":["a"]}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"action":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"action":"subscribe","channels":"a"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"action":"subscribe","channels":[1]}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"action":"subscribe","channels":["a"],"replay":"yes"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"action":"dance"}"#), ErrorCode::UnknownAction);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), ErrorCode::TooDeep);
        let deep_field = format!(
            r#"{{"action":"heartbeat","x":{}1{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert_eq!(code(&deep_field), ErrorCode::TooDeep);
        assert_eq!(
            code(r#"{"action":"subscribe","channels":["a","b","c","d","e"]}"#),
            ErrorCode::LimitReached
        );
    }

    #[test]
    fn mutated_commands_never_panic_and_always_get_a_verdict() {
        let seeds: [&[u8]; 4] = [
            br#"{"action":"subscribe","channels":["market-data","positions"],"replay":true}"#,
            br#"{"action":"unsubscribe","channels":["risk-alerts"]}"#,
            br#"{"action":"heartbeat"}"#,
            br#"{"action":"subscribe","channels":["a\u00e9\n"]}"#,
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut verdicts = [0usize; 2];
        for round in 0..50_000 {
            let mut text = seeds[round % seeds.len()].to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => text[at] = next() as u8,
                    1 => text.insert(at, b"{}[]\",:0\\"[(next() % 9) as usize]),
                    _ => {
                        text.remove(at);
                    }
                }
                if text.is_empty() {
                    text.push(b'{');
                }
            }
            // Any bytes at all may reach here only as valid UTF-8 (the engine
            // checks); simd-json must cope with whatever that is.
            if std::str::from_utf8(&text).is_err() {
                continue;
            }
            match parse_command(&mut text, 4) {
                Ok(_) => verdicts[0] += 1,
                Err(e) => {
                    assert!(!e.message.is_empty());
                    verdicts[1] += 1;
                }
            }
        }
        // The mutations produce both accepted and refused commands.
        assert!(verdicts[0] > 0 && verdicts[1] > 0, "{verdicts:?}");
    }

    #[test]
    fn resume_positions_are_parsed_strictly() {
        let epoch = "00000000000000ab";
        let text = format!(
            r#"{{"action":"subscribe","channels":["a","b"],"positions":true,"resume":{{"a":{{"epoch":"{epoch}","seq":41}}}}}}"#
        );
        let Ok(Command::Subscribe {
            resume, positions, ..
        }) = parse(&text)
        else {
            panic!("subscribe");
        };
        assert!(positions);
        let position = Position {
            epoch: Epoch::from_u64(0xab),
            seq: 41,
        };
        assert_eq!(resume, vec![("a".to_owned(), position)]);
        let code = |resume: &str| {
            let text = format!(r#"{{"action":"subscribe","channels":["a"],"resume":{resume}}}"#);
            parse(&text).unwrap_err()
        };
        for bad in [
            r#"{"a":{"epoch":"00000000000000ab","seq":-1}}"#,
            r#"{"a":{"epoch":"00000000000000ab","seq":"41"}}"#,
            r#"{"a":{"epoch":"00000000000000ab","seq":4.5}}"#,
            r#"{"a":{"epoch":"00000000000000ab"}}"#,
            r#"{"a":{"epoch":"xyz","seq":1}}"#,
            r#"{"a":{"epoch":171,"seq":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"b":{"epoch":"00000000000000ab","seq":1}}"#,
            r#"["a"]"#,
        ] {
            let e = code(bad);
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{bad}: {}", e.message);
        }
        let many = r#"{"a":{"epoch":"00000000000000ab","seq":1},"b":{"epoch":"00000000000000ab","seq":1},"c":{"epoch":"00000000000000ab","seq":1},"d":{"epoch":"00000000000000ab","seq":1},"e":{"epoch":"00000000000000ab","seq":1}}"#;
        assert_eq!(code(many).code, ErrorCode::LimitReached);
        assert_eq!(
            parse(r#"{"action":"subscribe","channels":["a"],"positions":1}"#)
                .unwrap_err()
                .code,
            ErrorCode::InvalidMessage
        );
    }
}
