//! `shardcast-loadgen`: drives a running shardcast server over real sockets
//! and checks latency, drops and connection success against targets.
//!
//! Single-threaded by design (pin it to its own core with `taskset`): every
//! connection is a task on one current-thread runtime, frames are parsed in
//! place, and the report includes the loadgen's own CPU use so a reader can
//! tell when it, not the server, was the limit.

mod args;
mod burst;
mod event;
mod freshness;
mod net;
mod nodes;
mod progress;
mod publish;
mod refusal;
mod report;
mod series;
mod state;
mod sweep;
mod tasks;
mod window;
mod ws;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

pub use crate::args::{Args, Scenario, ViaArg};
use crate::burst::{Plan, Schedule};
use crate::freshness::Board;
use crate::nodes::{Nodes, Scheme};
use crate::publish::Via;
use crate::report::Targets;
use crate::state::{NodeTally, Phase, Shared};
use crate::tasks::{Target, TopicPicker};
use crate::window::{build_report, Window};

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardcast-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardcast-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // One url (--url) or several (--urls): nodes.rs.
    let urls = args.urls();
    let checked = nodes::check(&urls)?;
    if checked.scheme == Scheme::Wss || args.tls || args.tls_ca.is_some() {
        net::use_tls(args.tls_ca.as_deref()).context("--tls")?;
    }
    if args.deflate {
        ws::use_deflate();
    }
    let nodes = Nodes::resolve(urls, &checked.hosts).await?;
    let target = Rc::new(Target {
        nodes,
        api_key: args.api_key.clone(),
        prefix: args.prefix.clone(),
    });
    let topics = args.topics.max(1);
    let rate = args.publish_rate();
    if let Some(dir) = &args.report {
        anyhow::ensure!(
            !args.sweep,
            "--report describes one measured window; --sweep measures one per round (use --json)"
        );
        // Fail now rather than after the run.
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    }
    let shared = Rc::new(Shared::new(topics, rate, &args.prefix));
    if target.nodes.several() {
        let count = target.nodes.addrs().len();
        *shared.nodes.borrow_mut() = (0..count).map(|_| NodeTally::new()).collect();
    }
    let burst = (args.scenario == Scenario::Burst).then_some(Plan {
        schedule: Schedule {
            rate,
            every: args.burst_every,
            burst_for: args.burst_for,
            factor: args.burst_factor,
        },
        topics,
        keys: args.keys.max(1),
        payload: args.payload,
    });
    if let Some(plan) = burst {
        plan.schedule.check().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            args.via == ViaArg::Ws && !args.sweep,
            "scenario burst publishes over WebSocket and does not sweep"
        );
        *shared.board.borrow_mut() = Some(Board::new(args.connections, plan.keys));
    }
    let (groups, weights) = topic_groups(args.scenario, topics);
    let targets = Targets {
        p95_ms: args.p95_ms,
        p99_ms: args.p99_ms,
        max_drop_rate: args.max_drop_rate,
        min_connect_success: args.min_connect_success,
        max_queue_overflow: args.max_queue_overflow,
        exact_accounting: args.exact_accounting,
        max_latency_gap_ms: args.max_latency_gap_ms,
        max_freshness_ms: args.max_freshness_ms,
    };
    let started = Instant::now();
    let rss_before = report::rss_kib_of(&args.server_pid);
    if !args.quiet && args.progress_every > 0.0 {
        tokio::task::spawn_local(progress::run(
            Rc::clone(&shared),
            Rc::clone(&target),
            Duration::from_secs_f64(args.progress_every.max(0.1)),
            args.connections,
            args.server_pid.clone(),
        ));
    }

    // 1. Connect the subscribers at the connect rate.
    let sources = match args.source_ips {
        0 => args.connections.div_ceil(25_000).max(1),
        k => usize::from(k),
    };
    let reconnect = (args.scenario == Scenario::Reconnect)
        .then(|| Duration::from_secs_f64(args.reconnect_every));
    let connect_started = Instant::now();
    for id in 0..args.connections {
        let due = connect_started + Duration::from_secs_f64(id as f64 / args.connect_rate.max(1.0));
        tokio::time::sleep_until(due.into()).await;
        let subs = subscriptions(id, args.subs, &groups, &weights);
        let source =
            (sources > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (id % sources) as u8)));
        tokio::task::spawn_local(tasks::subscriber(
            Rc::clone(&shared),
            Rc::clone(&target),
            source,
            id,
            subs,
            reconnect,
        ));
    }
    let settle = Instant::now() + Duration::from_secs(10);
    while shared.connected.get() + shared.connect_failures.get() < args.connections as u64
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    shared.phase.set(Phase::WarmingUp);
    // Give the last subscribe acks a moment to land before publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_connected = report::rss_kib_of(&args.server_pid);
    // Server counters are cumulative: the report uses their change over this run.
    let server_before =
        report::server_figures(target.nodes.addrs(), &args.api_key, &args.prefix).await;

    // 2. Publishers.
    if let Some(plan) = burst {
        let (shared, target) = (Rc::clone(&shared), Rc::clone(&target));
        tokio::task::spawn_local(burst::publisher(shared, target, plan));
    } else if rate > 0.0 {
        let via = match args.via {
            ViaArg::Ws => Via::WebSocket,
            ViaArg::Http => Via::Http,
        };
        let publishers = args.publishers.max(1);
        for p in 0..publishers {
            let picker = TopicPicker::new(groups.clone(), &weights, p);
            tokio::task::spawn_local(publish::publisher(
                Rc::clone(&shared),
                Rc::clone(&target),
                via,
                1.0 / publishers as f64,
                args.payload,
                picker,
            ));
        }
    }

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;

    // 3. Sweep: rounds of increasing rate on the same connections.
    if args.sweep {
        let (code, summary) = sweep::sweep(&args, &shared, &target, &targets, &mut ctrl_c).await;
        let _ = shared.stop.send(true);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(code);
    }

    // 4. Warm up, then measure.
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs_f64(args.warmup)) => {}
        _ = &mut ctrl_c => interrupted = true,
    }
    let mut window = Window::open(&shared, &args.server_pid, args.report.is_some());
    if !interrupted {
        let length = Duration::from_secs_f64(args.duration);
        interrupted = window.measure(&shared, length, &mut ctrl_c).await;
    }
    let mut closed = window.close(&shared, &args.server_pid);
    let hlog = closed.series.hlog.take();
    // Queue depth while traffic still flows.
    let queues = report::server_figures(target.nodes.addrs(), &args.api_key, &args.prefix).await;
    // The last measured burst is settled when the next one begins.
    if let Some(plan) = burst.filter(|_| !interrupted) {
        settle_bursts(&shared, plan.schedule.every).await;
    }

    // 5. Stop publishing, let in-flight messages land, then ask the server.
    shared.rate.set(0.0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    drain(&shared).await;
    let server_figures = match (
        server_before,
        report::server_figures(target.nodes.addrs(), &args.api_key, &args.prefix).await,
    ) {
        (Some(before), Some(after)) => Some(after.since(&before)),
        (_, after) => after,
    };
    let rss_end = report::rss_kib_of(&args.server_pid);
    let _ = shared.stop.send(true);

    let mut report = build_report(
        &args,
        &target.nodes,
        &shared,
        &closed,
        server_figures,
        connect_seconds,
        rss_before,
        rss_connected,
        rss_end,
        started,
        interrupted,
    );
    if let (Some(q), Some(server)) = (queues, report.get_mut("server").filter(|s| s.is_object())) {
        server["queued_at_window_end"] = q.queued_frames.into();
        server["max_queue_depth_at_window_end"] = q.max_queue_depth.into();
    }
    let checks = report::checks(&report, &targets);
    let json = serde_json::to_string_pretty(&report::with_checks(&report, &checks))?;
    if args.json {
        println!("{json}");
    } else {
        report::print(&report, &checks);
    }
    if let Some(dir) = &args.report {
        report::write_dir(dir, &report, &checks, &json, hlog.as_deref())
            .with_context(|| format!("cannot write the report to {}", dir.display()))?;
        eprintln!("report written to {}", dir.join("index.html").display());
    }
    let ok = checks.iter().all(|c| c.ok);
    Ok(if interrupted {
        ExitCode::from(130)
    } else if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Topic groups and their weights for a scenario.
fn topic_groups(scenario: Scenario, topics: usize) -> (Vec<Vec<usize>>, Vec<usize>) {
    if scenario == Scenario::Mixed && topics >= 3 {
        let market = (topics / 2).max(1);
        let trading = ((topics * 3) / 10).max(1);
        let all: Vec<usize> = (0..topics).collect();
        let (m, rest) = all.split_at(market);
        let (t, r) = rest.split_at(trading.min(rest.len() - 1));
        (vec![m.to_vec(), t.to_vec(), r.to_vec()], vec![5, 3, 2])
    } else {
        (vec![(0..topics).collect()], vec![1])
    }
}

/// The topics connection `id` subscribes to: `subs` of them, spread evenly.
fn subscriptions(id: usize, subs: usize, groups: &[Vec<usize>], weights: &[usize]) -> Vec<usize> {
    let all: Vec<usize> = if groups.len() == 1 {
        groups[0].clone()
    } else {
        // Pick groups by weight, then topics round-robin within each group.
        let wheel: Vec<usize> = weights
            .iter()
            .enumerate()
            .flat_map(|(g, &w)| std::iter::repeat_n(g, w))
            .collect();
        let mut picked = Vec::new();
        for k in 0..subs {
            let group = &groups[wheel[(id + k) % wheel.len()]];
            let topic = group[(id * subs + k) % group.len()];
            if !picked.contains(&topic) {
                picked.push(topic);
            }
        }
        return picked;
    };
    let n = all.len();
    let subs = subs.min(n);
    (0..subs).map(|k| all[(id * subs + k) % n]).collect()
}

/// Waits until every measured burst is settled, fresh or stale: at the
/// latest when the next burst begins (at most `every` seconds and a margin).
async fn settle_bursts(shared: &Shared, every: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(every + 1.0);
    let unsettled = || shared.board.borrow().as_ref().map_or(0, Board::unsettled);
    while unsettled() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until deliveries stop arriving for 300 ms (at most 5 s).
async fn drain(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = shared.delivered.get();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.delivered.get();
        if now == last || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}
