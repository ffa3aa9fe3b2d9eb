//! What the server refused and why, and how to fix it: subscriptions left
//! out of a subscribe `ack`, `error` frames and refused publishes by code,
//! a publisher the server would not upgrade.
//!
//! 1. A subscriber asks for its channels in the upgrade's query; the server
//!    answers with one `ack` naming the channels it now holds, then one
//!    `error` frame per kind of refusal (`UNKNOWN_CHANNEL`, `FORBIDDEN`,
//!    `LIMIT_REACHED`). A channel asked for and missing from the ack is
//!    refused: [`Refusals::on_ack`] says which were accepted, so only those
//!    count as subscribers (a refused channel owes the client nothing).
//! 2. Every `error` frame is tallied by side (subscribe or publish) and code,
//!    keeping the first message of each ([`Refusals::on_error`]); the first
//!    of each code is returned as a line for stderr, so an operator sees it
//!    while the run goes on.
//! 3. The report lists the refused channels, the codes with their messages,
//!    and a fix for each code ([`fix`]).
//!
//! Sans-IO: the tasks hand it the frames they read. Everything it keeps is
//! bounded (names, codes, message length), whatever the server sends.
//! Owned by the loadgen's single thread (behind a `RefCell` in `Shared`).

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

/// How every `error` frame begins (the server writes `type` first).
pub const ERROR_FRAME: &[u8] = br#"{"type":"error""#;

/// Refused channel names listed in the report.
const MAX_NAMES: usize = 32;
/// Distinct (side, code) pairs kept.
const MAX_CODES: usize = 32;
/// Characters kept of a server's message.
const MAX_MESSAGE: usize = 400;

/// Which of the loadgen's requests the server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Subscribe,
    Publish,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Subscribe => "subscribe",
            Side::Publish => "publish",
        }
    }
}

/// One code the server answered with, and how often.
#[derive(Debug)]
struct Tally {
    side: Side,
    code: String,
    count: u64,
    /// The first message with this code.
    message: String,
}

/// Everything refused during a run. Owned by the loadgen's single thread.
#[derive(Debug)]
pub struct Refusals {
    prefix: String,
    /// Channels asked for and left out of an ack: the loadgen's own topic
    /// names, so at most `--topics` of them.
    channels: BTreeSet<String>,
    /// Subscriptions asked for and left out of their ack, over all connections.
    subscriptions: u64,
    tallies: Vec<Tally>,
}

impl Refusals {
    /// `prefix`: the loadgen's topic prefix, named in the fixes.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            channels: BTreeSet::new(),
            subscriptions: 0,
            tallies: Vec::new(),
        }
    }

    /// A subscribe `ack` answering a request for `asked`: which of them the
    /// server holds now, in order. An ack that does not list its channels
    /// accepts them all.
    pub fn on_ack(&mut self, asked: &[String], payload: &[u8]) -> Vec<bool> {
        let ack: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let Some(held) = ack["channels"].as_array() else {
            return vec![true; asked.len()];
        };
        let held: HashSet<&str> = held.iter().filter_map(Value::as_str).collect();
        let accepted: Vec<bool> = asked.iter().map(|n| held.contains(n.as_str())).collect();
        for (name, _) in asked.iter().zip(&accepted).filter(|(_, &ok)| !ok) {
            self.subscriptions += 1;
            if !self.channels.contains(name) {
                self.channels.insert(name.clone());
            }
        }
        accepted
    }

    /// An `error` frame (or an HTTP error body) answering a `side` request.
    /// Returns a line for stderr the first time its code is seen.
    pub fn on_error(&mut self, side: Side, payload: &[u8]) -> Option<String> {
        let error: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let code = error["code"].as_str().unwrap_or("UNRECOGNISED");
        let message = match error["message"].as_str() {
            Some(m) => m.to_owned(),
            None => String::from_utf8_lossy(payload).into_owned(),
        };
        self.record(side, code, &message)
    }

    /// A refusal that came without an error frame (a refused upgrade):
    /// `code` names it. Returns a line for stderr the first time.
    pub fn record(&mut self, side: Side, code: &str, message: &str) -> Option<String> {
        if let Some(t) = self
            .tallies
            .iter_mut()
            .find(|t| t.side == side && t.code == code)
        {
            t.count += 1;
            return None;
        }
        if self.tallies.len() >= MAX_CODES {
            return None;
        }
        let message: String = message.chars().take(MAX_MESSAGE).collect();
        let code: String = code.chars().take(64).collect();
        let line = format!(
            "server refused a {}: {code}: {message}\n  fix: {}",
            side.as_str(),
            fix(&code, &message, &self.prefix)
        );
        self.tallies.push(Tally {
            side,
            code,
            count: 1,
            message,
        });
        Some(line)
    }

    /// Subscriptions refused over all connections.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions
    }

    /// Publishes refused (error frames and refused publishers).
    pub fn publishes(&self) -> u64 {
        self.tallies
            .iter()
            .filter(|t| t.side == Side::Publish)
            .map(|t| t.count)
            .sum()
    }

    /// The report's `refused` object.
    pub fn to_json(&self) -> Value {
        let errors: Vec<Value> = self
            .tallies
            .iter()
            .map(|t| {
                json!({
                    "side": t.side.as_str(), "code": t.code, "count": t.count,
                    "message": t.message, "fix": fix(&t.code, &t.message, &self.prefix),
                })
            })
            .collect();
        json!({
            "subscriptions": self.subscriptions,
            "publishes": self.publishes(),
            "channels": self.channels.iter().take(MAX_NAMES).collect::<Vec<_>>(),
            "distinct_channels": self.channels.len(),
            "errors": errors,
        })
    }
}

