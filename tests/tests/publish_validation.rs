//! One validation contract for publishes: the same message gets the same
//! verdict — accepted and delivered, or refused with the same error code
//! and text — whether it is published over HTTP alone, as an item of an
//! HTTP batch, or over `/ws/publish`.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// One message, as the three paths send it.
struct Case {
    name: &'static str,
    /// The whole HTTP body of a single publish.
    single: String,
    /// The whole HTTP body of a batch holding the message.
    batch: String,
    /// The `/ws/publish` frame.
    frame: String,
    /// The error code, or `None` when accepted (and delivered).
    code: Option<&'static str>,
}

/// `message` (a JSON object's text, or text that fails to be one) alone,
/// as the only item of a batch, and with `"action":"publish"`.
fn case(name: &'static str, message: &str, code: Option<&'static str>) -> Case {
    let frame = match message.strip_prefix('{') {
        Some(rest) => format!(r#"{{"action":"publish",{rest}"#),
        None => message.to_owned(),
    };
    Case {
        name,
        single: message.to_owned(),
        batch: format!(r#"{{"messages":[{message}]}}"#),
        frame,
        code,
    }
}

fn cases() -> Vec<Case> {
    const INVALID_MESSAGE: Option<&str> = Some("INVALID_MESSAGE");
    const INVALID_JSON: Option<&str> = Some("INVALID_JSON");
    let mut cases = vec![
        case("data object", r#"{"channel":"t1","data":{"v":1}}"#, None),
        case("data array", r#"{"channel":"t1","data":[1,{"v":2}]}"#, None),
        case(
            "one key in sibling and nested objects",
            r#"{"channel":"t1","data":{"a":{"a":1},"b":[{"a":1},{"a":2}]}}"#,
            None,
        ),
        case(
            "keys that differ by case",
            r#"{"channel":"t1","data":{"a":1,"A":2},"key":"K","kind":"alert"}"#,
            None,
        ),
        case(
            "data null",
            r#"{"channel":"t1","data":null}"#,
            INVALID_MESSAGE,
        ),
        case(
            "data number",
            r#"{"channel":"t1","data":1}"#,
            INVALID_MESSAGE,
        ),
        case(
            "data string",
            r#"{"channel":"t1","data":"x"}"#,
            INVALID_MESSAGE,
        ),
        case(
            "data boolean",
            r#"{"channel":"t1","data":true}"#,
            INVALID_MESSAGE,
        ),
        case("data missing", r#"{"channel":"t1"}"#, INVALID_MESSAGE),
        case(
            "unknown field",
            r#"{"channel":"t1","data":{},"extra":true}"#,
            INVALID_MESSAGE,
        ),
        case(
            "envelope key twice",
            r#"{"channel":"t1","data":{},"channel":"t2"}"#,
            INVALID_MESSAGE,
        ),
        case(
            "data twice",
            r#"{"channel":"t1","data":{"v":1},"data":{"v":2}}"#,
            INVALID_MESSAGE,
        ),
        case(
            "key twice inside data at depth 2",
            r#"{"channel":"t1","data":{"x":{"a":1,"a":2}}}"#,
            INVALID_MESSAGE,
        ),
        case(
            "\"a\" and \"\\u0061\" inside data",
            r#"{"channel":"t1","data":{"a":1,"\u0061":2}}"#,
            INVALID_MESSAGE,
        ),
        case("NaN", r#"{"channel":"t1","data":{"px":NaN}}"#, INVALID_JSON),
        case(
            "Infinity",
            r#"{"channel":"t1","data":{"px":Infinity}}"#,
            INVALID_JSON,
        ),
        case(
            "-Infinity",
            r#"{"channel":"t1","data":{"px":-Infinity}}"#,
            INVALID_JSON,
        ),
        case(
            "trailing garbage",
            r#"{"channel":"t1","data":{}} x"#,
            INVALID_JSON,
        ),
    ];
    // An empty body has no batch form: the batch path sends it as is.
    cases.push(Case {
        batch: String::new(),
        ..case("empty body", "", INVALID_JSON)
    });
    cases
}

/// What one path answered: accepted, or refused with (code, message).
type Verdict = Result<(), (String, String)>;

fn refusal(error: &Value) -> Verdict {
    Err((
        error["code"].as_str().expect("a code").to_owned(),
        error["message"].as_str().expect("a message").to_owned(),
    ))
}

async fn publish_single(server: &TestServer, body: &str) -> Verdict {
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(body))
        .await;
    match status {
        200 => Ok(()),
        // Syntax and shape are refused alike, with 400.
        400 => refusal(&answer["error"]),
        other => panic!("{body}: status {other}: {answer}"),
    }
}

async fn publish_batch(server: &TestServer, body: &str) -> Verdict {
    let (status, answer) = server
        .http("POST", "/api/v1/publish", Some(PUB), Some(body))
        .await;
    match status {
        // Refused in the message's result.
        200 => match &answer["results"][0] {
            result if result["seq"].is_u64() => Ok(()),
            result => refusal(&result["error"]),
        },
        // Refused whole, naming the message.
        400 => {
            let (code, message) = refusal(&answer["error"]).unwrap_err();
            let message = message.strip_prefix("messages[0]: ").unwrap_or(&message);
            Err((code, message.to_owned()))
        }
        other => panic!("{body}: status {other}: {answer}"),
    }
}

/// Sends `frame`, then a frame refused as `UNKNOWN_ACTION`: a publish is
/// answered only when refused, so the marker's answer coming first means
/// `frame` was accepted.
async fn publish_frame(publisher: &mut Ws, frame: &str) -> Verdict {
    publisher.send(Message::text(frame)).await.unwrap();
    send_json(publisher, json!({"action": "marker"})).await;
    let answer = next_of_type(publisher, "error").await;
    if answer["code"] == "UNKNOWN_ACTION" && answer["message"].as_str().unwrap().contains("marker")
    {
        return Ok(());
    }
    let marker = next_of_type(publisher, "error").await;
    assert_eq!(marker["code"], "UNKNOWN_ACTION", "{marker}");
    refusal(&answer)
}

#[tokio::test]
async fn a_message_gets_the_same_verdict_over_http_in_a_batch_and_over_websocket() {
    let server = TestServer::start("");
    let mut subscriber = server.subscriber(&["t1", "t2"]).await;
    let mut publisher = server.connect("/ws/publish", Some(PUB)).await;
    for case in cases() {
        let verdicts = [
            publish_single(&server, &case.single).await,
            publish_batch(&server, &case.batch).await,
            publish_frame(&mut publisher, &case.frame).await,
        ];
        match case.code {
            None => {
                assert!(
                    verdicts.iter().all(Result::is_ok),
                    "{}: {verdicts:?}",
                    case.name
                );
                // Delivered once per path, `data` byte for byte.
                let sent: Value = serde_json::from_str(&case.single).unwrap();
                for path in ["single", "batch", "websocket"] {
                    let event = next_of_type(&mut subscriber, "event").await;
                    assert_eq!(event["data"], sent["data"], "{} ({path})", case.name);
                }
            }
            Some(code) => {
                let errors: Vec<(String, String)> =
                    verdicts.into_iter().map(Result::unwrap_err).collect();
                for (error, path) in errors.iter().zip(["single", "batch", "websocket"]) {
                    assert_eq!(error.0, code, "{} ({path}): {errors:?}", case.name);
                    assert!(!error.1.is_empty());
                }
                // Syntax errors give positions, which the envelopes shift.
                if code != "INVALID_JSON" {
                    assert!(
                        errors.iter().all(|e| e.1 == errors[0].1),
                        "{}: {errors:?}",
                        case.name
                    );
                }
            }
        }
    }
    // Nothing refused reached the subscriber: the next event is this one.
    let seq = server.publish("t1", json!({"last": true}), None).await;
    let event = next_of_type(&mut subscriber, "event").await;
    assert_eq!(
        (&event["data"], event["seq"].as_u64()),
        (&json!({"last": true}), Some(seq))
    );
}

#[tokio::test]
async fn errors_say_which_field_is_wrong() {
    let server = TestServer::start("");
    let cases = [
        (
            r#"{"channel":"t1","data":null}"#,
            "\"data\" must be a JSON object or array, not null",
        ),
        (
            r#"{"channel":"t1","data":{},"extra":true}"#,
            "unknown field \"extra\"",
        ),
        (
            r#"{"channel":"t1","channel":"t1","data":{}}"#,
            "the field \"channel\" appears twice",
        ),
        (
            r#"{"channel":"t1","data":{"x":{"a":1,"\u0061":2}}}"#,
            "the key \"a\" appears twice in one object",
        ),
    ];
    for (body, text) in cases {
        let (code, message) = publish_single(&server, body).await.unwrap_err();
        assert_eq!(code, "INVALID_MESSAGE");
        assert!(message.contains(text), "{body}: {message}");
    }
}

#[tokio::test]
async fn refusals_past_the_shape_carry_the_same_code_over_http_and_websocket() {
    let keys = r#"
[[api_keys]]
key = "pricer-key-0000"
roles = ["publish"]
publish = ["prices.*", "t1", "nope"]
"#;
    let server = TestServer::start_with_keys("", keys);
    let mut publisher = server.connect("/ws/publish", Some("pricer-key-0000")).await;
    let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
    let cases = [
        (
            r#"{"channel":"nope","data":{}}"#.to_owned(),
            422,
            "UNKNOWN_CHANNEL",
        ),
        (
            r#"{"channel":"prices.bad name","data":{}}"#.to_owned(),
            422,
            "INVALID_CHANNEL",
        ),
        (
            r#"{"channel":"positions","data":{}}"#.to_owned(),
            403,
            "FORBIDDEN",
        ),
        (
            r#"{"channel":"t1","data":{},"key":""}"#.to_owned(),
            422,
            "INVALID_KEY",
        ),
        (
            format!(r#"{{"channel":"t1","data":{deep}}}"#),
            422,
            "TOO_DEEP",
        ),
    ];
    for (message, status, code) in cases {
        let (got, answer) = server
            .http(
                "POST",
                "/api/v1/publish",
                Some("pricer-key-0000"),
                Some(&message),
            )
            .await;
        assert_eq!(
            (got, &answer["error"]["code"]),
            (status, &json!(code)),
            "{message}"
        );
        let frame = format!(r#"{{"action":"publish",{}"#, &message[1..]);
        let (ws_code, ws_message) = publish_frame(&mut publisher, &frame).await.unwrap_err();
        assert_eq!(ws_code, code, "{frame}");
        assert_eq!(ws_message, answer["error"]["message"].as_str().unwrap());
    }
}
