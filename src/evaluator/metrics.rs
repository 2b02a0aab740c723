//! The evaluator's own metrics and `ALERTS`, for `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::alert::AlertState;
use super::group::Group;

type LabelSet = Vec<(String, String)>;

fn group_label(group: &Group) -> LabelSet {
    vec![("rule_group".into(), group.key())]
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Every metric the evaluator exposes.
pub struct Metrics {
    registry: Registry,
    group_duration: Family<LabelSet, Histogram, fn() -> Histogram>,
    last_duration: Family<LabelSet, Gauge<f64, AtomicU64>>,
    evaluations: Family<LabelSet, Counter>,
    failures: Family<LabelSet, Counter>,
    iterations: Family<LabelSet, Counter>,
    missed: Family<LabelSet, Counter>,
    last_evaluation: Family<LabelSet, Gauge<f64, AtomicU64>>,
    alerts: Family<LabelSet, Gauge>,
    alerts_series: Family<LabelSet, Gauge>,
    recorded: Family<LabelSet, Gauge<f64, AtomicU64>>,
    sent: Family<LabelSet, Counter>,
    send_failed: Family<LabelSet, Counter>,
    dropped: Counter,
    reload_ok: Gauge,
    reloads: Family<LabelSet, Counter>,
    remote_write: Family<LabelSet, Counter>,
    series_fetched: Family<LabelSet, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers everything in a new registry.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// Registers everything in `registry`, which may already hold other components' metrics
    /// (the notifier's).
    pub fn with_registry(mut registry: Registry) -> Self {
        let m = Metrics {
            group_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            last_duration: Family::default(),
            evaluations: Family::default(),
            failures: Family::default(),
            iterations: Family::default(),
            missed: Family::default(),
            last_evaluation: Family::default(),
            alerts: Family::default(),
            alerts_series: Family::default(),
            recorded: Family::default(),
            sent: Family::default(),
            send_failed: Family::default(),
            dropped: Counter::default(),
            reload_ok: Gauge::default(),
            reloads: Family::default(),
            remote_write: Family::default(),
            series_fetched: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kubesignal_evaluator_rule_group_duration_seconds",
            "Wall time of one evaluation cycle of a rule group",
            m.group_duration.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_group_last_duration_seconds",
            "Seconds the last evaluation of each rule group took (Prometheus's gauge of the same name)",
            m.last_duration.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_evaluations",
            "Rule evaluations",
            m.evaluations.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_evaluation_failures",
            "Rule evaluations that failed (query error, duplicate labels, limit); state was left unchanged",
            m.failures.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_group_iterations",
            "Evaluation cycles of a rule group",
            m.iterations.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_group_iterations_missed",
            "Evaluation ticks skipped because the previous cycle overran",
            m.missed.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_group_last_evaluation_timestamp_seconds",
            "Timestamp of the last evaluation of a rule group",
            m.last_evaluation.clone(),
        );
        registry.register(
            "kubesignal_evaluator_alerts",
            "Alerts by state",
            m.alerts.clone(),
        );
        registry.register(
            "ALERTS",
            "Pending and firing alerts, one series each (Prometheus's ALERTS)",
            m.alerts_series.clone(),
        );
        registry.register(
            "kubesignal_evaluator_recorded",
            "Last result of each recording rule; the `record` label names the rule",
            m.recorded.clone(),
        );
        registry.register(
            "kubesignal_evaluator_alerts_sent",
            "Alerts handed to a destination (an Alertmanager, or owner routing)",
            m.sent.clone(),
        );
        registry.register(
            "kubesignal_evaluator_alerts_send_failures",
            "Alerts whose hand-off to a destination failed",
            m.send_failed.clone(),
        );
        registry.register(
            "kubesignal_evaluator_alerts_dropped",
            "Alerts dropped because the notification queue was full",
            m.dropped.clone(),
        );
        registry.register(
            "kubesignal_evaluator_config_last_reload_successful",
            "Whether the last rule reload succeeded",
            m.reload_ok.clone(),
        );
        registry.register(
            "kubesignal_evaluator_config_reloads",
            "Rule reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "kubesignal_evaluator_remote_write_samples",
            "Samples sent by remote write, by result",
            m.remote_write.clone(),
        );
        registry.register(
            "kubesignal_evaluator_rule_last_evaluation_series_fetched",
            "Series the last successful query of a rule returned; 0 for long on an alerting rule often means its selectors match nothing",
            m.series_fetched.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records one evaluation cycle.
    pub fn group_evaluated(&self, group: &Group, evaluated: u64, failed: u64, missed: u64) {
        let l = group_label(group);
        self.group_duration
            .get_or_create(&l)
            .observe(group.evaluation_time.as_secs_f64());
        self.last_duration
            .get_or_create(&l)
            .set(group.evaluation_time.as_secs_f64());
        self.evaluations.get_or_create(&l).inc_by(evaluated);
        self.failures.get_or_create(&l).inc_by(failed);
        self.iterations.get_or_create(&l).inc();
        self.missed.get_or_create(&l).inc_by(missed);
        if let Some(ts) = group.last_evaluation {
            self.last_evaluation
                .get_or_create(&l)
                .set(ts.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Counts alerts delivered.
    pub fn notification_sent(&self, sink: &str, n: usize) {
        self.sent
            .get_or_create(&vec![("destination".into(), sink.into())])
            .inc_by(n as u64);
    }

    /// Counts alerts not delivered.
    pub fn notification_failed(&self, sink: &str, n: usize) {
        self.send_failed
            .get_or_create(&vec![("destination".into(), sink.into())])
            .inc_by(n as u64);
    }

    /// Counts alerts dropped from a full queue.
    pub fn notifications_dropped(&self, n: usize) {
        self.dropped.inc_by(n as u64);
    }

    /// Counts samples remote-written (or dropped after retries).
    pub fn remote_written(&self, n: usize, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.remote_write
            .get_or_create(&vec![("result".into(), result.into())])
            .inc_by(n as u64);
    }

    /// Records a reload's result.
    pub fn reloaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// Text exposition, with `ALERTS`, alerts by state and recorded series rebuilt from the
    /// current groups.
    pub fn encode(&self, groups: &[Group]) -> String {
        self.alerts_series.clear();
        self.recorded.clear();
        self.series_fetched.clear();
        let mut counts = [0i64; 2];
        for g in groups {
            for entry in &g.rules {
                self.series_fetched
                    .get_or_create(&vec![
                        ("rule_group".into(), g.key()),
                        ("rule".into(), entry.name().to_string()),
                    ])
                    .set(entry.status.series_fetched as i64);
                match &entry.kind {
                    super::group::RuleKind::Alerting(rule) => {
                        for a in rule.active_alerts() {
                            let mut labels: LabelSet = a
                                .labels
                                .iter()
                                .filter(|(k, _)| k.as_str() != "alertstate")
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            labels.push(("alertstate".into(), a.state.as_str().into()));
                            self.alerts_series.get_or_create(&labels).set(1);
                            counts[usize::from(a.state == AlertState::Firing)] += 1;
                        }
                    }
                    super::group::RuleKind::Recording(rule) => {
                        for s in &rule.last_result {
                            let labels: LabelSet = s
                                .labels
                                .iter()
                                .map(|(k, v)| {
                                    let k = if k == "__name__" { "record" } else { k };
                                    (k.to_string(), v.clone())
                                })
                                .collect();
                            self.recorded.get_or_create(&labels).set(s.value);
                        }
                    }
                }
            }
        }
        for (i, state) in ["pending", "firing"].iter().enumerate() {
            self.alerts
                .get_or_create(&vec![("state".into(), state.to_string())])
                .set(counts[i]);
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}
