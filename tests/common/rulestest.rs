//! Helpers for `kubesignal rules test` tests: running the real `promtool test rules` and our
//! command on the same file from the file's own directory (paths in `rule_files` are relative
//! to it), and the fixture test files with the verdicts PROVENANCE.md records for promtool 2.42.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// How one run went.
#[derive(Debug)]
pub struct Run {
    /// Exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Both streams, for failure messages (cut to keep them readable).
    pub fn describe(&self) -> String {
        let all = format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        all.chars().take(6000).collect()
    }

    /// `pass`, `fail` or how it ended otherwise.
    pub fn verdict(&self) -> &'static str {
        match self.code {
            Some(0) => "pass",
            Some(1) => "fail",
            _ => "error",
        }
    }
}

fn run(mut cmd: Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real promtool; fails the test saying what to install when it is missing.
pub fn promtool() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join("promtool");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`promtool` is not installed: install prometheus (promtool), e.g. `apt-get install -y prometheus` (Debian's 2.42)"
    );
}

/// `promtool test rules FILE`, run in the file's directory.
pub fn promtool_test(file: &Path) -> Run {
    let mut cmd = Command::new(promtool());
    cmd.current_dir(file.parent().unwrap())
        .args(["test", "rules"])
        .arg(file.file_name().unwrap());
    run(cmd)
}

/// `kubesignal rules test [extra] FILE`, run in the file's directory, with an empty PATH so
/// nothing else (no Prometheus, no promtool) can be reached.
pub fn kubesignal_test(file: &Path, extra: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesignal"));
    cmd.current_dir(file.parent().unwrap())
        .env_remove("KUBESIGNAL_CONFIG")
        .env("PATH", "")
        .args(["--log-format=text", "rules", "test"])
        .args(extra)
        .arg(file.file_name().unwrap());
    run(cmd)
}

/// The shared rule fixtures (`../shared/fixtures/rules`, or `$KUBESIGNAL_FIXTURES/rules`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("KUBESIGNAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
        .join("rules");
    assert!(
        dir.is_dir(),
        "the rule fixtures were not found at {}: they sit beside the repository as ../shared/fixtures/rules, or set KUBESIGNAL_FIXTURES",
        dir.display()
    );
    dir
}

/// promtool 2.42's verdict on every unit-test file among the fixtures, from the table in
/// `fixtures/rules/PROVENANCE.md` (path relative to the fixtures, passes?).
pub const PROVENANCE_VERDICTS: &[(&str, bool)] = &[
    ("kubernetes-mixin/tests/absent_alert-test.yaml", false),
    (
        "kubernetes-mixin/tests/apiserver-availability-test.yaml",
        true,
    ),
    ("kubernetes-mixin/tests/apps_alerts-test.yaml", true),
    ("kubernetes-mixin/tests/kube_scheduler-test.yaml", true),
    ("kubernetes-mixin/tests/kubelet-test.yaml", true),
    ("kubernetes-mixin/tests/resource_alerts-test.yaml", true),
    ("kubernetes-mixin/tests/rules-pod-owner-test.yaml", true),
    ("kubernetes-mixin/tests/tests.yaml", false),
    ("govuk/argo_workflows_tests.yaml", true),
    ("govuk/datagovuk_traffic_tests.yaml", true),
    ("govuk/email_alert_api_alerts_tests.yaml", true),
    ("govuk/graphql_tests.yaml", true),
    ("govuk/router_tests.yaml", true),
    ("govuk/search_api_alerts_tests.yaml", true),
    ("govuk/smart_answers_tests.yaml", true),
    ("govuk/whitehall_tests.yaml", true),
    ("govuk/publishing_api_tests.yaml", false),
    (
        "govuk/integration/database_backups_and_syncs_integration_only_alerts_tests.yaml",
        false,
    ),
    (
        "govuk/production/database_backups_and_syncs_production_only_alerts_tests.yaml",
        false,
    ),
    (
        "govuk/staging/database_backups_and_syncs_staging_only_alerts_tests.yaml",
        false,
    ),
    ("promtool-testdata-v2.42/unittest.yml", true),
    ("promtool-testdata-v2.42/at-modifier-test.yml", true),
    ("promtool-testdata-v2.42/negative-offset-test.yml", true),
    ("promtool-testdata-v2.42/long-period.yml", true),
    ("promtool-testdata-v2.42/failing.yml", false),
    ("promtool-testdata-v2.42/bad-rules-error-test.yml", false),
    ("promtool-testdata-v2.42/bad-rules-syntax-test.yml", false),
    ("promtool-testdata-v2.42/bad-input-series.yml", false),
    ("promtool-testdata-v2.42/bad-promql.yml", false),
];

