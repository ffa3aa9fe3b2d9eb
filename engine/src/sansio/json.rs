//! JSON string escaping for wire formats that write JSON by hand.
//!
//! Sans-IO. Topic names may hold any printable character (quotes,
//! backslashes, non-ASCII letters), and keys any character at all, so
//! every format that writes a name or key into JSON goes through
//! [`write_str`]: quotes, backslashes and control characters are escaped;
//! everything else, non-ASCII included, is written as it is (JSON text is
//! UTF-8).

use bytes::{BufMut, BytesMut};

/// Whether `byte` must be escaped inside a JSON string.
#[inline]
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Appends `text` as a JSON string, quotes included.
#[inline]
pub fn write_str(out: &mut BytesMut, text: &str) {
    out.put_u8(b'"');
    if text.bytes().any(needs_escape) {
        write_escaped(out, text);
    } else {
        out.put_slice(text.as_bytes());
    }
    out.put_u8(b'"');
}

#[cold]
fn write_escaped(out: &mut BytesMut, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        out.put_slice(&bytes[start..i]);
        match byte {
            b'"' => out.put_slice(b"\\\""),
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            _ => {
                out.put_slice(b"\\u00");
                out.put_u8(HEX[usize::from(byte >> 4)]);
                out.put_u8(HEX[usize::from(byte & 0xF)]);
            }
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        let mut out = BytesMut::new();
        write_str(&mut out, text);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for text in [
            "plain",
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#,
            "back\\slash",
            "ünïcødé — 株式",
            "ctl\u{0}\u{1f}\n\t\r",
            "",
        ] {
            let written = json(text);
            let parsed: String = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed, text, "{written}");
        }
        assert_eq!(json("a\"b"), r#""a\"b""#);
        assert_eq!(json("é"), "\"é\"");
    }
}
