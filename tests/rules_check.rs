//! `kubesignal rules check` against the shared real-world rule fixtures and crafted broken
//! files, with the real `promtool check rules` as the oracle for accept/reject.

#[path = "common/rulescheck.rs"]
mod rulescheck;

use std::path::Path;

use rulescheck::{
    FixtureKind, fixtures_dir, kind_of, kubesignal_check, promtool_accepts, write, yaml_files,
};

/// Fixture rule files we accept although promtool 2.42 rejects them, and why.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    // Prometheus 3 accepts UTF-8 label names (`plug-l2`); we follow Prometheus 3 and warn.
    ("sloth/_gen/contrib-slo-plugins.yml", "UTF-8 label name"),
];

fn rel(p: &Path) -> String {
    p.strip_prefix(fixtures_dir())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn every_fixture_rule_file_is_accepted_except_the_deliberately_broken_one() {
    let dir = fixtures_dir();
    let mut checked = 0;
    for file in yaml_files(&dir) {
        if kind_of(&file) != FixtureKind::Rules {
            continue;
        }
        checked += 1;
        let name = rel(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        let (_, diags) = kubesignal::rules::check::check_text(&name, &text);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        if name.ends_with("bad-rules-syntax.yml") {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(&format!("{name}:7: error:")),
                "{}",
                errors[0]
            );
            assert!(
                errors[0].contains("could not parse expression"),
                "{}",
                errors[0]
            );
        } else {
            assert!(
                errors.is_empty(),
                "{name} should be accepted, got:\n{}",
                errors.join("\n")
            );
        }
    }
    // 7 PrometheusRule resources, 7 extracted, 5 mixins, 17 Sloth outputs, 75 awesome-alerts, ...
    assert!(
        checked >= 130,
        "only {checked} rule files found under {}",
        dir.display()
    );
}

#[test]
fn unit_test_files_and_slo_specs_are_rejected_as_not_rule_files() {
    let dir = fixtures_dir();
    let mut seen = 0;
    for file in yaml_files(&dir) {
        let kind = kind_of(&file);
        if kind == FixtureKind::Rules {
            continue;
        }
        seen += 1;
        let (_, diags) = kubesignal::rules::check::check_text(
            &rel(&file),
            &std::fs::read_to_string(&file).unwrap(),
        );
        let first = diags
            .iter()
            .find(|d| d.is_error())
            .unwrap_or_else(|| panic!("{} accepted", file.display()));
        let hint = if kind == FixtureKind::UnitTest {
            "unit-test file"
        } else {
            "SLO spec"
        };
        assert!(
            first.message.contains("not a rule file") && first.message.contains(hint),
            "{first}"
        );
    }
    assert!(seen >= 30, "{seen}");
}

#[test]
fn promtool_and_rules_check_agree_on_every_fixture_file_and_on_duplicate_rules() {
    let dir = fixtures_dir();
    let mut compared = 0;
    let mut resources = 0;
    for file in yaml_files(&dir) {
        let name = rel(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        let (_, diags) = kubesignal::rules::check::check_text(&name, &text);
        let we_accept = !diags.iter().any(|d| d.is_error());
        let (promtool_accepts, promtool_out) = rulescheck::promtool_check(&file);
        if rulescheck::is_prometheus_rule_resource(&file) {
            // promtool reads plain rule files only; we read the resources too.
            assert!(!promtool_accepts, "{name}");
            assert!(we_accept, "{name}: {diags:?}");
            resources += 1;
            continue;
        }
        if DELIBERATE_DIFFERENCES.iter().any(|(n, _)| *n == name) {
            continue;
        }
        assert_eq!(
            we_accept, promtool_accepts,
            "{name}: promtool says:\n{promtool_out}\nwe say: {diags:#?}"
        );
        let we_flag_duplicates = diags
            .iter()
            .any(|d| d.message.starts_with("duplicate rule"));
        let promtool_flags_duplicates = promtool_out.contains("duplicate rule(s) found");
        assert_eq!(
            we_flag_duplicates, promtool_flags_duplicates,
            "{name}: duplicate lint differs:\n{promtool_out}"
        );
        compared += 1;
    }
    assert!(
        compared >= 150 && resources >= 10,
        "{compared} compared, {resources} resources"
    );
    for (name, why) in DELIBERATE_DIFFERENCES {
        let file = dir.join(name);
        assert!(
            !promtool_accepts(&file),
            "{name}: promtool 2.42 was expected to reject it ({why})"
        );
        let ours = kubesignal_check(&[&file]);
        assert_eq!(ours.code, 0, "{name}: {}", ours.stdout);
        assert!(
            ours.stdout.contains("valid only with UTF-8 names"),
            "{}",
            ours.stdout
        );
    }
}

#[test]
fn prometheus_rule_resources_are_accepted_where_promtool_wants_plain_files() {
    let dir = fixtures_dir().join("kube-prometheus");
    let cr = dir.join("kubernetesControlPlane-prometheusRule.yaml");
    let plain = dir.join("extracted/kubernetesControlPlane.rules.yaml");
    assert!(
        !promtool_accepts(&cr),
        "promtool 2.42 does not read PrometheusRule resources"
    );
    let ours = kubesignal_check(&[&cr]);
    assert_eq!(ours.code, 0, "{}", ours.stdout);
    let a = kubesignal::rules::load::load_file(&cr).unwrap();
    let b = kubesignal::rules::load::load_file(&plain).unwrap();
    assert_eq!(
        a, b,
        "the resource and its extracted spec hold the same rules"
    );
}

/// One broken file per kind of error: (what, file text, expected line, message part).
const BROKEN: &[(&str, &str, usize, &str)] = &[
    (
        "bad interval",
        "groups:\n  - name: g\n    interval: 1x\n    rules: []\n",
        3,
        "not a valid duration string: \"1x\"",
    ),
    (
        "unknown group key",
        "groups:\n  - name: g\n    rulez: []\n",
        3,
        "unknown key `rulez`",
    ),
    (
        "unknown rule key",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        sumary: x\n",
        6,
        "unknown key `sumary`",
    ),
    (
        "unknown top-level key",
        "groups: []\ngroupz: []\n",
        2,
        "unknown key `groupz`",
    ),
    (
        "braces in record",
        "groups:\n  - name: g\n    rules:\n      - record: 'job:up{a=\"b\"}'\n        expr: up\n",
        4,
        "braces present in the recording rule name",
    ),
    (
        "record and alert",
        "groups:\n  - name: g\n    rules:\n      - expr: up\n        record: r\n        alert: A\n",
        4,
        "only one of `record` and `alert`",
    ),
    (
        "neither record nor alert",
        "groups:\n  - name: g\n    rules:\n      - expr: up\n      - expr: down\n",
        5,
        "one of `record` or `alert` must be set",
    ),
    (
        "missing expr",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        for: 5m\n",
        4,
        "`expr` must be set",
    ),
    (
        "bad expr",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(rate(x[5m])\n",
        5,
        "could not parse expression",
    ),
    (
        "for on a recording rule",
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up\n        for: 5m\n",
        6,
        "recording rule cannot have `for`",
    ),
    (
        "annotations on a recording rule",
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up\n        annotations:\n          a: b\n",
        6,
        "recording rule cannot have `annotations`",
    ),
    (
        "__name__ label",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          severity: page\n          __name__: x\n",
        8,
        "invalid label name: __name__",
    ),
    (
        "bad annotation template",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          summary: 'x {{ $labels.instance '\n",
        7,
        "template does not parse",
    ),
    (
        "bad template in a block scalar",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          description: |\n            fine {{ $value }}\n            {{ if }}\n",
        9,
        "missing value for if",
    ),
    (
        "unknown template function",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          x: '{{ humanise $value }}'\n",
        7,
        "function \"humanise\" not defined",
    ),
    (
        "undefined template variable",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          s: '{{ $label.instance }}'\n",
        7,
        "undefined variable \"$label\"",
    ),
    (
        "bad keep_firing_for",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        keep_firing_for: 5 minutes\n",
        6,
        "not a valid duration string",
    ),
    (
        "bad for",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: 1h5\n",
        6,
        "not a valid duration string",
    ),
    (
        "repeated group name",
        "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n",
        4,
        "group name \"g\" is repeated in the same file (first at line 2)",
    ),
    (
        "empty group name",
        "groups:\n  - name: ''\n    rules: []\n",
        2,
        "group name must not be empty",
    ),
    (
        "label value not a string",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          team: [a, b]\n",
        7,
        "label `team` must be a string",
    ),
    (
        "invalid YAML",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n       expr: up\n",
        5,
        "invalid YAML",
    ),
    (
        "rules not a list",
        "groups:\n  - name: g\n    rules: {alert: A}\n",
        3,
        "`rules` must be a list",
    ),
];

#[test]
fn each_kind_of_error_is_reported_on_its_line_and_promtool_rejects_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, text, line, part)) in BROKEN.iter().enumerate() {
        let file = write(dir.path(), &format!("broken{i}.yml"), text);
        let run = kubesignal_check(&[&file]);
        assert_eq!(
            run.code, 1,
            "{what}: expected exit code 1, output:\n{}",
            run.stdout
        );
        let prefix = format!("{}:{line}: error: ", file.display());
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(part)),
            "{what}: expected `{prefix}...{part}...` in:\n{}",
            run.stdout
        );
        assert!(
            !promtool_accepts(&file),
            "{what}: promtool accepts this file but we reject it"
        );
    }
}

