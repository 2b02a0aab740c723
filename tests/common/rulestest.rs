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
    ("kubernetes-mixin/tests/apiserver-availability-test.yaml", true),
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
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}
