//! The FastWS routes, defined once: the same definitions validate client
//! payloads, build topic names and write the AsyncAPI document.
//!
//! Read-only statics. A route has a name (`bars`), a tag, its subscription
//! fields (each a string, a string array or a resolution; bars'
//! `resolution` sits under `params` and defaults to `"1"`) and the schema of
//! its updates. A topic is `<route>:` followed by the compact JSON of the
//! subscription's fields — `params` flattened into the top level, keys
//! sorted at every level, arrays in order, `null` written as `""` — exactly
//! what the Trading API's own topic builder produces.

use serde_json::{Map, Value};

/// Longest string accepted in a subscription field, in bytes.
pub const MAX_FIELD_LEN: usize = 128;

/// Most entries in a string-array field.
pub const MAX_ARRAY_LEN: usize = 64;

/// The resolutions bars come in: minutes, then day, week, month.
pub const RESOLUTIONS: [&str; 8] = ["1", "5", "15", "30", "60", "D", "W", "M"];

/// What a subscription field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A string of 1 to [`MAX_FIELD_LEN`] bytes.
    String,
    /// An array of at most [`MAX_ARRAY_LEN`] such strings (possibly empty).
    StringArray,
    /// One of [`RESOLUTIONS`].
    Resolution,
}

/// One field of a subscription request.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Its name, as the client spells it (and as it appears in the topic).
    pub name: &'static str,
    /// What it holds.
    pub ty: FieldType,
    /// Whether it sits under `params` in the request.
    pub in_params: bool,
    /// Its value when absent; `None`: required.
    pub default: Option<&'static str>,
    /// For the AsyncAPI document.
    pub description: &'static str,
}

/// What a route's updates carry, for the AsyncAPI document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateSchema {
    /// An OHLC bar.
    Bar,
    /// A quote of one symbol.
    Quote,
    /// Whatever the publisher sends (a JSON object), described in words.
    Published(&'static str),
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// `bars`, `quotes`, …: the prefix of its operations and its topics.
    pub name: &'static str,
    /// `datafeed` or `broker`.
    pub tag: &'static str,
    /// For the AsyncAPI document.
    pub description: &'static str,
    /// The subscription's fields.
    pub fields: &'static [Field],
    /// What its updates carry.
    pub update: UpdateSchema,
}

const fn string(name: &'static str, description: &'static str) -> Field {
    Field {
        name,
        ty: FieldType::String,
        in_params: false,
        default: None,
        description,
    }
}

const fn strings(name: &'static str, description: &'static str) -> Field {
    Field {
        name,
        ty: FieldType::StringArray,
        in_params: false,
        default: None,
        description,
    }
}

const ACCOUNT: Field = string("accountId", "Broker account identifier, e.g. TEST-001");

/// Every route, in the order the document lists them.
pub const ROUTES: [Route; 7] = [
    Route {
        name: "bars",
        tag: "datafeed",
        description: "OHLC bars of one symbol at one resolution",
        fields: &[
            string("symbol", "Symbol ticker, e.g. AAPL"),
            Field {
                name: "resolution",
                ty: FieldType::Resolution,
                in_params: true,
                default: Some("1"),
                description: "Bar resolution: minutes (1, 5, 15, 30, 60), D, W or M",
            },
        ],
        update: UpdateSchema::Bar,
    },
    Route {
        name: "quotes",
        tag: "datafeed",
        description: "Quotes of several symbols: slow and fast lists",
        fields: &[
            strings("symbols", "Symbols quoted about once a second"),
            strings("fast_symbols", "Symbols quoted about four times a second"),
        ],
        update: UpdateSchema::Quote,
    },
    Route {
        name: "orders",
        tag: "broker",
        description: "Order updates of one account",
        fields: &[ACCOUNT],
        update: UpdateSchema::Published("An order, as the broker publishes it"),
    },
    Route {
        name: "positions",
        tag: "broker",
        description: "Position updates of one account",
        fields: &[ACCOUNT],
        update: UpdateSchema::Published("A position, as the broker publishes it"),
    },
    Route {
        name: "executions",
        tag: "broker",
        description: "Executions of one account in one symbol",
        fields: &[ACCOUNT, string("symbol", "Symbol ticker, e.g. AAPL")],
        update: UpdateSchema::Published("An execution, as the broker publishes it"),
    },
    Route {
        name: "equity",
        tag: "broker",
        description: "Equity updates of one account",
        fields: &[ACCOUNT],
        update: UpdateSchema::Published("The account's equity, as the broker publishes it"),
    },
    Route {
        name: "broker-connection",
        tag: "broker",
        description: "Broker connection status of one account",
        fields: &[ACCOUNT],
        update: UpdateSchema::Published("The connection status, as the broker publishes it"),
    },
];