#[test]
fn errors_in_a_later_document_of_a_multi_document_file_point_at_that_document() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: a}
spec:
  groups:
  - name: g
    rules:
    - alert: A
      expr: up == 0
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: b}
spec:
  groups:
  - name: h
    rules:
    - alert: B
      expr: up ==
---
groups:
  - name: plain
    rules:
      - record: r
        expr: up
        annotations: {a: b}
  - name: g
    rules: []
";
    let file = write(dir.path(), "multi.yaml", text);
    let run = kubesignal_check(&[&file]);
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(run.code, 1);
    assert_eq!(errors.len(), 3, "{}", run.stdout);
    let f = file.display();
    assert!(
        errors[0].starts_with(&format!("{f}:19: error: group \"h\", rule 1 (alert \"B\")")),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with(&format!("{f}:26: error:")),
        "{}",
        errors[1]
    );
    // Group names are unique per file, across its documents (the evaluator loads it as one).
    assert_eq!(
        errors[2],
        format!("{f}:27: error: group name \"g\" is repeated in the same file (first at line 6)")
    );
}

#[test]
fn warnings_flag_duplicates_and_non_standard_periods_but_keep_exit_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
groups:
  - name: w
    rules:
      - alert: OddFor
        expr: rate(x[2m]) > 0
        for: 15m
      - alert: Fine
        expr: rate(x[5m]) > 0 and rate(x[1h] offset 1d) > 0
        for: 10m
      - alert: SloBurn
        expr: rate(x[6h]) > 0
        for: 2m
        labels: {sloth_id: a}
      - alert: SloToo
        expr: rate(x[3d]) > 0
        labels:
          slo: checkout
      - alert: OddFor
        expr: max_over_time(up[30m:1m]) == 0
      - record: r:rate2m
        expr: rate(x[2m])
      - alert: ValueInLabel
        expr: up == 0
        for: 5m
        labels:
          current: '{{ $value }}'
