//! Durations as written in the file, the environment and the flags: an
//! integer number of seconds (`15`), or a string with units (`"15s"`,
//! `"500ms"`, `"2m"`, `"1h"`, `"1m30s"`, humantime's syntax).
//!
//! Most duration keys count whole seconds; given a value with a fraction
//! of a second (`"1500ms"`) they refuse it, saying so, rather than round
//! it: a rounded timeout is not the one the operator wrote. The keys that
//! take fractions (`fastws.*_seconds`) use [`fractional_seconds`].
//!
//! A key uses these as `#[serde(default, deserialize_with =
//! "crate::config::duration::whole_seconds")]` on an `Option<u64>` (or
//! `fractional_seconds` on an `Option<f64>`); a clap flag as `value_parser
//! = crate::config::duration::parse_whole_seconds`. Range checks stay in
//! validation, which names the key.

use std::fmt;
use std::time::Duration;

use serde::de::{Deserializer, Error, Unexpected, Visitor};

/// The longest duration text read: longer is a mistake, not a duration.
const MAX_TEXT_LEN: usize = 64;

/// How a duration may be written, for error messages.
const EXAMPLES: &str =
    "write seconds (15) or a duration such as \"15s\", \"500ms\", \"2m\" or \"1m30s\"";

/// Parses `15` (seconds) or a duration with units: `15s`, `500ms`, `1m30s`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.len() > MAX_TEXT_LEN {
        return Err(format!("too long for a duration: {EXAMPLES}"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text} seconds is too long"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): {EXAMPLES}"))
}

/// `duration` in whole seconds, or an error saying it has a fraction.
pub fn to_whole_seconds(duration: Duration) -> Result<u64, String> {
    if duration.subsec_nanos() == 0 {
        Ok(duration.as_secs())
    } else {
        Err(format!(
            "{} is not a whole number of seconds, and this setting takes whole seconds",
            humantime::format_duration(duration)
        ))
    }
}

/// Parses a whole number of seconds (`15`, `15s`, `2m`), for flags and
/// environment variables.
pub fn parse_whole_seconds(text: &str) -> Result<u64, String> {
    parse(text).and_then(to_whole_seconds)
}

/// Deserializes a key counted in whole seconds.
pub fn whole_seconds<'de, D: Deserializer<'de>>(input: D) -> Result<Option<u64>, D::Error> {
    let duration = input.deserialize_any(DurationVisitor)?;
    to_whole_seconds(duration)
        .map(Some)
        .map_err(D::Error::custom)
}

/// Deserializes a key in seconds that may have a fraction (`1.5`, `"1500ms"`).
pub fn fractional_seconds<'de, D: Deserializer<'de>>(input: D) -> Result<Option<f64>, D::Error> {
    let duration = input.deserialize_any(DurationVisitor)?;
    Ok(Some(duration.as_secs_f64()))
}

/// Seconds as a number, or a duration as a string.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("seconds (15) or a duration such as \"15s\", \"500ms\" or \"1m30s\"")
    }

    fn visit_u64<E: Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::invalid_value(Unexpected::Signed(seconds), &self))
    }

    fn visit_f64<E: Error>(self, seconds: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| E::invalid_value(Unexpected::Float(seconds), &self))
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_units_parse() {
        let secs = |s: u64| Ok(Duration::from_secs(s));
        assert_eq!(parse("15"), secs(15));
        assert_eq!(parse("15s"), secs(15));
        assert_eq!(parse(" 2m "), secs(120));
        assert_eq!(parse("1h"), secs(3600));
        assert_eq!(parse("1m30s"), secs(90));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        let huge = [
            "99999999999999999999",
            "9999999999999999999h",
            &"9".repeat(100),
        ];
        for bad in ["", "15x", "-1", "fast", "1.5"].iter().chain(&huge) {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whole_second_settings_refuse_fractions_rather_than_round() {
        assert_eq!(parse_whole_seconds("2m"), Ok(120));
        assert_eq!(parse_whole_seconds("1500ms").ok(), None);
        let err = parse_whole_seconds("500ms").unwrap_err();
        assert!(err.contains("500ms") && err.contains("whole"), "{err}");
    }

    #[derive(serde::Deserialize, Debug)]
    struct Keys {
        #[serde(default, deserialize_with = "whole_seconds")]
        whole: Option<u64>,
        #[serde(default, deserialize_with = "fractional_seconds")]
        fraction: Option<f64>,
    }

    fn keys(text: &str) -> Result<Keys, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_take_integers_and_strings_and_stay_optional() {
        let read = keys("whole = \"15s\"\nfraction = \"1500ms\"").unwrap();
        assert_eq!((read.whole, read.fraction), (Some(15), Some(1.5)));
        let read = keys("whole = 15\nfraction = 1.5").unwrap();
        assert_eq!((read.whole, read.fraction), (Some(15), Some(1.5)));
        let absent = keys("").unwrap();
        assert_eq!((absent.whole, absent.fraction), (None, None));
        for bad in [
            "whole = -1",
            "whole = \"soon\"",
            "whole = \"1.5s\"",
            "whole = true",
        ] {
            let err = keys(bad).unwrap_err();
            // toml quotes the line, so the message names the key.
            assert!(err.contains("whole ="), "{bad}: {err}");
        }
    }
}
