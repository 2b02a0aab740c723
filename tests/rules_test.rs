//! `kubesignal rules test` against the real `promtool test rules` (Prometheus 2.42): the same
//! verdict on every promtool unit-test file among the shared fixtures, the verdicts recorded in
//! their PROVENANCE.md, failure messages that name the alert and the time, and the bundled SLO
//! rules' unit tests passing without Prometheus.

#[path = "common/rulestest.rs"]
mod rulestest;

use std::path::Path;

use rulestest::{PROVENANCE_VERDICTS, fixtures, kubesignal_test, promtool_test, unit_test_files};

/// Runs both tools on every unit-test file under `dir` and asserts that each gives promtool
/// 2.42's verdict as PROVENANCE.md records it, and that files both fail fail on the same test
/// cases. Prints the verdict table.
fn verdicts_agree_under(dir: &str) {
    let files = unit_test_files(dir);
    assert!(!files.is_empty(), "no unit-test files under {dir}");
    let mut table = Vec::new();
    let mut problems = Vec::new();
    for rel in &files {
        let expected = PROVENANCE_VERDICTS
            .iter()
            .find(|(f, _)| f == rel)
            .map(|(_, pass)| if *pass { "pass" } else { "fail" })
            .unwrap_or_else(|| panic!("{rel} is not in the PROVENANCE.md table"));
        let path = fixtures().join(rel);
        let promtool = promtool_test(&path);
        let ours = kubesignal_test(&path, &[]);
        table.push(format!(
            "| {rel} | {expected} | {} | {} |",
            promtool.verdict(),
            ours.verdict()
        ));
        if promtool.verdict() != expected {
            problems.push(format!(
                "{rel}: promtool says {} but PROVENANCE.md says {expected}\n{}",
                promtool.verdict(),
                promtool.describe()
            ));
        }
        if ours.verdict() == "fail" && promtool.verdict() == "fail" {
            let (a, b) = (failed_cases(&ours.stderr), failed_cases(&promtool.stderr));
            if a != b {
                problems.push(format!(
                    "{rel}: both fail, but on different cases\n--- ours\n{a:#?}\n--- promtool\n{b:#?}"
                ));
            }
        }
        if ours.verdict() != promtool.verdict() {
            problems.push(format!(
                "{rel}: kubesignal rules test says {} but promtool says {}\n--- ours\n{}\n--- promtool\n{}",
                ours.verdict(),
                promtool.verdict(),
                ours.describe(),
                promtool.describe()
            ));
        }
    }
    eprintln!(
        "| file | PROVENANCE | promtool | kubesignal |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The failed cases of a report: `alertname: A, time: T`, `expr: "E", time: T` and
/// `rule: R, time: T` headers, without the error text (wording differs between engines).
fn failed_cases(stderr: &str) -> Vec<String> {
    let mut cases: Vec<String> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("    alertname: ")
                || l.starts_with("    expr: ")
                || l.starts_with("    rule: ")
        })
        .map(|l| l.split(", err:").next().unwrap_or(l).trim_end().to_string())
        .collect();
    cases.sort();
    cases
}

#[test]
fn the_kubernetes_mixin_unit_tests_get_promtools_verdicts() {
    verdicts_agree_under("kubernetes-mixin");
}

#[test]
fn the_govuk_unit_tests_get_promtools_verdicts() {
    verdicts_agree_under("govuk");
}

#[test]
fn promtools_own_test_files_get_its_verdicts_including_the_deliberate_failures() {
    verdicts_agree_under("promtool-testdata-v2.42");
}

#[test]
fn every_test_file_in_the_provenance_table_exists_and_is_found() {
    let mut found: Vec<String> = ["kubernetes-mixin", "govuk", "promtool-testdata-v2.42"]
        .iter()
        .flat_map(|d| unit_test_files(d))
        .collect();
    found.sort();
    let mut listed: Vec<String> = PROVENANCE_VERDICTS
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    listed.sort();
    assert_eq!(found, listed);
}

const RULES: &str = r#"groups:
  - name: g
    rules:
      - alert: HighErrors
        expr: errors > 5
        for: 2m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.job }} has {{ $value }} errors"
