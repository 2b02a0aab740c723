//! The agent with no cluster: the `local` source reads this machine's `/proc`, and the node proxy
//! mode reaches a kubelet through an API server URL from a kubeconfig.

#[path = "common/kubelet.rs"]
mod kubelet;
#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use metrics::{Scrape, assert_close};
use process::{Kubesignal, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn the_local_source_exports_this_hosts_usage() {
    let agent = Kubesignal::start(&["agent", "--interval=200ms", "--node-name=laptop"]).await;
    let got = eventually("two local collections", Duration::from_secs(15), || async {
        let got = Scrape::parse(&agent.metrics().await, false);
        got.has(
            "kubesignal_node_cpu_utilization_ratio",
            &[("node", "laptop")],
        )
        .then_some(got)
    })
    .await;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_close(
        got.value(
            "kubesignal_node_memory_capacity_bytes",
            &[("node", "laptop")],
        ),
        total_kib * 1024.0,
        "memory capacity is MemTotal",
    );
    let used = got.value("kubesignal_node_memory_utilization_ratio", &[]);
    assert!(used > 0.0 && used < 1.0, "{used}");
    let cpu = got.value("kubesignal_node_cpu_utilization_ratio", &[]);
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    let busy = got.value("kubesignal_node_cpu_usage_seconds_total", &[]);
    assert!(busy > 0.0);
    let fs = got.value("kubesignal_node_filesystem_used_ratio", &[("fs", "root")]);
    assert!(fs > 0.0 && fs < 1.0, "{fs}");
    if std::path::Path::new("/proc/pressure/cpu").exists() {
        assert!(got.has(
            "kubesignal_node_cpu_pressure_seconds_total",
            &[("kind", "some")]
        ));
    }
    assert_eq!(agent.status("/readyz").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_proxy_mode_reads_the_kubelet_through_a_kubeconfig() {
    let set = kubelet::fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.31")
        .unwrap();
    let api = kubelet::FakeKubelet::start(&set).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token-file: {}\ncontexts:\n- name: test\n  context: {{cluster: c, user: u}}\n",
            api.url,
            api.ca_file.display(),
            api.token_file.display()
        ),
    )
    .unwrap();
    let agent = Kubesignal::start(&[
        "agent",
        "--interval=300ms",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "minikube",
    ])
    .await;
    eventually(
        "usage read through the node proxy",
        Duration::from_secs(15),
        || async {
            Scrape::parse(&agent.metrics().await, false)
                .has(
                    "kubesignal_container_memory_working_set_bytes",
                    &[("node", "minikube")],
                )
                .then_some(())
        },
    )
    .await;
}