/// The route called `name`.
pub fn route(name: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.name == name)
}

/// The topic parameters of a subscription: compact JSON with keys sorted
/// at every level, arrays in order, `null` as `""` (the Trading API's
/// `buildTopicParams`).
pub fn build_topic_params(value: &Value) -> String {
    let mut out = String::new();
    write_sorted(&mut out, value);
    out
}

fn write_sorted(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("\"\""),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_sorted(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Why a payload does not fit its route's fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is missing or not a JSON object.
    #[error("payload must be an object")]
    NotAnObject,
    /// `params` is there but not an object.
    #[error("params must be an object")]
    ParamsNotAnObject,
    /// A required field is absent.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field is not a string of 1 to [`MAX_FIELD_LEN`] bytes.
    #[error("{0} must be a string of 1-{MAX_FIELD_LEN} bytes")]
    NotAString(&'static str),
    /// A field is not an array of such strings.
    #[error("{0} must be an array of strings")]
    NotAnArray(&'static str),
    /// An array holds more than [`MAX_ARRAY_LEN`] strings.
    #[error("{0} holds at most {MAX_ARRAY_LEN} symbols")]
    TooMany(&'static str),
    /// A resolution outside [`RESOLUTIONS`].
    #[error("{0} must be one of 1, 5, 15, 30, 60, D, W, M")]
    NotAResolution(&'static str),
}

impl Route {
    /// Checks `payload` against the fields and returns the subscription's
    /// parameters, `params` flattened and defaults filled; or what is wrong.
    pub fn parameters(&self, payload: Option<&Value>) -> Result<Map<String, Value>, PayloadError> {
        let payload = payload
            .and_then(Value::as_object)
            .ok_or(PayloadError::NotAnObject)?;
        let params = match payload.get("params") {
            None | Some(Value::Null) => None,
            Some(Value::Object(params)) => Some(params),
            Some(_) => return Err(PayloadError::ParamsNotAnObject),
        };
        let mut out = Map::new();
        for field in self.fields {
            let found = if field.in_params {
                params.and_then(|p| p.get(field.name))
            } else {
                payload.get(field.name)
            };
            let value = match (found, field.default) {
                (Some(value), _) => check(field, value)?,
                (None, Some(default)) => Value::from(default),
                (None, None) => return Err(PayloadError::Missing(field.name)),
            };
            out.insert(field.name.to_owned(), value);
        }
        Ok(out)
    }

    /// The topic of a subscription with these parameters.
    pub fn topic(&self, parameters: &Map<String, Value>) -> String {
        let params = build_topic_params(&Value::Object(parameters.clone()));
        format!("{}:{params}", self.name)
    }
}

fn check(field: &Field, value: &Value) -> Result<Value, PayloadError> {
    let name = field.name;
    let string = |v: &Value| match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_FIELD_LEN => Ok(()),
        _ => Err(PayloadError::NotAString(name)),
    };
    match field.ty {
        FieldType::String => string(value)?,
        FieldType::StringArray => {
            let items = value.as_array().ok_or(PayloadError::NotAnArray(name))?;
            if items.len() > MAX_ARRAY_LEN {
                return Err(PayloadError::TooMany(name));
            }
            for item in items {
                string(item)?;
            }
        }
        FieldType::Resolution => {
            if !value.as_str().is_some_and(|r| RESOLUTIONS.contains(&r)) {
                return Err(PayloadError::NotAResolution(name));
            }
        }
    }
    Ok(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(route: &str, payload: Value) -> Result<String, String> {
        let route = super::route(route).unwrap();
        route
            .parameters(Some(&payload))
            .map(|p| route.topic(&p))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_route_builds_the_documents_topics() {
        assert_eq!(
            topic(
                "bars",
                json!({"symbol": "AAPL", "params": {"resolution": "1"}})
            )
            .unwrap(),
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#
        );
        // The resolution defaults to "1", with or without params.
        assert_eq!(
            topic("bars", json!({"symbol": "AAPL", "params": {}})).unwrap(),
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#
        );
        assert_eq!(
            topic("bars", json!({"symbol": "MSFT"})).unwrap(),
            r#"bars:{"resolution":"1","symbol":"MSFT"}"#
        );
        assert_eq!(
            topic("quotes", json!({"symbols": ["B", "A"], "fast_symbols": []})).unwrap(),
            r#"quotes:{"fast_symbols":[],"symbols":["B","A"]}"#
        );
        for route in ["orders", "positions", "equity", "broker-connection"] {
            assert_eq!(
                topic(route, json!({"accountId": "TEST-001"})).unwrap(),
                format!(r#"{route}:{{"accountId":"TEST-001"}}"#)
            );
        }
        assert_eq!(
            topic(
                "executions",
                json!({"symbol": "AAPL", "accountId": "TEST-001"})
            )
            .unwrap(),
            r#"executions:{"accountId":"TEST-001","symbol":"AAPL"}"#
        );
        // Fields outside the schema are not part of the topic.
        assert_eq!(
            topic("orders", json!({"accountId": "A", "extra": 1})).unwrap(),
            r#"orders:{"accountId":"A"}"#
        );
    }

    #[test]
    fn payloads_are_validated() {
        let bad = [
            (
                "bars",
                json!({"params": {"resolution": "1"}}),
                "symbol is required",
            ),
            ("bars", json!({"symbol": 7}), "symbol must be a string"),
            ("bars", json!({"symbol": ""}), "symbol must be a string"),
            (
                "bars",
                json!({"symbol": "A", "params": {"resolution": "2"}}),
                "resolution",
            ),
            (
                "bars",
                json!({"symbol": "A", "params": {"resolution": 1}}),
                "resolution",
            ),
            (
                "bars",
                json!({"symbol": "A", "params": "1"}),
                "params must be an object",
            ),
            (
                "quotes",
                json!({"symbols": ["A"]}),
                "fast_symbols is required",
            ),
            (
                "quotes",
                json!({"symbols": "A", "fast_symbols": []}),
                "array",
            ),
            (
                "quotes",
                json!({"symbols": [1], "fast_symbols": []}),
                "symbols must be",
            ),
            (
                "executions",
                json!({"accountId": "A"}),
                "symbol is required",
            ),
            ("orders", json!([]), "payload must be an object"),
        ];
        for (route, payload, want) in bad {
            let err = topic(route, payload.clone()).unwrap_err();
            assert!(err.contains(want), "{route} {payload}: {err}");
        }
        let err = route("orders").unwrap().parameters(None).unwrap_err();
        assert_eq!(err, PayloadError::NotAnObject);
        let many: Vec<String> = (0..65).map(|i| format!("S{i}")).collect();
        let err = topic("quotes", json!({"symbols": many, "fast_symbols": []})).unwrap_err();
        assert!(err.contains("at most 64"), "{err}");
    }

    #[test]
    fn the_builder_sorts_every_level_and_writes_null_as_empty() {
        let value = json!({"b": {"z": 1, "a": [3, {"y": null, "x": true}]}, "a": null});
        assert_eq!(
            build_topic_params(&value),
            r#"{"a":"","b":{"a":[3,{"x":true,"y":""}],"z":1}}"#
        );
    }
}
