//! Bounds on untrusted input, checked before it is parsed, stored or logged.
//!
//! Stateless and shared by every protocol. Parsers that build a tree
//! (simd-json's values, serde's structs) recurse once per nesting level, so
//! the nesting depth of client JSON is checked here first, by a linear scan
//! with a counter: no input can make a shard thread overflow its stack.

use std::borrow::Cow;

/// Most levels of arrays and objects in a client command (telemetry
/// commands). `/ws/publish` frames carry published `data` and nest at most
/// [`MAX_DATA_DEPTH`] + 1.
pub const MAX_COMMAND_DEPTH: usize = 64;

/// Most levels of arrays and objects in published `data`.
///
/// Below 128 on purpose: every protocol wraps `data` in an envelope of its
/// own (one or two levels), and the event as a whole must stay within the
/// 128 levels that strict JSON parsers accept by default (serde_json's
/// limit), so that every subscriber can read what it is sent.
pub const MAX_DATA_DEPTH: usize = 100;

/// JSON that nests deeper than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("JSON nests deeper than {limit} levels of arrays and objects")]
pub struct TooDeep {
    /// The limit that was exceeded.
    pub limit: usize,
}

/// Checks that `json` nests arrays and objects at most `limit` levels deep.
///
/// One pass over the bytes, no recursion, no allocation. Brackets inside
/// strings (escapes included) do not count. On text that is not JSON the
/// answer is arbitrary but the scan is still bounded; the parser that
/// follows judges validity.
pub fn check_depth(json: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut bytes = json.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string: up to the next quote not escaped.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `text` made safe to write into a log line or send to a client: control
/// characters (CR, LF, ESC, DEL, C1) and the invisible Unicode formatting
/// characters that can disguise text (bidirectional overrides, zero-width
/// marks) become `?`, and the result is cut to at most `max` bytes at a
/// character boundary. Borrowed when nothing had to change.
pub fn sanitize(text: &str, max: usize) -> Cow<'_, str> {
    let cut = truncate(text, max);
    if !cut.chars().any(is_unsafe_char) {
        return Cow::Borrowed(cut);
    }
    let mut out = String::with_capacity(cut.len());
    for c in cut.chars() {
        out.push(if is_unsafe_char(c) { '?' } else { c });
    }
    Cow::Owned(out)
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert_eq!(check_depth(b"1", 0), Ok(()));
        assert_eq!(check_depth(b"[]", 0), Err(TooDeep { limit: 0 }));
        assert_eq!(check_depth(br#"{"a":[1,{"b":[]}]}"#, 4), Ok(()));
        assert_eq!(
            check_depth(br#"{"a":[1,{"b":[]}]}"#, 3),
            Err(TooDeep { limit: 3 })
        );
        // Brackets in strings, including after escaped quotes and backslashes.
        assert_eq!(check_depth(br#"["[[[[", "\"[[[", "\\", "{{"]"#, 1), Ok(()));
        // Siblings do not add up.
        assert_eq!(check_depth(b"[[],[],[],[]]", 2), Ok(()));
    }

    #[test]
    fn a_twenty_kilobyte_nest_is_refused_without_recursion() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            check_depth(deep.as_bytes(), MAX_COMMAND_DEPTH),
            Err(TooDeep {
                limit: MAX_COMMAND_DEPTH
            })
        );
        let exactly = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(check_depth(exactly.as_bytes(), MAX_COMMAND_DEPTH), Ok(()));
    }

    #[test]
    fn unterminated_input_ends_the_scan() {
        assert_eq!(check_depth(br#"["abc\"#, 4), Ok(()));
        assert_eq!(check_depth(b"\"", 4), Ok(()));
        assert_eq!(check_depth(b"}}}]]]", 0), Ok(()));
    }

    #[test]
    fn sanitize_neutralises_line_breaks_escapes_and_bidi_overrides() {
        assert_eq!(sanitize("maintenance window", 64), "maintenance window");
        assert!(matches!(sanitize("plain", 64), Cow::Borrowed(_)));
        assert_eq!(
            sanitize("bye\r\nINFO forged line\x1b[31m", 64),
            "bye??INFO forged line?[31m"
        );
        assert_eq!(sanitize("a\u{202E}b\u{200B}c", 64), "a?b?c");
        assert_eq!(sanitize("héllo", 2), "h");
        assert_eq!(sanitize("ünïcode ok", 64), "ünïcode ok");
    }
}
