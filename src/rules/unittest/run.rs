//! Running one test file: input series loaded step by step into an in-memory store, the rule
//! groups evaluated by the evaluator's own engine (state machine, templates, write-back) at
//! every evaluation interval from 0 to the last `eval_time`, expectations compared as promtool
//! 2.42 compares them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::model::{AlertTestCase, TestFile, TestGroup};
use crate::evaluator::alert::{AlertState, Labels as AlertLabels};
use crate::evaluator::embedded::EmbeddedDatasource;
use crate::evaluator::group::{EvalContext, Group, RecordSink, RuleKind, load_groups};
use crate::evaluator::remote_write::StaleTracker;
use crate::evaluator::render::Templater;
use crate::promql::notation::{Slot, parse_metric, parse_values};
use crate::promql::{Engine, EngineOptions, Labels, Semantics, Storage, Value};
use crate::rules::duration::format as prom_duration;

/// How a test file is run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// PromQL boundary semantics. [`Semantics::V3`] also follows the newer promtool in
    /// defaulting a test group's `interval` to `evaluation_interval`.
    pub semantics: Semantics,
}

/// The outcome of one file: `Ok` when every test passed, else every failure message in
/// promtool's layout.
pub type FileResult = Result<(), Vec<String>>;

/// Reads, runs and checks one test file. Warnings (rule file patterns that match nothing) go
/// to `warn`.
pub async fn test_file(path: &Path, opts: Options, warn: &mut Vec<String>) -> FileResult {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "{}: cannot read the test file: {e}",
            path.display()
        )]
    })?;
    let file: TestFile = serde_yaml_ng::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        vec![format!("{}{at}: {e}", path.display())]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_files = resolve_rule_files(base, &file.rule_files, warn)
        .map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let eval_interval = file
        .evaluation_interval
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60));
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, name) in file.group_eval_order.iter().enumerate() {
        if order.insert(name.as_str(), i).is_some() {
            return Err(vec![format!(
                "group name repeated in evaluation order: {name}"
            )]);
        }
    }
    let mut errors = Vec::new();
    for tg in &file.tests {
        errors.extend(run_group(tg, eval_interval, &rule_files, &order, opts).await);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Rule file patterns relative to the test file, expanded; patterns that match nothing are
/// skipped with a warning, as promtool does.
fn resolve_rule_files(
    base: &Path,
    patterns: &[String],
    warn: &mut Vec<String>,
) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if p.is_empty() || Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let pattern = full.to_string_lossy().into_owned();
        let mut matched: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| format!("rule_files pattern {p:?}: {e}"))?
            .flatten()
            .collect();
        matched.sort();
        if matched.is_empty() {
            warn.push(format!("no file match pattern {pattern}"));
        }
        out.extend(matched);
    }
    Ok(out)
}

/// One input sample, in load order.
struct InputSample {
    t: i64,
    series: usize,
    v: f64,
}

/// Input series expanded to samples, appended to the store as the clock advances (samples
/// after the current evaluation are not visible yet, as with promtool's lazy loader).
struct Input {
    labels: Vec<Labels>,
    samples: Vec<InputSample>,
    next: usize,
    last_t: Vec<Option<i64>>,
}

