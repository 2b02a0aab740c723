//! Prometheus's own PromQL acceptance scripts run against the embedded engine, and checks that
//! the script runner really reports wrong results as failures (through the library and through
//! the real `kubesignal promql test` binary).

#[path = "common/promql.rs"]
mod promql;

use std::collections::BTreeSet;

use kubesignal::promql::script::run::total;
use kubesignal::promql::script::{Outcome, run_file};
use kubesignal::promql::{Engine, Semantics};
use promql::{kubesignal_promql_test, run_suite, short, write_script};

/// v2.42 cases the runner skips, as (file, line, why). None: every v2.42 case is checked.
const V242_ALLOWED_SKIPS: &[(&str, usize, &str)] = &[];

/// Lowest acceptable pass rate (passed / (passed + failed), in percent) of `latest/` under V3
/// semantics. Measured at the last merge of main and rounded down; raise it as the engine
/// improves, never lower it.
const LATEST_V3_PASS_RATE_FLOOR: f64 = 78.0;

/// Most `latest/` cases that may be skipped (native histograms, load_with_nhcb, @st). Guards
/// against the pass rate rising only because the runner skips more.
const LATEST_SKIPPED_CEILING: usize = 881;

#[test]
fn every_v2_42_script_passes_with_v2_semantics() {
    let reports = run_suite("v2.42", Semantics::V2);
    let mut failures = Vec::new();
    let mut skips = BTreeSet::new();
    for r in &reports {
        if let Some(e) = &r.error {
            failures.push(e.clone());
        }
        for c in &r.cases {
            match &c.outcome {
                Outcome::Fail(m) => {
                    failures.push(format!("{}:{}: {}: {m}", c.file, c.line, c.command))
                }
                Outcome::Skipped(_) => {
                    skips.insert((short(&c.file), c.line));
                }
                Outcome::Pass => {}
            }
        }
    }
    let t = total(&reports);
    assert_eq!(
        t.passed + t.failed + t.skipped,
        566,
        "v2.42 holds 546 eval instant, 7 eval_fail and 13 eval_ordered commands"
    );
    assert!(
        failures.is_empty(),
        "{} of 566 v2.42 cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let allowed: BTreeSet<(String, usize)> = V242_ALLOWED_SKIPS
        .iter()
        .map(|(f, l, _)| (f.to_string(), *l))
        .collect();
    assert_eq!(
        skips, allowed,
        "the skipped v2.42 cases differ from the allow-list"
    );
}

#[test]
fn the_latest_scripts_pass_with_v3_semantics_at_least_as_often_as_the_recorded_floor() {
    let reports = run_suite("latest", Semantics::V3);
    for r in &reports {
        assert!(
            r.error.is_none(),
            "{}",
            r.error.as_deref().unwrap_or_default()
        );
        let s = r.summary();
        println!("{:<28} {:>6.1}%  {s}", short(&r.file), s.pass_rate());
    }
    let t = total(&reports);
    println!("{:<28} {:>6.1}%  {t}", "TOTAL", t.pass_rate());
    assert_eq!(
        t.passed + t.failed + t.skipped,
        2214,
        "latest holds 1 882 eval instant, 329 eval range and 3 eval_fail commands"
    );
    assert!(
        t.pass_rate() >= LATEST_V3_PASS_RATE_FLOOR,
        "latest/ pass rate {:.1}% fell below the floor {LATEST_V3_PASS_RATE_FLOOR}%",
        t.pass_rate()
    );
    assert!(
        t.skipped <= LATEST_SKIPPED_CEILING,
        "{} latest/ cases are skipped, more than the {LATEST_SKIPPED_CEILING} recorded",
        t.skipped
    );
}

/// A script with one correct case and one deliberately wrong case per kind of check. The line
/// numbers are what the assertions below refer to.
const SELF_CHECK: &str = r#"load 1m
  up{job="a"} 1 2 3
  up{job="b"} 5 5 5

eval instant at 2m up
  up{job="a"} 3
  up{job="b"} 5

eval instant at 2m up{job="a"}
  up{job="a"} 4

eval instant at 2m up{job="a"}
  up{job="c"} 3

eval instant at 2m up
  up{job="a"} 3
  up{job="b"} 5
  up{job="c"} 7

eval instant at 2m up
  up{job="a"} 3

eval_ordered instant at 2m sort(up)
  up{job="b"} 5
  up{job="a"} 3

eval_fail instant at 2m up

eval instant at 2m scalar(up{job="a"})
  {} 3

eval range from 0 to 2m step 1m up{job="a"}
  up{job="a"} 1 2 4

eval range from 0 to 2m step 1m up{job="a"}
  up{job="a"} 1 _ 3

eval_ordered instant at 2m sort(up)
  up{job="a"} 3
  up{job="b"} 5

eval range from 0 to 2m step 1m up{job="a"}
  up{job="a"} 1 2 3

eval instant at 2m scalar(up{job="a"})
  3

eval_fail instant at 2m up +

eval instant at 2m up +
  expect fail msg: this is not the error
"#;

/// (line, what the failure message must contain) for every wrong case of [`SELF_CHECK`].
const SELF_CHECK_FAILURES: &[(usize, &str)] = &[
    (9, "expected 4 for up{job=\"a\"} but got 3"),
    (12, "unexpected series up{job=\"a\"}"),
    (
        15,
        "expected series up{job=\"c\"} with value 7 (line 18) not found",
    ),
    (20, "unexpected series up{job=\"b\"}"),
    (23, "at position 2 but it was at position 1"),
    (27, "expected the query to fail"),
    (29, "got scalar 3"),
    (32, "expected 4 but got 3"),
    (35, "expected 2 points for up{job=\"a\"} but got 3"),
    (50, "expected the error \"this is not the error\""),
];

/// Lines of [`SELF_CHECK`] whose expectations are right.
const SELF_CHECK_PASSES: &[usize] = &[5, 38, 42, 45, 48];

#[test]
fn the_runner_reports_each_kind_of_wrong_expectation_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "selfcheck.test", SELF_CHECK);
    let report = run_file(&path, Semantics::V2);
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(
        report.cases.len(),
        SELF_CHECK_FAILURES.len() + SELF_CHECK_PASSES.len()
    );
    for c in &report.cases {
        if let Some((_, needle)) = SELF_CHECK_FAILURES.iter().find(|(l, _)| *l == c.line) {
            let Outcome::Fail(m) = &c.outcome else {
                panic!(
                    "line {} ({}) should fail, got {:?}",
                    c.line, c.expr, c.outcome
                );
            };
            assert!(
                m.contains(needle),
                "line {}: {m:?} lacks {needle:?}",
                c.line
            );
        } else {
            assert!(
                SELF_CHECK_PASSES.contains(&c.line),
                "unexpected case at line {}",
                c.line
            );
            assert_eq!(c.outcome, Outcome::Pass, "line {} ({})", c.line, c.expr);
        }
    }
}

