//! Helpers for the `rules check` and template tests: where the shared rule fixtures are, how
//! to tell rule files from promtool unit-test files and SLO specs, and how to run the real
//! `promtool` and our binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "fixtures.rs"]
mod shared_fixtures;

/// The shared rule fixtures (`rules/` of the shared fixtures).
pub fn fixtures_dir() -> PathBuf {
    shared_fixtures::dir().join("rules")
}

/// What a YAML file under the fixtures is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    /// A Prometheus rule file or PrometheusRule resource.
    Rules,
    /// A `promtool test rules` file (top-level `tests:`/`rule_files:`).
    UnitTest,
    /// A Sloth/OpenSLO spec (input of an SLO generator, not a rule file).
    SloSpec,
}

/// Every `.yml`/`.yaml` file under `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()))
        {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Classifies a fixture by its top-level keys.
pub fn kind_of(path: &Path) -> FixtureKind {
    let text = std::fs::read_to_string(path).unwrap();
    let top_keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains(':'))
        .filter_map(|l| l.split(':').next())
        .collect();
    if top_keys.iter().any(|k| *k == "tests" || *k == "rule_files") {
        FixtureKind::UnitTest
    } else if top_keys.contains(&"groups") || text.contains("kind: PrometheusRule") {
        FixtureKind::Rules
    } else {
        FixtureKind::SloSpec
    }
}

/// The `promtool` binary; fails the test with what to install when it is missing.
pub fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("promtool is not installed: install Debian's `prometheus` package (apt-get install -y prometheus)")
    })
}

/// Runs `promtool check rules FILE`; true when promtool accepts the file.
pub fn promtool_accepts(file: &Path) -> bool {
    promtool_check(file).0
}

/// Runs `promtool check rules FILE`: whether it accepts the file, and its output.
pub fn promtool_check(file: &Path) -> (bool, String) {
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(file)
        .output()
        .expect("running promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether the file holds PrometheusRule resources (which promtool does not read).
pub fn is_prometheus_rule_resource(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .any(|l| l.trim() == "kind: PrometheusRule")
}

/// Output of one run of `kubesignal rules check`.
pub struct CheckRun {
    pub code: i32,
    pub stdout: String,
}

/// Runs our binary: `kubesignal rules check FILES...`.
pub fn kubesignal_check(files: &[&Path]) -> CheckRun {
    let out = Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .args(["rules", "check"])
        .args(files)
        .env("KUBESIGNAL_LOG_FORMAT", "text")
        .output()
        .expect("running kubesignal");
    CheckRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
