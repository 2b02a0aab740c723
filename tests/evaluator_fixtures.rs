//! Existing rule files work unchanged: every shared real-world rule file that promtool 2.42
//! accepts loads into the evaluator, and every one of its expressions is evaluated by a real
//! Prometheus without a single failed evaluation.

#[path = "common/evaluator.rs"]
mod common;
#[path = "common/fixtures.rs"]
mod shared_fixtures;

use std::path::{Path, PathBuf};

use common::*;

/// The shared rule fixtures (`rules/` of the shared fixtures).
fn fixtures_root() -> PathBuf {
    shared_fixtures::dir().join("rules")
}

/// Rule files (not promtool unit tests, not the files promtool itself rejects).
fn rule_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for dir in [
        "kube-prometheus",
        "kubernetes-mixin",
        "mixins",
        "sloth/_gen",
        "govuk",
        "awesome-prometheus-alerts",
    ] {
        walk(&root.join(dir), &mut out);
    }
    out.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        let path = p.to_string_lossy();
        !name.contains("_tests")
            && !path.contains("/tests/")
            && !path.contains("/extracted/")
            && !path.contains("/integration/")
            && !path.contains("/production/")
            && !path.contains("/staging/")
            // Prometheus 3 label names (`plug-l2`); promtool 2.42 rejects it too.
            && name != "contrib-slo-plugins.yml"
    });
    out.sort();
    out
}

#[test]
fn every_real_world_rule_file_promtool_accepts_loads_and_evaluates_without_errors() {
    let root = fixtures_root();
    assert!(
        root.is_dir(),
        "shared rule fixtures not found at {}",
        root.display()
    );
    let files = rule_files(&root);
    assert!(files.len() > 90, "only {} rule files found", files.len());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let prom = Prometheus::start(dir.path(), &data, "global: {}\nscrape_configs: []\n", None);

    let now = chrono::Utc::now();
    let out = kubesignal()
        .arg("replay")
        .args(files.iter().map(|f| format!("--rules={}", f.display())))
        .arg(format!("--datasource-url={}", prom.url))
        .arg(format!(
            "--from={}",
            (now - chrono::Duration::minutes(1)).to_rfc3339()
        ))
        .arg(format!("--to={}", now.to_rfc3339()))
        .args(["--step=1m", "--output=json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay over {} files failed:\n{}",
        files.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    // With no data at all, kube-prometheus's Watchdog (`vector(1)`) is the one alert that must
    // fire at once, and absent()-style alerts go pending.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(r#""alertname":"Watchdog""#) && l.contains(r#""state":"firing""#)),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains(r#""state":"pending""#)),
        "{stdout}"
    );
}
