//! Frame encoding (once per message per format) and client-frame parsing.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast_engine::frame;
use shardcast_engine::{Epoch, FrameKind, Message, Stamp, TopicId, WireFormat};
use shardcast_server::protocol::bondx::BondxFormat;
use shardcast_server::protocol::fastws::FastwsFormat;
use shardcast_server::protocol::telemetry::TelemetryFormat;

fn encode(c: &mut Criterion) {
    let bondx = BondxFormat::new(std::time::Duration::from_secs(30));
    let mut group = c.benchmark_group("frame/encode_event");
    for size in [64usize, 256, 4096] {
        let data = Bytes::from(format!("{{\"p\":\"{}\"}}", "x".repeat(size - 8)));
        let msg = Message::new(
            TopicId::new(0, 0),
            Arc::from("market-data"),
            Epoch::from_u64(1),
            42,
            Some("AAPL".into()),
            data,
            Stamp::now(),
        );
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| black_box(TelemetryFormat.encode_event(black_box(&msg), FrameKind::Live)))
        });
        group.bench_function(format!("bondx/{size}B"), |b| {
            b.iter(|| black_box(bondx.encode_event(black_box(&msg), FrameKind::Live)))
        });
        group.bench_function(format!("fastws/{size}B"), |b| {
            b.iter(|| black_box(FastwsFormat.encode_event(black_box(&msg), FrameKind::Live)))
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let payload = br#"{"action":"publish","channel":"t7","data":{"px":101.25,"qty":300}}"#;
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut wire = vec![0x81, 0x80 | payload.len() as u8];
    wire.extend_from_slice(&mask);
    wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.bench_function("frame/parse_client_frame_64B", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| black_box(frame::parse_client_frame(buf, 65536).unwrap()),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("frame/encode_close", |b| {
        b.iter(|| black_box(frame::encode_close(4408, "HEARTBEAT_TIMEOUT")))
    });
}

criterion_group!(benches, encode, parse);
criterion_main!(benches);
