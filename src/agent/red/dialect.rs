//! Normalization: turns one target's exposition into RED observations (route, method, code,
//! error or not, and a counter value or a histogram), whatever dialect the application speaks.
//!
//! Each mapping rule names a metric; a sample is matched by its exact name, so one hash lookup
//! per sample decides whether it matters. For every protocol (`http`, `grpc`, or a rule's own) only
//! the first dialect in rule order that has samples in the scrape is used, so an application
//! exposing two HTTP dialects is not counted twice.

use std::collections::HashMap;

use crate::exposition::{Entry, Format, ParseError, Parser};

use super::config::{DurationUnit, MappingRule, RuleKind};

/// Why a scrape body gave no observations.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The body is not valid exposition text; the whole scrape is discarded.
    #[error("parsing the exposition: {0}")]
    Parse(#[from] ParseError),
    /// The body has more samples than the per-target limit.
    #[error("more than {limit} samples")]
    SampleLimit {
        /// The limit.
        limit: usize,
    },
    /// A matched sample cannot be used (for example a bucket bound that is not a number).
    #[error("metric {metric}: {message}")]
    Invalid {
        /// The sample's name.
        metric: String,
        /// What is wrong.
        message: String,
    },
}

/// The RED labels of one observation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedLabels {
    /// Route (handler, URI template, gRPC `/service/method`).
    pub route: String,
    /// Method (HTTP method, gRPC call type).
    pub method: String,
    /// Response code (HTTP status, gRPC code); empty when the source does not say.
    pub code: String,
}

/// One cumulative histogram (or summary) as read from a target, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramObs {
    /// Finite upper bounds, ascending (the `+Inf` bucket is implicit). Empty for a summary.
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound plus the `+Inf` bucket last.
    pub cumulative: Vec<f64>,
    /// Sum of observed durations in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
    /// Whether its count also gives requests (its dialect has no requests counter here).
    pub feeds_requests: bool,
}

/// A value read for one source series.
#[derive(Clone, Debug, PartialEq)]
pub enum ObservedValue {
    /// A requests counter.
    Counter(f64),
    /// A duration histogram or summary.
    Histogram(HistogramObs),
}

/// One source series of one target, mapped onto the RED schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Identity of the source series inside its target: metric name and sorted labels.
    pub series: String,
    /// Route, method and code.
    pub labels: RedLabels,
    /// Whether its requests are errors.
    pub error: bool,
    /// Its current value.
    pub value: ObservedValue,
}

/// What one scrape body gave.
#[derive(Clone, Debug, Default)]
pub struct Extracted {
    /// Samples in the body (all of them, matched or not).
    pub samples: usize,
    /// Observations of the matched series.
    pub observations: Vec<Observation>,
    /// The target's `process_start_time_seconds`, when it exposes one: a change means the
    /// process restarted, even when its counters did not drop below their last values.
    pub process_start: Option<f64>,
}

/// The conventional gauge of client libraries giving the process start time.
pub const PROCESS_START: &str = "process_start_time_seconds";

#[derive(Clone, Copy, Debug)]
enum Part {
    Counter,
    Bucket,
    Sum,
    Count,
}

/// The compiled mapping rules.
#[derive(Clone, Debug)]
pub struct Dialects {
    rules: Vec<MappingRule>,
    names: HashMap<String, (usize, Part)>,
}

struct RawCounter {
    series: String,
    labels: RedLabels,
    error: bool,
    value: f64,
}

struct RawHistogram {
    labels: RedLabels,
    error: bool,
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

impl Dialects {
    /// Compiles rules; when two rules name the same metric the first one wins.
    pub fn new(rules: Vec<MappingRule>) -> Self {
        let mut names = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let m = &rule.metric;
            let parts: Vec<(String, Part)> = match rule.kind {
                RuleKind::Requests if m.ends_with("_total") => vec![(m.clone(), Part::Counter)],
                RuleKind::Requests => vec![
                    (m.clone(), Part::Counter),
                    (format!("{m}_total"), Part::Counter),
                ],
                RuleKind::Duration => vec![
                    (format!("{m}_bucket"), Part::Bucket),
                    (format!("{m}_sum"), Part::Sum),
                    (format!("{m}_count"), Part::Count),
                ],
            };
            for (name, part) in parts {
                names.entry(name).or_insert((i, part));
            }
        }
        Self { rules, names }
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[MappingRule] {
        &self.rules
    }

