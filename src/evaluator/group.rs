//! Rule groups: loading them from rule files, evaluating one cycle (rules in file order, all
//! at the group's timestamp), and Prometheus's slotted schedule (a stable phase per group
//! inside its interval; missed ticks skipped and counted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::alert::{Alert, AlertingRule, Transition, elapsed};
use super::datasource::{Datasource, Sample};
use super::recording::RecordingRule;
use super::render::{DatasourceQuerier, Templater};
use crate::rules::file::RuleGroup;

/// Why rule files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path, directory or glob could not be read.
    #[error("reading rules from {path}: {message}")]
    Read {
        /// What was being read.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A rule file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the group and rule.
        message: String,
    },
    /// A rule file failed the same checks as `rules check` (messages carry file and line).
    #[error(transparent)]
    Rules(#[from] crate::rules::load::LoadError),
    /// No rule file matched.
    #[error("no rule files found in {0}")]
    Empty(String),
}

/// Health of a rule after its last evaluation, as `/api/v1/rules` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// Last evaluation succeeded.
    Ok,
    /// Last evaluation failed.
    Err,
}

/// The last evaluation of one rule.
#[derive(Clone, Debug)]
pub struct RuleStatus {
    /// Health.
    pub health: Health,
    /// Error of the last evaluation.
    pub last_error: Option<String>,
    /// Timestamp of the last evaluation.
    pub last_evaluation: Option<DateTime<Utc>>,
    /// How long it took.
    pub evaluation_time: Duration,
    /// First failed evaluation of the current run of failures (datasource outage).
    pub failing_since: Option<DateTime<Utc>>,
    /// Series the last successful query returned.
    pub series_fetched: usize,
}

impl Default for RuleStatus {
    fn default() -> Self {
        RuleStatus {
            health: Health::Unknown,
            last_error: None,
            last_evaluation: None,
            evaluation_time: Duration::ZERO,
            failing_since: None,
            series_fetched: 0,
        }
    }
}

/// An alerting or recording rule.
#[derive(Clone, Debug)]
pub enum RuleKind {
    /// `alert:`.
    Alerting(AlertingRule),
    /// `record:`.
    Recording(RecordingRule),
}

/// A rule with its evaluation status.
#[derive(Clone, Debug)]
pub struct RuleEntry {
    /// The rule.
    pub kind: RuleKind,
    /// How its last evaluation went.
    pub status: RuleStatus,
    /// Stable identity across reloads and restarts: name, labels and occurrence.
    pub key: String,
}

impl RuleEntry {
    /// The rule's name (`alert` or `record`).
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Alerting(r) => &r.name,
            RuleKind::Recording(r) => &r.name,
        }
    }

    /// The rule's expression.
    pub fn expr(&self) -> &str {
        match &self.kind {
            RuleKind::Alerting(r) => &r.expr,
            RuleKind::Recording(r) => &r.expr,
        }
    }
}

/// A rule group and its runtime state.
#[derive(Clone, Debug)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// File it came from.
    pub file: String,
    /// Evaluation interval.
    pub interval: Duration,
    /// Queries run this far in the past.
    pub query_offset: Duration,
    /// Maximum alerts or series per rule; 0 = none.
    pub limit: u64,
    /// Rules in file order.
    pub rules: Vec<RuleEntry>,
    /// Timestamp of the last evaluation.
    pub last_evaluation: Option<DateTime<Utc>>,
    /// Duration of the last evaluation.
    pub evaluation_time: Duration,
    /// When state was loaded from the store: the last evaluation before the restart, so the
    /// first evaluation can apply the `for`-state restore.
    pub restore_from: Option<DateTime<Utc>>,
}

/// What the engine needs to evaluate a group.
pub struct EvalContext<'a> {
    /// Where queries go.
    pub datasource: &'a dyn Datasource,
    /// Template expansion.
    pub templater: &'a Templater,
    /// When queries must have answered.
    pub deadline: Instant,
    /// Minimum time between two sends of a firing alert.
    pub resend_delay: Duration,
    /// How long firing alerts keep being re-sent while queries fail; also the longest downtime
    /// after which pending alerts are restored.
    pub outage_tolerance: Duration,
    /// `for`-restore grace period.
    pub for_grace_period: Duration,
    /// Where recording results are written back as soon as a rule has run, so that later
    /// rules (and later steps of a replay) can query them; `None` to not write them inline.
    pub record_sink: Option<&'a dyn RecordSink>,
}

