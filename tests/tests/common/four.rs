//! One publish, four protocols, as a check any server setup can run (plain
//! in `protocols_one_publish.rs`, TLS in `tls_wss.rs`): a FastWS topic such
//! as `executions:{"accountId":"A-1","symbol":"AAPL"}` subscribed by a
//! telemetry client (subscribe action), a BondX client (subscribe message,
//! allowed by `[bondx] extra_scope`), a FastWS client (its route) and fed
//! to the simple protocol's `trades` channel (`[simple.feeds]`).

use serde_json::{json, Value};

use super::*;

pub const TOPIC: &str = r#"executions:{"accountId":"A-1","symbol":"AAPL"}"#;

/// The configuration [`one_publish_reaches_all_four_protocols`] needs: the
/// simple protocol's `trades` fed by [`TOPIC`], BondX allowed it.
pub fn four_protocols_config() -> String {
    format!(
        "[simple.feeds]\ntrades = '{TOPIC}'\n{}",
        bondx_section("extra_scope = [\"executions:*\"]")
    )
}

/// Two clients of each protocol, subscribed to [`TOPIC`] and ready.
async fn clients(server: &TestServer) -> Vec<(&'static str, &'static str, Ws)> {
    let mut out = Vec::new();
    for _ in 0..2 {
        let mut telemetry = server.telemetry("").await;
        send_json(
            &mut telemetry,
            json!({"action": "subscribe", "channels": [TOPIC]}),
        )
        .await;
        assert_eq!(
            next_of_type(&mut telemetry, "ack").await["channels"],
            json!([TOPIC])
        );
        out.push(("telemetry", "event", telemetry));

        let path = "/api/v1/ws/market/M1";
        let mut bondx = bondx_by_query(server, path, &user_token("carol")).await;
        send_json(&mut bondx, json!({"type": "subscribe", "topic": TOPIC})).await;
        let (ack, _) = next_type(&mut bondx, "ack").await;
        assert_eq!(ack["payload"]["status"], "ok", "{ack}");
        out.push(("bondx", "delta", bondx));

        let mut fastws = server.fastws().await;
        let payload = json!({"accountId": "A-1", "symbol": "AAPL"});
        send_json(
            &mut fastws,
            json!({"type": "executions.subscribe", "payload": payload}),
        )
        .await;
        let (response, _) = next_type(&mut fastws, "executions.subscribe.response").await;
        assert_eq!(response["payload"]["status"], "ok", "{response}");
        out.push(("fastws", "executions.update", fastws));

        // Auto-subscribed to `trades`, fed by the topic; a pong means its
        // subscriptions are in place.
        let mut simple_ws = simple(server, "").await;
        send_json(&mut simple_ws, json!({"type": "ping"})).await;
        next_type(&mut simple_ws, "pong").await;
        out.push(("simple", "trade_executed", simple_ws));
    }
    out
}

/// Two clients of each protocol on `server` (started with
/// [`four_protocols_config`]) get one publish, byte-identical within each
/// protocol, encoded once per protocol; the listing and metrics show them.
pub async fn one_publish_reaches_all_four_protocols(server: &TestServer) {
    let mut clients = clients(server).await;
    let before = server.stats().await["protocols"].clone();
    let data = json!({"symbol": "AAPL", "side": "BUY", "quantity": 10, "price": 150.25});
    server.publish(TOPIC, data.clone(), Some("AAPL")).await;

    let mut frames: Vec<(&str, String)> = Vec::new();
    for (protocol, kind, ws) in &mut clients {
        frames.push((protocol, next_text_of_type(ws, kind).await));
    }
    for (protocol, text) in &frames {
        let frame: Value = serde_json::from_str(text).unwrap();
        let carried = match *protocol {
            "telemetry" | "bondx" => frame.get("data").or(frame.get("payload")).cloned(),
            "fastws" => frame.get("payload").cloned(),
            _ => {
                // Simple: the data's fields merged into the frame.
                assert!(is_iso_time(&frame["timestamp"]), "{frame}");
                let mut fields = frame.as_object().unwrap().clone();
                fields.retain(|k, _| data.get(k).is_some());
                Some(Value::Object(fields))
            }
        };
        assert_eq!(carried.as_ref(), Some(&data), "{protocol}: {text}");
    }
    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let texts: Vec<&String> = frames
            .iter()
            .filter(|(p, _)| *p == protocol)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(texts.len(), 2);
        assert_eq!(
            texts[0], texts[1],
            "{protocol}: one frame shared by its subscribers"
        );
    }

    let stats = eventually_stats(server, |s| {
        s["protocols"]["simple"]["sent"] == before["simple"]["sent"].as_u64().unwrap() + 2
    })
    .await;
    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let encoded = stats["protocols"][protocol]["encodings"].as_u64().unwrap()
            - before[protocol]["encodings"].as_u64().unwrap();
        assert_eq!(encoded, 1, "{protocol}: one encoding for two subscribers");
        assert_eq!(stats["protocols"][protocol]["connections"], 2, "{protocol}");
    }

    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let entry = server.client_by_protocol(protocol).await;
        assert_eq!(entry["protocol"], protocol);
    }
    let metrics = server.metrics().await;
    for protocol in ["telemetry", "bondx", "fastws", "simple"] {
        let line = format!("shardcast_protocol_connections{{protocol=\"{protocol}\"}} 2");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
        let sent = format!("shardcast_protocol_messages_sent_total{{protocol=\"{protocol}\"}} ");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&sent) && !l.ends_with(" 0")),
            "{sent}"
        );
    }
}
