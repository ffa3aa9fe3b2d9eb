//! The AsyncAPI 2.4.0 document of the FastWS protocol
//! (`GET /api/v1/ws/asyncapi.json`) and a page that shows it
//! (`GET /api/v1/ws/asyncapi`), both written from the route definitions in
//! `route.rs` — the same ones that validate payloads and build topics — so
//! the document cannot drift from what the server does.
//!
//! Built once, on first request, and shared. One channel, `/api/v1/ws`:
//! its `publish` operation lists what clients send (`<route>.subscribe`,
//! `<route>.unsubscribe`), its `subscribe` operation what they receive (the
//! `.response`s and `<route>.update`).

use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::message::Operation;
use super::route::{FieldType, Route, UpdateSchema, RESOLUTIONS, ROUTES};
use crate::http::Body;
use crate::protocol::{Answer, Call, HttpEndpoint};

/// One of the two endpoints. Shared by all shards.
#[derive(Clone, Copy, Debug)]
pub enum Document {
    /// The JSON document.
    Json,
    /// The page.
    Html,
}

impl HttpEndpoint for Document {
    fn answer(&self, _call: Call) -> Answer {
        static JSON: OnceLock<Bytes> = OnceLock::new();
        static HTML: OnceLock<Bytes> = OnceLock::new();
        let (body, content_type) = match self {
            Document::Json => (
                JSON.get_or_init(|| Bytes::from(document().to_string())),
                "application/json",
            ),
            Document::Html => (
                HTML.get_or_init(|| Bytes::from(page())),
                "text/html; charset=utf-8",
            ),
        };
        let mut resp = Response::new(Body::new(body.clone()));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Box::pin(async move { resp })
    }
}

const OPERATIONS: [Operation; 2] = [Operation::Subscribe, Operation::Unsubscribe];

/// `Bars`, `BrokerConnection`: a route's name as a schema name.
fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

fn field_schema(ty: FieldType, description: &str, default: Option<&str>) -> Value {
    let string =
        json!({"type": "string", "minLength": 1, "maxLength": super::route::MAX_FIELD_LEN});
    let mut schema = match ty {
        FieldType::String => string,
        FieldType::StringArray => json!({
            "type": "array", "items": string, "maxItems": super::route::MAX_ARRAY_LEN,
        }),
        FieldType::Resolution => json!({"type": "string", "enum": RESOLUTIONS}),
    };
    schema["description"] = description.into();
    if let Some(default) = default {
        schema["default"] = default.into();
    }
    schema
}

/// The JSON schema of a route's subscription request payload.
fn request_schema(route: &Route) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut params = Map::new();
    for field in route.fields {
        let schema = field_schema(field.ty, field.description, field.default);
        if field.in_params {
            params.insert(field.name.into(), schema);
        } else {
            properties.insert(field.name.into(), schema);
            if field.default.is_none() {
                required.push(field.name);
            }
        }
    }
    if !params.is_empty() {
        properties.insert(
            "params".into(),
            json!({"type": "object", "properties": params, "description": "Subscription parameters; flattened into the topic"}),
        );
    }
    json!({
        "type": "object",
        "description": route.description,
        "properties": properties,
        "required": required,
    })
}

fn update_schema(update: UpdateSchema) -> Value {
    match update {
        UpdateSchema::Bar => json!({
            "type": "object",
            "description": "An OHLC bar",
            "properties": {
                "time": {"type": "integer", "description": "Bar start, Unix milliseconds"},
                "open": {"type": "number"}, "high": {"type": "number"},
                "low": {"type": "number"}, "close": {"type": "number"},
                "volume": {"type": "integer"},
            },
            "required": ["time", "open", "high", "low", "close", "volume"],
        }),
        UpdateSchema::Quote => json!({
            "type": "object",
            "description": "A quote of one symbol (one message per symbol)",
            "properties": {
                "symbol": {"type": "string"}, "bid": {"type": "number"},
                "ask": {"type": "number"}, "last": {"type": "number"},
                "time": {"type": "integer", "description": "Unix milliseconds"},
            },
        }),
        UpdateSchema::Published(description) => json!({
            "type": "object", "description": description,
        }),
    }
}

/// `{"type": <const>, "payload": <schema>}`: a message's envelope.
fn envelope(kind: &str, payload: Value) -> Value {
    json!({
        "type": "object",
        "properties": {"type": {"type": "string", "const": kind}, "payload": payload},
        "required": ["type", "payload"],
    })
}

