//! The topic-builder contract: shardcast names a FastWS subscription's topic
//! exactly as the Trading API's clients do. One set of vectors
//! (`fixtures/fastws/topic-vectors.json`) is checked against the server's
//! builder and against the document's own TypeScript algorithm, run by node.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use shardcast_server::protocol::fastws::{build_topic_params, route};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fastws")
        .join(name)
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(fixture("topic-vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_server_builds_every_vectors_topic() {
    let vectors = vectors();
    for vector in vectors["params"].as_array().unwrap() {
        assert_eq!(
            build_topic_params(&vector["input"]),
            vector["expected"].as_str().unwrap(),
            "{vector}"
        );
    }
    for vector in vectors["subscriptions"].as_array().unwrap() {
        let route = route(vector["route"].as_str().unwrap()).unwrap();
        let parameters = route.parameters(Some(&vector["payload"])).unwrap();
        assert_eq!(route.topic(&parameters), vector["topic"].as_str().unwrap());
    }
}

#[test]
fn the_documents_typescript_builder_agrees() {
    let Ok(output) = Command::new("node")
        .arg(fixture("topic-builder.mjs"))
        .arg(fixture("topic-vectors.json"))
        .output()
    else {
        // CI installs node (.ci/run): there, a missing node is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "node is not on PATH under CI"
        );
        eprintln!("SKIPPED: node is not on PATH; the TypeScript topic builder was not compared (CI installs it)");
        return;
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let typescript: Value = serde_json::from_slice(&output.stdout).unwrap();
    let vectors = vectors();
    let expected: Vec<&Value> = vectors["params"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["python_only"] != true)
        .map(|v| &v["expected"])
        .collect();
    let got: Vec<&Value> = typescript["params"].as_array().unwrap().iter().collect();
    assert_eq!(got, expected);
    let topics: Vec<&Value> = vectors["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["topic"])
        .collect();
    let got: Vec<&Value> = typescript["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(got, topics);
}
