//! What a subscriber does with each `event` frame: sequence checks, the
//! `skipped` check, latency, and (scenario burst) the key's value for the
//! freshness board. Fields are found in place, without parsing the JSON.
//!
//! Owned by the loadgen's single thread, like every subscriber task.

use crate::state::Shared;
use crate::tasks::Target;
use crate::ws::{field_u64, parse_u64};

const EVENT: &[u8] = br#"{"type":"event","channel":""#;
/// An event after a gap starts with its `skipped` field.
const SKIPPED: &[u8] = br#"{"skipped":"#;

/// One subscription of a subscriber.
pub struct Subscription {
    pub topic: usize,
    /// `None` until the first event: a topic may have history from before
    /// this run, so the first sequence number seen is the baseline.
    pub last_seq: Option<u64>,
    /// The previous event's seq on the current connection (`None` after a
    /// reconnect): what the server's `skipped` counts from.
    pub conn_seq: Option<u64>,
}

impl Subscription {
    pub fn new(topic: usize) -> Self {
        Self {
            topic,
            last_seq: None,
            conn_seq: None,
        }
    }
}

/// An event frame's `skipped` (0 when absent) and the rest of the frame
/// after `"channel":"`; `None` for any other frame.
pub fn event_body(payload: &[u8]) -> Option<(u64, &[u8])> {
    if let Some(rest) = payload.strip_prefix(EVENT) {
        return Some((0, rest));
    }
    let rest = payload.strip_prefix(SKIPPED)?;
    let skipped = parse_u64(rest)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",")?;
    Some((skipped, rest.strip_prefix(&EVENT[1..])?))
}

/// Counts one event of client `id`: `skipped` and `rest` as [`event_body`]
/// gives them.
pub fn on_event(
    shared: &Shared,
    target: &Target,
    id: usize,
    subs: &mut [Subscription],
    after_reconnect: &mut [bool],
    skipped: u64,
    rest: &[u8],
) {
    let Some(topic) = rest
        .strip_prefix(target.prefix.as_bytes())
        .and_then(parse_u64)
        .map(|t| t as usize)
    else {
        return;
    };
    let Some(seq) = field_u64(rest, b"\"seq\":") else {
        return;
    };
    let Some(index) = subs.iter().position(|s| s.topic == topic) else {
        return;
    };
    let sub = &mut subs[index];
    // `skipped` must equal the jump in seq on this connection, less one.
    if let Some(prev) = sub.conn_seq.filter(|&prev| seq > prev) {
        Shared::bump(&shared.skipped_checked, 1);
        if skipped != seq - prev - 1 {
            Shared::bump(&shared.skipped_wrong, 1);
        }
    }
    sub.conn_seq = Some(sub.conn_seq.map_or(seq, |prev| prev.max(seq)));
    let rejoined = std::mem::take(&mut after_reconnect[index]);
    // A first event after a gap says how many came before it since the subscription.
    let last = *sub
        .last_seq
        .get_or_insert(seq.saturating_sub(1).saturating_sub(skipped));
    if seq <= last {
        if rejoined {
            Shared::bump(&shared.replay_overlap, 1);
        } else if seq == last {
            Shared::bump(&shared.duplicates, 1);
        } else {
            Shared::bump(&shared.reordered, 1);
        }
        // A replay continues until it catches up; keep the flag until then.
        after_reconnect[index] = rejoined;
        return;
    }
    if seq > last + 1 {
        let missed = seq - last - 1;
        if rejoined {
            Shared::bump(&shared.reconnect_gaps, missed);
        } else {
            Shared::bump(&shared.gaps, missed);
        }
    }
    sub.last_seq = Some(seq);
    Shared::bump(&shared.delivered, 1);
    shared.received.borrow_mut()[topic] += 1;
    // With several --urls, this subscriber's node counts it too.
    let mut nodes = shared.nodes.borrow_mut();
    let mut node = nodes.get_mut(target.nodes.node_of(id));
    if let Some(node) = node.as_mut() {
        node.delivered += 1;
    }
    if let Some(t) = field_u64(rest, b"\"data\":{\"t\":") {
        if t >= shared.measure_from_ns.get() {
            let micros = (shared.now_ns().saturating_sub(t) / 1000).max(1);
            // The window folds each second into its own histogram (series.rs).
            shared.second_latency.borrow_mut().saturating_record(micros);
            if let Some(node) = node {
                node.latency.saturating_record(micros);
            }
        }
    }
    drop(nodes);
    if let Some(board) = shared.board.borrow_mut().as_mut() {
        let key = field_u64(rest, b"\"key\":\"k");
        let counter = field_u64(rest, b",\"c\":");
        if let (Some(key), Some(counter)) = (key, counter) {
            board.received(id, topic, key as usize, counter, shared.now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_with_and_without_skipped_are_recognised() {
        let plain = br#"{"type":"event","channel":"load.3","seq":9,"data":{}}"#;
        assert_eq!(
            event_body(plain),
            Some((0, &br#"load.3","seq":9,"data":{}}"#[..]))
        );
        let gap = br#"{"skipped":12,"type":"event","channel":"load.3","seq":22,"data":{}}"#;
        assert_eq!(
            event_body(gap),
            Some((12, &br#"load.3","seq":22,"data":{}}"#[..]))
        );
        assert_eq!(event_body(br#"{"type":"heartbeat","ts":"x"}"#), None);
        assert_eq!(event_body(br#"{"skipped":1,"type":"ack"}"#), None);
    }

    #[test]
    fn keyed_fields_are_found_in_a_keyed_event() {
        let event = br#"load.3","seq":22,"ts":"2026-12-06T15:00:00.000Z","key":"k11","data":{"t":123,"c":45,"p":"xx"}}"#;
        assert_eq!(field_u64(event, b"\"key\":\"k"), Some(11));
        assert_eq!(field_u64(event, b",\"c\":"), Some(45));
        assert_eq!(field_u64(event, b"\"data\":{\"t\":"), Some(123));
    }
}
