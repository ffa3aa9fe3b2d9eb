//! A strict reader of the Prometheus text format, for tests: every family
//! announced once, before its samples; no series twice; no sample name
//! both with and without labels (so `sum()` never counts a total twice).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::{TestServer, WAIT};

/// A sample's labels, by name.
pub type Labels = BTreeMap<String, String>;

/// A parsed, checked exposition.
#[derive(Debug)]
pub struct Exposition {
    /// Family name → type.
    pub types: HashMap<String, String>,
    /// Every sample, in order: name, labels, value.
    pub samples: Vec<(String, Labels, f64)>,
    pub text: String,
}

impl Exposition {
    /// Parses `text`; panics naming the line that breaks a rule.
    pub fn parse(text: &str) -> Self {
        let mut types = HashMap::new();
        let mut helps = HashSet::new();
        let mut samples = Vec::new();
        let mut seen = HashSet::new();
        let mut labelled: HashMap<String, bool> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helps.insert(name.clone()), "HELP twice for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
                let old = types.insert(name.to_owned(), kind.to_owned());
                assert!(old.is_none(), "TYPE twice for {name}");
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let (name, labels, value) = sample(line);
            let family = family_of(&name, &types);
            assert!(
                types.contains_key(&family),
                "sample before its TYPE: {line}"
            );
            assert!(helps.contains(&family), "sample without HELP: {line}");
            let key = format!("{name}{labels:?}");
            assert!(seen.insert(key), "series twice: {line}");
            let has_labels = !labels.is_empty();
            let first = *labelled.entry(name.clone()).or_insert(has_labels);
            assert_eq!(first, has_labels, "{name} both with and without labels");
            samples.push((name, labels, value));
        }
        Self {
            types,
            samples,
            text: text.to_owned(),
        }
    }

    /// Every series of `name`.
    pub fn series(&self, name: &str) -> Vec<(&Labels, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// The sum over every series of `name` (0 for none).
    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|(_, v)| v).sum()
    }

    /// The value of the series of `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.series(name)
            .into_iter()
            .find(|(l, _)| **l == want)
            .map(|(_, v)| v)
    }

    /// As [`Exposition::value`], panicking when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and
/// `_count` samples belong to the histogram.
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|k| k == "histogram") {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

/// `name{a="x",b="y"} value`, label values unescaped.
fn sample(line: &str) -> (String, Labels, f64) {
    let mut labels = Labels::new();
    let (name, rest) = match line.find('{') {
        Some(open) => {
            let mut chars = line[open + 1..].char_indices();
            let mut label = String::new();
            let close = loop {
                let (at, c) = chars.next().expect("labels end");
                match c {
                    '}' => break open + 1 + at,
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("label value ends").1 {
                                '"' => break,
                                '\\' => match chars.next().expect("escape").1 {
                                    'n' => value.push('\n'),
                                    c @ ('\\' | '"') => value.push(c),
                                    c => panic!("bad escape \\{c} in {line}"),
                                },
                                c => value.push(c),
                            }
                        }
                        let old = labels.insert(std::mem::take(&mut label), value);
                        assert!(old.is_none(), "label twice in {line}");
                    }
                    c => label.push(c),
                }
            };
            (&line[..open], &line[close + 1..])
        }
        None => line.split_at(line.find(' ').expect("name value")),
    };
    let value = rest.trim();
    let value = if value == "+Inf" {
        f64::INFINITY
    } else {
        value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"))
    };
    (name.to_owned(), labels, value)
}

/// Scrapes `/metrics` (as the admin) until `check` holds: the exposition
/// is rendered at most once a second, and shards report asynchronously.
pub async fn eventually_metrics(
    server: &TestServer,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = Exposition::parse(&server.metrics().await);
        if check(&metrics) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
