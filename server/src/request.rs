//! The parts of a request target this server reads: query parameters and
//! path segments, parsed strictly and within bounds.
//!
//! Sans-IO and stateless; fuzzed by `fuzz/fuzz_targets/request_target.rs`.
//! The whole target is bounded by the header size limit before it gets
//! here; within it:
//! - a parameter that names one thing (`apiKey`, `token`, `clientId`,
//!   `replay`, `reason`, `owner`) may appear once — given twice it is refused, never
//!   resolved by "first wins" or "last wins";
//! - `channels` may repeat and is comma-separated; `channel` may repeat and
//!   is one whole name (for names that hold a comma, such as
//!   `bars:{"resolution":"1","symbol":"AAPL"}`); at most
//!   [`MAX_QUERY_CHANNELS`] names in all;
//! - unknown parameters are ignored (clients and proxies add their own).

use std::borrow::Cow;

/// Most channel names a query may carry.
pub const MAX_QUERY_CHANNELS: usize = 1024;

/// Longest accepted `clientId`.
pub const MAX_CLIENT_ID: usize = 128;

/// The query parameters this server reads.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Query {
    /// `apiKey`.
    pub api_key: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `clientId`.
    pub client_id: Option<String>,
    /// `channels`, split and trimmed, and `channel`, whole; empty names dropped.
    pub channels: Vec<String>,
    /// `replay=true` or `replay=1`.
    pub replay: bool,
    /// `reason` (admin disconnect).
    pub reason: Option<String>,
    /// `owner` (admin disconnect: only this principal's client).
    pub owner: Option<String>,
}

/// Why a query was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A single-valued parameter appeared more than once.
    #[error("query parameter {0:?} given more than once")]
    Repeated(&'static str),
    /// Too many channel names.
    #[error("at most {MAX_QUERY_CHANNELS} channels in the query")]
    TooManyChannels,
    /// `replay` with a value other than true, false, 1 or 0.
    #[error("replay must be true or false")]
    BadReplay,
}

impl Query {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: Option<&str>) -> Result<Query, QueryError> {
        let mut out = Query::default();
        let mut replay_seen = false;
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "apiKey" => once(&mut out.api_key, value, "apiKey")?,
                "token" => once(&mut out.token, value, "token")?,
                // `client_id`: the simple protocol's name for it.
                "clientId" | "client_id" => once(&mut out.client_id, value, "clientId")?,
                "reason" => once(&mut out.reason, value, "reason")?,
                "owner" => once(&mut out.owner, value, "owner")?,
                "replay" => {
                    if std::mem::replace(&mut replay_seen, true) {
                        return Err(QueryError::Repeated("replay"));
                    }
                    out.replay = match value.as_ref() {
                        "true" | "1" => true,
                        "false" | "0" | "" => false,
                        _ => return Err(QueryError::BadReplay),
                    };
                }
                "channels" => {
                    for channel in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                        out.push_channel(channel)?;
                    }
                }
                // One name, whole: for names that hold a comma.
                "channel" if !value.is_empty() => out.push_channel(&value)?,
                "channel" => {}
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Query {
    fn push_channel(&mut self, channel: &str) -> Result<(), QueryError> {
        if self.channels.len() == MAX_QUERY_CHANNELS {
            return Err(QueryError::TooManyChannels);
        }
        self.channels.push(channel.to_owned());
        Ok(())
    }
}

fn once(
    slot: &mut Option<String>,
    value: Cow<'_, str>,
    name: &'static str,
) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Repeated(name));
    }
    *slot = Some(value.into_owned());
    Ok(())
}

/// Decodes one percent-encoded path segment (`%20` → space; `+` stays `+`).
pub fn percent_decode_segment(segment: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy()
}

/// Whether `id` is a usable client id: 1-128 characters from
/// `A-Z a-z 0-9 - _ . : @`.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let q = Query::parse(Some(
            "apiKey=a%20b&clientId=desk-1&channels=market-data,%20positions,,&replay=true&channels=t1",
        ))
        .unwrap();
        assert_eq!(q.api_key.as_deref(), Some("a b"));
        assert_eq!(q.client_id.as_deref(), Some("desk-1"));
        assert_eq!(q.channels, vec!["market-data", "positions", "t1"]);
        assert!(q.replay);
        assert_eq!(Query::parse(Some("replay=yes")), Err(QueryError::BadReplay));
        assert_eq!(Query::parse(None), Ok(Query::default()));
    }

    #[test]
    fn single_valued_parameters_may_not_repeat() {
        for name in ["apiKey", "token", "clientId", "reason", "replay", "owner"] {
            let raw = format!("{name}=1&x=2&{name}=1");
            assert!(
                matches!(Query::parse(Some(&raw)), Err(QueryError::Repeated(n)) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn a_channel_parameter_is_one_whole_name_commas_included() {
        let q = Query::parse(Some(
            "channel=bars%3A%7B%22resolution%22%3A%221%22%2C%22symbol%22%3A%22AAPL%22%7D&channels=t1,t2&channel=",
        ))
        .unwrap();
        assert_eq!(
            q.channels,
            vec![r#"bars:{"resolution":"1","symbol":"AAPL"}"#, "t1", "t2"]
        );
        let many = format!(
            "channels=a&{}",
            vec!["channel=b"; MAX_QUERY_CHANNELS].join("&")
        );
        assert_eq!(Query::parse(Some(&many)), Err(QueryError::TooManyChannels));
    }

    #[test]
    fn channel_lists_are_bounded() {
        let many = format!("channels={}", vec!["a"; MAX_QUERY_CHANNELS + 1].join(","));
        assert_eq!(Query::parse(Some(&many)), Err(QueryError::TooManyChannels));
        let enough = format!("channels={}", vec!["a"; MAX_QUERY_CHANNELS].join(","));
        assert_eq!(
            Query::parse(Some(&enough)).unwrap().channels.len(),
            MAX_QUERY_CHANNELS
        );
    }

    #[test]
    fn client_ids_are_bounded_and_plain() {
        assert!(valid_client_id("desk-7@ny:1"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id(&"x".repeat(129)));
    }

    #[test]
    fn path_segments_decode_percent_escapes_only() {
        assert_eq!(percent_decode_segment("desk%2D7"), "desk-7");
        assert_eq!(percent_decode_segment("a+b"), "a+b");
        assert_eq!(percent_decode_segment("%FF"), "\u{FFFD}");
    }
}
