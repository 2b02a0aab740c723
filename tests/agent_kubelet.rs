//! The agent against a kubelet played by a real HTTPS server serving captured payloads: exact
//! values of the exported series, computed independently from the JSON, for every fixture set.

#[path = "common/kubelet.rs"]
mod kubelet;
#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use kubelet::{FakeKubelet, FixtureSet, fixture_sets};
use metrics::{Scrape, assert_close, quantity};
use process::{Kubesignal, eventually};
use serde_json::Value;

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Starts the agent against `kubelet` and waits for its first successful collection.
async fn agent_for(kubelet: &FakeKubelet, node: &str, extra: &[&str]) -> Kubesignal {
    let mut args = vec![
        "agent",
        "--source=kubelet",
        "--interval=500ms",
        "--kubelet-url",
        &kubelet.url,
        "--kubelet-ca-file",
        kubelet.ca_file.to_str().unwrap(),
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--node-name",
        node,
    ];
    args.extend_from_slice(extra);
    let agent = Kubesignal::start(&args).await;
    eventually(
        "the agent becomes ready",
        Duration::from_secs(20),
        || async { (agent.status("/readyz").await == 200).then_some(()) },
    )
    .await;
    agent
}

async fn scrape(agent: &Kubesignal) -> Scrape {
    Scrape::parse(&agent.metrics().await, false)
}

