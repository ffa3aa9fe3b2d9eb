//! Client messages of the FastWS protocol:
//! `{"type":"<route>.<operation>","payload":{…}}`.
//!
//! Stateless. A message the protocol cannot act on closes the connection
//! with 1003 and the reason FastWS gives ([`Violation`]): not JSON (or not
//! the envelope's shape, or nested past [`MAX_COMMAND_DEPTH`]) →
//! `Unsupported Data`; a `type` no route serves → `No matching type`; a
//! payload the route's fields refuse → `Could not validate payload`. The
//! frame itself is bounded by the engine's `max_frame_size`.

use serde_json::{Map, Value};

use super::route::{route, Route};
use crate::input::{check_depth, MAX_COMMAND_DEPTH};

/// What a client asks of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `<route>.subscribe`.
    Subscribe,
    /// `<route>.unsubscribe`.
    Unsubscribe,
}

impl Operation {
    /// Its name in `type`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Unsubscribe => "unsubscribe",
        }
    }
}

/// A valid client message.
#[derive(Debug)]
pub struct Request {
    /// The route.
    pub route: &'static Route,
    /// What is asked of it.
    pub operation: Operation,
    /// The subscription's parameters (`params` flattened, defaults filled).
    pub parameters: Map<String, Value>,
    /// The topic they name.
    pub topic: String,
}

impl Request {
    /// The request's `symbol`, echoed in the response when it had one.
    pub fn symbol(&self) -> Option<&str> {
        self.parameters.get("symbol").and_then(Value::as_str)
    }
}

/// Why a message closes the connection (code 1003).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Not JSON, not an object with a string `type`, or nested too deep.
    UnsupportedData(String),
    /// No route serves this `type`.
    NoMatchingType(String),
    /// The route's fields refuse the payload.
    InvalidPayload(String),
}

impl Violation {
    /// The close frame's reason, as FastWS words it.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::UnsupportedData(_) => "Unsupported Data",
            Violation::NoMatchingType(_) => "No matching type",
            Violation::InvalidPayload(_) => "Could not validate payload",
        }
    }

    /// What was wrong, for the log.
    pub fn detail(&self) -> &str {
        match self {
            Violation::UnsupportedData(why)
            | Violation::NoMatchingType(why)
            | Violation::InvalidPayload(why) => why,
        }
    }
}

/// Parses one client message.
pub fn parse(text: &[u8]) -> Result<Request, Violation> {
    check_depth(text, MAX_COMMAND_DEPTH)
        .map_err(|e| Violation::UnsupportedData(format!("message refused: {e}")))?;
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Violation::UnsupportedData(format!("not JSON: {e}")))?;
    let Value::Object(mut message) = value else {
        return Err(Violation::UnsupportedData("not a JSON object".into()));
    };
    let kind = match message.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(Violation::UnsupportedData("no string \"type\"".into())),
    };
    let (name, operation) = kind
        .rsplit_once('.')
        .and_then(|(name, op)| {
            let operation = match op {
                "subscribe" => Operation::Subscribe,
                "unsubscribe" => Operation::Unsubscribe,
                _ => return None,
            };
            Some((route(name)?, operation))
        })
        .ok_or_else(|| {
            let shown: String = kind.chars().take(64).collect();
            Violation::NoMatchingType(format!("no operation {shown:?}"))
        })?;
    let payload = message.remove("payload");
    let parameters = name
        .parameters(payload.as_ref())
        .map_err(|e| Violation::InvalidPayload(e.to_string()))?;
    Ok(Request {
        topic: name.topic(&parameters),
        route: name,
        operation,
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_into_topics() {
        let text =
            br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"5"}}}"#;
        let request = parse(text).unwrap();
        assert_eq!(request.route.name, "bars");
        assert_eq!(request.operation, Operation::Subscribe);
        assert_eq!(request.topic, r#"bars:{"resolution":"5","symbol":"AAPL"}"#);
        assert_eq!(request.symbol(), Some("AAPL"));
        let text = br#"{"type":"broker-connection.unsubscribe","payload":{"accountId":"A1"}}"#;
        let request = parse(text).unwrap();
        assert_eq!(request.operation, Operation::Unsubscribe);
        assert_eq!(request.topic, r#"broker-connection:{"accountId":"A1"}"#);
        assert_eq!(request.symbol(), None);
    }

    #[test]
    fn each_violation_has_its_reason() {
        let reason = |text: &str| parse(text.as_bytes()).unwrap_err().reason();
        assert_eq!(reason("not json"), "Unsupported Data");
        assert_eq!(reason("[1]"), "Unsupported Data");
        assert_eq!(reason(r#"{"payload":{}}"#), "Unsupported Data");
        assert_eq!(reason(r#"{"type":5}"#), "Unsupported Data");
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(reason(&deep), "Unsupported Data");
        assert_eq!(
            reason(r#"{"type":"unknown.operation","payload":{}}"#),
            "No matching type"
        );
        assert_eq!(
            reason(r#"{"type":"bars.update","payload":{}}"#),
            "No matching type"
        );
        assert_eq!(
            reason(r#"{"type":"bars","payload":{}}"#),
            "No matching type"
        );
        assert_eq!(
            reason(r#"{"type":"bars.subscribe","payload":{"params":{}}}"#),
            "Could not validate payload"
        );
        assert_eq!(
            reason(r#"{"type":"orders.subscribe"}"#),
            "Could not validate payload"
        );
    }
}