impl Input {
    fn parse(tg: &TestGroup, interval: Duration) -> Result<Input, String> {
        let step = interval.as_millis() as i64;
        // A later definition of the same series replaces an earlier one.
        let mut by_labels: BTreeMap<Labels, (usize, Vec<Slot>)> = BTreeMap::new();
        for (i, s) in tg.input_series.iter().enumerate() {
            let labels = parse_metric(&s.series)
                .map_err(|e| format!("input_series[{i}] series {:?}: {e}", s.series))?;
            if labels.is_empty() {
                return Err(format!(
                    "input_series[{i}] series {:?}: no metric name and no labels",
                    s.series
                ));
            }
            let slots = parse_values(&s.values)
                .map_err(|e| format!("input_series[{i}] values {:?}: {e}", s.values))?;
            if slots.iter().any(|s| matches!(s, Slot::Histogram(_))) {
                return Err(format!(
                    "input_series[{i}] values {:?}: native histogram samples are not supported by the embedded engine",
                    s.values
                ));
            }
            by_labels.insert(labels, (i, slots));
        }
        let mut defs: Vec<(usize, Labels, Vec<Slot>)> = by_labels
            .into_iter()
            .map(|(labels, (i, slots))| (i, labels, slots))
            .collect();
        defs.sort_by_key(|d| d.0);
        let mut labels = Vec::new();
        let mut samples = Vec::new();
        for (series, (_, l, slots)) in defs.into_iter().enumerate() {
            labels.push(l);
            for (k, slot) in slots.into_iter().enumerate() {
                if let Slot::Value(v) = slot {
                    samples.push(InputSample {
                        t: k as i64 * step,
                        series,
                        v,
                    });
                }
            }
        }
        samples.sort_by_key(|s| s.t);
        let n = labels.len();
        Ok(Input {
            labels,
            samples,
            next: 0,
            last_t: vec![None; n],
        })
    }

    /// Appends every sample at or before `t`. A second sample of a series at the same time is
    /// dropped (the first one wins, as in Prometheus's TSDB).
    fn load_until(&mut self, storage: &RwLock<Storage>, t: i64) {
        let mut store = storage
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(s) = self.samples.get(self.next) {
            if s.t > t {
                break;
            }
            if self.last_t[s.series].is_none_or(|last| s.t > last) {
                store.append(&self.labels[s.series], s.t, s.v);
                self.last_t[s.series] = Some(s.t);
            }
            self.next += 1;
        }
    }
}