fn message(name: &str, summary: String, tag: &str, payload: Value) -> Value {
    json!({
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "tags": [{"name": tag}],
        "payload": payload,
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut sent = Vec::new();
    let mut received = Vec::new();
    schemas.insert(
        "SubscriptionResponse".into(),
        json!({
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok", "error"]},
                "message": {"type": "string"},
                "topic": {"type": "string", "description": "The topic: the route, a colon, the parameters as compact JSON with sorted keys"},
                "symbol": {"type": "string", "description": "The request's symbol, when it had one"},
            },
            "required": ["status", "message", "topic"],
        }),
    );
    let reference = |name: &str| json!({"$ref": format!("#/components/messages/{name}")});
    for route in ROUTES {
        let base = pascal(route.name);
        let request = format!("{base}SubscriptionRequest");
        let update = format!("{base}Update");
        schemas.insert(request.clone(), request_schema(&route));
        schemas.insert(update.clone(), update_schema(route.update));
        for operation in OPERATIONS {
            let name = format!("{}.{}", route.name, operation.name());
            let summary = format!("{} {}", operation.name(), route.description);
            let payload = json!({"$ref": format!("#/components/schemas/{request}")});
            messages.insert(
                name.clone(),
                message(&name, summary, route.tag, envelope(&name, payload)),
            );
            sent.push(reference(&name));
            let reply = format!("{name}.response");
            let payload = json!({"$ref": "#/components/schemas/SubscriptionResponse"});
            let summary = format!("The answer to {name}");
            messages.insert(
                reply.clone(),
                message(&reply, summary, route.tag, envelope(&reply, payload)),
            );
            received.push(reference(&reply));
        }
        let name = format!("{}.update", route.name);
        let payload = json!({"$ref": format!("#/components/schemas/{update}")});
        let summary = format!("A message of a subscribed topic: {}", route.description);
        messages.insert(
            name.clone(),
            message(&name, summary, route.tag, envelope(&name, payload)),
        );
        received.push(reference(&name));
    }
    json!({
        "asyncapi": "2.4.0",
        "info": {
            "title": "Trading WebSockets",
            "version": "1.0.0",
            "description": "The Trading API's FastWS protocol, served by shardcast. Clients subscribe with <route>.subscribe and receive <route>.update for the topic the response names.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "/api/v1/ws": {
                "description": "One WebSocket for every route. A message the server cannot act on closes it with 1003 (Unsupported Data, No matching type, Could not validate payload); so does silence longer than the heartbeat interval.",
                "publish": {
                    "operationId": "clientMessages",
                    "summary": "Messages a client sends",
                    "message": {"oneOf": sent},
                },
                "subscribe": {
                    "operationId": "serverMessages",
                    "summary": "Messages a client receives",
                    "message": {"oneOf": received},
                },
            },
        },
        "components": {"messages": messages, "schemas": schemas},
        "tags": [
            {"name": "datafeed", "description": "Market data"},
            {"name": "broker", "description": "Account data"},
        ],
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: every route, its operations, fields, a request and its topic.
pub fn page() -> String {
    let mut html = String::from(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>Trading WebSockets — AsyncAPI</title><style>",
        "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}",
        "code,pre{font:13px ui-monospace,monospace;background:#f3f4f6;border-radius:4px}",
        "pre{padding:.6rem;overflow:auto}code{padding:.1rem .3rem}",
        "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left}",
        "h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}.tag{color:#57606a}",
        "</style></head><body>",
        "<h1>Trading WebSockets <small class=\"tag\">AsyncAPI 2.4.0</small></h1>",
        "<p>Connect to <code>/api/v1/ws</code>. Send <code>{\"type\":\"&lt;route&gt;.subscribe\",\"payload\":{…}}</code>; ",
        "the answer is <code>&lt;route&gt;.subscribe.response</code> with the <code>topic</code>, then ",
        "<code>{\"type\":\"&lt;route&gt;.update\",\"payload\":…}</code> for each message of it. ",
        "The machine-readable document is <a href=\"/api/v1/ws/asyncapi.json\">asyncapi.json</a>.</p>",
    ));
    for route in ROUTES {
        let _ = write!(
            html,
            "<h2 id=\"{name}\">{name} <span class=\"tag\">{tag}</span></h2><p>{description}</p>",
            name = escape(route.name),
            tag = escape(route.tag),
            description = escape(route.description)
        );
        html.push_str(
            "<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>",
        );
        let mut example = Map::new();
        let mut params = Map::new();
        for field in route.fields {
            let (ty, sample) = match field.ty {
                FieldType::String => ("string", json!("AAPL")),
                FieldType::StringArray => ("array of strings", json!(["AAPL", "MSFT"])),
                FieldType::Resolution => ("one of 1 5 15 30 60 D W M", json!("1")),
            };
            let sample = if field.name == "accountId" {
                json!("TEST-001")
            } else {
                sample
            };
            let path = if field.in_params {
                params.insert(field.name.into(), sample);
                format!("params.{}", field.name)
            } else {
                example.insert(field.name.into(), sample);
                field.name.to_owned()
            };
            let required = match field.default {
                None => "yes".to_owned(),
                Some(default) => format!("no (default {default})"),
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&path),
                escape(ty),
                escape(&required),
                escape(field.description)
            );
        }
        html.push_str("</table>");
        if !params.is_empty() {
            example.insert("params".into(), Value::Object(params));
        }
        let payload = Value::Object(example);
        let request = json!({"type": format!("{}.subscribe", route.name), "payload": payload});
        let parameters = route.parameters(Some(&payload)).unwrap_or_default();
        let _ = write!(
            html,
            "<p>Operations: <code>{n}.subscribe</code> → <code>{n}.subscribe.response</code>, <code>{n}.unsubscribe</code> → <code>{n}.unsubscribe.response</code>; updates: <code>{n}.update</code>.</p><pre>{}</pre><p>Topic: <code>{}</code></p>",
            escape(&serde_json::to_string_pretty(&request).unwrap_or_default()),
            escape(&route.topic(&parameters)),
            n = escape(route.name),
        );
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_in_the_document_and_the_page() {
        let doc = document();
        let messages = doc["components"]["messages"].as_object().unwrap();
        let page = page();
        for route in ROUTES {
            for suffix in [
                "subscribe",
                "subscribe.response",
                "unsubscribe",
                "unsubscribe.response",
                "update",
            ] {
                let name = format!("{}.{suffix}", route.name);
                assert!(messages.contains_key(&name), "{name}");
                assert!(page.contains(&name), "{name} on the page");
            }
        }
        assert_eq!(pascal("broker-connection"), "BrokerConnection");
        assert!(page.contains(
            "bars:{&quot;resolution&quot;:&quot;1&quot;,&quot;symbol&quot;:&quot;AAPL&quot;}"
        ));
    }
}