    /// Parses a scrape body and maps its RED series. Fails as a whole on a malformed line or
    /// when the body holds more than `sample_limit` samples.
    pub fn extract(
        &self,
        body: &str,
        format: Format,
        sample_limit: usize,
    ) -> Result<Extracted, ExtractError> {
        let mut samples = 0usize;
        let mut counters: Vec<Vec<RawCounter>> =
            (0..self.rules.len()).map(|_| Vec::new()).collect();
        let mut histograms: Vec<HashMap<String, RawHistogram>> =
            (0..self.rules.len()).map(|_| HashMap::new()).collect();
        let mut ms_units: Vec<bool> = vec![false; self.rules.len()];
        let mut process_start = None;
        let mut key = String::with_capacity(256);
        let mut last_name: Option<String> = None;
        let mut last_hit: Option<(usize, Part)> = None;
        let mut current: Option<(usize, String, RawHistogram)> = None;
        for entry in Parser::new(body, format) {
            let sample = match entry? {
                Entry::Sample(s) => s,
                Entry::Unit { family, unit } => {
                    if let Some(i) = self.rules.iter().position(|r| r.metric == *family) {
                        ms_units[i] = matches!(&*unit, "milliseconds" | "ms");
                    }
                    continue;
                }
                _ => continue,
            };
            samples += 1;
            if samples > sample_limit {
                return Err(ExtractError::SampleLimit {
                    limit: sample_limit,
                });
            }
            // Samples of one family come in runs: reuse the last name's lookup.
            if last_name.is_none() || last_name.as_deref() != Some(&*sample.name) {
                last_hit = self.names.get(&*sample.name).copied();
                let buffer = last_name.get_or_insert_with(String::new);
                buffer.clear();
                buffer.push_str(&sample.name);
            }
            let Some((i, part)) = last_hit else {
                if sample.name == PROCESS_START && sample.labels.is_empty() {
                    process_start = Some(sample.value);
                }
                continue;
            };
            let rule = &self.rules[i];
            let mut labels: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|(k, v)| (&**k, &**v))
                .filter(|(k, _)| *k != "le")
                .collect();
            labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_series_key(&mut key, &rule.metric, &labels);
            match part {
                Part::Counter => {
                    if sample.value.is_nan() {
                        continue;
                    }
                    let (red, error) = map_labels(rule, &labels);
                    counters[i].push(RawCounter {
                        series: key.clone(),
                        labels: red,
                        error,
                        value: sample.value,
                    });
                }
                Part::Bucket | Part::Sum | Part::Count => {
                    // The samples of one histogram series come in a run: gather them in
                    // `current` and touch the map once per series.
                    let same = matches!(&current, Some((r, k, _)) if *r == i && *k == key);
                    if !same {
                        if let Some((r, k, raw)) = current.take() {
                            merge_histogram(&mut histograms[r], k, raw);
                        }
                        let (red, error) = map_labels(rule, &labels);
                        let raw = RawHistogram {
                            labels: red,
                            error,
                            buckets: Vec::new(),
                            sum: None,
                            count: None,
                        };
                        current = Some((i, key.clone(), raw));
                    }
                    let h = &mut current.as_mut().expect("set above").2;
                    match part {
                        Part::Bucket => {
                            let le = sample.label("le").ok_or_else(|| ExtractError::Invalid {
                                metric: sample.name.to_string(),
                                message: "bucket without an `le` label".into(),
                            })?;
                            let bound = parse_bound(le).ok_or_else(|| ExtractError::Invalid {
                                metric: sample.name.to_string(),
                                message: format!("bucket bound le=\"{le}\" is not a number"),
                            })?;
                            h.buckets.push((bound, sample.value));
                        }
                        Part::Sum => h.sum = Some(sample.value),
                        _ => h.count = Some(sample.value),
                    }
                }
            }
        }

        if let Some((r, k, raw)) = current.take() {
            merge_histogram(&mut histograms[r], k, raw);
        }