/// How to get past a refusal with `code` (and `message`, for refused upgrades).
pub fn fix(code: &str, message: &str, prefix: &str) -> String {
    match code {
        "UNKNOWN_CHANNEL" | "INVALID_CHANNEL" => format!(
            "the server does not declare these channels: start it with --channel '{prefix}*' \
             (or channels = [\"{prefix}*\"] in its config file), or pass --prefix naming channels it declares"
        ),
        "FORBIDDEN" => format!(
            "the API key may not use these channels: pass --api-key (or SHARDCAST_API_KEY) with a key \
             whose scope covers '{prefix}*' and that has the subscribe, publish and admin roles"
        ),
        "LIMIT_REACHED" => "a server limit was reached: use fewer --topics or --subs, or raise \
             topics.max_subscriptions, topics.max_topics or the key's max_created_per_key on the server"
            .into(),
        "RATE_LIMITED" => "over the key's channel-creation rate: raise topics.creation_rate and \
             topics.creation_burst on the server, or use fewer --topics"
            .into(),
        "HANDSHAKE" => handshake_fix(message),
        _ => "see the code in docs/protocol.md".into(),
    }
}

/// How to get past a refused WebSocket upgrade, from what the loadgen saw.
pub fn handshake_fix(seen: &str) -> String {
    let fix = if seen.contains(" 401") {
        "the server does not know the API key: pass --api-key (or SHARDCAST_API_KEY) with one of its keys"
    } else if seen.contains(" 403") {
        "the key lacks the role the endpoint needs (subscribe for /ws/telemetry, publish for /ws/publish)"
    } else if seen.contains(" 503") {
        "the server holds its maximum number of connections: raise max_connections, or use fewer --connections"
    } else if seen.contains("closed during handshake") || seen.contains("reset") {
        "the server closed the connection unanswered: a per-address limit (start it with \
         --max-connections-per-ip 0 --max-http-connections-per-ip 0, or spread over --source-ips) \
         or its open-file limit"
    } else {
        "is the server running at --url?"
    };
    fix.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn channels_missing_from_the_ack_are_refused_and_named() {
        let mut r = Refusals::new("load.");
        let asked = names(&["load.0", "load.1", "market-data"]);
        let ack = br#"{"type":"ack","action":"subscribe","channels":["market-data"]}"#;
        assert_eq!(r.on_ack(&asked, ack), vec![false, false, true]);
        // A second connection refused the same channel: counted, named once.
        r.on_ack(
            &asked[..1],
            br#"{"type":"ack","action":"subscribe","channels":[]}"#,
        );
        let report = r.to_json();
        assert_eq!(report["subscriptions"], 3);
        assert_eq!(report["channels"], json!(["load.0", "load.1"]));
        assert_eq!(report["distinct_channels"], 2);
        // An ack that lists nothing accepts everything.
        assert_eq!(r.on_ack(&asked, b"{\"type\":\"ack\"}"), vec![true; 3]);
    }

    #[test]
    fn each_code_is_told_once_with_its_fix_and_then_counted() {
        let mut r = Refusals::new("load.");
        let frame = br#"{"type":"error","code":"UNKNOWN_CHANNEL","message":"unknown channels: load.0, load.1"}"#;
        let line = r.on_error(Side::Subscribe, frame).expect("first is told");
        assert!(
            line.contains("UNKNOWN_CHANNEL") && line.contains("load.0"),
            "{line}"
        );
        assert!(line.contains("--channel 'load.*'"), "{line}");
        assert_eq!(r.on_error(Side::Subscribe, frame), None);
        assert!(r.on_error(Side::Publish, frame).is_some(), "another side");
        let report = r.to_json();
        assert_eq!(report["errors"][0]["count"], 2);
        assert_eq!(report["publishes"], 1);
        assert!(report["errors"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("--prefix"));
    }

    #[test]
    fn what_the_server_sends_is_bounded() {
        let mut r = Refusals::new("load.");
        let long = format!(r#"{{"code":"X","message":"{}"}}"#, "m".repeat(10_000));
        r.on_error(Side::Publish, long.as_bytes());
        r.on_error(Side::Publish, b"not json at all");
        for code in 0..100 {
            r.record(Side::Subscribe, &format!("C{code}"), "m");
        }
        let asked: Vec<String> = (0..100).map(|t| format!("load.{t:03}")).collect();
        r.on_ack(&asked, br#"{"channels":[]}"#);
        let report = r.to_json();
        assert_eq!(report["errors"].as_array().unwrap().len(), MAX_CODES);
        assert_eq!(
            report["errors"][0]["message"].as_str().unwrap().len(),
            MAX_MESSAGE
        );
        assert_eq!(report["errors"][1]["code"], "UNRECOGNISED");
        assert_eq!(report["channels"].as_array().unwrap().len(), MAX_NAMES);
        assert_eq!(report["distinct_channels"], 100);
    }

    #[test]
    fn refused_upgrades_get_a_fix_from_their_status() {
        assert!(handshake_fix("upgrade refused: HTTP/1.1 401 Unauthorized").contains("--api-key"));
        assert!(handshake_fix("closed during handshake").contains("--max-connections-per-ip 0"));
    }
}
