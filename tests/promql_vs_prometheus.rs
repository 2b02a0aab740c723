//! The benchmark's claim that both engines give the same answers, checked on a small data set:
//! the generator of `kubesignal bench promql` feeds our store and, through promtool, a real
//! Prometheus on loopback; every benchmark query must give the same series and values (1e-9
//! relative) from both.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`); fails saying so otherwise.

use kubesignal::bench::{self, PromqlBenchArgs, queries};

fn small_run() -> bench::Report {
    let dir = tempfile::tempdir().unwrap();
    let args = PromqlBenchArgs {
        days: 4,
        series: 80,
        interval: 60,
        reps: 1,
        dir: Some(dir.path().to_path_buf()),
    };
    bench::run(&args, |_| {}).unwrap_or_else(|e| panic!("benchmark could not run: {e}"))
}

#[test]
fn every_benchmark_query_gives_the_same_result_from_our_engine_and_prometheus() {
    let report = small_run();
    assert_eq!(report.rows.len(), queries::queries().len());
    let differing: Vec<String> = report
        .mismatches()
        .map(|r| {
            format!(
                "{} (`{}`):\n    {}",
                r.query.name,
                r.query.expr,
                r.mismatch.join("\n    ")
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "our engine and Prometheus disagree on {} of {} queries:\n{}",
        differing.len(),
        report.rows.len(),
        differing.join("\n")
    );
}

#[test]
fn every_benchmark_query_has_data_to_compare_on_the_generated_set() {
    // An empty answer from both would compare equal and prove nothing; the data set is shaped
    // so every query (the burn-rate alerts included) returns series.
    let report = small_run();
    for row in &report.rows {
        assert!(
            row.series > 0,
            "Prometheus returned no series for {}: `{}`",
            row.query.name,
            row.query.expr
        );
    }
    let page = report
        .rows
        .iter()
        .find(|r| r.query.name.starts_with("burn-rate page"))
        .unwrap();
    assert_eq!(page.series, 2, "both window pairs of the page alert fire");
    assert!(report.memory.samples > 400_000);
    assert!(report.memory.prometheus_blocks > 0);
}
