//! `--sweep`: rounds of increasing publish rate on the same connections,
//! until a target breaks; the highest rate that held is the answer.

use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::report::{self, Targets};
use crate::state::{Phase, Shared};
use crate::tasks::Target;
use crate::window::Window;
use crate::Args;

/// Rounds of increasing rate; returns the exit code and a JSON summary.
pub async fn sweep(
    args: &Args,
    shared: &Rc<Shared>,
    target: &Target,
    targets: &Targets,
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
) -> (ExitCode, Value) {
    let mut rate = args.rate;
    let mut best: Option<f64> = None;
    let mut rounds = Vec::new();
    loop {
        shared.rate.set(rate);
        shared.phase.set(Phase::WarmingUp);
        tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(1.0))).await;
        let before = report::server_figures(target.nodes.addrs(), &args.api_key, &args.prefix)
            .await
            .unwrap_or_default();
        let expected_before = shared.expected();
        let delivered_before = shared.delivered.get();
        let mut window = Window::open(shared, &args.server_pid, false);
        let length = Duration::from_secs_f64(args.duration);
        let stop = window.measure(shared, length, ctrl_c).await;
        let closed = window.close(shared, &args.server_pid);
        let after = report::server_figures(target.nodes.addrs(), &args.api_key, &args.prefix)
            .await
            .unwrap_or_default();
        let expected = shared.expected() - expected_before;
        let delivered = shared.delivered.get() - delivered_before;
        // In-flight messages at the window's edges are not drops: use the server's count.
        let dropped = after.dropped - before.dropped;
        let drop_rate = if expected == 0 {
            0.0
        } else {
            dropped as f64 / expected as f64
        };
        let h = &closed.latency;
        let q = |q: f64| {
            if h.is_empty() {
                f64::NAN
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let overflow = (after.outbox_full + after.shard_overflow)
            - (before.outbox_full + before.shard_overflow);
        let ok = q(0.95) <= targets.p95_ms
            && targets.p99_ms.is_none_or(|p99| q(0.99) <= p99)
            && drop_rate <= targets.max_drop_rate
            && overflow <= targets.max_queue_overflow
            && shared.publish_lag.get() == 0;
        let line = json!({
            "rate": rate, "deliveries_per_second": delivered as f64 / closed.seconds,
            "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": h.max() as f64 / 1000.0,
            "drop_rate": drop_rate, "server_dropped": dropped,
            "server_cpu_percent": closed.server_cpu.map(|c| c / closed.seconds * 100.0),
            "loadgen_cpu_percent": closed.own_cpu.map(|c| c / closed.seconds * 100.0),
            "publisher_lag": shared.publish_lag.get(), "ok": ok,
        });
        if !args.json {
            println!(
                "rate {:>10.0}/s  deliveries {:>10.0}/s  p50 {:>8.3}  p95 {:>8.3}  p99 {:>8.3} ms  drops {:.4}%  server cpu {}  loadgen cpu {}  {}",
                rate, line["deliveries_per_second"].as_f64().unwrap_or(0.0), q(0.5), q(0.95), q(0.99), drop_rate * 100.0,
                line["server_cpu_percent"].as_f64().map_or("-".into(), |c| format!("{c:.0}%")),
                line["loadgen_cpu_percent"].as_f64().map_or("-".into(), |c| format!("{c:.0}%")),
                if ok { "held" } else { "BROKE" }
            );
        }
        rounds.push(line);
        if !ok || stop {
            break;
        }
        best = Some(rate);
        rate *= args.sweep_factor;
    }
    if !args.json {
        match best {
            Some(r) => println!("highest rate that held: {r:.0} msgs/s"),
            None => println!("no rate held the targets"),
        }
    }
    let code = if best.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    (code, json!({"highest_rate_held": best, "rounds": rounds}))
}
