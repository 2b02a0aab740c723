//! Monotonic aggregation of source series into per-workload RED series, with the per-workload
//! route cap and bounded per-source state.
//!
//! Every source series (target + metric + labels) keeps its last value. Each collection adds the
//! increase since then to the output series it maps to; a value below the last one is a counter
//! reset and the new value is the increase. A series seen for the first time contributes its whole
//! value (those requests were served before we first looked). Output series are sums kept here,
//! so a pod that goes away keeps its contribution. State of a source series not seen for the TTL
//! is dropped, and so is an output series no source has fed for the TTL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dialect::{HistogramObs, Observation, ObservedValue};

/// Route given to routes past the per-workload cap.
pub const OTHER_ROUTE: &str = "other";

/// The workload a target belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Workload name (Deployment, StatefulSet, ... or the pod itself).
    pub workload: String,
    /// Kind of the workload, as in the `workload_kind` label.
    pub workload_kind: String,
}

/// Labels of one output RED series (besides `node`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputKey {
    /// The workload.
    pub workload: WorkloadRef,
    /// Route, or `other` past the cap.
    pub route: String,
    /// Method.
    pub method: String,
    /// Code; empty when the source does not say (gRPC latency histograms).
    pub code: String,
}

/// An output histogram: cumulative counts per bound, `+Inf` last.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputHistogram {
    /// Finite upper bounds in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound plus `+Inf`.
    pub cumulative: Vec<f64>,
    /// Sum of durations in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

/// Values of one output series.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputValues {
    /// Requests so far; `None` when only a histogram without request counting feeds it.
    pub requests: Option<f64>,
    /// Errors so far (present whenever `requests` is).
    pub errors: f64,
    /// Duration histogram, when a source has one.
    pub histogram: Option<OutputHistogram>,
}

#[derive(Debug)]
struct OutputSeries {
    values: OutputValues,
    last_seen: Instant,
}

#[derive(Debug)]
enum Last {
    Counter(f64),
    Histogram {
        bounds: Vec<f64>,
        cumulative: Vec<f64>,
        sum: f64,
        count: f64,
    },
}

#[derive(Debug)]
struct SourceState {
    last: Option<Last>,
    key: Arc<OutputKey>,
    last_seen: Instant,
    /// False when its bucket bounds differ from the output's: its buckets are left out.
    histogram_fits: bool,
}

/// Per-workload counts of guard events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// Source series whose route was collapsed into `other`.
    pub collapsed_routes: u64,
    /// Source histograms left out because their bounds differ from the output's.
    pub bucket_mismatches: u64,
}

/// The aggregation state.
#[derive(Debug)]
pub struct Aggregator {
    max_routes: usize,
    ttl: Duration,
    /// Per target, per source series.
    sources: HashMap<String, HashMap<String, SourceState>>,
    outputs: HashMap<Arc<OutputKey>, OutputSeries>,
    routes: HashMap<(String, String), HashSet<String>>,
    guards: HashMap<WorkloadRef, GuardCounts>,
    /// Last `process_start_time_seconds` per target, and when it was seen.
    process_starts: HashMap<String, (f64, Instant)>,
}

impl Aggregator {
    /// An empty aggregator keeping at most `max_routes` routes per workload and dropping state
    /// unseen for `ttl`.
    pub fn new(max_routes: usize, ttl: Duration) -> Self {
        Self {
            max_routes,
            ttl,
            sources: HashMap::new(),
            outputs: HashMap::new(),
            routes: HashMap::new(),
            guards: HashMap::new(),
            process_starts: HashMap::new(),
        }
    }

