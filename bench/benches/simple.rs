//! The simple protocol's per-message and per-interval work: a signal framed
//! once per message (`live_event`), a symbol filter asked once per
//! subscriber (the symbol read once per message, then a set lookup), and a
//! conflated `price_update` built from a topic's state (once per interval
//! and distinct subscription on a shard).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcast_engine::{Epoch, Message, MessageFilter, Stamp, TopicId};
use shardcast_server::protocol::simple::{
    annotate, live_event, price_update, SymbolFilter, Symbols,
};

fn message(seq: u64, symbol: &str) -> Message {
    let data = format!(
        r#"{{"signal_type":"BUY","symbol":"{symbol}","price":150.25,"quantity":10,"confidence":0.85}}"#
    );
    Message::new(
        TopicId::new(1, 0),
        "signals".into(),
        Epoch::from_u64(1),
        seq,
        Some(symbol.into()),
        Bytes::from(data),
        Stamp::now(),
    )
}

fn simple(c: &mut Criterion) {
    let msg = message(1, "AAPL");
    c.bench_function("simple/live_event", |b| {
        b.iter(|| black_box(live_event("signal", black_box(&msg))))
    });

    // 1000 subscribers, each with its own 20-symbol list, offered one message.
    let filters: Vec<SymbolFilter> = (0..1000)
        .map(|i| {
            let set = (0..20).map(|j| format!("S{}", (i + j) % 500)).collect();
            SymbolFilter(Symbols::Only(set))
        })
        .collect();
    let mut group = c.benchmark_group("simple/filter_per_message");
    group.throughput(Throughput::Elements(filters.len() as u64));
    // Distinct messages (the symbol memo is per message), built beforehand.
    let messages: Vec<Message> = (0..1024).map(|seq| message(seq + 1, "S250")).collect();
    let mut next = messages.iter().cycle();
    group.bench_function("1000_subscribers", |b| {
        b.iter(|| {
            let msg = next.next().expect("cycles");
            filters.iter().filter(|f| f.admits(msg)).count()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("simple/price_update");
    for symbols in [20usize, 2000] {
        let state = annotate(
            (0..symbols)
                .map(|i| Arc::new(message(i as u64 + 1, &format!("S{i}"))))
                .collect(),
        );
        let wanted = Symbols::Only((0..20).map(|i| format!("S{i}")).collect());
        group.bench_with_input(BenchmarkId::new("all", symbols), &state, |b, state| {
            b.iter(|| price_update(state, None, &Symbols::All, std::time::UNIX_EPOCH))
        });
        group.bench_with_input(
            BenchmarkId::new("20_wanted", symbols),
            &state,
            |b, state| b.iter(|| price_update(state, None, &wanted, std::time::UNIX_EPOCH)),
        );
    }
    group.finish();
}

criterion_group!(benches, simple);
criterion_main!(benches);
