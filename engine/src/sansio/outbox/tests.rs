//! Unit tests of `outbox.rs`.

use std::time::Instant;

use super::*;

fn limits(max_messages: usize, max_bytes: usize, policy: SlowConsumerPolicy) -> OutboxLimits {
    OutboxLimits {
        max_messages,
        max_bytes,
        policy,
    }
}

fn meta() -> EventMeta {
    EventMeta::live(TopicId::new(0, 0), Instant::now(), 0)
}

fn keyed(topic: u32, key: u64) -> EventMeta {
    EventMeta::live(TopicId::new(topic, 0), Instant::now(), key)
}

#[test]
fn a_queued_frame_fills_one_cache_line() {
    assert_eq!(std::mem::size_of::<OutFrame>(), 64);
    let meta = EventMeta::replayed(TopicId::new(1, 2), Instant::now(), u64::MAX);
    assert!(meta.is_replay());
    assert_eq!(meta.key(), u64::MAX >> 5);
    assert!(!EventMeta::live(meta.topic, meta.accepted_at(), 5).is_replay());
}

fn frame(len: usize) -> Bytes {
    Bytes::from(vec![b'a'; len])
}

#[test]
fn an_idle_outbox_holds_no_memory_and_a_busy_one_keeps_its_queue() {
    let mut outbox = Outbox::new(limits(64, 1 << 20, SlowConsumerPolicy::Drop));
    assert_eq!(outbox.push_control(frame(5)), Admission::Queued);
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    outbox.shrink_if_idle();
    assert_eq!(outbox.len(), 2, "nothing queued is lost");
    assert!(outbox.queue.capacity() > 0, "a queue in use is kept");
    outbox.advance(15, |_| {});
    assert!(outbox.is_empty());
    outbox.shrink_if_idle();
    assert_eq!(outbox.queue.capacity(), 0, "an empty queue is freed");
    // And it grows again when needed.
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(outbox.len(), 1);
}

/// A connection that gets a frame now and then holds room for one while
/// it waits (64 bytes, not 256), and none once it is written; a queue that
/// grew is kept until the tick.
#[test]
fn a_lone_frame_takes_room_for_one_and_gives_it_back_once_written() {
    let mut outbox = Outbox::new(limits(64, 1 << 20, SlowConsumerPolicy::Drop));
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(outbox.queue.capacity(), 1);
    outbox.advance(4, |_| {});
    assert_eq!(outbox.queue.capacity(), 1, "kept while partly written");
    outbox.advance(6, |_| {});
    assert_eq!(outbox.queue.capacity(), 0, "freed once written");

    assert_eq!(outbox.push_control(frame(5)), Admission::Queued);
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    outbox.advance(15, |_| {});
    assert!(outbox.is_empty());
    assert!(
        outbox.queue.capacity() > 1,
        "a busy queue waits for the tick"
    );
    outbox.shrink_if_idle();
    assert_eq!(outbox.queue.capacity(), 0);
}

