//! The per-node breakdown of a run with several `--urls` (nodes.rs): the
//! latency of the subscribers on each node, and the *cross-node overhead*,
//! what being subscribed on a node other than the publishing one costs.
//!
//! 1. The subscribers on each node record their latency over the measured
//!    window in the node's own histogram (`NodeTally`, state.rs). Node 0 is
//!    the publishing node; urls naming one address are one node.
//! 2. The overhead of a quantile is that quantile over the subscribers on
//!    every other node — their histograms added into one, so it is a
//!    quantile of those subscribers together, not an average of the nodes'
//!    quantiles — minus the same quantile over the publishing node's
//!    subscribers; for p50 and p99, in ms, signed.
//! 3. It is unknown (`null`) when either side has no sample, as when every
//!    url names the publishing node.
//!
//! Sans-IO: figures in, the report's JSON out; print.rs says it as text.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::f;
use crate::state::{new_histogram, quantile_ms};

/// What the subscribers on one node measured.
#[derive(Debug)]
pub struct NodeFigures<'a> {
    /// The url naming the node (the first given that resolved to it).
    pub url: &'a str,
    /// Subscriber connections on it whose subscription was acknowledged.
    pub subscribers: u64,
    /// Events delivered to them over the run.
    pub delivered: u64,
    /// Their latency in the measured window, µs.
    pub latency: &'a Histogram<u64>,
}