        // Per protocol, the first dialect (in rule order) with samples wins.
        let mut winners: HashMap<&str, &str> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !counters[i].is_empty() || !histograms[i].is_empty() {
                winners.entry(rule.protocol()).or_insert(rule.dialect());
            }
        }
        let won = |rule: &MappingRule| winners.get(rule.protocol()) == Some(&rule.dialect());
        let counted: std::collections::HashSet<&str> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(i, r)| r.kind == RuleKind::Requests && !counters[*i].is_empty())
            .map(|(_, r)| r.dialect())
            .collect();

        let mut observations = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !won(rule) {
                continue;
            }
            for c in counters[i].drain(..) {
                observations.push(Observation {
                    series: c.series,
                    labels: c.labels,
                    error: c.error,
                    value: ObservedValue::Counter(c.value),
                });
            }
            if histograms[i].is_empty() {
                continue;
            }
            let feeds_requests = !counted.contains(rule.dialect());
            let millis = match rule.unit {
                Some(unit) => unit == DurationUnit::Milliseconds,
                None => ms_units[i] || rule.metric.ends_with("_milliseconds"),
            };
            let mut keys: Vec<String> = histograms[i].keys().cloned().collect();
            keys.sort();
            for key in keys {
                let raw = histograms[i].remove(&key).expect("key taken from the map");
                if let Some(h) = finish_histogram(&raw, millis, feeds_requests) {
                    observations.push(Observation {
                        series: key,
                        labels: raw.labels,
                        error: raw.error,
                        value: ObservedValue::Histogram(h),
                    });
                }
            }
        }
        Ok(Extracted {
            samples,
            observations,
            process_start,
        })
    }
}

/// Adds a run of samples of one histogram series to what earlier runs gave (a series split
/// over two runs is unusual but legal).
fn merge_histogram(map: &mut HashMap<String, RawHistogram>, key: String, raw: RawHistogram) {
    match map.get_mut(&key) {
        Some(h) => {
            h.buckets.extend(raw.buckets);
            h.sum = raw.sum.or(h.sum);
            h.count = raw.count.or(h.count);
        }
        None => {
            map.insert(key, raw);
        }
    }
}

/// Builds a cumulative histogram in seconds; `None` when there is neither a count nor a bucket.
fn finish_histogram(
    raw: &RawHistogram,
    millis: bool,
    feeds_requests: bool,
) -> Option<HistogramObs> {
    let mut buckets = raw.buckets.clone();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets.dedup_by(|a, b| a.0 == b.0);
    let inf = buckets
        .last()
        .filter(|(le, _)| *le == f64::INFINITY)
        .map(|(_, v)| *v);
    let count = raw.count.or(inf)?;
    if count.is_nan() {
        return None;
    }
    if inf.is_some() {
        buckets.pop();
    }
    // Dividing (not multiplying by 1e-3) keeps `100` ms exactly equal to a parsed `0.1` s.
    let scale = if millis { 1000.0 } else { 1.0 };
    let bounds: Vec<f64> = buckets.iter().map(|(le, _)| le / scale).collect();
    let mut cumulative: Vec<f64> = buckets.iter().map(|(_, v)| *v).collect();
    cumulative.push(inf.unwrap_or(count));
    Some(HistogramObs {
        bounds,
        cumulative,
        sum: raw.sum.unwrap_or(0.0) / scale,
        count,
        feeds_requests,
    })
}

fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        other => other.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

fn first_label<'a>(labels: &[(&str, &'a str)], names: &[String]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        labels
            .iter()
            .find(|(k, v)| *k == n && !v.is_empty())
            .map(|(_, v)| *v)
    })
}

/// Route, method, code and error-ness of one source series by its rule.
fn map_labels(rule: &MappingRule, labels: &[(&str, &str)]) -> (RedLabels, bool) {
    let route = match &rule.route_template {
        Some(template) => fill_template(template, labels),
        None => first_label(labels, &rule.route).unwrap_or("").to_string(),
    };
    let method = first_label(labels, &rule.method)
        .or(rule.default_method.as_deref())
        .unwrap_or("")
        .to_string();
    let code = first_label(labels, &rule.code).unwrap_or("").to_string();
    let error = (!code.is_empty() && rule.errors.code_is_error(&code))
        || rule.errors.label_values.iter().any(|(label, values)| {
            labels
                .iter()
                .any(|(k, v)| k == label && values.iter().any(|x| x == v))
        });
    (
        RedLabels {
            route,
            method,
            code,
        },
        error,
    )
}

