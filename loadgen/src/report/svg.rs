//! Line charts as inline SVG for the `--report` page: no script, no font or
//! library to fetch, so the page reads offline. Pure: figures in, markup out.
//!
//! Each line is one `<polyline>` per unbroken run of values (a missing value
//! breaks it), with a `<circle>` on every point when there are few enough
//! to see; the y axis starts at 0 and ends at a round number.

use std::fmt::Write as _;

use super::html::esc;

/// One line of a chart: a value per x, `None` where there is none.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<Option<f64>>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 34.0;
/// Points marked with a circle up to this many per line.
const MAX_MARKED: usize = 120;

/// A chart of `lines` over `xs` (seconds), the y axis in `unit`.
pub fn chart(title: &str, unit: &str, xs: &[f64], lines: &[Line<'_>]) -> String {
    let finite = |v: &Option<f64>| v.filter(|v| v.is_finite());
    let (y_max, divisions) = nice_ceiling(
        lines
            .iter()
            .flat_map(|l| l.values.iter().filter_map(finite))
            .fold(0.0, f64::max),
    );
    // Whole seconds: the window's length, not a round number past it.
    let x_max = xs.iter().copied().fold(1.0, f64::max).ceil();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / x_max * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{}</title>"#,
        esc(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" class="title">{} ({})</text>"#,
        esc(title),
        esc(unit)
    );
    for i in 0..=divisions {
        let y = y_max * f64::from(i) / f64::from(divisions);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            py(y),
            py(y),
            LEFT - 6.0,
            py(y) + 4.0,
            number(y)
        );
    }
    for i in 0..=5 {
        let x = x_max * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}s</text>"#,
            px(x),
            HEIGHT - BOTTOM + 16.0,
            number(x)
        );
    }
    for (n, line) in lines.iter().enumerate() {
        let at = |(x, v): (&f64, &Option<f64>)| finite(v).map(|y| (px(*x), py(y)));
        let points: Vec<Option<(f64, f64)>> = xs.iter().zip(&line.values).map(at).collect();
        for run in points.split(Option::is_none).filter(|r| !r.is_empty()) {
            let coords: Vec<String> = run
                .iter()
                .flatten()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                esc(line.color),
                coords.join(" ")
            );
        }
        if points.len() <= MAX_MARKED {
            for (x, y) in points.iter().flatten() {
                let _ = write!(
                    svg,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{}"/>"#,
                    esc(line.color)
                );
            }
        }
        let lx = WIDTH - RIGHT - 110.0 * (lines.len() - n) as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="9" width="10" height="10" fill="{}"/><text x="{:.1}" y="18" class="tick">{}</text>"#,
            esc(line.color),
            lx + 14.0,
            esc(line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `max` (1 for nothing),
/// and how many grid steps divide it into round numbers.
fn nice_ceiling(max: f64) -> (f64, u32) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 5);
    }
    let scale = 10f64.powf(max.log10().floor());
    [(1.0, 5), (2.0, 4), (2.5, 5), (5.0, 5), (10.0, 5)]
        .into_iter()
        .map(|(m, steps)| (m * scale, steps))
        .find(|&(v, _)| v >= max)
        .unwrap_or((10.0 * scale, 5))
}

/// A tick label: short, without trailing zeros.
fn number(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_at_round_numbers() {
        assert_eq!(nice_ceiling(0.0), (1.0, 5));
        assert_eq!(nice_ceiling(f64::NAN), (1.0, 5));
        assert_eq!(nice_ceiling(0.37), (0.5, 5));
        assert_eq!(nice_ceiling(1.2), (2.0, 4));
        assert_eq!(nice_ceiling(21.0), (25.0, 5));
        assert_eq!(nice_ceiling(100.0), (100.0, 5));
        assert_eq!(
            (number(12_500.0), number(0.25), number(3.0e6)),
            ("12.5k".into(), "0.25".into(), "3M".into())
        );
    }

    #[test]
    fn a_missing_value_breaks_the_line_and_every_point_is_drawn() {
        let line = Line {
            name: "p99",
            color: "#c00",
            values: vec![Some(1.0), Some(2.0), None, Some(4.0)],
        };
        let svg = chart("latency <ms>", "ms", &[1.0, 2.0, 3.0, 4.0], &[line]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("latency &lt;ms&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
