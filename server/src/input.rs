//! Bounds on untrusted input, checked before it is parsed, stored or logged.
//!
//! Stateless and shared by every protocol. Parsers that build a tree
//! (simd-json's values, serde's structs) recurse once per nesting level, so
//! the nesting depth of client JSON is checked here first, by a linear scan
//! with a counter: no input can make a shard thread overflow its stack.
//! Published `data` gets a sibling of that scan, [`check_data`], which also
//! refuses an object that repeats a key.

use std::borrow::Cow;
use std::collections::HashSet;

/// Most levels of arrays and objects in a client command (telemetry,
/// BondX, FastWS and simple commands). Publishes are parsed without
/// recursion and only their `data` is bounded, by [`MAX_DATA_DEPTH`].
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
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => match string_end(json, at + 1) {
                Some((end, _)) => at = end,
                None => break, // Unterminated: the parser judges.
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The index of the quote that closes the JSON string whose body starts at
/// `start`, and whether the body holds an escape; `None` when nothing
/// closes it. A backslash always escapes the byte after it.
fn string_end(json: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut at = start;
    let mut escaped = false;
    while at < json.len() {
        match json[at] {
            b'\\' => {
                escaped = true;
                at += 2;
            }
            b'"' => return Some((at, escaped)),
            _ => at += 1,
        }
    }
    None
}

/// Published data that breaks a rule of [`check_data`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Nested deeper than allowed.
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
    /// One object holds the same key twice. The key (decoded, made
    /// printable and cut to 64 bytes) is kept for the message.
    #[error("the key {0:?} appears twice in one object")]
    DuplicateKey(String),
}

/// Objects with at most this many keys are checked for a repeated key by
/// comparing the new key with each earlier one: no allocation, and for the
/// few keys of a typical quote or order cheaper than hashing (a flat
/// object of 16 keys: 0.44–0.49 µs for the whole check; of 17, hashed:
/// 0.75–0.99 µs; docs/benchmarks.md). Beyond, the object's keys move into
/// a hash set, so a 10,000-key object costs 10,000 lookups, not 50 million
/// comparisons.
const LINEAR_KEYS: usize = 16;

/// One open array or object during [`check_data`].
struct Level<'a> {
    object: bool,
    /// Where this object's keys start on the shared key stack.
    start: usize,
    /// This object's keys once it has more than [`LINEAR_KEYS`].
    set: Option<HashSet<Cow<'a, [u8]>>>,
}

impl<'a> Level<'a> {
    /// Records `key`; hands it back when the object already has it.
    fn insert(
        &mut self,
        keys: &mut Vec<Cow<'a, [u8]>>,
        key: Cow<'a, [u8]>,
    ) -> Result<(), Cow<'a, [u8]>> {
        if let Some(set) = &mut self.set {
            return set.replace(key).map_or(Ok(()), Err);
        }
        if keys[self.start..].contains(&key) {
            return Err(key);
        }
        keys.push(key);
        if keys.len() - self.start > LINEAR_KEYS {
            self.set = Some(keys.drain(self.start..).collect());
        }
        Ok(())
    }
}

