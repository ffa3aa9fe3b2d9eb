//! `Sec-WebSocket-Extensions`: which permessage-deflate offer (RFC 7692) a
//! client's upgrade request makes, and the server's answer.
//!
//! Called once per upgrade, on the shard serving it; stateless. The header
//! is client input, bounded before it is read: at most [`MAX_HEADER_BYTES`]
//! over all its lines, [`MAX_OFFERS`] offers and [`MAX_PARAMS`] parameters
//! an offer (past any of them nothing is accepted and the connection goes
//! plain). Fuzzed by `fuzz/fuzz_targets/extension_offer.rs`.
//!
//! The first offer the server can honour is accepted; an offer it cannot
//! honour is declined, never refused, so the connection proceeds plain:
//! 1. `permessage-deflate` (case-insensitive), each parameter at most once,
//!    none unknown (RFC 7692 §7.1: otherwise the offer is declined);
//! 2. `server_no_context_takeover`, `client_no_context_takeover`: no value;
//! 3. `client_max_window_bits`: no value or 8–15. The server inflates with
//!    a 32 KiB window, which reads any smaller one, so it need not answer;
//! 4. `server_max_window_bits`: 8–15, and only 15 is honoured (answered as
//!    `server_max_window_bits=15`): the compressor cannot keep its matches
//!    within a smaller window.
//!
//! The answer always carries `server_no_context_takeover` (each server
//! message is compressed on its own, so one compressed frame serves every
//! subscriber) and `client_no_context_takeover` (which RFC 7692 §7.1.1.2
//! lets a server add to any offer: the client's messages are inflated one
//! at a time, so no connection holds a 32 KiB window between messages).

/// Bytes of `Sec-WebSocket-Extensions` read, over all its lines.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Offers looked at.
pub const MAX_OFFERS: usize = 16;
/// Parameters an acceptable offer may have.
pub const MAX_PARAMS: usize = 8;

/// The extension's name.
const NAME: &str = "permessage-deflate";

/// An accepted permessage-deflate offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The client asked for `server_max_window_bits` (of 15): it is answered.
    window_bits_asked: bool,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value that accepts it.
    pub fn response(self) -> &'static str {
        if self.window_bits_asked {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// The first permessage-deflate offer in `lines` (the header's values, in
/// order) that the server can honour; `None`: the connection goes plain.
pub fn negotiate<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<Deflate> {
    let mut total = 0;
    let mut offers = 0;
    for line in lines {
        total += line.len();
        if total > MAX_HEADER_BYTES {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        for offer in split_unquoted(line, ',') {
            offers += 1;
            if offers > MAX_OFFERS {
                return None;
            }
            if let Some(deflate) = accept(offer) {
                return Some(deflate);
            }
        }
    }
    None
}

/// One offer (`name; param; param=value`), if acceptable.
fn accept(offer: &str) -> Option<Deflate> {
    let mut parts = split_unquoted(offer, ';');
    if !parts.next()?.trim().eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut window_bits_asked = false;
    for param in parts {
        if seen.len() == MAX_PARAMS {
            return None;
        }
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            ("server_max_window_bits", Some(bits)) => {
                if window_bits(bits)? != 15 {
                    return None;
                }
                window_bits_asked = true;
            }
            _ => return None,
        }
    }
    Some(Deflate { window_bits_asked })
}

/// A window size as RFC 7692 §7.1.2 writes it: 8 to 15, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// A parameter value, without its quotes if it has them (RFC 7692 §5.1:
/// a quoted value must still be a token; no escapes needed).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => Some(value),
    }
}

/// `text` split at `separator`s outside double quotes.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    text.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == separator && !quoted
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(lines: &[&str]) -> Option<&'static str> {
        negotiate(lines.iter().map(|l| l.as_bytes())).map(Deflate::response)
    }

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn offers_with_parameters_are_accepted() {
        assert_eq!(offer(&["permessage-deflate"]), Some(PLAIN));
        // What browsers and the Python websockets package send.
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]),
            Some(PLAIN)
        );
        assert_eq!(
            offer(&[
                "Permessage-Deflate; client_max_window_bits=\"10\"; client_no_context_takeover"
            ]),
            Some(PLAIN)
        );
        assert_eq!(
            offer(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=15"]),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=15"
            )
        );
    }

    #[test]
    fn the_first_offer_that_can_be_honoured_wins() {
        assert_eq!(
            offer(&[
                "x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=10, permessage-deflate"
            ]),
            Some(PLAIN)
        );
        assert_eq!(
            offer(&["foo; a=\"x,y\", permessage-deflate; client_max_window_bits=9"]),
            Some(PLAIN)
        );
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined() {
        for bad in [
            "",
            "deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
            "permessage-deflate; ; ",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn the_header_is_bounded() {
        let many = vec!["foo"; MAX_OFFERS].join(", ") + ", permessage-deflate";
        assert_eq!(offer(&[&many]), None);
        let long = format!("x; a={}, permessage-deflate", "b".repeat(MAX_HEADER_BYTES));
        assert_eq!(offer(&[&long]), None);
        let params = "permessage-deflate".to_owned() + &"; client_max_window_bits".repeat(9);
        assert_eq!(offer(&[&params]), None);
        assert_eq!(offer(&["foo", "permessage-deflate"]), Some(PLAIN));
    }
}