async fn run_group(
    tg: &TestGroup,
    eval_interval: Duration,
    rule_files: &[PathBuf],
    order: &HashMap<&str, usize>,
    opts: Options,
) -> Vec<String> {
    let interval = match (tg.interval, opts.semantics) {
        (Some(d), _) => d,
        (None, Semantics::V2) => Duration::ZERO,
        (None, Semantics::V3) => eval_interval,
    };
    let mut input = match Input::parse(tg, interval) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    let mut groups = if rule_files.is_empty() {
        Vec::new()
    } else {
        let paths: Vec<String> = rule_files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // Groups without an interval of their own get the test group's, as in promtool; it
        // only matters for alert bookkeeping, the clock here is `evaluation_interval`.
        let default = if interval.is_zero() {
            eval_interval
        } else {
            interval
        };
        match load_groups(&paths, default) {
            Ok(g) => g,
            Err(e) => return vec![e.to_string()],
        }
    };
    groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));

    let storage = Arc::new(RwLock::new(Storage::new()));
    let engine = Engine::new(EngineOptions {
        semantics: opts.semantics,
        default_subquery_step: eval_interval,
        ..EngineOptions::default()
    });
    // The datasource is also where recording results and `ALERTS` are written back.
    let datasource = EmbeddedDatasource::new(storage.clone(), engine.clone());
    let templater = Templater::new(
        tg.external_labels.clone().into_iter().collect(),
        tg.external_url.clone(),
    );
    let mut stale = StaleTracker::default();

    let mut alert_tests: BTreeMap<Duration, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        let t = a.eval_time.unwrap_or_default();
        if a.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                prom_duration(t)
            )];
        }
        alert_tests.entry(t).or_default().push(a);
    }
    let max_t = tg
        .alert_rule_test
        .iter()
        .map(|a| a.eval_time.unwrap_or_default())
        .chain(
            tg.promql_expr_test
                .iter()
                .map(|p| p.eval_time.unwrap_or_default()),
        )
        .max()
        .unwrap_or_default();

    let mut errors = Vec::new();
    let step = eval_interval.as_millis() as i64;
    let max_ms = max_t.as_millis() as i64;
    let mut pending_checks = alert_tests.iter().peekable();
    let mut ts = 0i64;
    while ts <= max_ms {
        input.load_until(&storage, ts);
        let now = DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or_default();
        let mut eval_errors = Vec::new();
        for group in &mut groups {
            let ctx = EvalContext {
                datasource: &datasource,
                templater: &templater,
                deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
                resend_delay: Duration::ZERO,
                outage_tolerance: Duration::ZERO,
                for_grace_period: Duration::ZERO,
                record_sink: Some(&datasource as &dyn RecordSink),
            };
            group.evaluate(now, &ctx).await;
            datasource.append(
                stale
                    .points(group, now, false)
                    .into_iter()
                    .map(|p| (p.labels, p.ts, p.value)),
            );
            for entry in &group.rules {
                if let Some(e) = &entry.status.last_error {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        entry.name(),
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return errors;
        }
        while let Some((t, cases)) = pending_checks.peek() {
            let t_ms = t.as_millis() as i64;
            if !(ts <= t_ms && t_ms < ts + step) {
                break;
            }
            for case in cases.iter() {
                if let Some(e) = check_alerts(tg, case, &groups) {
                    errors.push(e);
                }
            }
            pending_checks.next();
        }
        ts += step;
    }

    for case in &tg.promql_expr_test {
        let t = case.eval_time.unwrap_or_default();
        let at = format!("    expr: {:?}, time: {}", case.expr, prom_duration(t));
        let result = {
            let store = storage.read().unwrap_or_else(|p| p.into_inner());
            engine.instant(&store, &case.expr, t.as_millis() as i64)
        };
        let mut got: Vec<(Labels, f64)> = match result {
            Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Ok(Value::Scalar(p)) => vec![(Labels::empty(), p.v)],
            Ok(_) => {
                errors.push(format!("{at}, err: rule result is not a vector or scalar"));
                continue;
            }
            Err(e) => {
                errors.push(format!("{at}, err: {e}"));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &case.exp_samples {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    bad = Some(format!("{at}, err: labels {:?}: {e}", s.labels));
                    break;
                }
            }
        }
        if let Some(b) = bad {
            errors.push(b);
            continue;
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same =
            got.len() == exp.len() && got.iter().zip(&exp).all(|(g, e)| g.0 == e.0 && g.1 == e.1);
        if !same {
            errors.push(format!(
                "{at},\n        exp: {}\n        got: {}",
                samples_text(&exp),
                samples_text(&got)
            ));
        }
    }
    errors
}

/// Compares the firing alerts of every rule named `case.alertname` with the expectation.
fn check_alerts(tg: &TestGroup, case: &AlertTestCase, groups: &[Group]) -> Option<String> {
    let mut got: Vec<(AlertLabels, AlertLabels)> = Vec::new();
    for g in groups {
        for entry in &g.rules {
            if let RuleKind::Alerting(rule) = &entry.kind
                && rule.name == case.alertname
            {
                got.extend(
                    rule.active
                        .values()
                        .filter(|a| a.state == AlertState::Firing)
                        .map(|a| (a.labels.clone(), a.annotations.clone())),
                );
            }
        }
    }
    let mut exp: Vec<(AlertLabels, AlertLabels)> = case
        .exp_alerts
        .iter()
        .map(|a| {
            let mut labels = a.exp_labels.clone();
            labels.insert("alertname".into(), case.alertname.clone());
            (labels, a.exp_annotations.clone())
        })
        .collect();
    got.sort();
    exp.sort();
    if got == exp {
        return None;
    }
    let name = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    Some(format!(
        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        prom_duration(case.eval_time.unwrap_or_default()),
        indent(&alerts_text(&exp), "            "),
        indent(&alerts_text(&got), "            ")
    ))
}

fn alerts_text(alerts: &[(AlertLabels, AlertLabels)]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(i, (l, a))| {
            format!(
                "{i}:\n  Labels:{}\n  Annotations:{}",
                map_text(l),
                map_text(a)
            )
        })
        .collect();
    format!("[\n{}\n]", items.join(",\n"))
}

fn map_text(m: &AlertLabels) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{prefix}"))
}