    /// Adds one scrape's observations of `target_id` (a stable identity of the target).
    /// `process_start` is the target's `process_start_time_seconds` if it has one: when it
    /// changes, every series of the target is taken as reset, which catches a restart after
    /// which a counter has already climbed past its old value.
    pub fn apply(
        &mut self,
        target_id: &str,
        workload: &WorkloadRef,
        observations: Vec<Observation>,
        process_start: Option<f64>,
        now: Instant,
    ) {
        if let Some(start) = process_start {
            let previous = self
                .process_starts
                .insert(target_id.to_string(), (start, now));
            if previous.is_some_and(|(p, _)| p != start) {
                self.sources.remove(target_id);
            }
        }
        if !self.sources.contains_key(target_id) {
            self.sources.insert(target_id.to_string(), HashMap::new());
        }
        let Self {
            sources,
            outputs,
            routes,
            guards,
            max_routes,
            ..
        } = self;
        let target_sources = sources.get_mut(target_id).expect("inserted above");
        for obs in observations {
            if !target_sources.contains_key(obs.series.as_str()) {
                let state = new_source(
                    routes,
                    guards,
                    outputs,
                    *max_routes,
                    (workload, target_id),
                    &obs,
                    now,
                );
                target_sources.insert(obs.series.clone(), state);
            }
            let state = target_sources
                .get_mut(obs.series.as_str())
                .expect("inserted above");
            state.last_seen = now;
            let out = outputs
                .entry(state.key.clone())
                .or_insert_with(|| OutputSeries {
                    values: OutputValues {
                        requests: None,
                        errors: 0.0,
                        histogram: None,
                    },
                    last_seen: now,
                });
            out.last_seen = now;
            match obs.value {
                ObservedValue::Counter(v) => {
                    let delta = match state.last {
                        Some(Last::Counter(last)) if v >= last => v - last,
                        _ => v,
                    };
                    state.last = Some(Last::Counter(v));
                    add_requests(&mut out.values, delta, obs.error);
                }
                ObservedValue::Histogram(h) => {
                    let d = histogram_delta(state.last.as_ref(), &h);
                    if h.feeds_requests {
                        add_requests(&mut out.values, d.count, obs.error);
                    }
                    if state.histogram_fits {
                        let oh = out.values.histogram.get_or_insert_with(|| OutputHistogram {
                            bounds: h.bounds.clone(),
                            cumulative: vec![0.0; h.cumulative.len()],
                            sum: 0.0,
                            count: 0.0,
                        });
                        if oh.bounds == h.bounds {
                            for (acc, x) in oh.cumulative.iter_mut().zip(&d.cumulative) {
                                *acc += x;
                            }
                            oh.sum += d.sum;
                            oh.count += d.count;
                        } else {
                            // The source changed its buckets after it was first seen.
                            state.histogram_fits = false;
                            count_mismatch(guards, &state.key, target_id, &obs.series);
                        }
                    }
                    state.last = Some(Last::Histogram {
                        bounds: h.bounds,
                        cumulative: h.cumulative,
                        sum: h.sum,
                        count: h.count,
                    });
                }
            }
        }
    }

    /// Drops state not seen for the TTL. Returns how many source series were dropped.
    pub fn evict(&mut self, now: Instant) -> usize {
        let ttl = self.ttl;
        let stale = |seen: Instant| now.saturating_duration_since(seen) > ttl;
        let before = self.source_series();
        for target in self.sources.values_mut() {
            target.retain(|_, s| !stale(s.last_seen));
        }
        self.sources.retain(|_, target| !target.is_empty());
        self.process_starts.retain(|_, (_, seen)| !stale(*seen));
        let dropped = before - self.source_series();
        let outputs_before = self.outputs.len();
        self.outputs.retain(|_, o| !stale(o.last_seen));
        if self.outputs.len() != outputs_before {
            self.routes.clear();
            for key in self.outputs.keys() {
                if key.route != OTHER_ROUTE {
                    self.routes
                        .entry((
                            key.workload.namespace.clone(),
                            key.workload.workload.clone(),
                        ))
                        .or_default()
                        .insert(key.route.clone());
                }
            }
            let live: HashSet<&WorkloadRef> = self.outputs.keys().map(|k| &k.workload).collect();
            self.guards.retain(|w, _| live.contains(w));
        }
        dropped
    }

