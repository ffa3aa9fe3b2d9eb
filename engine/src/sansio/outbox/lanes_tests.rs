//! Unit tests of priority lanes, channel policies and gap marking.

use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::sansio::frame::{encode, OpCode};

fn outbox(max_messages: usize, policy: SlowConsumerPolicy) -> Outbox {
    let mut outbox = Outbox::new(OutboxLimits {
        max_messages,
        max_bytes: 1 << 20,
        policy,
    });
    outbox.mark_gaps_with(Some(first_in_object));
    outbox
}

fn class(priority: Priority, overflow: Option<SlowConsumerPolicy>) -> DeliveryClass {
    DeliveryClass {
        priority,
        overflow,
        max_rate: None,
    }
}

const HIGH: DeliveryClass = DeliveryClass {
    priority: Priority::High,
    overflow: None,
    max_rate: None,
};

/// An event of `topic` whose frame is `{"n":<n>}` (key `key`, 0: none).
fn event(topic: u32, n: u32, key: u64, class: DeliveryClass) -> (Bytes, EventMeta) {
    let frame = encode(OpCode::Text, format!("{{\"n\":{n}}}").as_bytes());
    let meta = EventMeta::live(TopicId::new(topic, 0), Instant::now(), key).with_class(class);
    (frame, meta)
}

fn push(outbox: &mut Outbox, topic: u32, n: u32, key: u64, class: DeliveryClass) -> Admission {
    let (frame, meta) = event(topic, n, key, class);
    let admission = outbox.push_event(frame, meta);
    outbox.take_evicted().for_each(drop);
    admission
}

/// The queued payloads, in the order they will be written.
fn payloads(outbox: &Outbox) -> Vec<String> {
    outbox
        .queue
        .iter()
        .map(|f| String::from_utf8(f.bytes[2..].to_vec()).unwrap())
        .collect()
}

#[test]
fn the_meta_keeps_class_key_and_replay_apart() {
    let meta = EventMeta::live(TopicId::new(1, 2), Instant::now(), u64::MAX);
    for overflow in [
        None,
        Some(SlowConsumerPolicy::Drop),
        Some(SlowConsumerPolicy::DropOldest),
        Some(SlowConsumerPolicy::Disconnect),
        Some(SlowConsumerPolicy::Conflate),
    ] {
        for priority in [Priority::Normal, Priority::High] {
            let m = meta.with_class(class(priority, overflow));
            assert_eq!(m.policy(), overflow);
            assert_eq!(m.is_high(), priority == Priority::High);
            assert_eq!(m.key(), meta.key());
            assert!(!m.is_replay());
        }
    }
    let at = Instant::now();
    let back = EventMeta::live(TopicId::new(0, 0), at, 0).accepted_at();
    assert!(back <= at && at.duration_since(back).as_nanos() < 2);
}

#[test]
fn high_priority_events_go_ahead_of_normal_ones_in_their_own_order() {
    let mut outbox = outbox(16, SlowConsumerPolicy::Drop);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 0, normal);
    push(&mut outbox, 1, 2, 0, normal);
    push(&mut outbox, 2, 100, 0, HIGH);
    push(&mut outbox, 1, 3, 0, normal);
    push(&mut outbox, 2, 101, 0, HIGH);
    assert_eq!(
        payloads(&outbox),
        [
            r#"{"n":100}"#,
            r#"{"n":101}"#,
            r#"{"n":1}"#,
            r#"{"n":2}"#,
            r#"{"n":3}"#
        ]
    );
}

