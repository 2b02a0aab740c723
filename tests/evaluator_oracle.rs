//! The oracle: `kubesignal replay` against a real Prometheus holding data at known past
//! timestamps must agree with `promtool test rules` on the same series and rules, at every
//! evaluation, for `for`, `keep_firing_for`, flapping, label templating and recording rules.
//!
//! How: the replay's timeline is turned into a promtool unit-test file (the firing alerts with
//! their labels and annotations at every evaluation, and the recorded series at every
//! evaluation); promtool then evaluates the rules itself and fails on any difference.

#[path = "common/evaluator.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use chrono::{DateTime, Duration as CDuration, SecondsFormat, TimeZone, Utc};
use common::*;
use serde_json::Value;

type Labels = BTreeMap<String, String>;
type Pairs = Vec<(String, String)>;
/// Firing alerts of one alert name: labels and annotations.
type FiringSet = BTreeSet<(Pairs, Pairs)>;
/// Recorded series: name, labels, value.
type RecordedSet = BTreeSet<(String, Pairs, String)>;

const RULES: &str = r#"groups:
  - name: oracle
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - record: job:errors:max
        expr: max by (job) (errors)
        labels:
          source: recorded
      - alert: InstanceDown
        expr: up == 0
        for: 3m
        labels:
          severity: page
          owner: "team-{{ $labels.job }}"
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job | toUpper }} is down (value {{ $value }})"
          description: '{{ printf "%.2f" $value }}; {{ with query "count(up)" }}{{ . | first | value }}{{ end }} targets known'
      - alert: HighErrors
        expr: errors > 5
        keep_firing_for: 3m
        labels:
          severity: '{{ if gt $value 5.0 }}ticket{{ else }}none{{ end }}'
        annotations:
          summary: "{{ $labels.instance }} has {{ $value | humanize }} errors"
      - alert: Flappy
        expr: flap > 0
        for: 2m
        labels:
          instance: "{{ $labels.instance }}-x"
"#;

const ALERTS: &[&str] = &["InstanceDown", "HighErrors", "Flappy"];
const RECORDS: &[&str] = &["job:up:sum", "job:errors:max"];

