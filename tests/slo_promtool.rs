//! `promtool test rules` unit tests (tests/slo/*.test.yaml) against rules freshly generated from
//! the specs, so a change in the generator that alters alert behaviour fails here.

#[path = "common/slo.rs"]
mod slo;

use std::path::Path;

fn run_unit_test(spec: &Path, test_file: &str) {
    let dir = tempfile::tempdir().unwrap();
    slo::generate(&[spec.to_path_buf()], dir.path());
    std::fs::copy(
        slo::repo().join("tests/slo").join(test_file),
        dir.path().join(test_file),
    )
    .unwrap();
    let out = slo::promtool(dir.path(), &["test", "rules", test_file]);
    assert!(
        out.status.success(),
        "promtool test rules {test_file} failed:\n{}",
        slo::text(&out)
    );
    assert!(slo::text(&out).contains("SUCCESS"), "{}", slo::text(&out));
}

#[test]
fn generated_demo_rules_page_ticket_and_report_missing_data_as_promtool_expects() {
    run_unit_test(&slo::repo().join("slos/demo.yaml"), "demo.test.yaml");
}

#[test]
fn the_traffic_guard_silences_a_handful_of_failing_requests_but_not_real_traffic() {
    run_unit_test(
        &slo::repo().join("tests/slo/guarded.yaml"),
        "guarded.test.yaml",
    );
}
