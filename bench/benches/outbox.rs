//! Outbox: queue many frames, gather them into one vectored write, retire
//! what the kernel took — per frame, the writer's whole bookkeeping.

use std::hint::black_box;
use std::io::IoSlice;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast_engine::{EventMeta, Outbox, OutboxLimits, SlowConsumerPolicy, TopicId, MAX_IOVECS};

fn outbox(c: &mut Criterion) {
    let limits = OutboxLimits {
        max_messages: 4096,
        max_bytes: 64 << 20,
        policy: SlowConsumerPolicy::Drop,
    };
    let frame = Bytes::from(vec![b'x'; 140]);
    let meta = EventMeta::live(TopicId::new(0, 0), Instant::now(), 0);
    let mut group = c.benchmark_group("outbox/push_gather_retire");
    for frames in [1usize, 16, 64] {
        group.throughput(Throughput::Elements(frames as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(frames),
            &frames,
            |b, &frames| {
                let mut outbox = Outbox::new(limits);
                b.iter(|| {
                    for _ in 0..frames {
                        black_box(outbox.push_event(frame.clone(), meta));
                    }
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let n = outbox.io_slices(&mut slices);
                    let written: usize = slices[..n].iter().map(|s| s.len()).sum();
                    black_box(&slices[..n]);
                    let mut done = 0u32;
                    outbox.advance(written, |_| done += 1);
                    black_box(done)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, outbox);
criterion_main!(benches);