/// Series in promtool's notation, one value per minute from t=0; `_` is a missing sample.
const SERIES: &[(&str, &str)] = &[
    (
        r#"up{job="api",instance="a"}"#,
        "1 1 0 0 0 0 0 1 1 0 0 0 0 0 0 1 1 1 1 1 1 1",
    ),
    (
        r#"up{job="api",instance="b"}"#,
        "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ),
    (
        r#"up{job="db",instance="c"}"#,
        "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
    ),
    (
        r#"errors{job="api",instance="a"}"#,
        "0 0 10 10 10 0 0 0 0 0 0 10 0 0 0 0 0 0 0 0 0 0",
    ),
    (
        r#"errors{job="db",instance="c"}"#,
        "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    ),
    (
        r#"flap{instance="f"}"#,
        "1 0 1 1 0 1 1 1 0 1 1 1 1 0 1 _ _ _ _ _ _ _",
    ),
];

/// Evaluations, one a minute (enough for the 5m lookback to expire the gap in `flap`).
const STEPS: i64 = 22;

fn parse_series(s: &str) -> (String, Labels) {
    let (name, rest) = s.split_once('{').unwrap();
    let mut labels = Labels::new();
    for pair in rest.trim_end_matches('}').split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        labels.insert(k.into(), v.trim_matches('"').into());
    }
    (name.into(), labels)
}

fn openmetrics(t0: DateTime<Utc>) -> String {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (series, values) in SERIES {
        let (name, _) = parse_series(series);
        let lines = by_name.entry(name).or_default();
        for (k, v) in values.split_whitespace().enumerate() {
            if v == "_" {
                continue;
            }
            let ts = t0.timestamp() + 60 * k as i64;
            lines.push(format!("{series} {v} {ts}"));
        }
    }
    let mut out = String::new();
    for (name, lines) in by_name {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Firing alerts per evaluation index, from the replay's state changes.
struct Timeline {
    firing: Vec<BTreeMap<String, FiringSet>>,
    recorded: Vec<RecordedSet>,
    changes: Vec<(i64, String, Labels, String)>,
}

fn timeline(t0: DateTime<Utc>, output: &str) -> Timeline {
    let mut firing_now: BTreeMap<(String, Labels), Labels> = BTreeMap::new();
    let mut firing = vec![BTreeMap::new(); STEPS as usize];
    let mut recorded = vec![BTreeSet::new(); STEPS as usize];
    let mut changes = Vec::new();
    let mut lines_by_step: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for line in output.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let t = DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        let k = (t.with_timezone(&Utc) - t0).num_seconds() / 60;
        lines_by_step.entry(k).or_default().push(v);
    }
    for k in 0..STEPS {
        for v in lines_by_step.remove(&k).unwrap_or_default() {
            let labels: Labels = serde_json::from_value(v["labels"].clone()).unwrap();
            if let Some(record) = v.get("record") {
                let value = v["value"].as_f64().unwrap();
                recorded[k as usize].insert((
                    record.as_str().unwrap().to_string(),
                    labels.into_iter().collect(),
                    format!("{value}"),
                ));
                continue;
            }
            let name = v["alertname"].as_str().unwrap().to_string();
            let state = v["state"].as_str().unwrap().to_string();
            let annotations: Labels = serde_json::from_value(v["annotations"].clone()).unwrap();
            changes.push((k, name.clone(), labels.clone(), state.clone()));
            if state == "firing" {
                firing_now.insert((name, labels), annotations);
            } else {
                firing_now.remove(&(name, labels));
            }
        }
        for ((name, labels), ann) in &firing_now {
            firing[k as usize]
                .entry(name.clone())
                .or_insert_with(BTreeSet::new)
                .insert((
                    labels.clone().into_iter().collect(),
                    ann.clone().into_iter().collect(),
                ));
        }
    }
    Timeline {
        firing,
        recorded,
        changes,
    }
}

fn yaml_map(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}: {}", serde_json::to_string(v).unwrap()))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// A promtool unit-test file expecting exactly `tl` at every evaluation.
fn promtool_test(tl: &Timeline, alerts: &[&str], records: &[&str]) -> String {
    let mut out = String::from(
        "rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for (series, values) in SERIES {
        out.push_str(&format!(
            "      - series: '{series}'\n        values: '{values}'\n"
        ));
    }
    out.push_str("    alert_rule_test:\n");
    for k in 0..STEPS as usize {
        for name in alerts {
            out.push_str(&format!(
                "      - eval_time: {k}m\n        alertname: {name}\n        exp_alerts:"
            ));
            let firing = tl.firing[k].get(*name).cloned().unwrap_or_default();
            if firing.is_empty() {
                out.push_str(" []\n");
                continue;
            }
            out.push('\n');
            for (labels, ann) in firing {
                let labels: Vec<(String, String)> = labels
                    .into_iter()
                    .filter(|(k, _)| k != "alertname")
                    .collect();
                out.push_str(&format!(
                    "          - exp_labels: {}\n            exp_annotations: {}\n",
                    yaml_map(&labels),
                    yaml_map(&ann)
                ));
            }
        }
    }
    out.push_str("    promql_expr_test:\n");
    for k in 0..STEPS as usize {
        for record in records {
            out.push_str(&format!(
                "      - expr: '{record}'\n        eval_time: {k}m\n        exp_samples:"
            ));
            let samples: Vec<_> = tl.recorded[k]
                .iter()
                .filter(|(r, _, _)| r == record)
                .collect();
            if samples.is_empty() {
                out.push_str(" []\n");
                continue;
            }
            out.push('\n');
            for (r, labels, value) in samples {
                let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                out.push_str(&format!(
                    "          - labels: '{r}{{{}}}'\n            value: {value}\n",
                    inner.join(",")
                ));
            }
        }
    }
    out
}

fn run_promtool(dir: &std::path::Path, test: &str) -> (bool, String) {
    let promtool = require("promtool", "prometheus");
    let file = dir.join("oracle_test.yaml");
    std::fs::write(&file, test).unwrap();
    let out = Command::new(promtool)
        .current_dir(dir)
        .args(["test", "rules", "oracle_test.yaml"])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `kubesignal replay --output json --emit-recorded` over the test range.
fn replay(dir: &std::path::Path, url: &str, t0: DateTime<Utc>, extra: &[String]) -> String {
    let to = t0 + CDuration::minutes(STEPS - 1);
    let out = kubesignal()
        .arg("replay")
        .arg(format!("--rules={}", dir.join("rules.yaml").display()))
        .arg(format!("--datasource-url={url}"))
        .arg(format!(
            "--from={}",
            t0.to_rfc3339_opts(SecondsFormat::Secs, true)
        ))
        .arg(format!(
            "--to={}",
            to.to_rfc3339_opts(SecondsFormat::Secs, true)
        ))
        .args(["--step=1m", "--output=json", "--emit-recorded"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Three hours ago, on an hour boundary: well inside retention, clear of the head block.
fn start_time() -> DateTime<Utc> {
    let now = Utc::now() - CDuration::hours(3);
    Utc.timestamp_opt(now.timestamp() - now.timestamp() % 3600, 0)
        .unwrap()
}

#[test]
fn replay_timelines_agree_with_promtool_at_every_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), RULES).unwrap();
    let t0 = start_time();
    let prom = Prometheus::with_openmetrics(dir, &openmetrics(t0));
    let stdout = replay(dir, &prom.url, t0, &[]);
    let tl = timeline(t0, &stdout);

    // Spot checks worked out by hand from the series above.
    let change = |k: i64, name: &str, instance: &str| -> Option<String> {
        tl.changes
            .iter()
            .find(|(kk, n, l, _)| {
                *kk == k && n == name && l.get("instance").map(String::as_str) == Some(instance)
            })
            .map(|(_, _, _, s)| s.clone())
    };
    assert_eq!(
        change(2, "InstanceDown", "a").as_deref(),
        Some("pending"),
        "{stdout}"
    );
    assert_eq!(
        change(5, "InstanceDown", "a").as_deref(),
        Some("firing"),
        "{stdout}"
    );
    assert_eq!(
        change(7, "InstanceDown", "a").as_deref(),
        Some("inactive"),
        "{stdout}"
    );
    assert_eq!(
        change(12, "InstanceDown", "a").as_deref(),
        Some("firing"),
        "{stdout}"
    );
    assert_eq!(
        change(8, "HighErrors", "a").as_deref(),
        Some("inactive"),
        "kept firing 3m: {stdout}"
    );
    assert_eq!(
        change(7, "Flappy", "f-x").as_deref(),
        Some("firing"),
        "{stdout}"
    );
    let down_c = tl.firing[3]["InstanceDown"].iter().next().unwrap();
    assert!(
        down_c.0.contains(&("owner".into(), "team-db".into())),
        "{down_c:?}"
    );

    let test = promtool_test(&tl, ALERTS, RECORDS);
    let (ok, log) = run_promtool(dir, &test);
    assert!(
        ok,
        "promtool disagrees with the replay:\n{log}\n--- test file ---\n{test}"
    );

    // The oracle can fail: drop one firing alert from the expectations and promtool objects.
    let mut wrong = tl;
    wrong.firing[5].remove("InstanceDown");
    let (ok, _) = run_promtool(dir, &promtool_test(&wrong, ALERTS, RECORDS));
    assert!(!ok, "promtool accepted a timeline missing a firing alert");
    drop(prom);
}

const CHAINED_RULES: &str = r#"groups:
  - name: chained
    rules:
      - record: instance:flap:sum
        expr: sum by (instance) (flap)
      - record: job:errors:sum
        expr: sum by (job) (errors)
      - alert: FlapRecorded
        expr: instance:flap:sum > 0
        for: 2m
        annotations:
          summary: "{{ $labels.instance }} at {{ $value }}"
      - alert: JobErrors
        expr: job:errors:sum > 5
        labels:
          team: "{{ $labels.job }}"
"#;

#[test]
fn replay_with_write_back_chains_recording_rules_the_way_promtool_does() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), CHAINED_RULES).unwrap();
    let t0 = start_time();
    // Past samples written back need Prometheus's out-of-order window.
    let prom = Prometheus::with_openmetrics_config(
        dir,
        &openmetrics(t0),
        "global: {}\nstorage:\n  tsdb:\n    out_of_order_time_window: 1d\nscrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );
    let write = format!("--remote-write-url={}/api/v1/write", prom.url);
    let stdout = replay(dir, &prom.url, t0, &[write]);
    let tl = timeline(t0, &stdout);
    // The chained alert fires only because the recorded series was written back.
    assert!(
        tl.firing.iter().any(|f| f.contains_key("FlapRecorded")),
        "no chained alert fired:\n{stdout}"
    );
    let alerts = &["FlapRecorded", "JobErrors"];
    let records = &["instance:flap:sum", "job:errors:sum"];
    let test = promtool_test(&tl, alerts, records);
    let (ok, log) = run_promtool(dir, &test);
    assert!(
        ok,
        "promtool disagrees with the replay:\n{log}\n--- test file ---\n{test}"
    );
    drop(prom);
}