/// Every promtool unit-test file under `dir` (recursively): YAML whose top level has `tests:`
/// and no `groups:`. Paths are relative to the fixtures.
pub fn unit_test_files(dir: &str) -> Vec<String> {
    let root = fixtures();
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.to_string_lossy().into_owned();
            if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let is_test = text.lines().any(|l| l.starts_with("tests:"))
                && !text.lines().any(|l| l.starts_with("groups:"));
            if is_test {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// OpenMetrics text for replay tests: two hours and a half of samples every 15s from `base`
/// (Unix seconds), shaped so that alerts go pending, fire, resolve, and get dropped while
/// pending: a queue depth over 100 from minute 30 to 50 and from 90 to 93, a second queue whose
/// series stops at minute 100, and request counters whose 5xx share jumps to about 23% from
/// minute 60 to 80, with a counter reset at minute 70.
pub fn replay_openmetrics(base: i64) -> String {
    let steps = 150 * 4;
    let at = |i: i64| format!("{}.{:03}", base + i * 15, 0);
    let minute = |i: i64| i / 4;
    let mut out = String::from("# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge\n");
    for i in 0..=steps {
        let m = minute(i);
        let a = if (30..50).contains(&m) || (90..93).contains(&m) {
            150
        } else {
            50
        };
        out.push_str(&format!("queue_depth{{queue=\"a\"}} {a} {}\n", at(i)));
    }
    for i in 0..=steps {
        if minute(i) >= 100 {
            break;
        }
        out.push_str(&format!(
            "queue_depth{{queue=\"b\"}} {} {}\n",
            10 + i % 7,
            at(i)
        ));
    }
    out.push_str("# HELP http_requests Requests served.\n# TYPE http_requests counter\n");
    let mut ok = 0u64;
    for i in 0..=steps {
        if i == 70 * 4 {
            ok = 0;
        }
        ok += 100;
        out.push_str(&format!(
            "http_requests_total{{code=\"200\"}} {ok} {}\n",
            at(i)
        ));
    }
    let mut errors = 0u64;
    for i in 0..=steps {
        errors += if (60..80).contains(&minute(i)) { 30 } else { 2 };
        out.push_str(&format!(
            "http_requests_total{{code=\"500\"}} {errors} {}\n",
            at(i)
        ));
    }
    out.push_str("# EOF\n");
    out
}

/// Rules for replay tests over [`replay_openmetrics`]: alerts with and without `for`, on
/// gauges, rates and `absent`, and a recording rule.
pub const REPLAY_RULES: &str = r#"groups:
  - name: replay
    rules:
      - record: queue:depth:sum
        expr: sum by (queue) (queue_depth)
      - alert: QueueBacklog
        expr: queue_depth > 100
        for: 5m
        labels: {severity: ticket}
        annotations:
          summary: "queue {{ $labels.queue }} holds {{ $value }} items"
      - alert: HighErrorRatio
        expr: sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.1
        for: 2m
        labels: {severity: page}
        annotations:
          summary: "{{ $value | humanizePercentage }} of requests fail"
      - alert: QueueGone
        expr: absent(queue_depth{queue="b"})
        for: 1m
"#;