/// Cross-node overhead, ms (step 2); `None` where unknown (step 3).
#[derive(Debug, PartialEq)]
pub struct Overhead {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The overhead of reaching subscribers on other nodes than the first.
pub fn overhead(nodes: &[NodeFigures<'_>]) -> Overhead {
    let Some((publishing, others)) = nodes.split_first() else {
        return Overhead {
            p50_ms: None,
            p99_ms: None,
        };
    };
    let mut elsewhere = new_histogram();
    for node in others {
        // Same bounds on both sides: adding cannot overflow their range.
        let _ = elsewhere.add(node.latency);
    }
    let here = publishing.latency;
    let known = !here.is_empty() && !elsewhere.is_empty();
    // In whole µs, then ms: no rounding error of its own.
    let gap = |q: f64| {
        let us = elsewhere.value_at_quantile(q) as i64 - here.value_at_quantile(q) as i64;
        known.then_some(us as f64 / 1000.0)
    };
    Overhead {
        p50_ms: gap(0.5),
        p99_ms: gap(0.99),
    }
}

/// The report's `nodes` (the publishing node first) and
/// `cross_node_overhead_ms`.
pub fn to_json(nodes: &[NodeFigures<'_>]) -> (Value, Value) {
    let list = nodes
        .iter()
        .map(|node| {
            let h = node.latency;
            // A node without samples has no percentiles (null), not zeros.
            let q = |q: f64| (!h.is_empty()).then(|| quantile_ms(h, q));
            json!({
                "url": node.url, "subscribers": node.subscribers, "delivered": node.delivered,
                "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999),
            })
        })
        .collect();
    let o = overhead(nodes);
    (list, json!({"p50": o.p50_ms, "p99": o.p99_ms}))
}

/// The breakdown as lines of the text report; none without `nodes`.
pub fn lines(report: &Value) -> Vec<String> {
    let Some(nodes) = report["nodes"].as_array() else {
        return Vec::new();
    };
    let ms = |v: &Value| {
        let v = f(v);
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    let mut out: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{:<13}{}{}: {} subscribers, {} delivered; p50 {}  p99 {}  p99.9 {} ms",
                format!("node {}", i + 1),
                n["url"].as_str().unwrap_or("?"),
                if i == 0 { " (publishing)" } else { "" },
                n["subscribers"],
                n["delivered"],
                ms(&n["p50_ms"]),
                ms(&n["p99_ms"]),
                ms(&n["p999_ms"])
            )
        })
        .collect();
    let o = &report["cross_node_overhead_ms"];
    let signed = |v: &Value| v.as_f64().map(|v| format!("{v:+.3} ms"));
    out.push(match (signed(&o["p50"]), signed(&o["p99"])) {
        (Some(p50), Some(p99)) => format!(
            "cross-node   p50 {p50}, p99 {p99} (subscribers on other nodes minus those on the publishing node)"
        ),
        _ if nodes.len() < 2 => "cross-node   - (every url names the publishing node)".to_owned(),
        _ => "cross-node   - (no samples on one side)".to_owned(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram of `count` samples of each `(micros, count)`.
    fn histogram(samples: &[(u64, u64)]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(micros, count) in samples {
            h.record_n(micros, count).unwrap();
        }
        h
    }

    fn node<'a>(url: &'a str, latency: &'a Histogram<u64>) -> NodeFigures<'a> {
        NodeFigures {
            url,
            subscribers: 10,
            delivered: latency.len(),
            latency,
        }
    }

    #[test]
    fn overhead_is_the_other_nodes_together_minus_the_publishing_node() {
        // Below 2,048 µs the histogram holds every value exactly.
        let publishing = histogram(&[(1000, 100)]);
        let b = histogram(&[(1200, 199)]);
        let c = histogram(&[(1800, 1)]);
        let nodes = [
            node("ws://a", &publishing),
            node("ws://b", &b),
            node("ws://c", &c),
        ];
        // b and c together: 200 samples, 199 of them 1,200 µs, so p99 is
        // 1,200 µs; c's own p99 (1,800) must not weigh in as a node would.
        let o = overhead(&nodes);
        assert_eq!(o.p50_ms, Some(0.2));
        assert_eq!(o.p99_ms, Some(0.2));
        // Signed: a faster node elsewhere is a negative overhead.
        let fast = histogram(&[(700, 10)]);
        let o = overhead(&[node("ws://a", &publishing), node("ws://b", &fast)]);
        assert_eq!((o.p50_ms, o.p99_ms), (Some(-0.3), Some(-0.3)));
    }

    #[test]
    fn the_p99_overhead_follows_the_tails() {
        let publishing = histogram(&[(1000, 95), (1500, 5)]);
        let other = histogram(&[(1100, 90), (1900, 10)]);
        let o = overhead(&[node("ws://a", &publishing), node("ws://b", &other)]);
        assert_eq!(o.p50_ms, Some(0.1));
        assert_eq!(o.p99_ms, Some(0.4));
    }

    #[test]
    fn without_samples_on_one_side_the_overhead_is_unknown() {
        let publishing = histogram(&[(1000, 10)]);
        let empty = new_histogram();
        let unknown = Overhead {
            p50_ms: None,
            p99_ms: None,
        };
        assert_eq!(overhead(&[node("ws://a", &publishing)]), unknown);
        assert_eq!(
            overhead(&[node("ws://a", &publishing), node("ws://b", &empty)]),
            unknown
        );
        assert_eq!(
            overhead(&[node("ws://a", &empty), node("ws://b", &publishing)]),
            unknown
        );
        assert_eq!(overhead(&[]), unknown);
    }

    #[test]
    fn the_json_and_the_text_say_the_same() {
        let publishing = histogram(&[(1000, 100)]);
        let other = histogram(&[(1500, 100)]);
        let empty = new_histogram();
        let nodes = [
            node("ws://a:1", &publishing),
            node("ws://b:2", &other),
            node("ws://c:3", &empty),
        ];
        let (list, overhead) = to_json(&nodes);
        assert_eq!(
            list[1],
            json!({"url": "ws://b:2", "subscribers": 10, "delivered": 100,
                   "p50_ms": 1.5, "p99_ms": 1.5, "p999_ms": 1.5})
        );
        assert_eq!(list[2]["p99_ms"], Value::Null);
        assert_eq!(overhead, json!({"p50": 0.5, "p99": 0.5}));
        let report = json!({"nodes": list, "cross_node_overhead_ms": overhead});
        let text = lines(&report);
        assert_eq!(text.len(), 4);
        assert_eq!(
            text[0],
            "node 1       ws://a:1 (publishing): 10 subscribers, 100 delivered; p50 1.000  p99 1.000  p99.9 1.000 ms"
        );
        assert!(text[2].ends_with("p50 -  p99 -  p99.9 - ms"), "{}", text[2]);
        assert!(text[3].starts_with("cross-node   p50 +0.500 ms, p99 +0.500 ms"));
        assert!(lines(&json!({})).is_empty(), "one url: no breakdown");
    }
}