/// A store that takes recording rule results back (remote write), for rule chaining.
pub trait RecordSink: Send + Sync {
    /// Writes `series` with timestamp `ts`, returning once the store has accepted them.
    fn write<'a>(
        &'a self,
        series: &'a [Sample],
        ts: DateTime<Utc>,
    ) -> super::datasource::BoxFuture<'a, Result<(), String>>;
}

/// What one evaluation cycle produced.
#[derive(Debug, Default)]
pub struct EvalOutcome {
    /// State changes: alert name and transition.
    pub transitions: Vec<Transition>,
    /// Alerts to send, with the expression of their rule (for `generatorURL`).
    pub to_send: Vec<(String, Alert)>,
    /// Recorded series.
    pub recorded: Vec<Sample>,
    /// Rules evaluated.
    pub evaluated: u64,
    /// Rules whose evaluation failed.
    pub failed: u64,
}

impl Group {
    /// `file;name`, the identity Prometheus uses (`rule_group` label).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// The group's phase inside its interval: stable across restarts, spread across groups.
    pub fn offset(&self) -> Duration {
        let interval = self.interval.as_nanos().max(1) as u64;
        Duration::from_nanos(fnv1a(self.key().as_bytes()) % interval)
    }

    /// Evaluates every rule at `ts`, in order.
    pub async fn evaluate(&mut self, ts: DateTime<Utc>, ctx: &EvalContext<'_>) -> EvalOutcome {
        let started = std::time::Instant::now();
        let mut outcome = EvalOutcome::default();
        let query_ts = ts - chrono::Duration::from_std(self.query_offset).unwrap_or_default();
        let restore_from = self.restore_from.take();
        let limit = self.limit;
        let interval = self.interval;
        for entry in &mut self.rules {
            let rule_started = std::time::Instant::now();
            outcome.evaluated += 1;
            if let (Some(down_at), RuleKind::Alerting(rule)) = (restore_from, &mut entry.kind) {
                rule.restore(down_at, ts, ctx.outage_tolerance, ctx.for_grace_period);
            }
            let result = ctx
                .datasource
                .query(entry_expr(entry), query_ts, ctx.deadline)
                .await;
            let status = &mut entry.status;
            status.last_evaluation = Some(ts);
            let error = match result {
                Err(e) => Some(e.to_string()),
                Ok(samples) => {
                    status.series_fetched = samples.len();
                    match &mut entry.kind {
                        RuleKind::Alerting(rule) => {
                            let querier = DatasourceQuerier {
                                datasource: ctx.datasource,
                                ts: query_ts,
                                deadline: ctx.deadline,
                            };
                            let mut render = |input: super::alert::RenderInput<'_>| {
                                ctx.templater.render(input, Some(&querier))
                            };
                            match rule.apply(ts, &samples, limit, &mut render) {
                                Ok(transitions) => {
                                    outcome.transitions.extend(transitions);
                                    None
                                }
                                Err(e) => Some(e.to_string()),
                            }
                        }
                        RuleKind::Recording(rule) => {
                            let previous: Vec<Sample> = std::mem::take(&mut rule.last_result);
                            match rule.apply(&samples, limit) {
                                Ok(series) => {
                                    outcome.recorded.extend_from_slice(series);
                                    match ctx.record_sink {
                                        Some(sink) => {
                                            // Series that stopped get a stale marker, so rules
                                            // reading them see them end at once, as in Prometheus.
                                            let mut write = series.to_vec();
                                            for old in previous {
                                                if !series.iter().any(|s| s.labels == old.labels) {
                                                    write.push(Sample {
                                                        labels: old.labels,
                                                        value: f64::from_bits(
                                                            super::remote_write::STALE_NAN,
                                                        ),
                                                    });
                                                }
                                            }
                                            if write.is_empty() {
                                                None
                                            } else {
                                                sink.write(&write, query_ts).await.err().map(|e| {
                                                    format!("writing the results back: {e}")
                                                })
                                            }
                                        }
                                        None => None,
                                    }
                                }
                                Err(e) => {
                                    rule.last_result = previous;
                                    Some(e.to_string())
                                }
                            }
                        }
                    }
                }
            };
            match error {
                Some(e) => {
                    tracing::warn!(group = %self.name, rule = %entry_name(&entry.kind), error = %e, "evaluating rule failed");
                    outcome.failed += 1;
                    status.health = Health::Err;
                    status.last_error = Some(e);
                    status.failing_since.get_or_insert(ts);
                }
                None => {
                    status.health = Health::Ok;
                    status.last_error = None;
                    status.failing_since = None;
                }
            }
            if let RuleKind::Alerting(rule) = &mut entry.kind {
                // While queries fail, firing alerts stay alive at Alertmanager for up to the
                // outage tolerance instead of expiring there after 4 intervals.
                let holding = status
                    .failing_since
                    .is_none_or(|since| elapsed(since, ts) <= ctx.outage_tolerance);
                if holding {
                    for alert in rule.take_to_send(ts, ctx.resend_delay, interval) {
                        outcome.to_send.push((rule.expr.clone(), alert));
                    }
                }
            }
            status.evaluation_time = rule_started.elapsed();
        }
        self.last_evaluation = Some(ts);
        self.evaluation_time = started.elapsed();
        outcome
    }

    /// Moves alert state from `old` (the same group before a reload) to the rules of this
    /// group with the same identity.
    pub fn take_state_from(&mut self, old: &mut Group) {
        for entry in &mut self.rules {
            let Some(prev) = old.rules.iter_mut().find(|r| r.key == entry.key) else {
                continue;
            };
            if let (RuleKind::Alerting(new), RuleKind::Alerting(prev_rule)) =
                (&mut entry.kind, &mut prev.kind)
            {
                new.active = std::mem::take(&mut prev_rule.active);
            }
            entry.status = prev.status.clone();
        }
        self.last_evaluation = old.last_evaluation;
        self.restore_from = old.restore_from;
    }
}