";
    let file = write(dir.path(), "warn.yml", text);
    let run = kubesignal_check(&[&file]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let f = file.display().to_string();
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(": warning: "))
        .collect();
    assert_eq!(
        warnings,
        [
            format!(
                "{f}:5: warning: group \"w\", rule 1 (alert \"OddFor\"): range window [2m] is not one of the standard periods 5m, 10m, 30m, 1h"
            ),
            format!(
                "{f}:6: warning: group \"w\", rule 1 (alert \"OddFor\"): `for: 15m` is not one of the standard periods 5m, 10m, 30m, 1h"
            ),
            format!(
                "{f}:18: warning: duplicate rule \"OddFor\" with labels {{}} (same as line 4); it may record or alert inconsistently"
            ),
            format!(
                "{f}:26: warning: group \"w\", rule 7 (alert \"ValueInLabel\"): label `current` uses the alert's value; each new value makes a new alert and restarts `for`"
            ),
        ],
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("1 file checked, 0 errors, 4 warnings\n"),
        "{}",
        run.stdout
    );
    assert!(promtool_accepts(&file), "promtool accepts the same file");
}

#[test]
fn vmalert_extension_keys_are_accepted_so_files_can_be_shared_with_vmalert() {
    let dir = tempfile::tempdir().unwrap();
    let text = "groups:\n  - name: g\n    eval_offset: 30s\n    concurrency: 2\n    params: {nocache: ['1']}\n    rules:\n      - alert: A\n        expr: up == 0\n        debug: true\n        update_entries_limit: 5\n";
    let file = write(dir.path(), "vm.yml", text);
    let run = kubesignal_check(&[&file]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let loaded = kubesignal::rules::load::load_file(&file).unwrap();
    assert_eq!(loaded.groups[0].extra.len(), 3);
    assert_eq!(loaded.groups[0].rules[0].extra.len(), 2);
    assert!(
        !promtool_accepts(&file),
        "promtool rejects vmalert's keys; we accept them on purpose"
    );
}

#[test]
fn the_summary_counts_files_errors_and_warnings_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n",
    );
    let bad = write(
        dir.path(),
        "bad.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n",
    );
    let missing = dir.path().join("missing.yml");
    let run = kubesignal_check(&[&good, &bad, &missing]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "{}: error: cannot read rule file",
            missing.display()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("3 files checked, 2 errors, 0 warnings\n"),
        "{}",
        run.stdout
    );
    let only_good = kubesignal_check(&[&good]);
    assert_eq!(only_good.code, 0);
    assert_eq!(only_good.stdout, "1 file checked, 0 errors, 0 warnings\n");
}

