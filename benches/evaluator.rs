//! Evaluator cost, measured.
//!
//! - `state_machine/10k_firing_alerts`: one evaluation of a rule holding 10,000 firing alerts
//!   (templating, merge, send bookkeeping), no I/O.
//! - `cycle/1000_rules_20_groups`: one evaluation cycle of 1,000 rules in 20 groups run
//!   concurrently against a real Prometheus over HTTP. After it, the same rule file is loaded
//!   into Prometheus itself and its own per-group evaluation times (from its `/api/v1/rules`)
//!   are printed for comparison, with our CPU time per cycle and the memory 10,000 active alerts
//!   take.
//!
//! Needs `prometheus` (Debian package `prometheus`) on PATH.

#[path = "../tests/common/evaluator.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::Criterion;
use kubesignal::evaluator::alert::{AlertingRule, Labels, RenderInput};
use kubesignal::evaluator::datasource::{HttpConfig, HttpDatasource, Sample};
use kubesignal::evaluator::group::{EvalContext, Group, load_groups};
use kubesignal::evaluator::render::Templater;

const GROUPS: usize = 20;
const RULES_PER_GROUP: usize = 50;

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            labels: Labels::from([
                ("__name__".to_string(), "kube_pod_status_ready".to_string()),
                ("namespace".to_string(), format!("ns{}", i % 50)),
                ("pod".to_string(), format!("pod-{i}")),
            ]),
            value: i as f64,
        })
        .collect()
}

fn alerting_rule() -> AlertingRule {
    AlertingRule::new(
        "PodNotReady".into(),
        "kube_pod_status_ready == 0".into(),
        Duration::ZERO,
        Duration::ZERO,
        Labels::from([("severity".to_string(), "warning".to_string())]),
        Labels::from([(
            "summary".to_string(),
            "{{ $labels.namespace }}/{{ $labels.pod }} not ready ({{ $value | humanize }})"
                .to_string(),
        )]),
    )
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn state_machine(c: &mut Criterion) {
    let templater = Templater::default();
    let input = samples(10_000);
    let mut rule = alerting_rule();
    let before = rss_bytes();
    let mut render = |i: RenderInput<'_>| templater.render(i, None);
    rule.apply(Utc::now(), &input, 0, &mut render).unwrap();
    eprintln!(
        "memory: 10,000 active alerts take about {} MiB resident",
        (rss_bytes().saturating_sub(before)) / (1024 * 1024)
    );
    c.bench_function("state_machine/10k_firing_alerts", |b| {
        b.iter(|| {
            let mut render = |i: RenderInput<'_>| templater.render(i, None);
            black_box(
                rule.apply(Utc::now(), black_box(&input), 0, &mut render)
                    .unwrap(),
            );
            black_box(rule.take_to_send(
                Utc::now(),
                Duration::from_secs(60),
                Duration::from_secs(60),
            ));
        })
    });
}

fn rule_file() -> String {
    let mut s = String::from("groups:\n");
    for g in 0..GROUPS {
        s += &format!("  - name: bench{g}\n    interval: 10s\n    rules:\n");
        for r in 0..RULES_PER_GROUP {
            if r % 2 == 0 {
                s += &format!(
                    "      - record: handler:prometheus_http_requests:rate1m_x{g}_{r}\n        expr: sum by (handler) (rate(prometheus_http_requests_total[1m])) * {r}\n"
                );
            } else {
                s += &format!(
                    "      - alert: Bench{g}x{r}\n        expr: sum by (handler, code) (prometheus_http_requests_total) > {}\n        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"{{{{ $labels.handler }}}} answered {{{{ $value | humanize }}}} requests\"\n",
                    r % 5
                );
            }
        }
    }
    s
}

fn cycle(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rule_file()).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let self_scrape = |port: u16, with_rules: bool| {
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 10s\n{}scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            if with_rules {
                format!("rule_files: ['{}']\n", rules.display())
            } else {
                String::new()
            }
        )
    };
    let port = common::free_port();
    let prom = common::Prometheus::start(dir.path(), &data, &self_scrape(port, false), Some(port));
    std::thread::sleep(Duration::from_secs(3));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let datasource: std::sync::Arc<HttpDatasource> = std::sync::Arc::new(
        HttpDatasource::new(HttpConfig {
            url: prom.url.clone(),
            timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .unwrap(),
    );
    let templater = std::sync::Arc::new(Templater::default());
    let mut groups: Vec<Group> =
        load_groups(&[rules.display().to_string()], Duration::from_secs(10)).unwrap();
    assert_eq!(groups.iter().map(|g| g.rules.len()).sum::<usize>(), 1000);

    let mut cycles = 0u32;
    let cpu_before = cpu_time();
    let mut group_times = Duration::ZERO;
    c.bench_function("cycle/1000_rules_20_groups", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let taken = std::mem::take(&mut groups);
                groups = runtime.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    for (i, mut g) in taken.into_iter().enumerate() {
                        let ds = datasource.clone();
                        let templater = templater.clone();
                        set.spawn(async move {
                            let ctx = EvalContext {
                                datasource: ds.as_ref(),
                                templater: &templater,
                                deadline: tokio::time::Instant::now() + Duration::from_secs(30),
                                resend_delay: Duration::from_secs(60),
                                outage_tolerance: Duration::from_secs(3600),
                                for_grace_period: Duration::from_secs(600),
                                record_sink: None,
                            };
                            let out = g.evaluate(Utc::now(), &ctx).await;
                            assert_eq!(out.failed, 0, "a benchmark query failed");
                            (i, g)
                        });
                    }
                    let mut back: Vec<(usize, Group)> = set.join_all().await;
                    back.sort_by_key(|(i, _)| *i);
                    back.into_iter().map(|(_, g)| g).collect()
                });
                total += started.elapsed();
                cycles += 1;
                group_times += groups.iter().map(|g| g.evaluation_time).sum::<Duration>();
            }
            total
        })
    });
    let cpu = cpu_time() - cpu_before;
    eprintln!(
        "kubesignal: {cycles} cycles, CPU {:.1} ms per cycle (this process), mean group evaluation {:.1} ms",
        cpu.as_secs_f64() * 1000.0 / f64::from(cycles.max(1)),
        group_times.as_secs_f64() * 1000.0 / f64::from((cycles * GROUPS as u32).max(1)),
    );

    // The same rules evaluated by Prometheus itself.
    drop(prom);
    let port = common::free_port();
    let prom = common::Prometheus::start(dir.path(), &data, &self_scrape(port, true), Some(port));
    std::thread::sleep(Duration::from_secs(35));
    let (_, body) = common::http_get(&format!("{}/api/v1/rules", prom.url)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let times: Vec<f64> = v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["evaluationTime"].as_f64())
        .collect();
    let sum: f64 = times.iter().sum();
    eprintln!(
        "prometheus: {} groups, mean group evaluation {:.1} ms, sum over groups {:.1} ms",
        times.len(),
        sum * 1000.0 / times.len().max(1) as f64,
        sum * 1000.0
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .warm_up_time(Duration::from_secs(2));
    state_machine(&mut c);
    cycle(&mut c);
    c.final_summary();
}