fn entry_expr(entry: &RuleEntry) -> &str {
    match &entry.kind {
        RuleKind::Alerting(r) => &r.expr,
        RuleKind::Recording(r) => &r.expr,
    }
}

fn entry_name(kind: &RuleKind) -> &str {
    match kind {
        RuleKind::Alerting(r) => &r.name,
        RuleKind::Recording(r) => &r.name,
    }
}

/// The last slot at or before `now`: `base + offset` where slots are `interval` apart
/// (Prometheus's `EvalTimestamp`).
pub fn slot_at(now: DateTime<Utc>, interval: Duration, offset: Duration) -> DateTime<Utc> {
    let iv = interval.as_nanos().max(1) as i128;
    let off = offset.as_nanos() as i128;
    let n = now.timestamp_nanos_opt().unwrap_or(0) as i128;
    let adjusted = n - off;
    let base = adjusted - adjusted.rem_euclid(iv);
    DateTime::from_timestamp_nanos((base + off) as i64)
}

/// How many whole ticks were skipped when the next evaluation after `last` happens at `now`
/// (Prometheus: `time.Since(evalTimestamp)/interval - 1`).
pub fn missed_ticks(last: DateTime<Utc>, now: DateTime<Utc>, interval: Duration) -> u64 {
    let since = elapsed(last, now).as_nanos();
    let iv = interval.as_nanos().max(1);
    (since / iv).saturating_sub(1) as u64
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Parses a Prometheus duration (`30s`, `1h30m`, `2d`, `1w`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::rules::duration::parse(s.trim()).map_err(|e| e.to_string())
}

/// Expands `--rules` values (files, directories, globs) to rule files, sorted and deduplicated.
pub fn expand_rule_paths(paths: &[String]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| LoadError::Read {
                path: p.clone(),
                message: e.to_string(),
            })?;
            for entry in entries.flatten() {
                let f = entry.path();
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
                if f.is_file() && matches!(ext, "yaml" | "yml") {
                    out.push(f);
                }
            }
        } else if p.contains(['*', '?', '[']) {
            let matches = glob::glob(p).map_err(|e| LoadError::Read {
                path: p.clone(),
                message: e.to_string(),
            })?;
            for m in matches.flatten() {
                if m.is_file() {
                    out.push(m);
                }
            }
        } else {
            out.push(path.to_path_buf());
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(LoadError::Empty(paths.join(", ")));
    }
    Ok(out)
}

