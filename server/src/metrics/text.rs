//! The Prometheus text format (version 0.0.4): families and samples.
//!
//! Owned by the one render that uses it. Each family is announced once
//! (`# HELP`, `# TYPE`) and its samples follow it; label values are escaped
//! as the format requires, so a channel name with quotes, backslashes or
//! line feeds cannot break the exposition.

use std::fmt::{Display, Write as _};

/// What a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exposition being written.
#[derive(Debug, Default)]
pub(super) struct Exposition {
    out: String,
    /// Families announced so far: each once.
    #[cfg(debug_assertions)]
    announced: std::collections::HashSet<String>,
}

impl Exposition {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Announces the family `name`: its help text and type.
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        #[cfg(debug_assertions)]
        assert!(
            self.announced.insert(name.to_owned()),
            "family {name} announced twice"
        );
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// A family of one unlabelled sample.
    pub(super) fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// One sample of the family last announced (`name` may carry a
    /// histogram's `_bucket`, `_sum` or `_count` suffix).
    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", LabelValue(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format writes it: `\`, `"` and line feeds
/// escaped (channel names may hold quotes and backslashes).
struct LabelValue<'a>(&'a str);

impl Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_quotes_backslashes_and_line_feeds() {
        let shown = LabelValue(r#"bars:{"s":"A\B"}"#).to_string();
        assert_eq!(shown, r#"bars:{\"s\":\"A\\B\"}"#);
        assert_eq!(LabelValue("a\nb").to_string(), "a\\nb");
        assert_eq!(LabelValue("é").to_string(), "é");
    }

    #[test]
    fn families_are_announced_before_their_samples() {
        let mut out = Exposition::default();
        out.family("x_total", Kind::Counter, "Xs.");
        out.sample("x_total", &[("a", "1"), ("b", "q\"")], 3);
        out.single("y", Kind::Gauge, "Y.", 0.5);
        assert_eq!(
            out.finish(),
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\"} 3\n\
             # HELP y Y.\n# TYPE y gauge\ny 0.5\n"
        );
    }
}
