//! Query entry points, options and errors.

use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, Function};
use regex::Regex;

use super::eval::{Evaluator, Val};
use super::storage::Storage;
use super::value::{Labels, Point, Sample, Series, Value};

/// Which Prometheus major version's behaviour to follow (`--semantics v2|v3` on the commands
/// that run the engine).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Semantics {
    /// Prometheus 2.x: range selectors and lookback are closed at both ends, `[t-range, t]`.
    #[default]
    V2,
    /// Prometheus 3: ranges and lookback are left-open, `(t-range, t]`, and regex `.` matches
    /// newlines.
    V3,
}

/// Engine settings. The defaults are Prometheus's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (5m).
    pub lookback: Duration,
    /// The most samples a query may hold in memory at once (50 million in Prometheus; the
    /// acceptance suite uses 10 000).
    pub max_samples: usize,
    /// How long a query may run.
    pub timeout: Duration,
    /// Boundary semantics.
    pub semantics: Semantics,
    /// Step of a subquery written without one (`[10m:]`): the rule or global evaluation interval.
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            semantics: Semantics::V2,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Why a query failed. The messages follow Prometheus's wording where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query is not valid PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated on this data (e.g. many-to-many matching).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its time limit.
    #[error("query timed out in expression evaluation")]
    Timeout,
}

/// Past this many distinct entries a cache starts over. Queries come from rule files,
/// templates and dashboards, so this only bounds memory against pathological callers.
const CACHE_LIMIT: usize = 10_000;

/// The PromQL engine: settings and caches shared by its clones; data comes from the [`Storage`]
/// each call is given.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
    // Rules and dashboards run the same expressions again and again; parsing compiles their
    // regex matchers, which would otherwise dominate a rule evaluation.
    parsed: Arc<Mutex<HashMap<String, Arc<Expr>>>>,
    // Prometheus 3 regexes (`.` matches a newline), compiled once per pattern.
    dot_all: Arc<Mutex<HashMap<String, Regex>>>,
}

impl Engine {
    /// An engine with the given settings.
    pub fn new(opts: EngineOptions) -> Self {
        Engine {
            opts,
            ..Engine::default()
        }
    }

