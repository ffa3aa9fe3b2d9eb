//! Client-command parsing (simd-json, in place), and the publish frame parse.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shardcast_server::protocol::telemetry::parse_command;

fn command(c: &mut Criterion) {
    let subscribe = br#"{"action":"subscribe","channels":["market-data","positions","risk-alerts"],"replay":true}"#.to_vec();
    c.bench_function("command/parse_subscribe", |b| {
        b.iter_batched_ref(
            || subscribe.clone(),
            |buf| black_box(parse_command(buf, 256).unwrap()),
            BatchSize::SmallInput,
        )
    });
    let heartbeat = br#"{"action":"heartbeat"}"#.to_vec();
    c.bench_function("command/parse_heartbeat", |b| {
        b.iter_batched_ref(
            || heartbeat.clone(),
            |buf| black_box(parse_command(buf, 256).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, command);
criterion_main!(benches);