"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_wrong_expectation_fails_naming_the_alert_and_the_time() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yaml", RULES);
    // The alert goes pending at 0 and fires at 2m; the test wrongly expects it firing at 1m
    // and gets the annotation's value wrong at 3m.
    let test = write(
        dir.path(),
        "wrong.test.yaml",
        r#"rule_files: [rules.yaml]
tests:
  - interval: 1m
    input_series:
      - series: 'errors{job="api"}'
        values: '10x5'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighErrors
        exp_alerts:
          - exp_labels: {severity: page, job: api}
            exp_annotations: {summary: "api has 10 errors"}
      - eval_time: 3m
        alertname: HighErrors
        exp_alerts:
          - exp_labels: {severity: page, job: api}
            exp_annotations: {summary: "api has 11 errors"}
"#,
    );
    let ours = kubesignal_test(&test, &[]);
    assert_eq!(ours.code, Some(1), "{}", ours.describe());
    assert!(
        ours.stdout.starts_with("Unit Testing:  wrong.test.yaml"),
        "{}",
        ours.describe()
    );
    assert!(
        ours.stderr.contains("  FAILED:")
            && ours.stderr.contains("alertname: HighErrors, time: 1m,")
            && ours.stderr.contains("alertname: HighErrors, time: 3m,"),
        "{}",
        ours.describe()
    );
    assert!(
        ours.stderr.contains(r#"summary="api has 10 errors""#),
        "the failure shows what fired: {}",
        ours.describe()
    );
    let promtool = promtool_test(&test);
    assert_eq!(promtool.code, Some(1), "{}", promtool.describe());

    // The same file with the right expectations passes both.
    let right = write(
        dir.path(),
        "right.test.yaml",
        &std::fs::read_to_string(&test)
            .unwrap()
            .replace("eval_time: 1m", "eval_time: 2m")
            .replace("11 errors", "10 errors"),
    );
    let ours = kubesignal_test(&right, &[]);
    assert_eq!(ours.code, Some(0), "{}", ours.describe());
    assert!(ours.stdout.contains("  SUCCESS"), "{}", ours.describe());
    assert_eq!(promtool_test(&right).code, Some(0));
}

#[test]
fn a_wrong_expression_result_fails_showing_expected_and_actual_samples() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.yaml",
        "groups:\n  - name: r\n    rules:\n      - record: job:errors:sum\n        expr: sum by (job) (errors)\n",
    );
    let test = write(
        dir.path(),
        "t.yaml",
        r#"rule_files: [rules.yaml]
tests:
  - interval: 1m
    input_series:
      - {series: 'errors{job="api", pod="a"}', values: '1+1x10'}
      - {series: 'errors{job="api", pod="b"}', values: '2x10'}
    promql_expr_test:
      - expr: job:errors:sum
        eval_time: 5m
        exp_samples:
          - {labels: 'job:errors:sum{job="api"}', value: 9}
"#,
    );
    let ours = kubesignal_test(&test, &[]);
    assert_eq!(ours.code, Some(1), "{}", ours.describe());
    assert!(
        ours.stderr.contains(r#"expr: "job:errors:sum", time: 5m,"#)
            && ours
                .stderr
                .contains(r#"exp: {__name__="job:errors:sum", job="api"} 9E+00"#)
            && ours
                .stderr
                .contains(r#"got: {__name__="job:errors:sum", job="api"} 8E+00"#),
        "{}",
        ours.describe()
    );
    assert_eq!(promtool_test(&test).code, Some(1));
}

#[test]
fn an_unknown_field_fails_the_file_naming_the_field_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let test = write(
        dir.path(),
        "t.yaml",
        "tests:\n  - interval: 1m\n    start_timestamp: 0\n    input_series: []\n",
    );
    let ours = kubesignal_test(&test, &[]);
    assert_eq!(ours.code, Some(1), "{}", ours.describe());
    assert!(
        ours.stderr.contains("t.yaml:3:") && ours.stderr.contains("start_timestamp"),
        "{}",
        ours.describe()
    );
    assert_eq!(promtool_test(&test).code, Some(1));
}

fn bundled_slo_test() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/tests/slo-demo.test.yaml")
}

