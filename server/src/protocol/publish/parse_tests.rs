//! Unit tests of the publish contract (`parse.rs`): the same message gets
//! the same verdict over the three paths.

use super::*;

type Verdict = Result<(), (ApiCode, String)>;

fn verdict(result: Result<PublishItem<'_>, ApiError>) -> Verdict {
    result
        .and_then(|item| item.check_data())
        .map_err(|e| (e.code, e.message))
}

/// `message` as a whole HTTP body.
fn single(message: &str) -> Verdict {
    verdict(parse_body(message.as_bytes(), 10).map(|body| match body {
        PublishBody::Single(item) => item,
        PublishBody::Batch(_) => panic!("{message} is one message"),
    }))
}

/// `message` as the only item of an HTTP batch; a refusal of the whole
/// batch names the item, which is taken off to compare texts.
fn in_batch(message: &str) -> Verdict {
    let body = format!(r#"{{"messages":[{message}]}}"#);
    let parsed = parse_body(body.as_bytes(), 10).map(|parsed| match parsed {
        PublishBody::Batch(mut items) => {
            assert_eq!(items.len(), 1, "{message}");
            items.remove(0)
        }
        PublishBody::Single(_) => panic!("{body} is a batch"),
    });
    verdict(parsed).map_err(|(code, text)| match text.strip_prefix("messages[0]: ") {
        Some(text) => (code, text.to_owned()),
        None => (code, text),
    })
}

/// `message` with `"action":"publish"` as a `/ws/publish` frame.
fn over_websocket(message: &str) -> Verdict {
    let frame = match message.strip_prefix('{') {
        Some(rest) => format!(r#"{{"action":"publish",{rest}"#),
        None => message.to_owned(),
    };
    verdict(parse_frame(frame.as_bytes()).map(|command| match command {
        PublishCommand::Publish(item) => item,
        other => panic!("{frame} is a publish, not {other:?}"),
    }))
}

#[test]
fn every_path_gives_a_message_the_same_verdict() {
    use ApiCode::{InvalidJson, InvalidMessage, TooDeep};
    let deep = format!(
        r#"{{"channel":"t1","data":{}{}}}"#,
        "[".repeat(101),
        "]".repeat(101)
    );
    let cases: Vec<(&str, Option<ApiCode>)> = vec![
        (r#"{"channel":"t1","data":{"v":1}}"#, None),
        (r#"{"channel":"t1","data":[1,"x",null]}"#, None),
        (
            r#"{"channel":"t1","data":{},"key":"K","kind":"alert"}"#,
            None,
        ),
        (r#"{"channel":"t1","data":{},"key":null,"kind":null}"#, None),
        (r#"{"channel":"t1","data":{"a":{"a":1},"b":{"a":1}}}"#, None),
        (r#"{"channel":"t1","data":{"a":1,"A":2}}"#, None),
        (r#"{"channel":"t1","data":null}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1","data":1}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1","data":-0.5e3}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1","data":"x"}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1","data":true}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1","data":false}"#, Some(InvalidMessage)),
        (r#"{"channel":"t1"}"#, Some(InvalidMessage)),
        (r#"{"data":{}}"#, Some(InvalidMessage)),
        (r#"{"channel":1,"data":{}}"#, Some(InvalidMessage)),
        (
            r#"{"channel":"t1","data":{},"key":1}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":{},"kind":"loud"}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":{},"extra":true}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":{},"token":"x"}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","channel":"t2","data":{}}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","\u0063hannel":"t1","data":{}}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":{},"data":{}}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":{"x":{"a":1,"a":2}}}"#,
            Some(InvalidMessage),
        ),
        (
            r#"{"channel":"t1","data":[{"a":1,"\u0061":2}]}"#,
            Some(InvalidMessage),
        ),
        (r#"{"channel":"t1","data":{"px":NaN}}"#, Some(InvalidJson)),
        (
            r#"{"channel":"t1","data":{"px":Infinity}}"#,
            Some(InvalidJson),
        ),
        (
            r#"{"channel":"t1","data":{"px":-Infinity}}"#,
            Some(InvalidJson),
        ),
        (r#"{"channel":"t1","data":{}} x"#, Some(InvalidJson)),
        (r#"{"channel":"t1","data":{},}"#, Some(InvalidJson)),
        (
            r#"{"channel":"t1","extra":1,"data":{"px":NaN}}"#,
            Some(InvalidJson),
        ),
        (&deep, Some(TooDeep)),
    ];
    for (message, code) in cases {
        let verdicts = [single(message), in_batch(message), over_websocket(message)];
        match code {
            None => assert!(
                verdicts.iter().all(Result::is_ok),
                "{message}: {verdicts:?}"
            ),
            Some(code) => {
                let errors: Vec<_> = verdicts.into_iter().map(Result::unwrap_err).collect();
                assert!(errors.iter().all(|e| e.0 == code), "{message}: {errors:?}");
                // Syntax errors give positions, which the envelopes shift.
                if code != InvalidJson {
                    assert!(errors.iter().all(|e| e.1 == errors[0].1), "{errors:?}");
                }
            }
        }
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let text = |verdict: Verdict| verdict.unwrap_err().1;
    assert_eq!(
        text(single(r#"{"channel":"t1","data":null}"#)),
        "\"data\" must be a JSON object or array, not null"
    );
    assert_eq!(
        text(single(r#"{"channel":"t1","data":"x"}"#)),
        "\"data\" must be a JSON object or array, not a string"
    );
    assert_eq!(
        text(single(r#"{"channel":"t1","data":{},"extra":1}"#)),
        "unknown field \"extra\": a message takes only channel, data, key and kind"
    );
    assert_eq!(
        text(single(r#"{"channel":"t1","data":{},"\u0063hannel":"t1"}"#)),
        "the field \"channel\" appears twice (each field may appear once)"
    );
    assert_eq!(
        text(single(
            r#"{"channel":"t1","data":{"x":{"a":1,"\u0061":2}}}"#
        )),
        "\"data\" refused: the key \"a\" appears twice in one object"
    );
    assert!(text(single(r#"{"channel":"t1","data":{"x":NaN}}"#)).starts_with("not valid JSON"));
    assert!(text(single(&format!(
        r#"{{"channel":"t1","data":{}{}}}"#,
        "[".repeat(101),
        "]".repeat(101)
    )))
    .contains("100 levels"));
}

#[test]
fn bodies_parse_into_one_message_or_a_batch() {
    let body = br#"{"channel":"t1","data":{"px":1},"key":"A"}"#;
    let PublishBody::Single(item) = parse_body(body, 10).unwrap() else {
        panic!("single");
    };
    assert_eq!(
        (item.channel.as_ref(), item.data.get(), item.key.as_deref()),
        ("t1", r#"{"px":1}"#, Some("A"))
    );
    assert_eq!(item.kind, Kind::Event);
    let body = br#"{"channel":"t\u0031","data":{},"kind":"alert"}"#;
    let PublishBody::Single(item) = parse_body(body, 10).unwrap() else {
        panic!("single");
    };
    assert_eq!((item.channel.as_ref(), item.kind), ("t1", Kind::Alert));
    let body = br#"{"messages":[{"channel":"a","data":{}},{"channel":"b","data":[2]}]}"#;
    let PublishBody::Batch(items) = parse_body(body, 10).unwrap() else {
        panic!("batch");
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].data.get(), "[2]");
    let PublishBody::Batch(items) = parse_body(br#"{"messages":[]}"#, 10).unwrap() else {
        panic!("batch");
    };
    assert!(items.is_empty());
}

#[test]
fn a_batch_is_refused_whole_for_its_shape_and_per_message_for_data() {
    let code = |body: &str| parse_body(body.as_bytes(), 2).map(|_| ()).unwrap_err();
    let e = code(r#"{"messages":[{"channel":"a","data":{}},{"channel":"b"}]}"#);
    assert_eq!(e.code, ApiCode::InvalidMessage);
    assert!(
        e.message
            .starts_with("messages[1]: a message needs \"data\""),
        "{e:?}"
    );
    let e = code(r#"{"messages":[{},{},{}]}"#);
    assert_eq!(e.code, ApiCode::LimitReached);
    assert!(e.message.ends_with("not 3"), "{e:?}");
    assert_eq!(code("{\"messages\":{}}").code, ApiCode::InvalidMessage);
    assert_eq!(
        code(r#"{"messages":[],"channel":"t1"}"#).code,
        ApiCode::InvalidMessage
    );
    assert_eq!(
        code(r#"{"messages":[],"messages":[]}"#).code,
        ApiCode::InvalidMessage
    );
    assert_eq!(code(r#"{"messages":[1]}"#).code, ApiCode::InvalidMessage);
    assert_eq!(code(r#"{"messages":[{}] "#).code, ApiCode::InvalidJson);
    // Data is judged per message, as a single publish would be.
    let body = r#"{"messages":[{"channel":"t1","data":null},{"channel":"t1","data":{}}]}"#;
    let PublishBody::Batch(items) = parse_body(body.as_bytes(), 2).unwrap() else {
        panic!("batch");
    };
    assert_eq!(
        items[0].check_data().unwrap_err().code,
        ApiCode::InvalidMessage
    );
    assert_eq!(items[1].check_data(), Ok(()));
}

#[test]
fn a_frame_takes_the_fields_of_its_action_only() {
    let code = |frame: &str| parse_frame(frame.as_bytes()).map(|_| ()).unwrap_err().code;
    assert!(matches!(
        parse_frame(br#"{"action":"heartbeat"}"#),
        Ok(PublishCommand::Heartbeat)
    ));
    assert!(matches!(
        parse_frame(br#"{"token":"t","action":"refresh"}"#),
        Ok(PublishCommand::Refresh(token)) if token == "t"
    ));
    assert_eq!(
        code(r#"{"action":"heartbeat","ts":1}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(
        code(r#"{"action":"heartbeat","channel":"t1"}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(code(r#"{"action":"refresh"}"#), ApiCode::InvalidMessage);
    assert_eq!(
        code(r#"{"action":"refresh","token":7}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(
        code(r#"{"action":"refresh","token":"t","data":{}}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(
        code(r#"{"channel":"t1","data":{}}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(code(r#"{"action":1}"#), ApiCode::InvalidMessage);
    assert_eq!(code(r#"{"action":"subscribe"}"#), ApiCode::UnknownAction);
    assert_eq!(
        code(r#"{"action":"heartbeat","action":"publish"}"#),
        ApiCode::InvalidMessage
    );
    assert_eq!(code("[]"), ApiCode::InvalidMessage);
    assert_eq!(code(""), ApiCode::InvalidJson);
    assert_eq!(code("{oops"), ApiCode::InvalidJson);
}

#[test]
fn data_is_exactly_the_value_not_the_padding_around_it() {
    let body = format!(
        r#"{{"channel":"t1","data":{}{{"v":1}}{}}}"#,
        " ".repeat(100_000),
        " ".repeat(100_000)
    );
    let PublishBody::Single(item) = parse_body(body.as_bytes(), 10).unwrap() else {
        panic!("single");
    };
    assert_eq!(item.data.get(), r#"{"v":1}"#);
}

#[test]
fn nesting_past_any_parser_limit_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"channel":"t1","data":{{}},"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        parse_body(deep.as_bytes(), 10).unwrap_err().code,
        ApiCode::InvalidMessage
    );
    let deep_frame = format!(
        r#"{{"action":"publish","channel":"t1","data":{}1{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let Ok(PublishCommand::Publish(item)) = parse_frame(deep_frame.as_bytes()) else {
        panic!("a publish");
    };
    assert_eq!(item.check_data().unwrap_err().code, ApiCode::TooDeep);
    let exactly = format!(
        r#"{{"channel":"t1","data":{}{}}}"#,
        "[".repeat(MAX_DATA_DEPTH),
        "]".repeat(MAX_DATA_DEPTH)
    );
    assert_eq!(single(&exactly), Ok(()));
}
