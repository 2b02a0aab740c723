//! Helpers for the USE fixture tests: the shared kubelet payloads, the rendered exposition read
//! back into a lookup table, independent readings of the raw payloads, and the real promtool.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kubesignal::exposition::{Entry, Format, Parser};

#[path = "fixtures.rs"]
mod shared_fixtures;

/// Where the shared real payloads live.
pub fn fixtures_dir() -> PathBuf {
    shared_fixtures::dir()
}

/// The text of a fixture, by path relative to the fixtures directory.
pub fn fixture(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// One rendered sample.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A rendered exposition, read back with the shared exposition parser.
#[derive(Debug)]
pub struct Rendered {
    pub series: Vec<Series>,
}

impl Rendered {
    pub fn parse(text: &str, format: Format) -> Rendered {
        let mut series = Vec::new();
        for entry in Parser::new(text, format) {
            let entry =
                entry.unwrap_or_else(|e| panic!("rendered text does not parse: {e}\n{text}"));
            if let Entry::Sample(s) = entry {
                series.push(Series {
                    name: s.name.to_string(),
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.value,
                });
            }
        }
        Rendered { series }
    }

    /// Every sample of `name` whose labels include `subset`.
    pub fn find(&self, name: &str, subset: &[(&str, &str)]) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| {
                s.name == name
                    && subset
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with labels including `subset`, or `None` when
    /// there is none; panics when several match.
    pub fn value(&self, name: &str, subset: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, subset);
        assert!(
            found.len() <= 1,
            "{name} {subset:?} matches {} series: {found:?}",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    /// Like [`Rendered::value`], failing when the sample is absent.
    pub fn expect(&self, name: &str, subset: &[(&str, &str)]) -> f64 {
        self.value(name, subset)
            .unwrap_or_else(|| panic!("missing series {name} {subset:?}"))
    }
}

/// Asserts `actual` equals `expected` up to floating-point rounding of the division.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: rendered {actual}, expected {expected}"
    );
}

/// A JSON number as f64, `None` when the field is absent or null.
pub fn num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

/// A Kubernetes quantity, read independently of the library (only the suffixes the fixtures use).
pub fn quantity(q: &str) -> f64 {
    let table: [(&str, f64); 5] = [
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("M", 1e6),
        ("m", 1e-3),
        ("k", 1e3),
    ];
    for (suffix, factor) in table {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().expect("quantity number") * factor;
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("unexpected quantity {q:?} in a fixture"))
}

/// Samples of `name` in a raw exposition text, read with plain string splitting: the label
/// pairs and the value (the token after the labels; a trailing timestamp is ignored).
pub fn raw_samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, after) = match rest.strip_prefix('{') {
            Some(inner) => {
                let close = inner.rfind('}').expect("closing brace");
                (&inner[..close], &inner[close + 1..])
            }
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let mut map = BTreeMap::new();
        // Fixture label values contain no commas or escaped quotes.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label pair");
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        let value = after
            .split_whitespace()
            .next()
            .expect("value")
            .parse()
            .expect("number");
        out.push((map, value));
    }
    out
}

/// Runs the real `promtool check metrics` on `text` and returns its exit code and output.
pub fn promtool_check_metrics(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `promtool` ({e}): this test needs the real promtool; install it with \
                 `apt-get install -y prometheus` or put Prometheus's promtool on PATH"
            )
        });
    let mut stdin = child.stdin.take().expect("promtool stdin");
    stdin.write_all(text.as_bytes()).expect("feed promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), report)
}