    /// The output series, sorted by labels.
    pub fn outputs(&self) -> Vec<(OutputKey, OutputValues)> {
        let mut v: Vec<(OutputKey, OutputValues)> = self
            .outputs
            .iter()
            .map(|(k, o)| ((**k).clone(), o.values.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Guard counts per workload, sorted.
    pub fn guards(&self) -> Vec<(WorkloadRef, GuardCounts)> {
        let mut v: Vec<_> = self
            .guards
            .iter()
            .map(|(w, g)| (w.clone(), g.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of source series with state.
    pub fn source_series(&self) -> usize {
        self.sources.values().map(HashMap::len).sum()
    }
}

/// State for a source series seen for the first time: its output series (route capped)
/// and whether its buckets fit that output's.
fn new_source(
    routes: &mut HashMap<(String, String), HashSet<String>>,
    guards: &mut HashMap<WorkloadRef, GuardCounts>,
    outputs: &HashMap<Arc<OutputKey>, OutputSeries>,
    max_routes: usize,
    (workload, target_id): (&WorkloadRef, &str),
    obs: &Observation,
    now: Instant,
) -> SourceState {
    let routes = routes
        .entry((workload.namespace.clone(), workload.workload.clone()))
        .or_default();
    let route = if routes.contains(&obs.labels.route) {
        obs.labels.route.clone()
    } else if routes.len() < max_routes {
        routes.insert(obs.labels.route.clone());
        obs.labels.route.clone()
    } else {
        guards.entry(workload.clone()).or_default().collapsed_routes += 1;
        OTHER_ROUTE.to_string()
    };
    let key = OutputKey {
        workload: workload.clone(),
        route,
        method: obs.labels.method.clone(),
        code: obs.labels.code.clone(),
    };
    let key = match outputs.get_key_value(&key) {
        Some((k, _)) => k.clone(),
        None => Arc::new(key),
    };
    let mut histogram_fits = true;
    if let ObservedValue::Histogram(h) = &obs.value
        && let Some(out) = outputs.get(&key)
        && let Some(oh) = &out.values.histogram
        && oh.bounds != h.bounds
    {
        histogram_fits = false;
        count_mismatch(guards, &key, target_id, &obs.series);
    }
    SourceState {
        last: None,
        key,
        last_seen: now,
        histogram_fits,
    }
}

fn add_requests(values: &mut OutputValues, delta: f64, error: bool) {
    *values.requests.get_or_insert(0.0) += delta;
    if error {
        values.errors += delta;
    }
}

fn count_mismatch(
    guards: &mut HashMap<WorkloadRef, GuardCounts>,
    key: &OutputKey,
    target_id: &str,
    series: &str,
) {
    guards
        .entry(key.workload.clone())
        .or_default()
        .bucket_mismatches += 1;
    tracing::warn!(
        namespace = %key.workload.namespace,
        workload = %key.workload.workload,
        route = %key.route,
        target = target_id,
        series,
        "histogram bucket bounds differ from the workload's; its buckets are left out"
    );
}

struct HistogramDelta {
    cumulative: Vec<f64>,
    sum: f64,
    count: f64,
}

/// Increase of a histogram since its last value; the whole value after a reset, a change of
/// bounds, or on first sight.
fn histogram_delta(last: Option<&Last>, h: &HistogramObs) -> HistogramDelta {
    if let Some(Last::Histogram {
        bounds,
        cumulative,
        sum,
        count,
    }) = last
        && *bounds == h.bounds
        && h.count >= *count
        && h.cumulative
            .iter()
            .zip(cumulative)
            .all(|(new, old)| new >= old)
    {
        return HistogramDelta {
            cumulative: h
                .cumulative
                .iter()
                .zip(cumulative)
                .map(|(n, o)| n - o)
                .collect(),
            sum: h.sum - sum,
            count: h.count - count,
        };
    }
    HistogramDelta {
        cumulative: h.cumulative.clone(),
        sum: h.sum,
        count: h.count,
    }
}

#[cfg(test)]
mod tests {
    use super::super::dialect::RedLabels;
    use super::*;

    fn wl(name: &str) -> WorkloadRef {
        WorkloadRef {
            namespace: "shop".into(),
            workload: name.into(),
            workload_kind: "Deployment".into(),
        }
    }

    fn counter(route: &str, code: &str, v: f64) -> Observation {
        Observation {
            series: format!("http_requests_total{{code=\"{code}\",handler=\"{route}\"}}"),
            labels: RedLabels {
                route: route.into(),
                method: String::new(),
                code: code.into(),
            },
            error: code.starts_with('5'),
            value: ObservedValue::Counter(v),
        }
    }

    fn hist(route: &str, bounds: &[f64], cumulative: &[f64], sum: f64) -> Observation {
        Observation {
            series: format!("lat{{handler=\"{route}\"}}"),
            labels: RedLabels {
                route: route.into(),
                method: String::new(),
                code: String::new(),
            },
            error: false,
            value: ObservedValue::Histogram(HistogramObs {
                bounds: bounds.to_vec(),
                cumulative: cumulative.to_vec(),
                sum,
                count: *cumulative.last().unwrap(),
                feeds_requests: true,
            }),
        }
    }

    fn requests(agg: &Aggregator, route: &str) -> f64 {
        agg.outputs()
            .iter()
            .filter(|(k, _)| k.route == route)
            .filter_map(|(_, v)| v.requests)
            .sum()
    }

    #[test]
    fn a_drop_in_a_counter_is_treated_as_a_reset() {
        let mut agg = Aggregator::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        agg.apply(
            "pod-a",
            &wl("api"),
            vec![counter("/", "200", 100.0)],
            None,
            t,
        );
        agg.apply(
            "pod-a",
            &wl("api"),
            vec![counter("/", "200", 130.0)],
            None,
            t,
        );
        agg.apply("pod-a", &wl("api"), vec![counter("/", "200", 4.0)], None, t);
        assert_eq!(requests(&agg, "/"), 134.0);
    }

    #[test]
    fn a_new_process_start_time_is_a_reset_even_when_the_counter_did_not_drop() {
        let mut agg = Aggregator::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        let w = wl("api");
        agg.apply(
            "pod-a",
            &w,
            vec![counter("/", "200", 10.0)],
            Some(1000.0),
            t,
        );
        agg.apply(
            "pod-a",
            &w,
            vec![counter("/", "200", 12.0)],
            Some(1000.0),
            t,
        );
        // Restarted and already served 15 requests: more than the 12 seen before.
        agg.apply(
            "pod-a",
            &w,
            vec![counter("/", "200", 15.0)],
            Some(2000.0),
            t,
        );
        assert_eq!(requests(&agg, "/"), 27.0);
    }

    #[test]
    fn a_vanished_pods_contribution_is_kept() {
        let mut agg = Aggregator::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        agg.apply(
            "pod-a",
            &wl("api"),
            vec![counter("/", "500", 10.0)],
            None,
            t,
        );
        agg.apply("pod-b", &wl("api"), vec![counter("/", "500", 5.0)], None, t);
        agg.apply("pod-b", &wl("api"), vec![counter("/", "500", 8.0)], None, t);
        let out = agg.outputs();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.requests, Some(18.0));
        assert_eq!(out[0].1.errors, 18.0);
    }

    #[test]
    fn routes_past_the_cap_collapse_into_other_and_are_counted() {
        let mut agg = Aggregator::new(2, Duration::from_secs(3600));
        let t = Instant::now();
        let obs = ["/a", "/b", "/c", "/d"]
            .iter()
            .map(|r| counter(r, "200", 1.0))
            .collect();
        agg.apply("pod-a", &wl("api"), obs, None, t);
        assert_eq!(requests(&agg, "other"), 2.0);
        assert_eq!(requests(&agg, "/a") + requests(&agg, "/b"), 2.0);
        assert_eq!(agg.guards()[0].1.collapsed_routes, 2);
        // The cap is per workload: another workload still gets its own routes.
        agg.apply(
            "pod-b",
            &wl("web"),
            vec![counter("/z", "200", 1.0)],
            None,
            t,
        );
        assert_eq!(requests(&agg, "/z"), 1.0);
    }

    #[test]
    fn histograms_with_different_bounds_are_never_mixed() {
        let mut agg = Aggregator::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        agg.apply(
            "pod-a",
            &wl("api"),
            vec![hist("/", &[0.1, 1.0], &[1.0, 2.0, 3.0], 1.5)],
            None,
            t,
        );
        agg.apply(
            "pod-b",
            &wl("api"),
            vec![hist("/", &[0.5], &[4.0, 4.0], 0.4)],
            None,
            t,
        );
        let out = agg.outputs();
        let h = out[0].1.histogram.as_ref().unwrap();
        assert_eq!(h.bounds, [0.1, 1.0]);
        assert_eq!(h.cumulative, [1.0, 2.0, 3.0]);
        // Its requests still count: only its buckets are left out.
        assert_eq!(out[0].1.requests, Some(7.0));
        assert_eq!(agg.guards()[0].1.bucket_mismatches, 1);
    }

    #[test]
    fn histogram_buckets_add_deltas_and_restart_after_a_reset() {
        let mut agg = Aggregator::new(100, Duration::from_secs(3600));
        let t = Instant::now();
        let b = [0.1, 1.0];
        agg.apply(
            "p",
            &wl("api"),
            vec![hist("/", &b, &[1.0, 2.0, 3.0], 1.0)],
            None,
            t,
        );
        agg.apply(
            "p",
            &wl("api"),
            vec![hist("/", &b, &[2.0, 4.0, 5.0], 2.0)],
            None,
            t,
        );
        agg.apply(
            "p",
            &wl("api"),
            vec![hist("/", &b, &[1.0, 1.0, 1.0], 0.05)],
            None,
            t,
        );
        let h = agg.outputs()[0].1.histogram.clone().unwrap();
        assert_eq!(h.cumulative, [3.0, 5.0, 6.0]);
        assert_eq!(h.count, 6.0);
        assert!((h.sum - 2.05).abs() < 1e-12);
    }

    #[test]
    fn state_unseen_for_the_ttl_is_dropped_and_fresh_state_is_kept() {
        let mut agg = Aggregator::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        agg.apply(
            "old",
            &wl("gone"),
            vec![counter("/x", "200", 3.0)],
            None,
            t0,
        );
        let t1 = t0 + Duration::from_secs(50);
        agg.apply("new", &wl("api"), vec![counter("/y", "200", 1.0)], None, t1);
        assert_eq!(agg.evict(t0 + Duration::from_secs(61)), 1);
        assert_eq!(agg.source_series(), 1);
        let out = agg.outputs();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.workload.workload, "api");
    }
}
