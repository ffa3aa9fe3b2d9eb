//! Unit tests of `message.rs`.

use super::*;
use crate::sansio::format::{FrameKind, WireFormat};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Frames a message as its format's name, its kind and its seq; counts
/// encodings. `distinct`: frames each kind its own way (otherwise every
/// kind gets the live frame, the default).
struct Counting(&'static str, Arc<AtomicUsize>, bool);

impl WireFormat for Counting {
    fn name(&self) -> &'static str {
        self.0
    }
    fn encode_event(&self, msg: &Message, kind: FrameKind) -> Bytes {
        self.1.fetch_add(1, Ordering::Relaxed);
        Bytes::from(format!("{}:{kind:?}:{}", self.0, msg.seq))
    }
    fn frame_kind(&self, kind: FrameKind) -> FrameKind {
        if self.2 {
            kind
        } else {
            FrameKind::Live
        }
    }
    fn heartbeat(&self, _: SystemTime) -> Option<Bytes> {
        None
    }
}

fn message(seq: u64, key: Option<&str>) -> Message {
    let key = key.map(Into::into);
    let epoch = Epoch::from_u64(1);
    Message::new(
        TopicId::new(0, 0),
        "t".into(),
        epoch,
        seq,
        key,
        Bytes::new(),
        Stamp::now(),
    )
}

#[test]
fn each_variant_is_encoded_once_whatever_the_number_of_formats() {
    let encoded = Arc::new(AtomicUsize::new(0));
    let mut formats = Formats::default();
    let ids: Vec<_> = (0..9)
        .map(|i| {
            let name: &'static str = Box::leak(format!("f{i}").into_boxed_str());
            formats
                .register(Arc::new(Counting(name, Arc::clone(&encoded), true)))
                .unwrap()
        })
        .collect();
    let msg = message(7, Some("k"));
    let size = std::mem::size_of::<Message>();
    for _ in 0..3 {
        for &id in &ids {
            for kind in [FrameKind::Live, FrameKind::Replay, FrameKind::Snapshot] {
                let frame = msg.frame(id.variant(kind), &formats);
                let want = format!("f{}:{kind:?}:7", id.index());
                assert_eq!(&frame[..], want.as_bytes());
            }
        }
    }
    assert_eq!(encoded.load(Ordering::Relaxed), 27);
    // The message itself is as big with nine formats as with one.
    assert_eq!(std::mem::size_of::<Message>(), size);
    assert!(size <= 256, "{size}");
}

#[test]
fn a_format_that_frames_every_kind_alike_encodes_once() {
    let encoded = Arc::new(AtomicUsize::new(0));
    let mut formats = Formats::default();
    let id = formats
        .register(Arc::new(Counting("uniform", Arc::clone(&encoded), false)))
        .unwrap();
    let msg = message(1, None);
    for kind in [FrameKind::Snapshot, FrameKind::Replay, FrameKind::Live] {
        assert_eq!(
            &msg.frame(id.variant(kind), &formats)[..],
            b"uniform:Live:1"
        );
    }
    assert_eq!(encoded.load(Ordering::Relaxed), 1);
}

#[test]
fn concurrent_shards_encode_a_variant_once() {
    let encoded = Arc::new(AtomicUsize::new(0));
    let mut formats = Formats::default();
    let a = formats
        .register(Arc::new(Counting("a", Arc::clone(&encoded), true)))
        .unwrap();
    let b = formats
        .register(Arc::new(Counting("b", Arc::clone(&encoded), true)))
        .unwrap();
    let msg = Arc::new(message(1, None));
    std::thread::scope(|s| {
        for i in 0..4 {
            let (msg, formats) = (&msg, &formats);
            s.spawn(move || {
                for _ in 0..1000 {
                    let first = if i % 2 == 0 { a } else { b };
                    msg.frame(first.variant(FrameKind::Live), formats);
                    msg.frame(b.variant(FrameKind::Replay), formats);
                }
            });
        }
    });
    assert_eq!(encoded.load(Ordering::Relaxed), 3);
}

#[test]
fn equal_keys_share_a_digest_and_no_key_is_zero() {
    let keyed = |key: Option<&str>| message(1, key).key_hash();
    assert_eq!(keyed(None), 0);
    assert_eq!(keyed(Some("AAPL")), keyed(Some("AAPL")));
    assert_ne!(keyed(Some("AAPL")), keyed(Some("MSFT")));
    assert_ne!(keyed(Some("")), 0);
}