fn samples_text(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(l, v)| {
            let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{{{}}} {}", inner.join(", "), go_float_e(*v))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A float as Go's `strconv.FormatFloat(v, 'E', -1, 64)` prints it: `6.1E+01`.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    let (mantissa, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}E{sign}{:02}", exp.abs())
}

/// Milliseconds as Go's `time.Duration` prints them: `0s`, `1m0s`, `1h2m3.5s`, `500ms`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms.abs() < 1000 {
        return format!("{ms}ms");
    }
    let neg = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let h = ms / 3_600_000;
    let m = ms / 60_000 % 60;
    let s = ms % 60_000;
    let secs = if s.is_multiple_of(1000) {
        format!("{}s", s / 1000)
    } else {
        let frac = format!("{:03}", s % 1000);
        format!("{}.{}s", s / 1000, frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{neg}{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{neg}{m}m{secs}")
    } else {
        format!("{neg}{secs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::unittest::model::InputSeries;
    use promql_parser::label::{MatchOp, Matcher};

    fn stored(storage: &RwLock<Storage>, name: &str) -> Vec<(i64, f64)> {
        let store = storage.read().unwrap();
        let m = [Matcher::new(MatchOp::Equal, "__name__", name)];
        store
            .select(&m)
            .iter()
            .flat_map(|s| s.all_samples())
            .map(|p| (p.t, p.v))
            .collect()
    }

    fn group(series: &[(&str, &str)]) -> TestGroup {
        TestGroup {
            input_series: series
                .iter()
                .map(|(s, v)| InputSeries {
                    series: s.to_string(),
                    values: v.to_string(),
                })
                .collect(),
            ..TestGroup::default()
        }
    }

    #[test]
    fn input_samples_become_visible_only_as_the_clock_reaches_them() {
        let tg = group(&[("x", "1 _ 3")]);
        let mut input = Input::parse(&tg, Duration::from_secs(60)).unwrap();
        let storage = RwLock::new(Storage::new());
        input.load_until(&storage, 0);
        assert_eq!(stored(&storage, "x"), vec![(0, 1.0)]);
        input.load_until(&storage, 120_000);
        assert_eq!(stored(&storage, "x"), vec![(0, 1.0), (120_000, 3.0)]);
    }

    #[test]
    fn a_later_definition_of_a_series_replaces_an_earlier_one() {
        let tg = group(&[("x{a='1'}", "1 1"), ("y", "5"), ("x{a=\"1\"}", "7")]);
        let mut input = Input::parse(&tg, Duration::from_secs(60)).unwrap();
        let storage = RwLock::new(Storage::new());
        input.load_until(&storage, 600_000);
        assert_eq!(stored(&storage, "x"), vec![(0, 7.0)]);
    }

    #[test]
    fn with_interval_zero_the_first_sample_at_a_timestamp_wins() {
        let tg = group(&[("x", "1 2 3")]);
        let mut input = Input::parse(&tg, Duration::ZERO).unwrap();
        let storage = RwLock::new(Storage::new());
        input.load_until(&storage, 0);
        assert_eq!(stored(&storage, "x"), vec![(0, 1.0)]);
    }

    #[test]
    fn a_bad_series_names_its_position_in_input_series() {
        let tg = group(&[("x", "1"), ("y{", "1")]);
        let err = Input::parse(&tg, Duration::from_secs(60)).err().unwrap();
        assert!(err.starts_with("input_series[1] series \"y{\""), "{err}");
    }

    #[test]
    fn floats_print_like_go_exponent_format() {
        assert_eq!(go_float_e(1.0), "1E+00");
        assert_eq!(go_float_e(0.0), "0E+00");
        assert_eq!(go_float_e(61.0), "6.1E+01");
        assert_eq!(go_float_e(0.0125), "1.25E-02");
        assert_eq!(go_float_e(f64::INFINITY), "+Inf");
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(3_723_500), "1h2m3.5s");
        assert_eq!(go_duration(250), "250ms");
    }
}
