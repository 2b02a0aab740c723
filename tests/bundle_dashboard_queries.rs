//! Every dashboard query returns data from a real Prometheus that holds series shaped like the
//! contract (names and label sets of DESIGN.md and tests/common/bundle.rs).
//!
//! The series are written as OpenMetrics, turned into TSDB blocks by `promtool tsdb
//! create-blocks-from openmetrics`, and served by a real `prometheus` on loopback. Variables are
//! filled the way Grafana fills them: each `label_values()` query is asked of Prometheus, in
//! order, and its first value is used. This checks label joins (`on (...)`), `scalar()`,
//! histogram quantiles and variable chains; it does not replace the end-to-end test with the real
//! agent scraping the kubelet fixtures, which needs the agent.

#[path = "common/bundle.rs"]
mod bundle;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bundle::{ALLOWED_METRICS, api, describe, require_program, run};

const STEP: i64 = 15;
const SPAN: i64 = 3 * 3600;
const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus process, killed when dropped.
struct Prom {
    child: Child,
    base: String,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes one series over the whole span; `f` maps seconds since the start to a value.
fn series(out: &mut String, name: &str, labels: &str, start: i64, f: impl Fn(f64) -> f64) {
    let mut t = start;
    while t <= start + SPAN {
        let v = f((t - start) as f64);
        writeln!(out, "{name}{{{labels}}} {v} {t}").unwrap();
        t += STEP;
    }
}

/// Series for every name in ALLOWED_METRICS, with the contract's labels.
fn contract_data(start: i64) -> String {
    let mut o = String::new();
    let s = &mut o;
    for (node, cores) in [("n1", 4.0), ("n2", 8.0)] {
        let n = format!("node=\"{node}\"");
        series(
            s,
            "kubesignal_node_cpu_usage_seconds_total",
            &n,
            start,
            |t| t * cores * 0.3,
        );
        series(s, "kubesignal_node_cpu_capacity_cores", &n, start, |_| {
            cores
        });
        series(
            s,
            "kubesignal_node_cpu_utilization_ratio",
            &n,
            start,
            |_| 0.3,
        );
        series(
            s,
            "kubesignal_node_memory_working_set_bytes",
            &n,
            start,
            |_| 4e9,
        );
        series(
            s,
            "kubesignal_node_memory_capacity_bytes",
            &n,
            start,
            |_| 16e9,
        );
        series(
            s,
            "kubesignal_node_memory_utilization_ratio",
            &n,
            start,
            |_| 0.25,
        );
        for kind in ["some", "full"] {
            let l = format!("{n},kind=\"{kind}\"");
            series(
                s,
                "kubesignal_node_cpu_pressure_seconds_total",
                &l,
                start,
                |t| t * 0.02,
            );
            series(
                s,
                "kubesignal_node_memory_pressure_seconds_total",
                &l,
                start,
                |t| t * 0.01,
            );
        }
        series(
            s,
            "kubesignal_node_network_receive_errors_total",
            &n,
            start,
            |t| t * 0.01,
        );
        series(
            s,
            "kubesignal_node_network_transmit_errors_total",
            &n,
            start,
            |t| t * 0.01,
        );
        for fs in ["root", "image"] {
            let l = format!("{n},fs=\"{fs}\"");
            series(s, "kubesignal_node_filesystem_used_ratio", &l, start, |t| {
                0.5 + t / 1e6
            });
        }
    }
    for (node, pod, workload, oom) in [
        ("n1", "cart-1", "cart", true),
        ("n2", "api-1", "api", false),
    ] {
        let p = format!(
            "node=\"{node}\",namespace=\"shop\",pod=\"{pod}\",workload=\"{workload}\",workload_kind=\"Deployment\""
        );
        let c = format!("{p},container=\"app\"");
        series(
            s,
            "kubesignal_container_cpu_usage_seconds_total",
            &c,
            start,
            |t| t * 0.2,
        );
        series(
            s,
            "kubesignal_container_cpu_request_cores",
            &c,
            start,
            |_| 0.25,
        );
        series(s, "kubesignal_container_cpu_limit_cores", &c, start, |_| {
            0.5
        });
        series(
            s,
            "kubesignal_container_cpu_limit_utilization_ratio",
            &c,
            start,
            |_| 0.4,
        );
        series(
            s,
            "kubesignal_container_cpu_request_utilization_ratio",
            &c,
            start,
            |_| 0.8,
        );
        series(
            s,
            "kubesignal_container_cpu_cfs_periods_total",
            &c,
            start,
            |t| t * 10.0,
        );
        series(
            s,
            "kubesignal_container_cpu_cfs_throttled_periods_total",
            &c,
            start,
            |t| t * 1.0,
        );
        series(
            s,
            "kubesignal_container_memory_working_set_bytes",
            &c,
            start,
            |_| 1e8,
        );
        series(
            s,
            "kubesignal_container_memory_request_bytes",
            &c,
            start,
            |_| 1.2e8,
        );
        series(
            s,
            "kubesignal_container_memory_limit_bytes",
            &c,
            start,
            |_| 2e8,
        );
        series(
            s,
            "kubesignal_container_memory_limit_utilization_ratio",
            &c,
            start,
            |_| 0.5,
        );
        series(
            s,
            "kubesignal_container_oom_events_total",
            &c,
            start,
            |_| 0.0,
        );
        series(s, "kubesignal_container_restarts_total", &c, start, |t| {
            (t / 600.0).floor()
        });
        let reason = if oom { "OOMKilled" } else { "Error" };
        series(
            s,
            "kubesignal_container_last_terminated_reason",
            &format!("{c},reason=\"{reason}\""),
            start,
            |_| 1.0,
        );
        series(
            s,
            "kubesignal_pod_network_receive_bytes_total",
            &p,
            start,
            |t| t * 1000.0,
        );
        series(
            s,
            "kubesignal_pod_network_transmit_bytes_total",
            &p,
            start,
            |t| t * 800.0,
        );
        series(
            s,
            "kubesignal_pod_network_receive_errors_total",
            &p,
            start,
            |t| t * 0.01,
        );
        series(
            s,
            "kubesignal_pod_network_transmit_errors_total",
            &p,
            start,
            |t| t * 0.01,
        );
        series(
            s,
            "kubesignal_pod_ephemeral_storage_used_bytes",
            &p,
            start,
            |_| 1e6,
        );
        series(
            s,
            "kubesignal_pod_cpu_usage_seconds_total",
            &p,
            start,
            |t| t * 0.2,
        );
        series(
            s,
            "kubesignal_pod_memory_working_set_bytes",
            &p,
            start,
            |_| 1e8,
        );
        series(s, "kubesignal_pod_cpu_limit_cores", &p, start, |_| 0.5);
        series(s, "kubesignal_pod_memory_limit_bytes", &p, start, |_| 2e8);
        let up = if oom { 1.0 } else { 0.0 };
        let target = format!(
            "job=\"kubesignal-agent\",instance=\"{node}:9847\",namespace=\"shop\",workload=\"{workload}\",pod=\"{pod}\""
        );
        series(s, "kubesignal_agent_target_up", &target, start, move |_| up);
    }
    for (node, workload) in [("n1", "cart"), ("n2", "api")] {
        for route in ["/", "/api/items/:id"] {
            for (code, rate) in [("200", 10.0), ("500", 0.2)] {
                let l = format!(
                    "node=\"{node}\",namespace=\"shop\",workload=\"{workload}\",workload_kind=\"Deployment\",route=\"{route}\",method=\"GET\",code=\"{code}\""
                );
                series(s, "kubesignal_red_requests_total", &l, start, |t| t * rate);
                if code == "500" {
                    series(s, "kubesignal_red_errors_total", &l, start, |t| t * rate);
                }
                for (i, le) in LATENCY_BOUNDS.iter().enumerate() {
                    let share = ((i + 1) as f64 / LATENCY_BOUNDS.len() as f64).min(1.0);
                    series(
                        s,
                        "kubesignal_red_request_duration_seconds_bucket",
                        &format!("{l},le=\"{le}\""),
                        start,
                        |t| (t * rate * share).floor(),
                    );
                }
                series(
                    s,
                    "kubesignal_red_request_duration_seconds_bucket",
                    &format!("{l},le=\"+Inf\""),
                    start,
                    |t| (t * rate).floor(),
                );
                series(
                    s,
                    "kubesignal_red_request_duration_seconds_sum",
                    &l,
                    start,
                    |t| t * rate * 0.05,
                );
                series(
                    s,
                    "kubesignal_red_request_duration_seconds_count",
                    &l,
                    start,
                    |t| (t * rate).floor(),
                );
            }
        }
    }
    for node in ["n1", "n2"] {
        let a = format!("job=\"kubesignal-agent\",instance=\"{node}:9847\"");
        series(s, "up", &a, start, |_| 1.0);
        series(s, "kubesignal_agent_series", &a, start, |_| 1234.0);
        for source in ["kubelet", "app"] {
            series(
                s,
                "kubesignal_agent_scrape_duration_seconds",
                &format!("{a},source=\"{source}\""),
                start,
                |_| 0.05,
            );
        }
        series(
            s,
            "kubesignal_agent_scrape_errors_total",
            &format!("{a},source=\"kubelet\",reason=\"timeout\""),
            start,
            |t| t * 0.01,
        );
    }
    let e = "job=\"kubesignal-evaluator\",instance=\"evaluator:9848\"";
    series(s, "up", e, start, |_| 1.0);
    for group in ["kubesignal-workloads", "slo-demo"] {
        let g = format!("{e},rule_group=\"{group}\"");
        series(
            s,
            "kubesignal_evaluator_rule_evaluation_failures_total",
            &g,
            start,
            |t| t * 0.01,
        );
        series(
            s,
            "kubesignal_evaluator_rule_group_iterations_missed_total",
            &g,
            start,
            |t| t * 0.001,
        );
        series(
            s,
            "kubesignal_evaluator_rule_group_last_duration_seconds",
            &g,
            start,
            |_| 0.02,
        );
    }
    let r = format!("{e},receiver=\"team-demo\"");
    series(
        s,
        "kubesignal_evaluator_notifications_sent_total",
        &r,
        start,
        |t| t * 0.01,
    );
    series(
        s,
        "kubesignal_evaluator_notifications_failed_total",
        &r,
        start,
        |t| t * 0.001,
    );
    let slo = "slo=\"demo-availability\",service=\"demo\",namespace=\"demo\",owner=\"team-demo\"";
    series(
        s,
        "ALERTS",
        &format!(
            "{e},alertname=\"SLOErrorBudgetBurn\",alertstate=\"firing\",severity=\"page\",{slo}"
        ),
        start,
        |_| 1.0,
    );
    series(
        s,
        "ALERTS",
        &format!(
            "{e},alertname=\"KubesignalCPUThrottlingHigh\",alertstate=\"pending\",severity=\"warning\",namespace=\"shop\",workload=\"cart\""
        ),
        start,
        |_| 1.0,
    );
    for w in ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"] {
        series(
            s,
            &format!("slo:sli_error:ratio_rate{w}"),
            slo,
            start,
            |_| 0.002,
        );
    }
    series(s, "slo:objective:ratio", slo, start, |_| 0.995);
    series(s, "slo:error_budget:remaining_ratio", slo, start, |t| {
        0.6 - t / 1e6
    });
    series(
        s,
        "slo:info",
        &format!("{slo},window=\"30d\",objective=\"99.5\",sli=\"availability\""),
        start,
        |_| 1.0,
    );
    o.push_str("# EOF\n");
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_prometheus(dir: &Path, start: i64) -> Prom {
    let promtool = require_program("promtool", &[], "install Debian's `prometheus` package");
    let prometheus = require_program("prometheus", &[], "install Debian's `prometheus` package");
    let input = dir.join("contract.om");
    std::fs::write(&input, contract_data(start)).unwrap();
    let data = dir.join("data");
    let out = run(Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(&data));
    assert!(
        out.status.success(),
        "promtool backfill failed:\n{}",
        describe(&out)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
    let port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    let prom = Prom {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}/-/ready", prom.base)).send().await
            && r.status().is_success()
        {
            return prom;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus on {} did not become ready in 30 s", prom.base);
}

#[tokio::test]
async fn every_dashboard_query_returns_data_from_contract_shaped_series() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Whole hours in the past, ending 10 minutes ago, so the blocks never reach into the head.
    let end = now - 600;
    let start = end - SPAN;
    let dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(dir.path(), start).await;
    let client = reqwest::Client::new();
    let at = end.to_string();

    // Sanity: every allowed series is in the data, so an empty panel means a wrong query.
    for (name, _) in ALLOWED_METRICS {
        let r = api(
            &client,
            &format!("{}/api/v1/query", prom.base),
            &[
                ("query", format!("count({{__name__=\"{name}\"}})")),
                ("time", at.clone()),
            ],
        )
        .await;
        assert_eq!(
            r["data"]["result"].as_array().map(Vec::len),
            Some(1),
            "fixture lacks {name}: {r}"
        );
    }

    let (checked, failures) =
        bundle::query_every_panel(&client, &prom.base, start, end, "1m", &[]).await;
    assert!(checked > 50, "only {checked} queries checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
