//! Reading the agent's /metrics output in tests, through the project's own exposition parser.

#![allow(dead_code)]

use std::collections::BTreeMap;

use kubesignal::exposition::{Entry, Format, parse_all};

/// One sample with owned labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// All samples of a scrape.
#[derive(Clone, Debug, Default)]
pub struct Scrape(pub Vec<Series>);

impl Scrape {
    /// Parses Prometheus text (or OpenMetrics when `openmetrics`).
    pub fn parse(text: &str, openmetrics: bool) -> Scrape {
        let format = if openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        };
        let entries = parse_all(text, format)
            .unwrap_or_else(|e| panic!("agent output does not parse: {e}\n{text}"));
        Scrape(
            entries
                .into_iter()
                .filter_map(|e| match e {
                    Entry::Sample(s) => Some(Series {
                        name: s.name.to_string(),
                        labels: s
                            .labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        value: s.value,
                    }),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Samples of `name` whose labels include every pair of `matchers`.
    pub fn find(&self, name: &str, matchers: &[(&str, &str)]) -> Vec<&Series> {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && matchers
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The single value of `name` with `matchers`; panics when there is none or several.
    pub fn value(&self, name: &str, matchers: &[(&str, &str)]) -> f64 {
        let found = self.find(name, matchers);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {name}{matchers:?}, found {}: {found:?}",
            found.len()
        );
        found[0].value
    }

    /// Whether any sample of `name` with `matchers` exists.
    pub fn has(&self, name: &str, matchers: &[(&str, &str)]) -> bool {
        !self.find(name, matchers).is_empty()
    }
}

/// Asserts two floats are equal within a relative 1e-9 (values go through text and back).
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected}"
    );
}

/// Parses a Kubernetes quantity (`100m`, `50Mi`, `5M`, `2`, `1.5Gi`) — written independently of
/// the agent's parser so the tests check it.
pub fn quantity(text: &str) -> f64 {
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().unwrap() * factor;
        }
    }
    text.parse().unwrap()
}

/// Asserts every family in an exposition (`# TYPE` lines) is listed in `docs/metrics.md`.
#[track_caller]
pub fn assert_documented(exposition: &str) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let missing: Vec<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}
