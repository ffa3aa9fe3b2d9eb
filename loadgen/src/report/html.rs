//! `index.html` of the `--report` directory: one self-contained page (inline
//! CSS and SVG, no script, nothing fetched) with the verdict, the targets
//! table, per-second plots of the measured window, the report as text and
//! the run's parameters. Built from the report's JSON alone.

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::{chart, Line};
use super::{print, Check};

const STYLE: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:800px;color:#222}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse}\
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}\
.pass{color:#070;font-weight:600}.fail{color:#b00;font-weight:600}\
pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:12px}\
.chart{width:100%;height:auto;margin:8px 0}.chart .grid{stroke:#e4e4e4}\
.chart .tick{font-size:11px;fill:#555}.chart .title{font-size:13px;fill:#222}\
.none{color:#777;font-style:italic}";

/// The page for `report` and its `checks`.
pub fn page(report: &Value, checks: &[Check]) -> String {
    let passed = checks.iter().all(|c| c.ok);
    let scenario = esc(report["scenario"].as_str().unwrap_or("?"));
    let overall = verdict(passed);
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>shardcast-loadgen: {scenario} {}</title><style>{STYLE}</style></head><body>\n\
         <h1>shardcast-loadgen: scenario {scenario}, {overall}</h1>\n<p>{} s measured, {} latency samples{}.</p>\n",
        if passed { "PASS" } else { "FAIL" },
        report["measured_seconds"],
        report["latency_ms"]["samples"],
        if report["interrupted"] == true { "; interrupted" } else { "" },
    );

    html.push_str(
        "<h2>Targets</h2>\n<table><tr><th>check</th><th>value</th><th>target</th><th></th></tr>\n",
    );
    for c in checks {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.name),
            esc(&c.value),
            esc(&c.target),
            verdict(c.ok)
        );
    }
    html.push_str("</table>\n");

    html.push_str("<h2>Over the measured window, per second</h2>\n");
    plots(&mut html, &report["series"]);

    html.push_str("<h2>Report</h2>\n<pre>");
    for line in print::lines(report, &[]) {
        html.push_str(&esc(&line));
        html.push('\n');
    }
    html.push_str("</pre>\n<h2>Parameters</h2>\n<table>\n");
    let _ = writeln!(html, "<tr><td>scenario</td><td>{scenario}</td></tr>");
    if let Some(config) = report["config"].as_object() {
        for (name, value) in config {
            let value = match value {
                Value::String(s) => esc(s),
                Value::Null => "-".into(),
                v => esc(&v.to_string()),
            };
            let _ = writeln!(html, "<tr><td>{}</td><td>{value}</td></tr>", esc(name));
        }
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

/// The plots of the report's `series`.
fn plots(html: &mut String, series: &Value) {
    let column = |name: &str, scale: f64| -> Vec<Option<f64>> {
        series[name]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().map(|v| v * scale)).collect())
            .unwrap_or_default()
    };
    let xs: Vec<f64> = column("t", 1.0)
        .into_iter()
        .map(|t| t.unwrap_or(0.0))
        .collect();
    if xs.is_empty() {
        html.push_str("<p class=\"none\">Nothing measured.</p>\n");
        return;
    }
    const NO_SAMPLES: &str = "no latency samples (nothing was delivered)";
    const NO_PID: &str = "not measured (pass --server-pid with the server's pid)";
    // Title, unit, what to say when there is no value, and the lines:
    // (series column, legend, colour, scale).
    type Spec<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str, &'a str, f64)],
    );
    let charts: [Spec<'_>; 6] = [
        (
            "latency, publish to receipt",
            "ms",
            NO_SAMPLES,
            &[
                ("p50_ms", "p50", "#1f77b4", 1.0),
                ("p99_ms", "p99", "#ff7f0e", 1.0),
                ("p999_ms", "p99.9", "#d62728", 1.0),
            ],
        ),
        (
            "deliveries",
            "per second",
            "",
            &[("deliveries_per_second", "delivered", "#2ca02c", 1.0)],
        ),
        (
            "drops: messages missing from clients' sequences",
            "per second",
            "",
            &[("gaps_per_second", "drops", "#d62728", 1.0)],
        ),
        (
            "subscriber connections open",
            "connections",
            "",
            &[("connections", "open", "#9467bd", 1.0)],
        ),
        (
            "server CPU",
            "% of a core",
            NO_PID,
            &[("server_cpu_percent", "cpu", "#8c564b", 1.0)],
        ),
        (
            "server resident memory",
            "MiB",
            NO_PID,
            &[("server_rss_kib", "rss", "#17becf", 1.0 / 1024.0)],
        ),
    ];
    for (title, unit, missing, specs) in charts {
        let lines: Vec<Line<'_>> = specs
            .iter()
            .map(|&(col, name, color, scale)| Line {
                name,
                color,
                values: column(col, scale),
            })
            .collect();
        if lines.iter().all(|l| l.values.iter().all(Option::is_none)) {
            let _ = writeln!(html, "<p class=\"none\">{}: {missing}.</p>", esc(title));
            continue;
        }
        html.push_str(&chart(title, unit, &xs, &lines));
        html.push('\n');
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "<span class=\"pass\">PASS</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    }
}

/// `text` safe inside HTML or SVG text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