#[test]
fn refuses_events_past_the_message_limit_with_the_policy() {
    let mut drop = Outbox::new(limits(2, 1 << 20, SlowConsumerPolicy::Drop));
    assert_eq!(drop.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(drop.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(
        drop.push_event(frame(10), meta()),
        Admission::Dropped(DropReason::OutboxFull)
    );
    let mut disconnect = Outbox::new(limits(1, 1 << 20, SlowConsumerPolicy::Disconnect));
    assert_eq!(disconnect.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(
        disconnect.push_event(frame(10), meta()),
        Admission::Disconnect
    );
}

#[test]
fn refuses_events_past_the_byte_limit() {
    let mut outbox = Outbox::new(limits(100, 25, SlowConsumerPolicy::Drop));
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(outbox.push_event(frame(10), meta()), Admission::Queued);
    assert_eq!(
        outbox.push_event(frame(10), meta()),
        Admission::Dropped(DropReason::OutboxFull)
    );
    assert_eq!(outbox.push_event(frame(5), meta()), Admission::Queued);
    assert_eq!(outbox.queued_bytes(), 25);
}

#[test]
fn control_frames_pass_a_full_outbox_up_to_the_headroom() {
    let mut outbox = Outbox::new(limits(1, 1 << 20, SlowConsumerPolicy::Drop));
    assert_eq!(outbox.push_event(frame(1), meta()), Admission::Queued);
    for _ in 0..CONTROL_HEADROOM {
        assert_eq!(outbox.push_control(frame(1)), Admission::Queued);
    }
    assert_eq!(outbox.push_control(frame(1)), Admission::Disconnect);
}

#[test]
fn control_frames_are_bounded_in_bytes_too() {
    let mut outbox = Outbox::new(limits(4, 100, SlowConsumerPolicy::Drop));
    let big = Bytes::from(vec![0u8; CONTROL_HEADROOM_BYTES / 2]);
    assert_eq!(outbox.push_control(big.clone()), Admission::Queued);
    assert_eq!(outbox.push_control(big.clone()), Admission::Queued);
    assert_eq!(outbox.push_control(frame(1)), Admission::Disconnect);
    // Written, they make room again.
    outbox.advance(big.len(), |_| {});
    assert_eq!(outbox.push_control(frame(1)), Admission::Queued);
}

#[test]
fn replies_are_due_for_writing_at_half_the_headroom_in_frames_or_bytes() {
    let mut outbox = Outbox::new(limits(4, 1 << 20, SlowConsumerPolicy::Drop));
    outbox.push_event(frame(1), meta());
    for _ in 0..CONTROL_HEADROOM / 2 - 1 {
        outbox.push_control(frame(1));
    }
    assert!(!outbox.control_half_full(), "events do not count");
    outbox.push_control(frame(1));
    assert!(outbox.control_half_full());

    let mut outbox = Outbox::new(limits(4, 1 << 20, SlowConsumerPolicy::Drop));
    outbox.push_control(Bytes::from(vec![0u8; CONTROL_HEADROOM_BYTES / 2 - 1]));
    assert!(!outbox.control_half_full());
    outbox.push_control(frame(1));
    assert!(outbox.control_half_full(), "one large reply is enough");
}

#[test]
fn partial_writes_resume_mid_frame_and_report_completed_frames() {
    let mut outbox = Outbox::new(limits(10, 1 << 20, SlowConsumerPolicy::Drop));
    outbox.push_event(Bytes::from_static(b"abcde"), meta());
    outbox.push_control(Bytes::from_static(b"fgh"));
    outbox.push_event(Bytes::from_static(b"ij"), meta());

    let mut done = Vec::new();
    outbox.advance(3, |f| done.push(f.bytes.clone()));
    assert!(done.is_empty());
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let n = outbox.io_slices(&mut slices);
    let flat: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
    assert_eq!(flat, b"defghij");

    outbox.advance(4, |f| done.push(f.bytes.clone()));
    assert_eq!(done, vec![Bytes::from_static(b"abcde")]);
    // "h" of the control frame and "ij" remain.
    assert_eq!(outbox.queued_bytes(), 3);
    outbox.advance(3, |f| done.push(f.bytes.clone()));
    assert_eq!(done.len(), 3);
    assert!(outbox.is_empty());
    assert_eq!(outbox.queued_bytes(), 0);
    // Retired events free their slots.
    for _ in 0..10 {
        assert_eq!(outbox.push_event(frame(1), meta()), Admission::Queued);
    }
}

#[test]
fn clear_returns_only_the_undelivered_events() {
    let mut outbox = Outbox::new(limits(10, 1 << 20, SlowConsumerPolicy::Drop));
    outbox.push_event(frame(3), meta());
    outbox.push_control(frame(3));
    outbox.push_event(frame(3), meta());
    assert_eq!(outbox.clear().count(), 2);
    assert!(outbox.is_empty());
    assert_eq!(outbox.queued_bytes(), 0);
}

#[test]
fn a_full_conflating_outbox_replaces_the_queued_event_of_the_same_topic_and_key() {
    let mut outbox = Outbox::new(limits(3, 1 << 20, SlowConsumerPolicy::Conflate));
    let frame = |text: &'static str| Bytes::from_static(text.as_bytes());
    assert_eq!(
        outbox.push_event(frame("a1"), keyed(1, 7)),
        Admission::Queued
    );
    assert_eq!(
        outbox.push_event(frame("b1"), keyed(1, 8)),
        Admission::Queued
    );
    assert_eq!(
        outbox.push_event(frame("a1'"), keyed(2, 7)),
        Admission::Queued
    );
    // Full: the same key of topic 1 takes its predecessor's place.
    assert_eq!(
        outbox.push_event(frame("a2"), keyed(1, 7)),
        Admission::Conflated(1)
    );
    assert_eq!(
        outbox.push_event(frame("a3"), keyed(1, 7)),
        Admission::Conflated(1)
    );
    // No predecessor, or no key: the oldest queued events make room.
    assert_eq!(
        outbox.push_event(frame("c1"), keyed(1, 9)),
        Admission::Evicted
    );
    let evicted: Vec<TopicId> = outbox.take_evicted().collect();
    assert_eq!(evicted, [TopicId::new(1, 0)], "b1 made room");
    assert_eq!(
        outbox.push_event(frame("x"), keyed(1, 0)),
        Admission::Evicted
    );
    let evicted: Vec<TopicId> = outbox.take_evicted().collect();
    assert_eq!(evicted, [TopicId::new(2, 0)], "a1' made room");
    let mut written = Vec::new();
    outbox.advance(outbox.queued_bytes(), |f| written.push(f.bytes.clone()));
    // The newest data is what is left, in order.
    assert_eq!(written, vec![frame("a3"), frame("c1"), frame("x")]);
    assert_eq!(outbox.queued_bytes(), 0);
}

#[test]
fn dropping_the_oldest_keeps_the_newest_events_and_the_byte_limit() {
    let mut outbox = Outbox::new(limits(3, 12, SlowConsumerPolicy::DropOldest));
    let frame = |text: &'static str| Bytes::from_static(text.as_bytes());
    for text in ["e1", "e2", "e3"] {
        assert_eq!(outbox.push_event(frame(text), meta()), Admission::Queued);
    }
    outbox.push_control(frame("ack"));
    assert_eq!(outbox.push_event(frame("e4"), meta()), Admission::Evicted);
    assert_eq!(outbox.take_evicted().count(), 1);
    // Six bytes need two events to go (12-byte limit, 9 queued).
    assert_eq!(
        outbox.push_event(frame("e5-6-7"), meta()),
        Admission::Evicted
    );
    assert_eq!(outbox.take_evicted().count(), 2);
    // Larger than the limit allows, whatever goes: refused, nothing lost.
    assert_eq!(
        outbox.push_event(frame("far-too-large"), meta()),
        Admission::Dropped(DropReason::OutboxFull)
    );
    assert_eq!(outbox.take_evicted().count(), 0);
    let mut written = Vec::new();
    outbox.advance(outbox.queued_bytes(), |f| written.push(f.bytes.clone()));
    // Control frames are never dropped.
    assert_eq!(written, vec![frame("ack"), frame("e4"), frame("e5-6-7")]);
}

#[test]
fn conflation_never_touches_a_frame_being_written_nor_breaks_the_byte_limit() {
    let mut outbox = Outbox::new(limits(2, 10, SlowConsumerPolicy::Conflate));
    outbox.push_event(Bytes::from_static(b"aaaa"), keyed(1, 7));
    outbox.push_event(Bytes::from_static(b"bbbb"), keyed(1, 8));
    outbox.advance(1, |_| {});
    // Replacing 4 bytes by 8 would exceed the 10-byte limit, and so would
    // dropping the only event not being written.
    assert_eq!(
        outbox.push_event(Bytes::from_static(b"BBBBBBBB"), keyed(1, 8)),
        Admission::Dropped(DropReason::OutboxFull)
    );
    assert_eq!(
        outbox.push_event(Bytes::from_static(b"BBBBB"), keyed(1, 8)),
        Admission::Conflated(1)
    );
    assert_eq!(outbox.queued_bytes(), 3 + 5);
    // The front frame is partly written: neither replaced nor dropped; the
    // event behind it makes room instead.
    assert_eq!(
        outbox.push_event(Bytes::from_static(b"AAAA"), keyed(1, 7)),
        Admission::Evicted
    );
    let mut written = Vec::new();
    outbox.advance(outbox.queued_bytes(), |f| written.push(f.bytes.clone()));
    assert_eq!(
        written,
        vec![Bytes::from_static(b"aaaa"), Bytes::from_static(b"AAAA")]
    );
}

#[test]
fn conflation_replaces_every_queued_value_of_the_key() {
    let mut outbox = Outbox::new(limits(3, 1 << 20, SlowConsumerPolicy::Conflate));
    let frame = |text: &'static str| Bytes::from_static(text.as_bytes());
    outbox.push_event(frame("a1"), keyed(1, 7));
    outbox.push_event(frame("a2"), keyed(1, 7));
    outbox.push_event(frame("b1"), keyed(1, 8));
    assert_eq!(
        outbox.push_event(frame("a3"), keyed(1, 7)),
        Admission::Conflated(2)
    );
    let mut written = Vec::new();
    outbox.advance(outbox.queued_bytes(), |f| written.push(f.bytes.clone()));
    // A client behind gets the key's latest value, not its history first.
    assert_eq!(written, vec![frame("b1"), frame("a3")]);
}

#[test]
fn a_replayed_event_is_never_conflated_away() {
    let mut outbox = Outbox::new(limits(2, 1 << 20, SlowConsumerPolicy::Conflate));
    let replayed = EventMeta::replayed(TopicId::new(1, 0), Instant::now(), 7);
    outbox.push_event(Bytes::from_static(b"r"), replayed);
    outbox.push_event(Bytes::from_static(b"b"), keyed(1, 8));
    assert_eq!(
        outbox.push_event(Bytes::from_static(b"a"), keyed(1, 7)),
        Admission::Evicted
    );
    let mut written = Vec::new();
    outbox.advance(outbox.queued_bytes(), |f| written.push(f.bytes.clone()));
    assert_eq!(
        written,
        vec![Bytes::from_static(b"r"), Bytes::from_static(b"a")]
    );
    // Nor does a replayed event push live ones out.
    outbox.push_event(Bytes::from_static(b"1"), keyed(1, 1));
    outbox.push_event(Bytes::from_static(b"2"), keyed(1, 2));
    assert_eq!(
        outbox.push_event(Bytes::from_static(b"r"), replayed),
        Admission::Dropped(DropReason::OutboxFull)
    );
}
