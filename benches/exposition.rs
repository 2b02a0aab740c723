//! Our exposition parser against the `prometheus-parse` crate on the same real payloads, in the
//! same run. Fixtures come from `KUBESIGNAL_FIXTURES` (default `/work/shared/fixtures`).
//!
//! Throughput is set in bytes, so criterion prints MB/s; samples/s follow from the sample count
//! printed once per input.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kubesignal::exposition::{Entry, Format, Parser};

const INPUTS: [&str; 2] = [
    "cadvisor/nri-k8s-1_34-cadvisor.prom",
    "app-metrics/prometheus-server-237mfs.prom",
];

fn fixture(relative: &str) -> String {
    let dir = std::env::var_os("KUBESIGNAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/fixtures"));
    let path = dir.join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Parse everything and return the number of samples (so nothing is optimised away).
fn ours(text: &str) -> usize {
    let mut samples = 0;
    for entry in Parser::new(text, Format::PrometheusText) {
        if let Entry::Sample(s) = entry.expect("fixture parses") {
            black_box(&s);
            samples += 1;
        }
    }
    samples
}

/// The cAdvisor reader's use: keep five families, skip the rest cheaply.
fn ours_filtered(text: &str) -> usize {
    fn keep(name: &str) -> bool {
        matches!(
            name,
            "container_cpu_usage_seconds_total"
                | "container_memory_working_set_bytes"
                | "container_cpu_cfs_throttled_periods_total"
                | "container_cpu_cfs_periods_total"
                | "container_oom_events_total"
        )
    }
    Parser::new(text, Format::PrometheusText)
        .with_name_filter(keep)
        .filter(|e| matches!(e, Ok(Entry::Sample(_))))
        .count()
}

/// `prometheus-parse` takes owned lines, so splitting into `String`s is part of its cost.
fn prometheus_parse_crate(text: &str) -> usize {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    scrape.samples.len()
}

fn bench(c: &mut Criterion) {
    for input in INPUTS {
        let text = fixture(input);
        let name = input.rsplit('/').next().unwrap_or(input);
        eprintln!(
            "{name}: {} bytes, {} samples (ours), {} samples (prometheus-parse), {} kept by the \
             cAdvisor filter",
            text.len(),
            ours(&text),
            prometheus_parse_crate(&text),
            ours_filtered(&text)
        );
        let mut group = c.benchmark_group(format!("exposition/{name}"));
        group
            .throughput(Throughput::Bytes(text.len() as u64))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        group.bench_function("kubesignal", |b| b.iter(|| ours(black_box(&text))));
        group.bench_function("kubesignal_filtered", |b| {
            b.iter(|| ours_filtered(black_box(&text)))
        });
        group.bench_function("prometheus_parse", |b| {
            b.iter(|| prometheus_parse_crate(black_box(&text)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
