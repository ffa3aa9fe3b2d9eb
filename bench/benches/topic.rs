//! Topic lookup: channel-rule matching and the registry's read path, and a
//! publish through the engine with no subscribers (stamp, history, routing).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use shardcast_engine::{ChannelRules, Engine, EngineConfig, Formats, InProcess};

fn topic(c: &mut Criterion) {
    let mut rules = ChannelRules::default();
    for rule in [
        "trader-status",
        "positions",
        "risk-alerts",
        "market-data",
        "prices.*",
        "fx.*.spot",
    ] {
        rules.declare(rule).unwrap();
    }
    c.bench_function("topic/rules_allow_pattern", |b| {
        b.iter(|| black_box(rules.allows(black_box("fx.EURUSD.spot"))))
    });

    let config = EngineConfig {
        pin_threads: false,
        channels: rules,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config, Formats::default(), Arc::new(InProcess)).unwrap();
    for i in 0..1000 {
        engine.topic(&format!("prices.S{i}")).unwrap();
    }
    c.bench_function("topic/registry_resolve_existing", |b| {
        b.iter(|| black_box(engine.topic(black_box("prices.S500")).unwrap()))
    });
    let topic = engine.topic("market-data").unwrap();
    let data = Bytes::from_static(br#"{"symbol":"AAPL","price":189.42}"#);
    c.bench_function("topic/publish_no_subscribers", |b| {
        b.iter(|| black_box(engine.publish(&topic, None, data.clone()).unwrap()))
    });
    c.bench_function("topic/publish_keyed_no_subscribers", |b| {
        b.iter(|| {
            black_box(
                engine
                    .publish(&topic, Some("AAPL".into()), data.clone())
                    .unwrap(),
            )
        })
    });
    engine.shutdown();
    engine.join();
}

criterion_group!(benches, topic);
criterion_main!(benches);
