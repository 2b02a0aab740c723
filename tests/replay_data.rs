//! `kubesignal replay --data FILE`: the same rules replayed over an OpenMetrics file through the
//! embedded engine and through a real Prometheus loaded from the same file (`promtool tsdb
//! create-blocks-from openmetrics`) give the same alert timeline and recorded values.

#[path = "common/evaluator.rs"]
mod evaluator;
#[path = "common/rulestest.rs"]
mod rulestest;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use evaluator::{Proc, free_port, require, wait_http_ok};
use rulestest::{REPLAY_RULES, replay_openmetrics};

/// 2023-11-14T22:13:20Z: fixed, long past, so the real Prometheus needs a long retention.
const BASE: i64 = 1_700_000_000;

fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Runs `kubesignal replay` with `source` args; returns the JSON lines.
fn replay(rules: &Path, source: &[String]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .env_remove("KUBESIGNAL_CONFIG")
        .args(["--log-format=text", "--log=warn", "replay"])
        .arg(format!("--rules={}", rules.display()))
        .args(source)
        .arg(format!("--from={}", rfc3339(BASE)))
        .arg(format!("--to={}", rfc3339(BASE + 150 * 60)))
        .args(["--step=1m", "--output=json", "--emit-recorded"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay {source:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Alert state changes as comparable text lines.
fn transitions(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.get("state").is_some())
        .map(|l| {
            format!(
                "{} {} {} {} {}",
                l["time"], l["alertname"], l["state"], l["labels"], l["annotations"]
            )
        })
        .collect()
}

/// Recorded samples: (time, labels) -> value.
fn recorded(lines: &[Value]) -> Vec<(String, f64)> {
    lines
        .iter()
        .filter(|l| l.get("record").is_some())
        .map(|l| {
            (
                format!("{} {} {}", l["time"], l["record"], l["labels"]),
                l["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn replay_over_a_file_matches_replay_over_prometheus_loaded_from_the_same_file() {
    let promtool = require("promtool", "prometheus");
    let prometheus = require("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.om");
    std::fs::write(&data, replay_openmetrics(BASE)).unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, REPLAY_RULES).unwrap();

    let ours = replay(&rules, &[format!("--data={}", data.display())]);

    let tsdb = dir.path().join("tsdb");
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&data)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool create-blocks-from failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\nscrape_configs: []\n").unwrap();
    let port = free_port();
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y");
    let proc = Proc::spawn("prometheus", cmd, &dir.path().join("prometheus.log"));
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(60), &proc);
    let theirs = replay(&rules, &[format!("--datasource-url={url}")]);
    drop(proc);

    let (ours_t, theirs_t) = (transitions(&ours), transitions(&theirs));
    assert_eq!(ours_t, theirs_t, "alert timelines differ");
    // The scenario exercises every transition: pending, firing, resolved, dropped while pending.
    for (what, needle) in [
        ("backlog fires", r#""QueueBacklog" "firing""#),
        ("backlog resolves", r#""QueueBacklog" "inactive""#),
        ("error ratio fires", r#""HighErrorRatio" "firing""#),
        ("absent fires", r#""QueueGone" "firing""#),
    ] {
        assert!(
            ours_t.iter().any(|l| l.contains(needle)),
            "{what}: {ours_t:#?}"
        );
    }
    let backlog_pending = ours_t
        .iter()
        .filter(|l| l.contains(r#""QueueBacklog" "pending""#))
        .count();
    assert_eq!(
        backlog_pending, 2,
        "two backlogs, one too short to fire: {ours_t:#?}"
    );

    let (ours_r, theirs_r) = (recorded(&ours), recorded(&theirs));
    assert_eq!(ours_r.len(), theirs_r.len());
    assert!(!ours_r.is_empty());
    for ((k1, v1), (k2, v2)) in ours_r.iter().zip(&theirs_r) {
        assert_eq!(k1, k2);
        assert!(
            (v1 - v2).abs() <= 1e-9 * v2.abs().max(1.0),
            "{k1}: {v1} vs {v2}"
        );
    }
}

#[test]
fn a_malformed_data_file_is_rejected_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.om");
    std::fs::write(
        &data,
        "# TYPE x gauge\nx 1 1700000000\nx{a=\"1\" 2 1700000060\n# EOF\n",
    )
    .unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, REPLAY_RULES).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .env_remove("KUBESIGNAL_CONFIG")
        .args(["--log-format=text", "replay"])
        .arg(format!("--rules={}", rules.display()))
        .arg(format!("--data={}", data.display()))
        .args(["--from=2023-11-14T22:13:20Z", "--to=2023-11-14T23:13:20Z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.om: line 3:"),
        "the error names the file and line: {stderr}"
    );
}

#[test]
fn replay_needs_a_datasource_url_or_a_data_file_but_not_both() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kubesignal"))
            .env_remove("KUBESIGNAL_CONFIG")
            .env_remove("KUBESIGNAL_DATASOURCE_URL")
            .env_remove("KUBESIGNAL_DATA")
            .args([
                "replay",
                "--rules=r.yaml",
                "--from=2023-11-14T22:13:20Z",
                "--to=2023-11-14T23:13:20Z",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let neither = run(&[]);
    assert_eq!(neither.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--datasource-url"));
    let both = run(&["--data=x.om", "--datasource-url=http://127.0.0.1:1"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

#[test]
fn recording_results_are_written_back_so_chained_rules_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.om");
    std::fs::write(&data, replay_openmetrics(BASE)).unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "groups:\n  - name: chain\n    rules:\n      - record: queue:depth:sum\n        expr: sum by (queue) (queue_depth)\n      - alert: BacklogFromRecorded\n        expr: queue:depth:sum{queue=\"a\"} > 100\n",
    )
    .unwrap();
    let lines = replay(&rules, &[format!("--data={}", data.display())]);
    let fired: Vec<&Value> = lines
        .iter()
        .filter(|l| l["alertname"] == "BacklogFromRecorded" && l["state"] == "firing")
        .collect();
    assert_eq!(fired.len(), 2, "{lines:#?}");
    assert_eq!(fired[0]["time"], rfc3339(BASE + 30 * 60));
}