#[test]
fn the_line_index_points_every_fixture_rule_at_its_own_alert_record_and_expr_lines() {
    use kubesignal::rules::load::{Seg, parse_source};
    use serde_yaml_ng::Value;
    let mut checked = 0;
    for file in yaml_files(&fixtures_dir()) {
        if kind_of(&file) != FixtureKind::Rules {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (source, _) = parse_source(&rel(&file), &text);
        let mut last_expr_line = 0;
        for doc in &source.documents {
            let Value::Sequence(groups) = &doc.groups else {
                continue;
            };
            for (gi, g) in groups.iter().enumerate() {
                let Some(rules) = g.get("rules").and_then(Value::as_sequence) else {
                    continue;
                };
                for (ri, r) in rules.iter().enumerate() {
                    let mut path = doc.groups_path.clone();
                    path.extend([Seg::Index(gi), Seg::Key("rules".into()), Seg::Index(ri)]);
                    let at = |key: &str| {
                        let mut p = path.clone();
                        p.push(Seg::Key(key.into()));
                        source.lines.line(doc.index, &p).unwrap()
                    };
                    let expr_line = at("expr");
                    assert!(
                        lines[expr_line - 1].contains("expr:"),
                        "{}:{expr_line}",
                        file.display()
                    );
                    assert!(
                        expr_line > last_expr_line,
                        "{}:{expr_line} not after {last_expr_line}",
                        file.display()
                    );
                    last_expr_line = expr_line;
                    for key in ["alert", "record"] {
                        if let Some(name) = r.get(key).and_then(Value::as_str) {
                            let l = at(key);
                            assert!(
                                lines[l - 1].contains(&format!("{key}:"))
                                    && lines[l - 1].contains(name),
                                "{}:{l}: expected {key} {name}",
                                file.display()
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 11000, "{checked}");
}
