//! Latency recording: one HDR histogram sample per delivered frame, as the
//! shard records it after each write.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hdrhistogram::Histogram;

fn latency(c: &mut Criterion) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut value = 1u64;
    c.bench_function("latency/record_micros", |b| {
        b.iter(|| {
            value = (value * 7 + 13) % 50_000 + 1;
            histogram.saturating_record(black_box(value));
        })
    });
    c.bench_function("latency/merge_shard_histograms", |b| {
        let other = histogram.clone();
        b.iter(|| {
            let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            merged.add(&other).unwrap();
            black_box(merged.value_at_quantile(0.99))
        })
    });
}

criterion_group!(benches, latency);
criterion_main!(benches);
