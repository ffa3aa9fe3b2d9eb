//! Publish → fan-out on one shard: one message encoded once, then offered to
//! N local subscribers' mailboxes (the code the shard's dispatch loop runs per
//! subscriber) and retired as the writer does after a socket write.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast_engine::{
    Epoch, EventMeta, Formats, FrameKind, Mailbox, Message, OutboxLimits, RateLimit,
    SlowConsumerPolicy, Stamp, TopicId,
};
use shardcast_server::protocol::telemetry::TelemetryFormat;

fn fanout(c: &mut Criterion) {
    let mut formats = Formats::default();
    let telemetry = formats.register(Arc::new(TelemetryFormat)).unwrap();
    let live = telemetry.variant(FrameKind::Live);
    let limits = OutboxLimits {
        max_messages: 4096,
        max_bytes: 4 << 20,
        policy: SlowConsumerPolicy::Drop,
    };
    let topic_name: Arc<str> = Arc::from("t7");
    let data = Bytes::from(format!("{{\"t\":123456789,\"p\":\"{}\"}}", "x".repeat(40)));
    let unlimited = RateLimit::per_second(0);

    let mut group = c.benchmark_group("fanout/publish_to_subscribers");
    for subscribers in [1usize, 100, 10_000] {
        let mut mailboxes: Vec<Mailbox> = (0..subscribers).map(|_| Mailbox::new(limits)).collect();
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                let mut seq = 0;
                b.iter(|| {
                    seq += 1;
                    let msg = Message::new(
                        TopicId::new(7, 0),
                        Arc::clone(&topic_name),
                        Epoch::from_u64(1),
                        seq,
                        None,
                        data.clone(),
                        Stamp::now(),
                    );
                    let frame = &msg.frame(live, &formats);
                    let meta = EventMeta::live(msg.topic, msg.accepted_at, 0);
                    for mailbox in &mut mailboxes {
                        black_box(mailbox.offer(frame, meta, unlimited, 0));
                    }
                    // What the writer does once the socket took the frame.
                    let len = frame.len();
                    for mailbox in &mut mailboxes {
                        mailbox.outbox.advance(len, |_| {});
                    }
                })
            },
        );
    }
    group.finish();

    // Rate limiting on: the admission check runs per subscriber.
    let mut mailboxes: Vec<Mailbox> = (0..100).map(|_| Mailbox::new(limits)).collect();
    let limit = RateLimit::per_second(1_000_000_000);
    let start = Instant::now();
    c.bench_function("fanout/publish_to_100_rate_limited", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            let msg = Message::new(
                TopicId::new(7, 0),
                Arc::clone(&topic_name),
                Epoch::from_u64(1),
                seq,
                None,
                data.clone(),
                Stamp::now(),
            );
            let frame = &msg.frame(live, &formats);
            let meta = EventMeta::live(msg.topic, msg.accepted_at, 0);
            let now = start.elapsed().as_nanos() as u64;
            for mailbox in &mut mailboxes {
                black_box(mailbox.offer(frame, meta, limit, now));
            }
            let len = frame.len();
            for mailbox in &mut mailboxes {
                mailbox.outbox.advance(len, |_| {});
            }
        })
    });
}

criterion_group!(benches, fanout);
criterion_main!(benches);