#[test]
fn a_high_priority_event_never_cuts_into_a_frame_being_written() {
    let mut outbox = outbox(16, SlowConsumerPolicy::Drop);
    push(&mut outbox, 1, 1, 0, DeliveryClass::default());
    push(&mut outbox, 1, 2, 0, DeliveryClass::default());
    outbox.advance(3, |_| {});
    push(&mut outbox, 2, 100, 0, HIGH);
    assert_eq!(
        payloads(&outbox),
        [r#"{"n":1}"#, r#"{"n":100}"#, r#"{"n":2}"#]
    );
}

#[test]
fn a_high_priority_event_never_overtakes_replies_or_its_own_topic() {
    let mut outbox = outbox(16, SlowConsumerPolicy::Drop);
    // Its topic's replay (a resume, a snapshot) comes first.
    for n in 1..=3 {
        let frame = encode(OpCode::Text, format!("{{\"n\":{n}}}").as_bytes());
        let meta = EventMeta::replayed(TopicId::new(2, 0), Instant::now(), 0);
        assert_eq!(outbox.push_event(frame, meta), Admission::Queued);
    }
    push(&mut outbox, 1, 10, 0, DeliveryClass::default());
    push(&mut outbox, 2, 4, 0, HIGH);
    assert_eq!(
        payloads(&outbox),
        [
            r#"{"n":1}"#,
            r#"{"n":2}"#,
            r#"{"n":3}"#,
            r#"{"n":4}"#,
            r#"{"n":10}"#
        ]
    );
    // So does a reply queued before it (the ack of its subscription).
    let mut outbox = outbox_after_ack();
    push(&mut outbox, 2, 100, 0, HIGH);
    assert_eq!(
        payloads(&outbox),
        [r#"{"n":1}"#, r#"{"ack":1}"#, r#"{"n":100}"#, r#"{"n":2}"#]
    );
}

/// A tick, an ack, a tick.
fn outbox_after_ack() -> Outbox {
    let mut outbox = outbox(16, SlowConsumerPolicy::Drop);
    push(&mut outbox, 1, 1, 0, DeliveryClass::default());
    outbox.push_control(encode(OpCode::Text, br#"{"ack":1}"#));
    push(&mut outbox, 1, 2, 0, DeliveryClass::default());
    outbox
}

#[test]
fn a_full_outbox_drops_normal_events_for_a_high_one_and_closes_only_when_none_are_left() {
    let mut outbox = outbox(3, SlowConsumerPolicy::Drop);
    push(&mut outbox, 1, 1, 0, DeliveryClass::default());
    push(&mut outbox, 2, 100, 0, HIGH);
    push(&mut outbox, 1, 2, 0, DeliveryClass::default());
    assert_eq!(push(&mut outbox, 2, 101, 0, HIGH), Admission::Evicted);
    assert_eq!(
        payloads(&outbox),
        [r#"{"n":100}"#, r#"{"n":101}"#, r#"{"skipped":1,"n":2}"#]
    );
    // A normal event never pushes a high one out, under any policy.
    for policy in [
        SlowConsumerPolicy::DropOldest,
        SlowConsumerPolicy::Conflate,
        SlowConsumerPolicy::Drop,
    ] {
        let (frame, meta) = event(1, 3, 0, class(Priority::Normal, Some(policy)));
        let admission = outbox.push_event(frame, meta);
        assert!(
            matches!(admission, Admission::Evicted | Admission::Dropped(_)),
            "{policy:?}: {admission:?}"
        );
        assert!(
            payloads(&outbox).starts_with(&[r#"{"n":100}"#.to_owned(), r#"{"n":101}"#.to_owned()])
        );
    }
    assert_eq!(push(&mut outbox, 2, 102, 0, HIGH), Admission::Evicted);
    assert_eq!(
        push(&mut outbox, 2, 103, 0, HIGH),
        Admission::PriorityOverflow
    );
}

#[test]
fn a_channel_policy_overrides_the_connection_policy() {
    let mut outbox = outbox(2, SlowConsumerPolicy::Disconnect);
    let oldest = class(Priority::Normal, Some(SlowConsumerPolicy::DropOldest));
    push(&mut outbox, 1, 1, 0, oldest);
    push(&mut outbox, 1, 2, 0, oldest);
    assert_eq!(push(&mut outbox, 1, 3, 0, oldest), Admission::Evicted);
    let newest = class(Priority::Normal, Some(SlowConsumerPolicy::Drop));
    assert_eq!(
        push(&mut outbox, 1, 4, 0, newest),
        Admission::Dropped(DropReason::OutboxFull)
    );
    // A channel with no policy of its own meets the connection's.
    assert_eq!(
        push(&mut outbox, 1, 5, 0, DeliveryClass::default()),
        Admission::Disconnect
    );
}

#[test]
fn events_refused_are_told_by_the_next_event_of_their_topic() {
    let mut outbox = outbox(2, SlowConsumerPolicy::Drop);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 0, normal);
    push(&mut outbox, 2, 1, 0, normal);
    for n in 2..5 {
        push(&mut outbox, 1, n, 0, normal);
    }
    push(&mut outbox, 2, 2, 0, normal);
    outbox.advance(outbox.queued_bytes(), |_| {});
    push(&mut outbox, 1, 5, 0, normal);
    push(&mut outbox, 2, 3, 0, normal);
    push(&mut outbox, 2, 4, 0, normal);
    assert_eq!(
        payloads(&outbox),
        [r#"{"skipped":3,"n":5}"#, r#"{"skipped":1,"n":3}"#]
    );
    let skipped: Vec<_> = outbox
        .queue
        .iter()
        .map(|f| f.event.unwrap().skipped)
        .collect();
    assert_eq!(skipped, [3, 1]);
}

#[test]
fn events_dropped_from_the_queue_are_told_by_the_next_queued_one() {
    let mut outbox = outbox(3, SlowConsumerPolicy::DropOldest);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 0, normal);
    push(&mut outbox, 1, 2, 0, normal);
    push(&mut outbox, 2, 1, 0, normal);
    // 1:1 goes; 1:2 says so. Then 1:2 goes too, and 1:3 says both.
    push(&mut outbox, 2, 2, 0, normal);
    assert_eq!(payloads(&outbox)[0], r#"{"skipped":1,"n":2}"#);
    push(&mut outbox, 1, 3, 0, normal);
    assert_eq!(
        payloads(&outbox),
        [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"skipped":2,"n":3}"#]
    );
    let bytes: usize = outbox.queue.iter().map(|f| f.bytes.len()).sum();
    assert_eq!(outbox.queued_bytes(), bytes);
}

#[test]
fn a_conflated_value_is_told_as_skipped() {
    let mut outbox = outbox(2, SlowConsumerPolicy::Conflate);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 7, normal);
    push(&mut outbox, 1, 2, 8, normal);
    assert_eq!(push(&mut outbox, 1, 3, 7, normal), Admission::Conflated(1));
    assert_eq!(payloads(&outbox), [r#"{"skipped":1,"n":2}"#, r#"{"n":3}"#]);
}

#[test]
fn every_value_a_conflation_replaces_is_told_where_it_was() {
    let mut outbox = outbox(4, SlowConsumerPolicy::Conflate);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 7, normal);
    push(&mut outbox, 1, 2, 8, normal);
    push(&mut outbox, 1, 3, 7, normal);
    push(&mut outbox, 1, 4, 8, normal);
    assert_eq!(push(&mut outbox, 1, 5, 7, normal), Admission::Conflated(2));
    // 1 and 3 are gone: 2 follows one missing, 4 follows one missing.
    assert_eq!(
        payloads(&outbox),
        [
            r#"{"skipped":1,"n":2}"#,
            r#"{"skipped":1,"n":4}"#,
            r#"{"n":5}"#
        ]
    );
}

#[test]
fn a_new_subscription_starts_with_no_gap() {
    let mut outbox = outbox(1, SlowConsumerPolicy::Drop);
    let normal = DeliveryClass::default();
    push(&mut outbox, 1, 1, 0, normal);
    push(&mut outbox, 1, 2, 0, normal);
    outbox.advance(outbox.queued_bytes(), |_| {});
    outbox.forget_gaps(TopicId::new(1, 0));
    push(&mut outbox, 1, 3, 0, normal);
    assert_eq!(payloads(&outbox), [r#"{"n":3}"#]);
}

#[test]
fn marking_rewrites_long_frames_and_replaces_an_earlier_mark() {
    let payload = format!("{{\"d\":\"{}\"}}", "x".repeat(300));
    let frame = encode(OpCode::Text, payload.as_bytes());
    let once = gaps::mark(&frame, first_in_object, 0, 9).unwrap();
    let twice = gaps::mark(&once, first_in_object, 9, 1234).unwrap();
    let expected = encode(
        OpCode::Text,
        format!("{{\"skipped\":1234,{}", &payload[1..]).as_bytes(),
    );
    assert_eq!(twice, expected);
    // Not one of the engine's text frames, or no object: left alone.
    assert!(gaps::mark(&frame[..frame.len() - 1], first_in_object, 0, 1).is_none());
    assert!(gaps::mark(&encode(OpCode::Binary, b"{}"), first_in_object, 0, 1).is_none());
    assert!(gaps::mark(&encode(OpCode::Text, b"[1]"), first_in_object, 0, 1).is_none());
    // A mark that is not where it should be: left alone.
    assert!(gaps::mark(&frame, first_in_object, 3, 4).is_none());
}

#[test]
fn a_compressed_frame_after_a_gap_goes_plain_and_marked() {
    let mut outbox = outbox(1, SlowConsumerPolicy::DropOldest);
    let long = format!("{{\"n\":9,\"pad\":\"{}\"}}", "ab".repeat(200));
    let plain = encode(OpCode::Text, long.as_bytes());
    let compressed = crate::sansio::deflate::Compressor::default()
        .compress_frame(&plain, 0)
        .unwrap();
    assert_eq!(compressed[0], 0xC1);
    let meta = |n| EventMeta::live(TopicId::new(1, 0), Instant::now(), n);
    assert_eq!(
        outbox.push_event(compressed.clone(), meta(0)),
        Admission::Queued
    );
    // The first is dropped to make room; the second says so, plain.
    outbox.push_event(compressed, meta(0));
    let frame = &outbox.queue[0].bytes;
    let (first, payload) = crate::sansio::frame::split_server_frame(frame).unwrap();
    assert_eq!(first, 0x81);
    assert_eq!(
        payload,
        format!("{{\"skipped\":1,{}", &long[1..]).as_bytes()
    );
    assert_eq!(outbox.queued_bytes(), frame.len());
}