#[test]
fn the_bundled_slo_rules_pass_their_unit_tests_without_prometheus() {
    // kubesignal_test runs with an empty PATH: no promtool or Prometheus can take part.
    let ours = kubesignal_test(&bundled_slo_test(), &[]);
    assert_eq!(ours.code, Some(0), "{}", ours.describe());
    assert!(ours.stdout.contains("  SUCCESS"), "{}", ours.describe());
}

#[test]
fn the_bundled_slo_unit_tests_fail_when_the_page_is_not_expected() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(bundled_slo_test()).unwrap();
    std::fs::write(
        dir.path().join("slo-demo.rules.yaml"),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/slo-demo.rules.yaml"))
            .unwrap(),
    )
    .unwrap();
    // Expecting the fast pair at 14.5x instead of 14.4x must fail.
    let broken = write(
        dir.path(),
        "broken.test.yaml",
        &text
            .replace("../slo-demo.rules.yaml", "slo-demo.rules.yaml")
            .replacen(
                r#"burn_rate_threshold: "14.4""#,
                r#"burn_rate_threshold: "14.5""#,
                1,
            ),
    );
    let ours = kubesignal_test(&broken, &[]);
    assert_eq!(ours.code, Some(1), "{}", ours.describe());
    assert!(
        ours.stderr
            .contains("alertname: SLOErrorBudgetBurn, time: 1h,"),
        "{}",
        ours.describe()
    );
}

#[test]
fn promtool_agrees_with_the_bundled_slo_unit_tests() {
    let run = promtool_test(&bundled_slo_test());
    assert_eq!(run.code, Some(0), "{}", run.describe());
}

#[test]
fn with_prometheus_3_semantics_the_files_written_for_it_pass() {
    // PROVENANCE.md: absent_alert-test.yaml expects Prometheus 3's left-open lookback, and
    // publishing_api_tests.yaml the newer promtool's default `interval`. Both fail under 2.42
    // (checked above) and pass with --semantics v3.
    for rel in [
        "kubernetes-mixin/tests/absent_alert-test.yaml",
        "govuk/publishing_api_tests.yaml",
    ] {
        let run = kubesignal_test(&fixtures().join(rel), &["--semantics", "v3"]);
        assert_eq!(run.code, Some(0), "{rel}: {}", run.describe());
    }
}

#[test]
fn group_eval_order_decides_which_recorded_value_a_later_group_reads() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.yaml",
        "groups:\n  - name: second\n    rules:\n      - {record: b, expr: a + 1}\n  - name: first\n    rules:\n      - {record: a, expr: x * 2}\n",
    );
    // x is 6 at 5m. In order, b reads a = 12 of the same evaluation; the other way round it
    // reads a = 10 written a minute earlier.
    for (order, expected) in [("[first, second]", 13), ("[second, first]", 11)] {
        let test = write(
            dir.path(),
            "order.test.yaml",
            &format!(
                "rule_files: [rules.yaml]\ngroup_eval_order: {order}\ntests:\n  - interval: 1m\n    input_series:\n      - {{series: x, values: '1+1x10'}}\n    promql_expr_test:\n      - expr: b\n        eval_time: 5m\n        exp_samples:\n          - {{labels: b, value: {expected}}}\n"
            ),
        );
        let ours = kubesignal_test(&test, &[]);
        assert_eq!(ours.code, Some(0), "{order}: {}", ours.describe());
        let promtool = promtool_test(&test);
        assert_eq!(promtool.code, Some(0), "{order}: {}", promtool.describe());
    }
}

#[test]
fn the_report_is_promtools_byte_for_byte_on_templates_keep_firing_for_and_alerts_series() {
    let test = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rulestest/templates.test.yaml");
    let ours = kubesignal_test(&test, &[]);
    let promtool = promtool_test(&test);
    assert_eq!(promtool.code, Some(1), "{}", promtool.describe());
    assert_eq!(ours.code, Some(1), "{}", ours.describe());
    assert_eq!(ours.stdout, promtool.stdout);
    assert_eq!(ours.stderr, promtool.stderr);
    // Not vacuous: the report shows the expanded templates and the kept alert.
    assert!(
        ours.stderr
            .contains(r#"a="7 a eu1 http://x.example", q="7""#),
        "{}",
        ours.stderr
    );
    assert!(
        ours.stderr
            .contains(r#"alertstate="pending", job="a", sev="low""#)
    );
}