/// Loads every group of the rule files named by `paths`.
pub fn load_groups(paths: &[String], default_interval: Duration) -> Result<Vec<Group>, LoadError> {
    let mut groups = Vec::new();
    for file in expand_rule_paths(paths)? {
        let display = file.display().to_string();
        // The same loader and checks as `rules check`: PrometheusRule resources and
        // multi-document files, errors with file and line.
        let parsed = crate::rules::load::load_file(&file)?;
        let mut names = std::collections::BTreeSet::new();
        for g in parsed.groups {
            if !names.insert(g.name.clone()) {
                return Err(LoadError::Invalid {
                    path: display,
                    message: format!("group {:?}: groupname is repeated in the same file", g.name),
                });
            }
            groups.push(
                build_group(&display, g, default_interval).map_err(|message| {
                    LoadError::Invalid {
                        path: display.clone(),
                        message,
                    }
                })?,
            );
        }
    }
    Ok(groups)
}

fn build_group(file: &str, g: RuleGroup, default_interval: Duration) -> Result<Group, String> {
    let ctx = |what: &str| format!("group {:?}: {what}", g.name);
    if g.name.is_empty() {
        return Err("a group has no name".into());
    }
    let interval = match &g.interval {
        Some(s) => parse_duration(s).map_err(|e| ctx(&format!("interval: {e}")))?,
        None => default_interval,
    };
    if interval.is_zero() {
        return Err(ctx("interval must be greater than 0"));
    }
    let query_offset = match &g.query_offset {
        Some(s) => parse_duration(s).map_err(|e| ctx(&format!("query_offset: {e}")))?,
        None => Duration::ZERO,
    };
    let mut rules = Vec::new();
    let mut seen_keys: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, r) in g.rules.iter().enumerate() {
        let rctx = |what: &str| ctx(&format!("rule {}: {what}", i + 1));
        let mut labels = g.labels.clone();
        labels.extend(r.labels.clone());
        if r.expr.trim().is_empty() {
            return Err(rctx("expr is empty"));
        }
        let kind = match (&r.alert, &r.record) {
            (Some(name), None) => {
                let hold = match &r.for_ {
                    Some(s) => parse_duration(s).map_err(|e| rctx(&format!("for: {e}")))?,
                    None => Duration::ZERO,
                };
                let keep = match &r.keep_firing_for {
                    Some(s) => {
                        parse_duration(s).map_err(|e| rctx(&format!("keep_firing_for: {e}")))?
                    }
                    None => Duration::ZERO,
                };
                RuleKind::Alerting(AlertingRule::new(
                    name.clone(),
                    r.expr.clone(),
                    hold,
                    keep,
                    labels.clone(),
                    r.annotations.clone(),
                ))
            }
            (None, Some(name)) => {
                if !r.annotations.is_empty() || r.for_.is_some() || r.keep_firing_for.is_some() {
                    return Err(rctx(&format!(
                        "recording rule {name:?} may not have annotations, for or keep_firing_for"
                    )));
                }
                RuleKind::Recording(RecordingRule::new(
                    name.clone(),
                    r.expr.clone(),
                    labels.clone(),
                ))
            }
            _ => return Err(rctx("exactly one of `alert` and `record` must be set")),
        };
        let base = format!(
            "{}\u{1f}{}",
            r.alert.as_deref().or(r.record.as_deref()).unwrap_or(""),
            serde_json::to_string(&labels).unwrap_or_default()
        );
        let n = seen_keys.entry(base.clone()).or_default();
        let key = format!("{base}\u{1f}{n}");
        *n += 1;
        rules.push(RuleEntry {
            kind,
            status: RuleStatus::default(),
            key,
        });
    }
    Ok(Group {
        name: g.name,
        file: file.to_string(),
        interval,
        query_offset,
        limit: g.limit,
        rules,
        last_evaluation: None,
        evaluation_time: Duration::ZERO,
        restore_from: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::evaluator::alert::{AlertState, Labels};
    use crate::evaluator::datasource::{BoxFuture, DatasourceError};

    /// A datasource double for one function's tests: answers from a script and records the
    /// query times it was asked for.
    #[derive(Default)]
    struct Scripted {
        answer: Mutex<Option<Vec<Sample>>>,
        asked: Mutex<Vec<(String, DateTime<Utc>)>>,
    }

    impl Datasource for Scripted {
        fn query<'a>(
            &'a self,
            expr: &'a str,
            ts: DateTime<Utc>,
            _deadline: Instant,
        ) -> BoxFuture<'a, Result<Vec<Sample>, DatasourceError>> {
            self.asked.lock().unwrap().push((expr.to_string(), ts));
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move {
                answer.ok_or_else(|| DatasourceError::Transport {
                    url: "scripted".into(),
                    message: "connection refused".into(),
                })
            })
        }
    }

    fn ctx<'a>(ds: &'a Scripted, templater: &'a Templater) -> EvalContext<'a> {
        EvalContext {
            datasource: ds,
            templater,
            deadline: Instant::now() + Duration::from_secs(5),
            resend_delay: Duration::from_secs(60),
            outage_tolerance: Duration::from_secs(600),
            for_grace_period: Duration::from_secs(600),
            record_sink: None,
        }
    }

    fn one_sample() -> Vec<Sample> {
        vec![Sample {
            labels: Labels::from([("job".into(), "x".into())]),
            value: 1.0,
        }]
    }

    #[tokio::test]
    async fn a_failed_query_changes_no_state_and_firing_alerts_are_only_resent_within_the_outage_tolerance()
     {
        let mut g =
            load_groups_from_text("groups:\n- name: g\n  rules:\n  - {alert: A, expr: up == 0}\n")
                .remove(0);
        let ds = Scripted::default();
        let templater = Templater::default();
        *ds.answer.lock().unwrap() = Some(one_sample());
        let out = g.evaluate(t(0), &ctx(&ds, &templater)).await;
        assert_eq!(out.to_send.len(), 1);
        let before = g.rules[0].kind.clone();

        *ds.answer.lock().unwrap() = None;
        for (secs, expect_sent) in [(60, 0), (120, 1), (600, 1), (660, 0), (900, 0)] {
            let out = g.evaluate(t(secs), &ctx(&ds, &templater)).await;
            assert_eq!(out.failed, 1);
            assert!(out.transitions.is_empty());
            assert_eq!(out.to_send.len(), expect_sent, "at {secs}s");
            assert!(
                out.to_send
                    .iter()
                    .all(|(_, a)| a.state == AlertState::Firing)
            );
        }
        let (RuleKind::Alerting(now), RuleKind::Alerting(then)) = (&g.rules[0].kind, &before)
        else {
            panic!("not alerting")
        };
        assert_eq!(
            now.active.values().next().unwrap().active_at,
            then.active.values().next().unwrap().active_at
        );
        assert_eq!(now.state(), AlertState::Firing);
        assert_eq!(g.rules[0].status.health, Health::Err);
        assert!(
            g.rules[0]
                .status
                .last_error
                .as_ref()
                .unwrap()
                .contains("connection refused")
        );
    }

    #[tokio::test]
    async fn rules_of_a_group_run_in_order_at_the_same_time_minus_the_query_offset() {
        let mut g = load_groups_from_text(
            "groups:\n- name: g\n  query_offset: 30s\n  rules:\n  - {record: r, expr: first}\n  - {alert: A, expr: second}\n",
        )
        .remove(0);
        let ds = Scripted::default();
        let templater = Templater::default();
        *ds.answer.lock().unwrap() = Some(one_sample());
        let out = g.evaluate(t(100), &ctx(&ds, &templater)).await;
        let asked = ds.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![("first".to_string(), t(70)), ("second".to_string(), t(70))]
        );
        assert_eq!(out.recorded[0].labels["__name__"], "r");
        let RuleKind::Alerting(a) = &g.rules[1].kind else {
            panic!()
        };
        assert_eq!(
            a.active.values().next().unwrap().active_at,
            t(100),
            "alert times use the slot, not the query time"
        );
    }

    #[tokio::test]
    async fn restored_pending_alerts_are_adjusted_at_the_first_evaluation() {
        let mut g = load_groups_from_text(
            "groups:\n- name: g\n  rules:\n  - {alert: A, expr: up, for: 30m}\n",
        )
        .remove(0);
        let ds = Scripted::default();
        let templater = Templater::default();
        *ds.answer.lock().unwrap() = Some(one_sample());
        g.evaluate(t(0), &ctx(&ds, &templater)).await;
        g.evaluate(t(600), &ctx(&ds, &templater)).await;
        // Down from 600s to 1000s (within the 600s outage tolerance), then back.
        g.restore_from = Some(t(600));
        g.evaluate(t(1000), &ctx(&ds, &templater)).await;
        let RuleKind::Alerting(a) = &g.rules[0].kind else {
            panic!()
        };
        let alert = a.active.values().next().unwrap();
        assert_eq!(
            alert.active_at,
            t(400),
            "the 400s downtime does not count as pending"
        );
        assert_eq!(alert.state, AlertState::Pending);
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn slots_are_interval_apart_at_the_group_phase() {
        let iv = Duration::from_secs(60);
        let off = Duration::from_secs(17);
        assert_eq!(slot_at(t(1000), iv, off), t(977));
        assert_eq!(slot_at(t(977), iv, off), t(977));
        assert_eq!(slot_at(t(976), iv, off), t(917));
    }

    #[test]
    fn a_group_keeps_its_phase_and_groups_get_different_phases() {
        let mut groups = load_groups_from_text(
            "groups:\n- name: a\n  rules: [{alert: A, expr: up}]\n- name: b\n  rules: [{alert: B, expr: up}]\n",
        );
        let b = groups.pop().unwrap();
        let a = groups.pop().unwrap();
        assert_eq!(a.offset(), a.clone().offset());
        assert_ne!(a.offset(), b.offset());
        assert!(a.offset() < a.interval);
    }

    #[test]
    fn ticks_skipped_by_a_slow_evaluation_are_counted() {
        let iv = Duration::from_secs(10);
        assert_eq!(missed_ticks(t(0), t(10), iv), 0);
        assert_eq!(missed_ticks(t(0), t(19), iv), 0);
        assert_eq!(missed_ticks(t(0), t(35), iv), 2);
    }

    fn load_groups_from_text(text: &str) -> Vec<Group> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, text).unwrap();
        load_groups(&[p.display().to_string()], Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn prometheus_rule_resources_and_group_labels_are_understood() {
        let groups = load_groups_from_text(
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n  - name: g\n    interval: 30s\n    labels: {team: db, tier: x}\n    rules:\n    - alert: A\n      expr: up == 0\n      for: 5m\n      labels: {tier: y}\n",
        );
        assert_eq!(groups[0].interval, Duration::from_secs(30));
        let RuleKind::Alerting(a) = &groups[0].rules[0].kind else {
            panic!("not an alerting rule")
        };
        assert_eq!(a.hold, Duration::from_secs(300));
        assert_eq!(a.labels["team"], "db");
        assert_eq!(a.labels["tier"], "y");
    }

    #[test]
    fn a_rule_with_both_alert_and_record_is_rejected_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(
            &p,
            "groups:\n- name: g\n  rules:\n  - {alert: A, expr: up}\n  - {alert: B, record: b, expr: up}\n",
        )
        .unwrap();
        let err = load_groups(&[p.display().to_string()], Duration::from_secs(60)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bad.yaml:5") && msg.contains("only one of"),
            "{msg}"
        );
    }

    #[test]
    fn directories_and_globs_expand_to_yaml_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.yaml", "b.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "groups: []\n").unwrap();
        }
        let d = dir.path().display().to_string();
        assert_eq!(
            expand_rule_paths(std::slice::from_ref(&d)).unwrap().len(),
            2
        );
        assert_eq!(
            expand_rule_paths(&[format!("{d}/*.yaml")]).unwrap().len(),
            1
        );
        assert!(matches!(
            expand_rule_paths(&[format!("{d}/*.json")]),
            Err(LoadError::Empty(_))
        ));
    }
}
