//! The agent binary scraping an application: the demo app's RED metrics come out of the agent
//! normalized, with the namespace and workload the config file gives the static target.

#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use metrics::Scrape;
use process::{Kubesignal, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn requests_to_a_static_target_come_out_as_red_series_of_its_workload() {
    let demo = Kubesignal::start(&["demo", "--error-rate=1", "--latency-ms=1"]).await;
    let target = format!("http://{}/metrics", demo.addr);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 500ms\nred:\n  scrape_timeout: 200ms\n  static_targets:\n    - {{url: '{target}', namespace: shop, workload: checkout}}\n"
        ),
    )
    .unwrap();
    let agent = Kubesignal::start(&[
        "agent",
        "--node-name=laptop",
        "--config",
        config.to_str().unwrap(),
        "--static-target",
        &target,
    ])
    .await;

    let client = reqwest::Client::new();
    let served = 17;
    for _ in 0..served {
        let status = client
            .get(format!("http://{}/", demo.addr))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(
            status, 500,
            "the demo fails every request at --error-rate=1"
        );
    }
    let workload = [("namespace", "shop"), ("workload", "checkout")];
    let got = eventually(
        "the agent reports every request",
        Duration::from_secs(20),
        || async {
            let got = Scrape::parse(&agent.metrics().await, false);
            let total: f64 = got
                .find("kubesignal_red_requests_total", &workload)
                .iter()
                .map(|s| s.value)
                .sum();
            (total == served as f64).then_some(got)
        },
    )
    .await;
    metrics::assert_documented(&agent.metrics().await);
    let errors: f64 = got
        .find("kubesignal_red_errors_total", &workload)
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(errors, served as f64, "5xx responses are errors");
    let series = got.find("kubesignal_red_requests_total", &workload);
    assert!(series.iter().all(|s| s.labels["route"] == "/"
        && s.labels["method"] == "GET"
        && s.labels["code"] == "500"
        && s.labels["node"] == "laptop"));
    let count: f64 = got
        .find("kubesignal_red_request_duration_seconds_count", &workload)
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(count, served as f64, "the histogram counts every request");
    assert_eq!(
        got.value("kubesignal_agent_target_up", &workload),
        1.0,
        "the target is up"
    );
}