/// `machine_cpu_cores` read straight from the cAdvisor text.
fn machine_value(set: &FixtureSet, name: &str) -> f64 {
    let text = std::fs::read_to_string(set.cadvisor.as_ref().unwrap()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_set_is_exported_with_the_values_of_its_payloads() {
    for set in fixture_sets() {
        let summary = json(&set.summary);
        let pods = json(&set.pods);
        let node = summary["node"]["nodeName"].as_str().unwrap().to_string();
        let kubelet = FakeKubelet::start(&set).await;
        let agent = agent_for(&kubelet, &node, &[]).await;
        let got = scrape(&agent).await;
        let n = &summary["node"];
        let at_node = [("node", node.as_str())];
        let what = |s: &str| format!("{}: {s}", set.name);

        assert_close(
            got.value("kubesignal_node_cpu_usage_seconds_total", &at_node),
            n["cpu"]["usageCoreNanoSeconds"].as_f64().unwrap() / 1e9,
            &what("node CPU seconds"),
        );
        assert_close(
            got.value("kubesignal_node_memory_working_set_bytes", &at_node),
            n["memory"]["workingSetBytes"].as_f64().unwrap(),
            &what("node working set"),
        );
        let cores = machine_value(&set, "machine_cpu_cores");
        assert_close(
            got.value("kubesignal_node_cpu_capacity_cores", &at_node),
            cores,
            &what("node CPU capacity"),
        );
        assert_close(
            got.value("kubesignal_node_cpu_utilization_ratio", &at_node),
            n["cpu"]["usageNanoCores"].as_f64().unwrap() / 1e9 / cores,
            &what("node CPU utilization"),
        );
        let memory = machine_value(&set, "machine_memory_bytes");
        assert_close(
            got.value("kubesignal_node_memory_utilization_ratio", &at_node),
            n["memory"]["workingSetBytes"].as_f64().unwrap() / memory,
            &what("node memory utilization"),
        );
        assert_close(
            got.value("kubesignal_node_network_receive_errors_total", &at_node),
            n["network"]["rxErrors"].as_f64().unwrap(),
            &what("node receive errors"),
        );
        assert_close(
            got.value("kubesignal_node_network_transmit_errors_total", &at_node),
            n["network"]["txErrors"].as_f64().unwrap(),
            &what("node transmit errors"),
        );
        assert_close(
            got.value(
                "kubesignal_node_filesystem_used_ratio",
                &[("node", &node), ("fs", "root")],
            ),
            n["fs"]["usedBytes"].as_f64().unwrap() / n["fs"]["capacityBytes"].as_f64().unwrap(),
            &what("root filesystem"),
        );
        if let Some(psi) = n["cpu"].get("psi") {
            for kind in ["some", "full"] {
                assert_close(
                    got.value(
                        "kubesignal_node_cpu_pressure_seconds_total",
                        &[("node", &node), ("kind", kind)],
                    ),
                    psi[kind]["total"].as_f64().unwrap() / 1e6,
                    &what("node CPU pressure (microseconds in the payload)"),
                );
            }
        } else {
            assert!(!got.has("kubesignal_node_cpu_pressure_seconds_total", &[]));
        }

        let mut checked_containers = 0;
        let mut checked_limits = 0;
        for pod_stats in summary["pods"].as_array().unwrap() {
            let ns = pod_stats["podRef"]["namespace"].as_str().unwrap();
            let name = pod_stats["podRef"]["name"].as_str().unwrap();
            let Some(spec) = pods["items"].as_array().unwrap().iter().find(|p| {
                p["metadata"]["namespace"] == ns
                    && p["metadata"]["name"] == name
                    && p["status"]["phase"] == "Running"
            }) else {
                continue;
            };
            for c in pod_stats["containers"].as_array().unwrap() {
                let cname = c["name"].as_str().unwrap();
                let Some(ws) = c["memory"]["workingSetBytes"].as_f64() else {
                    continue;
                };
                let key = [("namespace", ns), ("pod", name), ("container", cname)];
                assert_close(
                    got.value("kubesignal_container_memory_working_set_bytes", &key),
                    ws,
                    &what(&format!("{ns}/{name}/{cname} working set")),
                );
                if let Some(cpu) = c["cpu"]["usageCoreNanoSeconds"].as_f64() {
                    assert_close(
                        got.value("kubesignal_container_cpu_usage_seconds_total", &key),
                        cpu / 1e9,
                        &what(&format!("{ns}/{name}/{cname} CPU seconds")),
                    );
                }
                let container_spec = spec["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == cname)
                    .unwrap();
                match container_spec["resources"]["limits"]["memory"].as_str() {
                    Some(limit) => {
                        assert_close(
                            got.value("kubesignal_container_memory_limit_bytes", &key),
                            quantity(limit),
                            &what("memory limit"),
                        );
                        assert_close(
                            got.value("kubesignal_container_memory_limit_utilization_ratio", &key),
                            ws / quantity(limit),
                            &what(&format!("{ns}/{name}/{cname} memory limit ratio")),
                        );
                        checked_limits += 1;
                    }
                    None => assert!(
                        !got.has("kubesignal_container_memory_limit_utilization_ratio", &key),
                        "{}: {ns}/{name}/{cname} has no memory limit, so no limit ratio",
                        set.name
                    ),
                }
                if let Some(request) = container_spec["resources"]["requests"]["cpu"].as_str() {
                    assert_close(
                        got.value("kubesignal_container_cpu_request_cores", &key),
                        quantity(request),
                        &what("CPU request"),
                    );
                }
                let restarts = spec["status"]["containerStatuses"]
                    .as_array()
                    .and_then(|all| all.iter().find(|s| s["name"] == cname))
                    .and_then(|s| s["restartCount"].as_f64());
                if let Some(restarts) = restarts {
                    assert_close(
                        got.value("kubesignal_container_restarts_total", &key),
                        restarts,
                        &what("restarts"),
                    );
                }
                checked_containers += 1;
            }
        }
        // The legacy summary and pod list were captured from different minikube runs and share
        // one running pod; the others are one capture each.
        let minimum = if set.name == "minikube-legacy" { 1 } else { 10 };
        assert!(
            checked_containers >= minimum,
            "{}: only {checked_containers} containers checked",
            set.name
        );
        if set.name != "minikube-legacy" {
            assert!(checked_limits >= 1, "{}: no memory limit checked", set.name);
        }
        assert!(
            kubelet.requests() >= 3,
            "the agent fetched summary, pods and cadvisor"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_are_resolved_from_owner_references() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let agent = agent_for(&kubelet, "datagen-1-34", &[]).await;
    let got = scrape(&agent).await;
    let cases = [
        (
            "e2e-deployment-6fb786454b-7fsxc",
            "e2e-deployment",
            "Deployment",
        ),
        ("e2e-daemonset-79ft8", "e2e-daemonset", "DaemonSet"),
        ("e2e-statefulset-0", "e2e-statefulset", "StatefulSet"),
        ("e2e-cronjob-29472160-q4smw", "e2e-cronjob", "CronJob"),
        (
            "kube-apiserver-datagen-1-34",
            "kube-apiserver-datagen-1-34",
            "Pod",
        ),
        ("coredns-66bc5c9577-d98t2", "coredns", "Deployment"),
    ];
    for (pod, workload, kind) in cases {
        let series = got.find(
            "kubesignal_container_memory_working_set_bytes",
            &[("pod", pod)],
        );
        assert!(!series.is_empty(), "no series for {pod}");
        for s in series {
            assert_eq!(s.labels["workload"], workload, "{pod}");
            assert_eq!(s.labels["workload_kind"], kind, "{pod}");
            assert_eq!(s.labels["node"], "datagen-1-34");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_pod_disappears_from_the_output() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let agent = agent_for(&kubelet, "datagen-1-34", &[]).await;
    let gone = "e2e-statefulset-1";
    assert!(scrape(&agent).await.has(
        "kubesignal_container_memory_working_set_bytes",
        &[("pod", gone)]
    ));

    let mut summary = json(&set.summary);
    summary["pods"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["podRef"]["name"] != gone);
    let mut pods = json(&set.pods);
    pods["items"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["metadata"]["name"] != gone);
    kubelet.set_summary(serde_json::to_vec(&summary).unwrap());
    kubelet.set_pods(serde_json::to_vec(&pods).unwrap());

    eventually(
        "the deleted pod's series go away",
        Duration::from_secs(10),
        || async {
            let got = scrape(&agent).await;
            (!got.has(
                "kubesignal_container_memory_working_set_bytes",
                &[("pod", gone)],
            ) && got.has(
                "kubesignal_container_memory_working_set_bytes",
                &[("pod", "e2e-statefulset-0")],
            ))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openmetrics_is_served_when_the_scraper_asks_for_it() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.31")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let agent = agent_for(&kubelet, "minikube", &[]).await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", agent.addr))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    let om = Scrape::parse(&body, true);

    let response = reqwest::get(format!("http://{}/metrics", agent.addr))
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.text().await.unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!body.contains("# EOF"));
    assert!(body.contains("# TYPE kubesignal_node_cpu_usage_seconds_total counter"));
    let text = Scrape::parse(&body, false);
    let om_value = om.value("kubesignal_node_memory_working_set_bytes", &[]);
    assert_eq!(
        om_value,
        text.value("kubesignal_node_memory_working_set_bytes", &[])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_finds_no_problem_in_the_output_of_any_fixture_set() {
    for set in fixture_sets() {
        let node = json(&set.summary)["node"]["nodeName"]
            .as_str()
            .unwrap()
            .to_string();
        let kubelet = FakeKubelet::start(&set).await;
        let agent = agent_for(&kubelet, &node, &[]).await;
        let text = agent.metrics().await;
        metrics::assert_documented(&text);
        let (ok, output) = process::promtool_check_metrics(&text);
        assert!(
            ok && output.trim().is_empty(),
            "{}: promtool check metrics: {output}",
            set.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scraping_the_agent_sees_the_payload_values() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let summary = json(&set.summary);
    let kubelet = FakeKubelet::start(&set).await;
    let agent = agent_for(&kubelet, "datagen-1-34", &[]).await;
    let prometheus = process::Prometheus::start(&format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: kubesignal-agent\n    static_configs: [{{targets: ['{}']}}]\n",
        agent.addr
    ))
    .await;
    let expected = summary["node"]["memory"]["workingSetBytes"]
        .as_f64()
        .unwrap();
    let value = eventually(
        "Prometheus has scraped the agent",
        Duration::from_secs(30),
        || async {
            prometheus
                .query("kubesignal_node_memory_working_set_bytes{job=\"kubesignal-agent\"}")
                .await
                .first()
                .map(|(_, v)| *v)
        },
    )
    .await;
    assert_close(value, expected, "node working set through Prometheus");
    let psi = summary["node"]["cpu"]["psi"]["some"]["total"]
        .as_f64()
        .unwrap()
        / 1e6;
    let result = prometheus
        .query("kubesignal_node_cpu_pressure_seconds_total{kind=\"some\"}")
        .await;
    assert_close(result[0].1, psi, "PSI through Prometheus");
    let ratios = prometheus
        .query("count(kubesignal_container_memory_limit_utilization_ratio{workload=\"e2e-statefulset\"})")
        .await;
    assert_eq!(
        ratios[0].1, 2.0,
        "both StatefulSet replicas have a memory limit ratio"
    );
}

/// Every `container_cpu_cfs_throttled_periods_total` sample of a real container (not the pod
/// cgroup, `container=""`), read from the cAdvisor text with a plain line split.
fn throttled_from_cadvisor(text: &str) -> Vec<(String, String, String, f64)> {
    text.lines()
        .filter(|l| l.starts_with("container_cpu_cfs_throttled_periods_total{"))
        .filter_map(|l| {
            let (labels, rest) = l.split_once("} ")?;
            let label = |name: &str| {
                let start = labels.find(&format!(",{name}=\""))? + name.len() + 3;
                let end = labels[start..].find('"')? + start;
                Some(labels[start..end].to_string())
            };
            let container = labels
                .strip_prefix("container_cpu_cfs_throttled_periods_total{container=\"")?
                .split('"')
                .next()?
                .to_string();
            if container.is_empty() || container == "POD" {
                return None;
            }
            let value = rest.split(' ').next()?.parse().ok()?;
            Some((label("namespace")?, label("pod")?, container, value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_counters_come_from_the_streamed_cadvisor_text() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let text = std::fs::read_to_string(set.cadvisor.as_ref().unwrap()).unwrap();
    let expected = throttled_from_cadvisor(&text);
    assert!(expected.len() >= 5, "the fixture has throttling series");
    let kubelet = FakeKubelet::start(&set).await;
    let agent = agent_for(&kubelet, "datagen-1-34", &[]).await;
    let got = scrape(&agent).await;
    let pods = json(&set.pods);
    let mut checked = 0;
    for (ns, pod, container, value) in expected {
        let running = pods["items"].as_array().unwrap().iter().any(|p| {
            p["metadata"]["namespace"] == ns.as_str()
                && p["metadata"]["name"] == pod.as_str()
                && p["status"]["phase"] == "Running"
        });
        if !running {
            continue;
        }
        let key = [
            ("namespace", ns.as_str()),
            ("pod", pod.as_str()),
            ("container", container.as_str()),
        ];
        assert_close(
            got.value("kubesignal_container_cpu_cfs_throttled_periods_total", &key),
            value,
            &format!("{ns}/{pod}/{container} throttled periods"),
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} containers checked");
}