/// Replaces each `{label}` by that label's value (empty when absent).
fn fill_template(template: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        if let Some((_, v)) = labels.iter().find(|(k, _)| *k == name) {
            out.push_str(v);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Writes `metric{a="1",b="2",}` into `key`, for labels already sorted by name: the identity
/// of a source series.
fn write_series_key(key: &mut String, metric: &str, labels: &[(&str, &str)]) {
    key.clear();
    key.push_str(metric);
    key.push('{');
    for (k, v) in labels {
        key.push_str(k);
        key.push_str("=\"");
        key.push_str(v);
        key.push_str("\",");
    }
    key.push('}');
}

#[cfg(test)]
mod tests {
    use super::super::config::RedConfig;
    use super::*;

    fn builtin() -> Dialects {
        Dialects::new(RedConfig::default().effective_rules())
    }

    fn by_route<'a>(obs: &'a [Observation], route: &str) -> Vec<&'a Observation> {
        obs.iter().filter(|o| o.labels.route == route).collect()
    }

    #[test]
    fn a_grpc_counter_gets_a_service_method_route_and_non_ok_codes_as_errors() {
        let body = "# TYPE grpc_server_handled_total counter\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 10\n\
            grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 2\n\
            grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        let obs = by_route(&out.observations, "/etcdserverpb.KV/Range");
        assert_eq!(obs.len(), 3);
        let errors: Vec<&str> = obs
            .iter()
            .filter(|o| o.error)
            .map(|o| o.labels.code.as_str())
            .collect();
        assert_eq!(errors, ["Unavailable"]);
        assert!(obs.iter().all(|o| o.labels.method == "unary"));
    }

    #[test]
    fn a_millisecond_histogram_becomes_seconds_bounds_included() {
        let body = "# TYPE http_request_duration_milliseconds histogram\n\
            http_request_duration_milliseconds_bucket{handler=\"/a\",le=\"100\"} 3\n\
            http_request_duration_milliseconds_bucket{handler=\"/a\",le=\"500\"} 5\n\
            http_request_duration_milliseconds_bucket{handler=\"/a\",le=\"+Inf\"} 6\n\
            http_request_duration_milliseconds_sum{handler=\"/a\"} 1500\n\
            http_request_duration_milliseconds_count{handler=\"/a\"} 6\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        let ObservedValue::Histogram(h) = &out.observations[0].value else {
            panic!("expected a histogram, got {:?}", out.observations[0]);
        };
        assert_eq!(h.bounds, [0.1, 0.5]);
        assert_eq!(h.cumulative, [3.0, 5.0, 6.0]);
        assert!((h.sum - 1.5).abs() < 1e-12);
        assert!(h.feeds_requests, "no http_requests_total in this scrape");
    }

    #[test]
    fn a_unit_line_saying_milliseconds_converts_a_histogram_without_the_suffix() {
        let rules = vec![MappingRule {
            metric: "app_latency".into(),
            kind: RuleKind::Duration,
            dialect: None,
            protocol: None,
            route: vec!["path".into()],
            route_template: None,
            method: vec![],
            default_method: None,
            code: vec![],
            errors: Default::default(),
            unit: None,
        }];
        let body = "# TYPE app_latency histogram\n# UNIT app_latency milliseconds\n\
            app_latency_bucket{path=\"/x\",le=\"250\"} 1\napp_latency_bucket{path=\"/x\",le=\"+Inf\"} 1\n\
            app_latency_sum{path=\"/x\"} 200\napp_latency_count{path=\"/x\"} 1\n# EOF\n";
        let out = Dialects::new(rules)
            .extract(body, Format::OpenMetrics, 100)
            .unwrap();
        let ObservedValue::Histogram(h) = &out.observations[0].value else {
            panic!("expected a histogram");
        };
        assert_eq!(h.bounds, [0.25]);
        assert!((h.sum - 0.2).abs() < 1e-12);
    }

    #[test]
    fn a_summary_gives_count_and_sum_with_no_finite_buckets() {
        let body = "# TYPE http_server_requests_seconds summary\n\
            http_server_requests_seconds_count{method=\"GET\",outcome=\"SERVER_ERROR\",status=\"503\",uri=\"/pay\"} 4\n\
            http_server_requests_seconds_sum{method=\"GET\",outcome=\"SERVER_ERROR\",status=\"503\",uri=\"/pay\"} 2.5\n\
            http_server_requests_seconds_max{method=\"GET\",outcome=\"SERVER_ERROR\",status=\"503\",uri=\"/pay\"} 1.1\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        assert_eq!(out.observations.len(), 1);
        let o = &out.observations[0];
        assert!(o.error);
        assert_eq!(o.labels.route, "/pay");
        let ObservedValue::Histogram(h) = &o.value else {
            panic!("expected a histogram");
        };
        assert!(h.bounds.is_empty());
        assert_eq!(h.cumulative, [4.0]);
        assert_eq!(h.count, 4.0);
    }

    #[test]
    fn a_counter_in_the_same_dialect_keeps_the_histogram_count_from_feeding_requests() {
        let body = "http_requests_total{code=\"200\",handler=\"/\",method=\"get\"} 7\n\
            http_request_duration_seconds_bucket{handler=\"/\",method=\"get\",le=\"+Inf\"} 7\n\
            http_request_duration_seconds_sum{handler=\"/\",method=\"get\"} 0.7\n\
            http_request_duration_seconds_count{handler=\"/\",method=\"get\"} 7\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        let hist = out
            .observations
            .iter()
            .find_map(|o| match &o.value {
                ObservedValue::Histogram(h) => Some(h),
                _ => None,
            })
            .unwrap();
        assert!(!hist.feeds_requests);
    }

    #[test]
    fn only_the_first_http_dialect_present_is_used() {
        let body = "http_requests_total{code=\"200\",handler=\"/\"} 7\n\
            http_server_request_duration_seconds_count{http_route=\"/\"} 7\n\
            http_server_request_duration_seconds_sum{http_route=\"/\"} 1\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        assert_eq!(out.observations.len(), 1);
        assert_eq!(out.observations[0].value, ObservedValue::Counter(7.0));
    }

    #[test]
    fn a_histogram_series_split_over_two_runs_is_put_back_together() {
        let body = "http_request_duration_seconds_bucket{handler=\"/a\",le=\"0.1\"} 1\n\
            http_request_duration_seconds_bucket{handler=\"/b\",le=\"+Inf\"} 9\n\
            http_request_duration_seconds_bucket{handler=\"/a\",le=\"+Inf\"} 2\n\
            http_request_duration_seconds_count{handler=\"/a\"} 2\n";
        let out = builtin()
            .extract(body, Format::PrometheusText, 100)
            .unwrap();
        let a = by_route(&out.observations, "/a");
        assert_eq!(a.len(), 1);
        let ObservedValue::Histogram(h) = &a[0].value else {
            panic!("expected a histogram");
        };
        assert_eq!(h.bounds, [0.1]);
        assert_eq!(h.cumulative, [1.0, 2.0]);
    }

    #[test]
    fn more_samples_than_the_limit_reject_the_scrape() {
        let body = "a 1\nb 2\nc 3\n";
        let err = builtin()
            .extract(body, Format::PrometheusText, 2)
            .unwrap_err();
        assert!(matches!(err, ExtractError::SampleLimit { limit: 2 }));
    }

    #[test]
    fn the_series_identity_does_not_depend_on_label_order() {
        let body = "x_total{a=\"1\",b=\"2\"} 1\n";
        let swapped = "x_total{b=\"2\",a=\"1\"} 1\n";
        let rules = vec![MappingRule {
            metric: "x_total".into(),
            kind: RuleKind::Requests,
            dialect: None,
            protocol: None,
            route: vec!["a".into()],
            route_template: None,
            method: vec![],
            default_method: None,
            code: vec![],
            errors: Default::default(),
            unit: None,
        }];
        let d = Dialects::new(rules);
        let one = d.extract(body, Format::PrometheusText, 10).unwrap();
        let two = d.extract(swapped, Format::PrometheusText, 10).unwrap();
        assert_eq!(one.observations[0].series, two.observations[0].series);
    }
}
