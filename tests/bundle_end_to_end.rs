//! The bundle end to end: the real Prometheus scrapes the agent (reading a kubelet played with
//! the captured fixtures, and the demo application as a RED target) and the evaluator, and
//! evaluates the bundled rule files; every dashboard panel, its variables filled from what
//! Prometheus holds, returns data.

#[path = "common/bundle.rs"]
mod bundle;
#[path = "common/kubelet.rs"]
mod kubelet;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use kubelet::{FakeKubelet, fixture_sets};
use process::{Kubesignal, Prometheus, eventually, free_port};

/// Series that exist only once something was sent or failed; this stack has no routing file
/// and a healthy kubelet, so their panels are empty. Each must really be among the empty ones.
const ABSENT_HERE: &[&str] = &[
    "kubesignal_agent_scrape_errors_total",
    "kubesignal_evaluator_notifications_failed_total",
    "kubesignal_evaluator_notifications_sent_total",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_panel_returns_data_from_the_running_bundle() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let demo = Kubesignal::start(&[
        "demo",
        "--self-load=40",
        "--error-rate=0.05",
        "--latency-ms=5",
    ])
    .await;
    let demo_target = format!("http://{}/metrics", demo.addr);
    // A target nobody listens on, so the "targets down" panels have something to show.
    let down_target = format!("http://127.0.0.1:{}/metrics", free_port());
    let dir = tempfile::tempdir().unwrap();
    let agent_config = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "red:\n  scrape_timeout: 500ms\n  static_targets:\n    - {{url: '{demo_target}', namespace: demo, workload: demo}}\n    - {{url: '{down_target}', namespace: demo, workload: gone}}\n"
        ),
    )
    .unwrap();
    let agent = Kubesignal::start(&[
        "agent",
        "--source=kubelet",
        "--interval=1s",
        "--kubelet-url",
        &kubelet.url,
        "--kubelet-ca-file",
        kubelet.ca_file.to_str().unwrap(),
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--node-name=datagen-1-34",
        "--static-target",
        &demo_target,
        "--static-target",
        &down_target,
        "--config",
        agent_config.to_str().unwrap(),
    ])
    .await;

    let prometheus_port = free_port();
    let alerts = bundle::repo_root().join("alerts");
    let evaluator = Kubesignal::start(&[
        "evaluator",
        "--rules",
        alerts.to_str().unwrap(),
        "--datasource-url",
        &format!("http://127.0.0.1:{prometheus_port}"),
        "--evaluation-interval=1s",
    ])
    .await;
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}/*.yaml']\n\
         scrape_configs:\n\
         - job_name: kubesignal-agent\n  static_configs: [{{targets: ['{}'], labels: {{cluster: e2e}}}}]\n\
         - job_name: kubesignal-evaluator\n  static_configs: [{{targets: ['{}'], labels: {{cluster: e2e}}}}]\n",
        alerts.display(),
        agent.addr,
        evaluator.addr
    );
    let prometheus = Prometheus::start_on(&config, prometheus_port).await;

    // Enough scrapes for every rate window ($__rate_interval is 20s here) and the recordings.
    eventually(
        "30s of data with RED traffic",
        Duration::from_secs(90),
        || async {
            let r = prometheus
                .query(
                    "count_over_time(kubesignal_red_requests_total{namespace=\"demo\"}[30s]) >= 25",
                )
                .await;
            (!r.is_empty()).then_some(())
        },
    )
    .await;

    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (checked, failures) = bundle::query_every_panel(
        &client,
        &prometheus.url,
        now - 600,
        now,
        "20s",
        &[("namespace", "scraper"), ("workload", "e2e-deployment")],
    )
    .await;
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|f| !ABSENT_HERE.iter().any(|name| f.contains(name)))
        .collect();
    for name in ABSENT_HERE {
        assert!(
            failures.iter().any(|f| f.contains(name)),
            "{name} now has data: take it off ABSENT_HERE"
        );
    }
    assert!(checked > 50, "only {checked} queries checked");
    assert!(
        unexpected.is_empty(),
        "{} of {checked} queries returned no data:\n{}",
        unexpected.len(),
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
