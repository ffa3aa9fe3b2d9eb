//! The FastWS AsyncAPI document: valid AsyncAPI 2.4.0 (checked against the
//! specification's own JSON schema, vendored in `fixtures/asyncapi/`),
//! listing every operation, and a page a person can read; both served
//! without credentials by default.

mod common;

use common::*;
use serde_json::Value;
use shardcast_server::protocol::fastws::ROUTES;

#[tokio::test]
async fn the_document_is_valid_asyncapi_listing_every_operation() {
    let server = TestServer::start("");
    let (status, head, body) = server
        .http_raw("GET", "/api/v1/ws/asyncapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let document: Value = serde_json::from_str(&body).unwrap();

    let schema_path = format!(
        "{}/fixtures/asyncapi/asyncapi-2.4.0.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::draft7::new(&schema).expect("the AsyncAPI schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The validator does catch a broken document.
    let mut broken = document.clone();
    broken["asyncapi"] = "2.4".into();
    assert!(!validator.is_valid(&broken));

    let channel = &document["channels"]["/api/v1/ws"];
    let refs = |op: &str| -> Vec<String> {
        channel[op]["message"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["$ref"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let (sent, received) = (refs("publish"), refs("subscribe"));
    let messages = &document["components"]["messages"];
    for route in ROUTES {
        for op in ["subscribe", "unsubscribe"] {
            let name = format!("{}.{op}", route.name);
            assert!(sent.contains(&name), "{name}");
            assert!(
                received.contains(&format!("{name}.response")),
                "{name}.response"
            );
            assert_eq!(
                messages[&name]["payload"]["properties"]["type"]["const"],
                name.as_str()
            );
        }
        assert!(received.contains(&format!("{}.update", route.name)));
    }
    // The bars request documents the resolution's values and default.
    let bars = &document["components"]["schemas"]["BarsSubscriptionRequest"];
    let resolution = &bars["properties"]["params"]["properties"]["resolution"];
    assert_eq!(resolution["default"], "1");
    assert_eq!(resolution["enum"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn the_page_is_served_for_people() {
    let server = TestServer::start("");
    let (status, head, body) = server
        .http_raw("GET", "/api/v1/ws/asyncapi", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(body.starts_with("<!doctype html>"));
    for route in ROUTES {
        assert!(
            body.contains(&format!("{}.subscribe", route.name)),
            "{}",
            route.name
        );
    }
    assert!(body.contains("/api/v1/ws/asyncapi.json"));
}
