//! The bounds on client input: the nesting-depth scan every command goes
//! through before it is parsed, its sibling over published `data` (depth and
//! keys given twice), and the whole parse of a publish body with its checks
//! (the `data` contract, scope, copy of the data).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast_engine::{QuotaLimits, TopicQuota};
use shardcast_server::auth::{Principal, Role, Roles, Scope};
use shardcast_server::input::{check_data, check_depth, MAX_DATA_DEPTH};
use shardcast_server::protocol::publish::{parse_body, PublishBody};

/// A quote-like JSON object of about `len` bytes.
fn market_data(len: usize) -> String {
    let mut out = String::from("{\"symbol\":\"AAPL\",\"levels\":[");
    let mut i = 0;
    while out.len() < len {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"px\":{}.{:02},\"qty\":{},\"venue\":\"X{}\"}}",
            180 + i % 7,
            i % 100,
            100 * (i % 13 + 1),
            i % 5
        ));
        i += 1;
    }
    out.push_str("]}");
    out
}

fn input(c: &mut Criterion) {
    let mut group = c.benchmark_group("input/check_depth");
    for len in [1024, 64 * 1024] {
        let data = market_data(len);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("{len}B"), |b| {
            b.iter(|| check_depth(black_box(data.as_bytes()), MAX_DATA_DEPTH))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("input/check_data");
    for len in [1024, 64 * 1024] {
        let data = market_data(len);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("{len}B"), |b| {
            b.iter(|| check_data(black_box(data.as_bytes()), MAX_DATA_DEPTH))
        });
    }
    // One flat object: 16 keys are compared pairwise, 17 and more hashed.
    for keys in [16, 17, 1000] {
        let fields: Vec<String> = (0..keys).map(|k| format!("\"field{k}\":{k}")).collect();
        let data = format!("{{{}}}", fields.join(","));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("object_of_{keys}_keys"), |b| {
            b.iter(|| check_data(black_box(data.as_bytes()), MAX_DATA_DEPTH))
        });
    }
    group.finish();

    let principal = Principal {
        name: "key:bench".into(),
        roles: Roles::NONE.with(Role::Publish),
        subscribe: Scope::All,
        publish: Scope::parse(&["market-data", "prices.*"]).unwrap(),
        expires_at: None,
        quota: Arc::new(TopicQuota::new(QuotaLimits::UNLIMITED)),
    };
    let body = format!(
        r#"{{"channel":"prices.AAPL","key":"AAPL","data":{}}}"#,
        market_data(1024)
    );
    c.bench_function("input/publish_body_1KiB_parse_and_admit", |b| {
        b.iter(|| {
            let PublishBody::Single(item) = parse_body(black_box(body.as_bytes()), 1000).unwrap()
            else {
                unreachable!("one message");
            };
            black_box(item.admit(&principal).unwrap())
        })
    });
}

criterion_group!(benches, input);
criterion_main!(benches);