    /// `query` parsed, from the engine's cache when it was seen before.
    pub fn parse_cached(&self, query: &str) -> Result<Arc<Expr>, EvalError> {
        if let Some(found) = self.parsed.lock().ok().and_then(|c| c.get(query).cloned()) {
            return Ok(found);
        }
        let parsed = Arc::new(Self::parse(query)?);
        if let Ok(mut cache) = self.parsed.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(query.to_string(), parsed.clone());
        }
        Ok(parsed)
    }

    /// How many parsed queries the cache holds.
    pub fn parsed_count(&self) -> usize {
        self.parsed.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// `pattern` compiled the Prometheus 3 way, anchored and with `.` matching a newline.
    pub(crate) fn dot_all_regex(&self, pattern: &str) -> Option<Regex> {
        if let Some(found) = self
            .dot_all
            .lock()
            .ok()
            .and_then(|c| c.get(pattern).cloned())
        {
            return Some(found);
        }
        let re = Regex::new(&format!("(?s)^(?:{pattern})$")).ok()?;
        if let Ok(mut cache) = self.dot_all.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(pattern.to_string(), re.clone());
        }
        Some(re)
    }

    /// The engine's settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses `query`, reporting errors as Prometheus's HTTP API does.
    pub fn parse(query: &str) -> Result<Expr, EvalError> {
        register_removed_functions();
        promql_parser::parser::parse(query).map_err(EvalError::Parse)
    }

    /// Evaluates `query` at `t` (milliseconds since the epoch).
    pub fn instant(&self, storage: &Storage, query: &str, t: i64) -> Result<Value, EvalError> {
        let expr = self.parse_cached(query)?;
        self.instant_expr(storage, &expr, t)
    }

    /// Evaluates an already parsed expression at `t`.
    pub fn instant_expr(&self, storage: &Storage, expr: &Expr, t: i64) -> Result<Value, EvalError> {
        let ev = Evaluator::new(storage, self, t, t);
        ev.begin_step()?;
        Ok(match ev.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar(Point { t, v }),
            Val::String(s) => Value::String(t, s),
            Val::Vector(v) => Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: s.labels,
                        t,
                        v: s.v,
                    })
                    .collect(),
            ),
            Val::Matrix(m) => Value::Matrix(m.series),
        })
    }

    /// Evaluates `query` at every step from `start` to `end` (milliseconds, inclusive).
    pub fn range(
        &self,
        storage: &Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let expr = self.parse_cached(query)?;
        self.range_expr(storage, &expr, start, end, step)
    }

    /// Evaluates an already parsed expression over a range of steps.
    pub fn range_expr(
        &self,
        storage: &Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, EvalError> {
        if step <= 0 {
            return Err(EvalError::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(EvalError::Execution(
                "end timestamp must not be before start time".into(),
            ));
        }
        let mut ev = Evaluator::new(storage, self, start, end);
        ev.step = step;
        let mut series: HashMap<Labels, Vec<Point>> = HashMap::new();
        let mut total = 0usize;
        let mut t = start;
        while t <= end {
            ev.begin_step()?;
            let added = match ev.eval(expr, t)? {
                Val::Scalar(v) => {
                    series
                        .entry(Labels::empty())
                        .or_default()
                        .push(Point { t, v });
                    1
                }
                Val::Vector(v) => {
                    let n = v.len();
                    for s in v {
                        series
                            .entry(s.labels)
                            .or_default()
                            .push(Point { t, v: s.v });
                    }
                    n
                }
                other => {
                    return Err(EvalError::Execution(format!(
                        "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                        match other {
                            Val::Matrix(_) => "range vector",
                            _ => "string",
                        }
                    )));
                }
            };
            total += added;
            if total > self.opts.max_samples {
                return Err(EvalError::TooManySamples);
            }
            t += step;
        }
        let mut out: Vec<Series> = series
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// `holt_winters` was renamed in Prometheus 3, and the parser only knows the new name; rules
/// written for Prometheus 2 still use the old one.
fn register_removed_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Registration only fails on a clash with a built-in, which would mean the parser
        // learned the name itself; either way the name then parses.
        let _ = promql_parser::parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::Labels;

    fn counter_store() -> Storage {
        let mut s = Storage::new();
        for pod in ["a", "b"] {
            let l = Labels::from_pairs([("__name__", "requests_total"), ("pod", pod)]);
            for i in 0..=60 {
                s.append(&l, i * 15_000, (i * 30) as f64);
            }
        }
        s
    }

    #[test]
    fn a_query_over_the_sample_limit_fails_with_prometheus_wording() {
        let s = counter_store();
        let e = Engine::new(EngineOptions {
            max_samples: 50,
            ..EngineOptions::default()
        });
        let err = e
            .instant(&s, "rate(requests_total[15m])", 900_000)
            .unwrap_err();
        assert_eq!(err, EvalError::TooManySamples);
        assert!(e.instant(&s, "rate(requests_total[5m])", 900_000).is_ok());
    }

    #[test]
    fn a_query_past_its_deadline_times_out() {
        let s = counter_store();
        let e = Engine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..EngineOptions::default()
        });
        assert_eq!(
            e.range(&s, "sum(rate(requests_total[5m]))", 0, 900_000, 15_000),
            Err(EvalError::Timeout)
        );
    }

    #[test]
    fn a_range_query_equals_instant_queries_at_each_step() {
        let s = counter_store();
        let e = Engine::default();
        let q = "sum by (pod) (rate(requests_total[2m]))";
        let range = e.range(&s, q, 300_000, 600_000, 60_000).unwrap();
        assert_eq!(range.len(), 2);
        for series in &range {
            assert_eq!(series.points.len(), 6);
            for p in &series.points {
                let Value::Vector(v) = e.instant(&s, q, p.t).unwrap() else {
                    panic!("instant query of a vector expression gave another type");
                };
                let same = v.iter().find(|x| x.labels == series.labels).unwrap();
                assert_eq!(same.v, p.v);
                assert!((p.v - 2.0).abs() < 1e-9, "30 per 15s is 2/s, got {}", p.v);
            }
        }
    }

    #[test]
    fn a_range_query_of_a_range_vector_is_refused() {
        let s = counter_store();
        let err = Engine::default()
            .range(&s, "requests_total[5m]", 0, 60_000, 15_000)
            .unwrap_err();
        assert!(err.to_string().contains("range query"), "{err}");
    }

    #[test]
    fn an_or_selector_matches_the_union_of_its_alternatives_and_nothing_else() {
        let mut s = Storage::new();
        for (name, job) in [("up", "a"), ("up", "b"), ("up", "c"), ("down", "a")] {
            s.append(
                &Labels::from_pairs([("__name__", name), ("job", job)]),
                0,
                1.0,
            );
        }
        let jobs = |q: &str| -> Vec<String> {
            let Value::Vector(v) = Engine::default().instant(&s, q, 0).unwrap() else {
                panic!("a selector gives a vector");
            };
            let mut out: Vec<String> = v.iter().map(|x| x.labels.to_string()).collect();
            out.sort();
            out
        };
        assert_eq!(
            jobs(r#"up{job="a" or job="b"}"#),
            [r#"up{job="a"}"#, r#"up{job="b"}"#]
        );
        assert_eq!(
            jobs(r#"{job="c" or __name__="down"}"#),
            [r#"down{job="a"}"#, r#"up{job="c"}"#]
        );
    }

    #[test]
    fn parse_errors_are_reported_as_such() {
        let err = Engine::default()
            .instant(&Storage::new(), "sum(", 0)
            .unwrap_err();
        assert!(matches!(err, EvalError::Parse(_)), "{err:?}");
    }

    #[test]
    fn holt_winters_from_prometheus_2_still_parses() {
        let s = counter_store();
        let v = Engine::default()
            .instant(&s, "holt_winters(requests_total[5m], 0.5, 0.5)", 900_000)
            .unwrap();
        assert!(matches!(v, Value::Vector(ref x) if x.len() == 2), "{v:?}");
    }
}
