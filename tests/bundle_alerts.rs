//! The bundled alert rules: the real `promtool` checks them and runs their unit tests, every alert
//! is covered by a unit test that expects it to fire, carries the annotations and labels the
//! notifications need, uses a standard `for`, reads only allowed series, and has a runbook page.

#[path = "common/bundle.rs"]
mod bundle;

use std::collections::BTreeSet;
use std::process::Command;

use bundle::{
    describe, files_with_ext, is_allowed_metric, metric_names, recorded_series, repo_root,
    require_program, run,
};
use serde_yaml_ng::Value;

const RUNBOOK_PREFIX: &str = "https://github.com/kubesignal/kubesignal/blob/main/docs/runbooks/";

/// Rule files written by `kubesignal slo generate` (`alerts/slo-*.rules.yaml`). Their burn-rate
/// alerts follow the multiwindow method (no standard `for`, severity page/ticket) and link to the
/// SLO runbook; their promtool unit tests live with the generator's tests (tests/slo/).
fn is_generated_slo_file(file: &str) -> bool {
    file.starts_with("slo-")
}

/// Folders whose promtool unit tests count towards alert coverage.
const UNIT_TEST_DIRS: &[&str] = &["tests/alerts", "tests/slo"];

fn promtool() -> std::path::PathBuf {
    require_program(
        "promtool",
        &[],
        "install Debian's `prometheus` package (apt-get install -y prometheus)",
    )
}

fn rule_files() -> Vec<std::path::PathBuf> {
    let files = files_with_ext("alerts", &[".yaml", ".yml"]);
    assert!(!files.is_empty(), "no rule files in alerts/");
    files
}

/// (file, alert rule) for every alerting rule in alerts/.
fn alert_rules() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in rule_files() {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for g in doc["groups"].as_sequence().into_iter().flatten() {
            for r in g["rules"].as_sequence().into_iter().flatten() {
                if r.get("alert").is_some() {
                    out.push((name.clone(), r.clone()));
                }
            }
        }
    }
    out
}

fn alert_name(r: &Value) -> String {
    r["alert"].as_str().unwrap_or("").to_string()
}

#[test]
fn promtool_accepts_every_rule_file() {
    let mut cmd = Command::new(promtool());
    cmd.arg("check").arg("rules").args(rule_files());
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}",
        describe(&out)
    );
}

#[test]
fn the_promtool_unit_tests_of_the_alerts_pass() {
    let tests = files_with_ext("tests/alerts", &[".test.yaml"]);
    assert!(!tests.is_empty(), "no promtool tests in tests/alerts/");
    let mut cmd = Command::new(promtool());
    cmd.arg("test").arg("rules").args(&tests);
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}",
        describe(&out)
    );
}

#[test]
fn every_alert_has_a_unit_test_that_expects_it_to_fire() {
    let mut covered = BTreeSet::new();
    let test_files = UNIT_TEST_DIRS
        .iter()
        .filter(|d| repo_root().join(d).is_dir())
        .flat_map(|d| files_with_ext(d, &[".test.yaml"]));
    for f in test_files {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for t in doc["tests"].as_sequence().into_iter().flatten() {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let fires = a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty());
                if fires && let Some(n) = a["alertname"].as_str() {
                    covered.insert(n.to_string());
                }
            }
        }
    }
    let missing: Vec<String> = alert_rules()
        .iter()
        .map(|(_, r)| alert_name(r))
        .filter(|n| !covered.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts without a firing unit test: {missing:?}"
    );
}

#[test]
fn every_alert_carries_what_a_notification_needs() {
    let allowed_for = ["5m", "10m", "30m", "1h"];
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (file, r) in alert_rules() {
        let name = alert_name(&r);
        let generated = is_generated_slo_file(&file);
        // Generated SLO files reuse one alert name per SLO and severity (page and ticket rules).
        if !generated && !names.insert(name.clone()) {
            problems.push(format!("{file}: alert {name} defined twice"));
        }
        for key in ["summary", "description", "runbook_url", "suggested_action"] {
            if r["annotations"][key]
                .as_str()
                .is_none_or(|s| s.trim().is_empty())
            {
                problems.push(format!("{file}: {name}: annotation {key} missing or empty"));
            }
        }
        match (r["labels"]["severity"].as_str(), generated) {
            (Some("critical" | "warning" | "info"), false) | (Some("page" | "ticket"), true) => {}
            (other, _) => problems.push(format!(
                "{file}: {name}: severity {other:?} not critical|warning|info (page|ticket in SLO files)"
            )),
        }
        match r["for"].as_str() {
            Some(f) if allowed_for.contains(&f) => {}
            _ if generated => {}
            other => problems.push(format!(
                "{file}: {name}: for {other:?} not one of {allowed_for:?}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_expression_parses_and_reads_only_allowed_series() {
    let recorded = recorded_series();
    let mut problems = Vec::new();
    for f in rule_files() {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for g in doc["groups"].as_sequence().into_iter().flatten() {
            for r in g["rules"].as_sequence().into_iter().flatten() {
                let expr = r["expr"].as_str().unwrap_or("");
                let what = format!(
                    "{}: {}",
                    f.display(),
                    r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?")
                );
                match promql_parser::parser::parse(expr) {
                    Err(e) => problems.push(format!("{what}: {e}")),
                    Ok(ast) => {
                        for m in metric_names(&ast) {
                            if !is_allowed_metric(&m) && !recorded.contains(&m) {
                                problems.push(format!(
                                    "{what}: series {m} is neither in ALLOWED_METRICS nor recorded in alerts/"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_runbook_url_points_to_a_page_about_that_alert() {
    for (file, r) in alert_rules()
        .into_iter()
        .filter(|(f, _)| !is_generated_slo_file(f))
    {
        let name = alert_name(&r);
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or("");
        let page = url.strip_prefix(RUNBOOK_PREFIX).unwrap_or_else(|| {
            panic!("{file}: {name}: runbook_url {url} does not start with {RUNBOOK_PREFIX}")
        });
        assert_eq!(
            page,
            format!("{name}.md"),
            "{file}: {name}: runbook page must be named after the alert"
        );
        let path = repo_root().join("docs/runbooks").join(page);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{file}: {name}: runbook {} unreadable: {e}", path.display())
        });
        assert!(
            text.starts_with(&format!("# {name}\n")),
            "{}: must start with `# {name}`",
            path.display()
        );
        for section in ["## Meaning", "## Diagnosis", "## Mitigation"] {
            assert!(
                text.contains(section),
                "{}: lacks {section}",
                path.display()
            );
        }
    }
}

#[test]
fn the_slo_rule_file_slot_for_the_demo_exists_and_is_a_rule_file() {
    let path = repo_root().join("alerts/slo-demo.rules.yaml");
    let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        doc["groups"].is_sequence(),
        "{} must have a groups list",
        path.display()
    );
}

#[test]
fn kubesignal_rules_check_accepts_every_bundled_rule_file() {
    let files: Vec<std::path::PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/alerts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    assert!(files.len() >= 3, "{files:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .args(["rules", "check"])
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(", 0 errors,"), "{text}");
    // The one non-standard window is predict_linear's 6h lookback, a trend estimate rather
    // than an alerting period.
    for warning in text.lines().filter(|l| l.contains(": warning: ")) {
        assert!(
            warning.contains("[6h]") && warning.contains("FilesystemFillingUp"),
            "{warning}"
        );
    }
}