/// Checks published JSON `data` in one pass: arrays and objects nest at
/// most `limit` levels (as [`check_depth`]), and no object has the same key
/// twice.
///
/// JSON leaves repeated keys to the reader: some keep the first value, most
/// the last, and protocols that merge `data` into their own frames would
/// repeat them in turn. So they are refused. Keys are compared as JSON
/// defines them, after escapes: `"a"` and `"\u0061"` are the same key. A key
/// is compared by its raw bytes, borrowed from `data`, and decoded (one
/// allocation) only when it holds a backslash; a key whose escapes do not
/// decode (a lone surrogate) is compared by its raw bytes.
///
/// No recursion; no allocation for data without objects; otherwise a stack
/// of the open levels and one of the open objects' keys (a hash set only
/// for an object of more than [`LINEAR_KEYS`] keys). On text that is not
/// JSON the answer is arbitrary but the scan is still bounded, as with
/// [`check_depth`].
pub fn check_data(json: &[u8], limit: usize) -> Result<(), DataError> {
    let mut levels: Vec<Level<'_>> = Vec::new();
    let mut keys: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => {
                let start = at + 1;
                let Some((end, escaped)) = string_end(json, start) else {
                    break; // Unterminated: the parser judges.
                };
                at = end + 1;
                let Some(level) = levels.last_mut().filter(|level| level.object) else {
                    continue;
                };
                if !followed_by_colon(&json[at..]) {
                    continue; // A value, not a key.
                }
                let key = if escaped {
                    serde_json::from_slice::<String>(&json[start - 1..at])
                        .map_or(Cow::Borrowed(&json[start..end]), |k| {
                            Cow::Owned(k.into_bytes())
                        })
                } else {
                    Cow::Borrowed(&json[start..end])
                };
                if let Err(key) = level.insert(&mut keys, key) {
                    let shown = String::from_utf8_lossy(&key);
                    return Err(DataError::DuplicateKey(sanitize(&shown, 64).into_owned()));
                }
                continue;
            }
            open @ (b'[' | b'{') => {
                if levels.len() >= limit {
                    return Err(TooDeep { limit }.into());
                }
                levels.push(Level {
                    object: open == b'{',
                    start: keys.len(),
                    set: None,
                });
            }
            b']' | b'}' => {
                if let Some(level) = levels.pop() {
                    keys.truncate(level.start);
                }
            }
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// Whether the next byte after JSON whitespace is a `:`.
fn followed_by_colon(rest: &[u8]) -> bool {
    rest.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b':')
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
    fn data_with_a_key_twice_in_one_object_is_refused_at_any_depth() {
        let dup = |key: &str| Err(DataError::DuplicateKey(key.into()));
        assert_eq!(check_data(br#"{"a":1,"b":2}"#, 4), Ok(()));
        assert_eq!(check_data(br#"{"a":1,"a":2}"#, 4), dup("a"));
        assert_eq!(
            check_data(br#"{"x":{"a":1,"b":{"a":2},"a":3}}"#, 4),
            dup("a")
        );
        assert_eq!(check_data(br#"[{"a":1},{"a":1}]"#, 4), Ok(()));
        // The same key in sibling and nested objects is no repeat.
        assert_eq!(check_data(br#"{"a":{"a":{"a":1}},"b":{"a":2}}"#, 4), Ok(()));
        // Strings that are values, or hold quotes and colons, are not keys.
        assert_eq!(
            check_data(br#"{"a":"a","b":["a","a"],"c":"\":"}"#, 4),
            Ok(())
        );
        assert_eq!(check_data(b"{\"a\" : 1, \"a\"\t:2}", 4), dup("a"));
        // Keys are compared after escapes, as JSON defines them.
        assert_eq!(check_data(br#"{"a":1,"\u0061":2}"#, 4), dup("a"));
        assert_eq!(check_data(br#"{"\"":1,"\u0022":2}"#, 4), dup("\""));
        assert_eq!(check_data(r#"{"é":1,"\u00e9":2}"#.as_bytes(), 4), dup("é"));
        assert_eq!(check_data(br#"{"a":1,"\u0041":2,"a\\":3}"#, 4), Ok(()));
        // A key shown in the error is made printable.
        assert_eq!(check_data(br#"{"\n":1,"\n":2}"#, 4), dup("?"));
    }

    #[test]
    fn large_objects_are_checked_with_a_set_and_small_ones_without() {
        for count in [LINEAR_KEYS, LINEAR_KEYS + 1, 1000] {
            let keys: Vec<String> = (0..count).map(|k| format!("\"k{k}\":{k}")).collect();
            let object = format!("{{{}}}", keys.join(","));
            assert_eq!(check_data(object.as_bytes(), 4), Ok(()), "{count}");
            let nested = format!(r#"{{"n":{object},"k0":{object}}}"#);
            assert_eq!(check_data(nested.as_bytes(), 4), Ok(()), "{count}");
            for repeat in ["k0", "k15", &format!("k{}", count - 1)] {
                let object = format!(r#"{{{},"{repeat}":0}}"#, keys.join(","));
                assert_eq!(
                    check_data(object.as_bytes(), 4),
                    Err(DataError::DuplicateKey(repeat.into())),
                    "{count} {repeat}"
                );
            }
        }
    }

    #[test]
    fn data_depth_is_bounded_as_check_depth_bounds_it() {
        assert_eq!(check_data(b"[]", 0), Err(TooDeep { limit: 0 }.into()));
        assert_eq!(check_data(br#"{"a":[1,{"b":[]}]}"#, 4), Ok(()));
        assert_eq!(
            check_data(br#"{"a":[1,{"b":[]}]}"#, 3),
            Err(TooDeep { limit: 3 }.into())
        );
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(
            check_data(deep.as_bytes(), MAX_DATA_DEPTH),
            Err(TooDeep {
                limit: MAX_DATA_DEPTH
            }
            .into())
        );
        // Text that is not JSON ends the scan without a panic.
        for junk in [
            &b"{\"a"[..],
            b"{\"a\\",
            b"}}]]{:",
            b"\"a\":1",
            b"{\"a\":1,\"a\"",
        ] {
            let _ = check_data(junk, 4);
        }
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