#[test]
fn the_binary_prints_each_failing_case_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "selfcheck.test", SELF_CHECK);
    let p = path.to_str().unwrap();
    let out = kubesignal_promql_test(&[p]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (line, needle) in SELF_CHECK_FAILURES {
        let prefix = format!("{p}:{line}: eval");
        let printed = stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"));
        assert!(printed.contains(needle), "{printed:?} lacks {needle:?}");
    }
    for line in SELF_CHECK_PASSES {
        assert!(
            !stdout.contains(&format!("{p}:{line}:")),
            "line {line} was reported:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("FAIL {p}: 5 passed, 10 failed, 0 skipped")),
        "{stdout}"
    );
    assert!(
        stdout.contains("TOTAL 1 files: 5 passed, 10 failed, 0 skipped"),
        "{stdout}"
    );
}

const WITH_HISTOGRAMS: &str = r#"load 1m
  up 1 2 3
  hist {{schema:0 sum:1 count:1}}x2

eval instant at 2m up
  expect warn
  expect no_info
  up 3

eval instant at 2m histogram_count(hist)
  {} 1
"#;

#[test]
fn native_histogram_cases_are_skipped_with_a_reason_and_do_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "hist.test", WITH_HISTOGRAMS);
    let p = path.to_str().unwrap();
    let out = kubesignal_promql_test(&["--verbose", p]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{p}:10: eval instant at 2m histogram_count(hist): skipped: selects hist, which holds native histogram samples (line 3)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "PASS {p}: 1 passed, 0 failed, 1 skipped (1 warn/info expectations not checked)"
        )),
        "{stdout}"
    );
    let quiet = kubesignal_promql_test(&[p]);
    assert!(!String::from_utf8_lossy(&quiet.stdout).contains("skipped:"));
}

#[test]
fn a_script_that_does_not_parse_fails_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "bad.test", "load 1m\n  up 1 two\n");
    let p = path.to_str().unwrap();
    let out = kubesignal_promql_test(&[p]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{p}:2: column 3: unexpected \"two\" in series values"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("FAIL {p}: 0 passed, 1 failed")),
        "{stdout}"
    );
}

#[test]
fn the_semantics_flag_switches_the_lookback_boundary() {
    // A sample exactly 5m before the eval time is inside the lookback in Prometheus 2 and
    // outside it in Prometheus 3.
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(
        dir.path(),
        "edge.test",
        "load 5m\n  m 1 2\n\neval instant at 10m m\n  m 2\n",
    );
    let p = path.to_str().unwrap();
    let v2 = kubesignal_promql_test(&["--semantics", "v2", p]);
    assert_eq!(
        v2.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v2.stdout)
    );
    let v3 = kubesignal_promql_test(&["--semantics", "v3", p]);
    let stdout = String::from_utf8_lossy(&v3.stdout);
    assert_eq!(v3.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{p}:4: eval instant at 10m m: expected series m with value 2"
        )),
        "{stdout}"
    );
}

#[test]
fn the_library_runner_uses_the_harness_sample_limit() {
    // 10 series of 1 001 points each: 10 010 samples in one range selector, above the 10 000
    // the scripts assume.
    let mut text = String::from("load 1s\n");
    for i in 0..10 {
        text.push_str(&format!("  big{{i=\"{i}\"}} 0+1x1000\n"));
    }
    text.push_str("\neval_fail instant at 1000s count_over_time(big[1000s])\n\neval instant at 1000s count(count_over_time(big{i=\"0\"}[1000s]))\n  {} 1\n");
    let script = kubesignal::promql::script::parse_script("limit.test", &text).unwrap();
    let engine = Engine::new(kubesignal::promql::script::harness_options(Semantics::V2));
    let results = kubesignal::promql::script::run_script(&script, &engine);
    assert_eq!(results[0].outcome, Outcome::Pass, "{results:?}");
    assert_eq!(results[1].outcome, Outcome::Pass, "{results:?}");
}

#[test]
fn the_binary_runs_every_script_of_a_directory_and_passes_the_v2_42_suite() {
    let dir = promql::suite_files("v2.42")[0]
        .parent()
        .unwrap()
        .to_path_buf();
    let out = kubesignal_promql_test(&[dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        11,
        "{stdout}"
    );
    assert!(
        stdout.contains("TOTAL 11 files: 566 passed, 0 failed, 0 skipped"),
        "{stdout}"
    );
    let empty = tempfile::tempdir().unwrap();
    let out = kubesignal_promql_test(&[empty.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("no *.test files in this directory"),
        "{stdout}"
    );
}
