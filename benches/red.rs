//! RED collection CPU and memory: 50 targets × 2,000 samples per collection, network excluded
//! (bodies are in memory; each iteration does what `RedCollector::collect` does after the
//! fetch: parse + normalize every body, aggregate, drop stale state, render `/metrics` text).
//!
//! Each target is a Prometheus-client application: 40 routes × 3 codes of
//! `http_requests_total`, a 10-bucket `http_request_duration_seconds` histogram per route and
//! code, and filler runtime gauges up to 2,000 samples. 5 Deployments × 10 pods. Counters grow
//! between collections so deltas are real.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use kubesignal::agent::red::aggregate::WorkloadRef;
use kubesignal::agent::red::config::RedConfig;
use kubesignal::agent::red::render::encode_text;
use kubesignal::agent::red::{RedCollector, Scraped, Target};
use kubesignal::exposition::Format;

const TARGETS: usize = 50;
const SAMPLES: usize = 2000;
const BOUNDS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
];

fn body(pod: usize, round: u64) -> String {
    let mut s = String::with_capacity(200 * 1024);
    let mut samples = 0;
    s.push_str("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n");
    for route in 0..40 {
        for code in ["200", "404", "500"] {
            let v = 1000 + route * 7 + pod as u64 + round * 3;
            writeln!(s, "http_requests_total{{code=\"{code}\",handler=\"/api/v1/items/{route}\",method=\"get\"}} {v}").unwrap();
            samples += 1;
        }
    }
    s.push_str("# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\n");
    for route in 0..40u64 {
        for code in ["200", "404", "500"] {
            let base = 100 + route + round * 3;
            for (i, le) in BOUNDS.iter().enumerate() {
                let v = base * (i as u64 + 1) / 10;
                writeln!(s, "http_request_duration_seconds_bucket{{code=\"{code}\",handler=\"/api/v1/items/{route}\",method=\"get\",le=\"{le}\"}} {v}").unwrap();
            }
            writeln!(s, "http_request_duration_seconds_bucket{{code=\"{code}\",handler=\"/api/v1/items/{route}\",method=\"get\",le=\"+Inf\"}} {base}").unwrap();
            writeln!(s, "http_request_duration_seconds_sum{{code=\"{code}\",handler=\"/api/v1/items/{route}\",method=\"get\"}} {}", base as f64 * 0.042).unwrap();
            writeln!(s, "http_request_duration_seconds_count{{code=\"{code}\",handler=\"/api/v1/items/{route}\",method=\"get\"}} {base}").unwrap();
            samples += 13;
        }
    }
    s.push_str("# TYPE go_memstats_by_size_allocs gauge\n");
    let mut i = 0;
    while samples < SAMPLES {
        writeln!(
            s,
            "go_memstats_by_size_allocs{{size=\"{i}\"}} {}",
            i * 31 + round as usize
        )
        .unwrap();
        samples += 1;
        i += 1;
    }
    s
}

fn targets() -> Vec<Target> {
    (0..TARGETS)
        .map(|i| Target {
            url: format!("http://10.244.{}.{}:8080/metrics", i / 200, i % 200 + 2),
            workload: WorkloadRef {
                namespace: "shop".into(),
                workload: format!("service-{}", i % 5),
                workload_kind: "Deployment".into(),
            },
            pod: format!("service-{}-6fb786454b-{i:05}", i % 5),
        })
        .collect()
}

fn one_collection(collector: &mut RedCollector, targets: &[Target], bodies: &[String]) -> usize {
    let scraped = targets
        .iter()
        .zip(bodies)
        .map(|(t, b)| Scraped {
            target: t.clone(),
            result: collector.parse(b, Format::PrometheusText),
            duration: Duration::ZERO,
        })
        .collect();
    let snapshot = collector.fold(scraped);
    encode_text(&snapshot).len()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds this thread has run on a CPU, from `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .expect("/proc/thread-self/schedstat (Linux) gives the thread's CPU time")
}

fn main() {
    let rss_start = status_kib("VmRSS:");
    let targets = targets();
    // Two rounds of bodies, alternated so every collection sees counters grow or reset.
    let rounds: Vec<Vec<String>> = (0..2)
        .map(|r| (0..TARGETS).map(|p| body(p, r)).collect())
        .collect();
    let bytes: usize = rounds[0].iter().map(String::len).sum();
    let mut collector =
        RedCollector::new(RedConfig::default(), "node-1", Duration::from_secs(15)).unwrap();
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(20))
        .sample_size(30)
        .configure_from_args();
    let mut group = c.benchmark_group("red");
    group.throughput(Throughput::Elements((TARGETS * SAMPLES) as u64));
    let mut round = 0;
    group.bench_function("collection_50x2000_parse_normalize_aggregate_render", |b| {
        b.iter(|| {
            round += 1;
            black_box(one_collection(&mut collector, &targets, &rounds[round % 2]))
        })
    });
    group.finish();
    c.final_summary();
    // CPU time of this thread (the work is single-threaded), immune to other processes
    // competing for the cores, unlike criterion's wall-clock figures.
    const CPU_RUNS: u32 = 30;
    let cpu_before = thread_cpu_ns();
    for _ in 0..CPU_RUNS {
        round += 1;
        black_box(one_collection(&mut collector, &targets, &rounds[round % 2]));
    }
    let cpu_per_collection = (thread_cpu_ns() - cpu_before) / u64::from(CPU_RUNS);
    println!(
        "red: CPU per collection {:.1} ms (thread CPU time, mean of {CPU_RUNS})",
        cpu_per_collection as f64 / 1e6
    );
    let snapshot = collector.metrics().latest();
    let rendered = encode_text(&snapshot);
    println!(
        "red: {TARGETS} targets x {SAMPLES} samples = {} KiB of exposition per collection; \
         {} RED series out ({} KiB rendered), {} source series with state; \
         RSS {} MiB at start, {} MiB now, peak {} MiB",
        bytes / 1024,
        snapshot.series.len(),
        rendered.len() / 1024,
        snapshot.source_series,
        rss_start / 1024,
        status_kib("VmRSS:") / 1024,
        status_kib("VmHWM:") / 1024,
    );
}
