//! The USE join and exposition over every real kubelet fixture set: payloads are parsed, joined
//! and rendered by the library, the rendering is read back, and many values are checked against
//! figures computed here straight from the raw JSON and cAdvisor text. The real promtool must
//! find nothing to complain about in the rendering.

#[path = "common/use.rs"]
mod use_support;

use std::collections::HashSet;

use kubesignal::agent::kubelet::cadvisor::{CadvisorReader, CadvisorStats};
use kubesignal::agent::kubelet::pods::PodList;
use kubesignal::agent::kubelet::summary::Summary;
use kubesignal::agent::render::{self, Format};
use kubesignal::agent::use_series::UseState;
use kubesignal::exposition;
use serde_json::Value;
use use_support::{
    Rendered, assert_close, fixture, num, promtool_check_metrics, quantity, raw_samples,
};

struct FixtureSet {
    summary: &'static str,
    pods: Option<&'static str>,
    cadvisor: Option<&'static str>,
}

/// What one fixture set rendered to, plus its raw inputs for independent checks.
struct Outcome {
    summary: Value,
    pods: Value,
    cadvisor: Option<String>,
    node: String,
    rendered: Rendered,
}

const K8S_1_31: FixtureSet = FixtureSet {
    summary: "kubelet-summary/nri-k8s-1_31-summary.json",
    pods: Some("kubelet-pods/nri-k8s-1_31-pods.json"),
    cadvisor: Some("cadvisor/nri-k8s-1_31-cadvisor.prom"),
};
const K8S_1_34: FixtureSet = FixtureSet {
    summary: "kubelet-summary/nri-k8s-1_34-psi-summary.json",
    pods: Some("kubelet-pods/nri-k8s-1_34-pods.json"),
    cadvisor: Some("cadvisor/nri-k8s-1_34-cadvisor.prom"),
};
const LEGACY: FixtureSet = FixtureSet {
    summary: "kubelet-summary/nri-minikube-legacy-summary.json",
    pods: Some("kubelet-pods/nri-minikube-legacy-pods.json"),
    cadvisor: Some("cadvisor/nri-k8s-1_15-legacy-labels-cadvisor.prom"),
};
const FOO_NODE: FixtureSet = FixtureSet {
    summary: "kubelet-summary/nri-trimmed-fooNode-summary.json",
    pods: None,
    cadvisor: None,
};
const SALESFORCE: FixtureSet = FixtureSet {
    summary: "kubelet-summary/salesforce-ec2-node-a-summary.json",
    pods: None,
    cadvisor: None,
};

const EMPTY_POD_LIST: &str = r#"{"kind":"PodList","apiVersion":"v1","items":[]}"#;

/// Parses, joins and renders a set; checks both formats read back to the same samples and that
/// promtool accepts the text format without a single finding.
fn run(set: &FixtureSet) -> Outcome {
    let summary_text = fixture(set.summary);
    let pods_text = set
        .pods
        .map(fixture)
        .unwrap_or_else(|| EMPTY_POD_LIST.to_owned());
    let cadvisor_text = set.cadvisor.map(fixture);

    let summary = Summary::from_json(summary_text.as_bytes()).expect("summary decodes");
    let pods = PodList::from_json(pods_text.as_bytes()).expect("pod list decodes");
    let cadvisor = match &cadvisor_text {
        Some(t) => {
            let whole = CadvisorStats::from_text(t).expect("cAdvisor text parses");
            // The agent may stream the body instead; pieces of any size read the same.
            for chunk in [65_536, 1_000] {
                let mut reader = CadvisorReader::new();
                for piece in t.as_bytes().chunks(chunk) {
                    reader.feed(piece).expect("cAdvisor piece parses");
                }
                assert_eq!(reader.finish().unwrap(), whole, "chunks of {chunk}");
            }
            whole
        }
        None => CadvisorStats::default(),
    };
    let summary_json: Value = serde_json::from_str(&summary_text).unwrap();
    let node = summary_json["node"]["nodeName"]
        .as_str()
        .unwrap()
        .to_owned();

    let snapshot = UseState::new().join(&node, &summary, &pods, &cadvisor);
    let expected_count = render::series_count(&snapshot);
    let text = render::render(snapshot.clone(), Format::PrometheusText).unwrap();
    let openmetrics = render::render(snapshot, Format::OpenMetrics).unwrap();

    let rendered = Rendered::parse(&text, exposition::Format::PrometheusText);
    let rendered_om = Rendered::parse(&openmetrics, exposition::Format::OpenMetrics);
    assert_eq!(rendered.series.len(), expected_count);
    assert_eq!(rendered_om.series.len(), rendered.series.len());
    for (a, b) in rendered.series.iter().zip(&rendered_om.series) {
        assert_eq!((&a.name, &a.labels), (&b.name, &b.labels));
        assert_eq!(a.value.to_bits(), b.value.to_bits(), "{}", a.name);
    }
    let mut identities = HashSet::new();
    for s in &rendered.series {
        assert!(
            identities.insert((s.name.clone(), s.labels.clone())),
            "duplicate {s:?}"
        );
        assert_eq!(s.labels.get("node"), Some(&node), "{s:?}");
    }

    let (code, report) = promtool_check_metrics(&text);
    assert_eq!(
        (code, report.as_str()),
        (0, ""),
        "promtool check metrics found problems in the rendering of {}",
        set.summary
    );

    Outcome {
        summary: summary_json,
        pods: serde_json::from_str(&pods_text).unwrap(),
        cadvisor: cadvisor_text,
        node,
        rendered,
    }
}

/// A pod of the raw pod list, by namespace and name.
fn listed_pod<'a>(pods: &'a Value, namespace: &str, name: &str) -> Option<&'a Value> {
    pods["items"]
        .as_array()?
        .iter()
        .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
}

fn check_node(o: &Outcome) {
    let r = &o.rendered;
    let n = &o.summary["node"];
    let at = [("node", o.node.as_str())];
    assert_close(
        r.expect("kubesignal_node_cpu_usage_seconds_total", &at),
        num(&n["cpu"]["usageCoreNanoSeconds"]).unwrap() / 1e9,
        "node CPU seconds",
    );
    let working_set = num(&n["memory"]["workingSetBytes"]).unwrap();
    assert_eq!(
        r.expect("kubesignal_node_memory_working_set_bytes", &at),
        working_set
    );
    assert_eq!(
        r.expect("kubesignal_node_network_receive_errors_total", &at),
        num(&n["network"]["rxErrors"]).unwrap()
    );
    assert_eq!(
        r.expect("kubesignal_node_network_transmit_errors_total", &at),
        num(&n["network"]["txErrors"]).unwrap()
    );
    for (fs, raw) in [("root", &n["fs"]), ("image", &n["runtime"]["imageFs"])] {
        assert_close(
            r.expect("kubesignal_node_filesystem_used_ratio", &[("fs", fs)]),
            num(&raw["usedBytes"]).unwrap() / num(&raw["capacityBytes"]).unwrap(),
            fs,
        );
    }
    for (family, resource) in [
        ("kubesignal_node_cpu_pressure_seconds_total", "cpu"),
        ("kubesignal_node_memory_pressure_seconds_total", "memory"),
    ] {
        for kind in ["some", "full"] {
            let raw = num(&n[resource]["psi"][kind]["total"]);
            let rendered = r.value(family, &[("kind", kind)]);
            assert_eq!(rendered, raw.map(|micros| micros / 1e6), "{family} {kind}");
        }
    }
    match &o.cadvisor {
        Some(text) => {
            let cores = raw_samples(text, "machine_cpu_cores")[0].1;
            let memory = raw_samples(text, "machine_memory_bytes")[0].1;
            assert_eq!(r.expect("kubesignal_node_cpu_capacity_cores", &at), cores);
            assert_eq!(
                r.expect("kubesignal_node_memory_capacity_bytes", &at),
                memory
            );
            assert_close(
                r.expect("kubesignal_node_cpu_utilization_ratio", &at),
                num(&n["cpu"]["usageNanoCores"]).unwrap() / 1e9 / cores,
                "node CPU utilization",
            );
            assert_close(
                r.expect("kubesignal_node_memory_utilization_ratio", &at),
                working_set / memory,
                "node memory utilization",
            );
        }
        None => {
            assert_eq!(r.value("kubesignal_node_cpu_capacity_cores", &at), None);
            assert_eq!(r.value("kubesignal_node_cpu_utilization_ratio", &at), None);
            let available = num(&n["memory"]["availableBytes"]).unwrap();
            assert_eq!(
                r.expect("kubesignal_node_memory_capacity_bytes", &at),
                available + working_set
            );
        }
    }
}

/// The raw cAdvisor value of `family` for one container, legacy labels included.
fn raw_container_counter(text: &str, family: &str, ns: &str, pod: &str, c: &str) -> Option<f64> {
    let found: Vec<f64> = raw_samples(text, family)
        .into_iter()
        .filter(|(l, _)| {
            let get = |a: &str, b: &str| l.get(a).or_else(|| l.get(b)).cloned();
            l.get("namespace").map(String::as_str) == Some(ns)
                && get("pod", "pod_name").as_deref() == Some(pod)
                && get("container", "container_name").as_deref() == Some(c)
        })
        .map(|(_, v)| v)
        .collect();
    assert!(
        found.len() <= 1,
        "{family} {ns}/{pod}/{c} appears {} times",
        found.len()
    );
    found.first().copied()
}

fn check_pods_and_containers(o: &Outcome) -> usize {
    let r = &o.rendered;
    let mut containers_checked = 0;
    for p in o.summary["pods"].as_array().unwrap() {
        let ns = p["podRef"]["namespace"].as_str().unwrap();
        let name = p["podRef"]["name"].as_str().unwrap();
        let at = [("namespace", ns), ("pod", name)];
        let listed = listed_pod(&o.pods, ns, name);

        for (family, field) in [
            ("kubesignal_pod_network_receive_errors_total", "rxErrors"),
            ("kubesignal_pod_network_transmit_errors_total", "txErrors"),
            ("kubesignal_pod_network_receive_bytes_total", "rxBytes"),
            ("kubesignal_pod_network_transmit_bytes_total", "txBytes"),
        ] {
            assert_eq!(
                r.value(family, &at),
                num(&p["network"][field]),
                "{family} {name}"
            );
        }
        assert_eq!(
            r.value("kubesignal_pod_ephemeral_storage_used_bytes", &at),
            num(&p["ephemeral-storage"]["usedBytes"]),
            "{name}"
        );
        assert_eq!(
            r.value("kubesignal_pod_cpu_usage_seconds_total", &at),
            num(&p["cpu"]["usageCoreNanoSeconds"]).map(|n| n / 1e9),
            "{name}"
        );
        if listed.is_none() {
            for s in r.find("kubesignal_container_cpu_usage_seconds_total", &at) {
                assert_eq!(
                    s.labels["workload"], name,
                    "unlisted pods are their own workload"
                );
                assert_eq!(s.labels["workload_kind"], "Pod");
            }
        }

        for c in p["containers"].as_array().unwrap() {
            let cname = c["name"].as_str().unwrap();
            let at = [("namespace", ns), ("pod", name), ("container", cname)];
            containers_checked += 1;
            assert_close(
                r.expect("kubesignal_container_cpu_usage_seconds_total", &at),
                num(&c["cpu"]["usageCoreNanoSeconds"]).unwrap() / 1e9,
                "container CPU seconds",
            );
            let working_set = num(&c["memory"]["workingSetBytes"]).unwrap();
            assert_eq!(
                r.expect("kubesignal_container_memory_working_set_bytes", &at),
                working_set
            );
            for (family, kind) in [
                ("kubesignal_container_cpu_pressure_seconds_total", "some"),
                ("kubesignal_container_cpu_pressure_seconds_total", "full"),
            ] {
                let raw = num(&c["cpu"]["psi"][kind]["total"]).map(|m| m / 1e6);
                let mut with_kind = at.to_vec();
                with_kind.push(("kind", kind));
                assert_eq!(r.value(family, &with_kind), raw, "{family} {cname}");
            }

            let spec = listed.and_then(|l| {
                l["spec"]["containers"]
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == cname)
            });
            let limits = spec.map(|s| &s["resources"]["limits"]);
            let requests = spec.map(|s| &s["resources"]["requests"]);
            let memory_limit = limits.and_then(|l| l["memory"].as_str()).map(quantity);
            let cpu_limit = limits.and_then(|l| l["cpu"].as_str()).map(quantity);
            let cpu_request = requests.and_then(|l| l["cpu"].as_str()).map(quantity);
            assert_eq!(
                r.value("kubesignal_container_memory_limit_bytes", &at),
                memory_limit
            );
            assert_eq!(
                r.value("kubesignal_container_cpu_limit_cores", &at),
                cpu_limit
            );
            assert_eq!(
                r.value("kubesignal_container_cpu_request_cores", &at),
                cpu_request
            );
            match memory_limit {
                Some(limit) => assert_close(
                    r.expect("kubesignal_container_memory_limit_utilization_ratio", &at),
                    working_set / limit,
                    "memory limit ratio",
                ),
                None => assert_eq!(
                    r.value("kubesignal_container_memory_limit_utilization_ratio", &at),
                    None,
                    "no limit, no ratio"
                ),
            }
            // A single collection has no earlier sample: without usageNanoCores, no CPU ratio.
            let cores = num(&c["cpu"]["usageNanoCores"])
                .filter(|&n| n > 0.0)
                .map(|n| n / 1e9);
            for (family, denominator) in [
                (
                    "kubesignal_container_cpu_limit_utilization_ratio",
                    cpu_limit,
                ),
                (
                    "kubesignal_container_cpu_request_utilization_ratio",
                    cpu_request,
                ),
            ] {
                match (cores, denominator) {
                    (Some(u), Some(d)) => assert_close(r.expect(family, &at), u / d, family),
                    _ => assert_eq!(r.value(family, &at), None, "{family} {cname}"),
                }
            }

            let status = listed.and_then(|l| {
                l["status"]["containerStatuses"]
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == cname)
            });
            assert_eq!(
                r.value("kubesignal_container_restarts_total", &at),
                status.and_then(|s| num(&s["restartCount"])),
                "restarts of {name}/{cname}"
            );
            let reason = status.and_then(|s| s["lastState"]["terminated"]["reason"].as_str());
            let rendered_reason = r.find("kubesignal_container_last_terminated_reason", &at);
            assert_eq!(
                rendered_reason.first().map(|s| s.labels["reason"].as_str()),
                reason,
                "{name}/{cname}"
            );

            if let Some(text) = &o.cadvisor {
                for (family, raw) in [
                    (
                        "kubesignal_container_cpu_cfs_periods_total",
                        "container_cpu_cfs_periods_total",
                    ),
                    (
                        "kubesignal_container_cpu_cfs_throttled_periods_total",
                        "container_cpu_cfs_throttled_periods_total",
                    ),
                    (
                        "kubesignal_container_oom_events_total",
                        "container_oom_events_total",
                    ),
                ] {
                    assert_eq!(
                        r.value(family, &at),
                        raw_container_counter(text, raw, ns, name, cname),
                        "{family} {name}/{cname}"
                    );
                }
            }
        }
    }
    containers_checked
}

/// Pods listed but absent from the summary: exported from spec and status unless finished.
fn check_listed_pods_without_usage(o: &Outcome) {
    let r = &o.rendered;
    let in_summary: HashSet<(String, String)> = o.summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p["podRef"][k].as_str().unwrap().to_owned();
            (s("namespace"), s("name"))
        })
        .collect();
    for pod in o.pods["items"].as_array().unwrap() {
        let ns = pod["metadata"]["namespace"].as_str().unwrap();
        let name = pod["metadata"]["name"].as_str().unwrap();
        if in_summary.contains(&(ns.to_owned(), name.to_owned())) {
            continue;
        }
        let at = [("namespace", ns), ("pod", name)];
        let phase = pod["status"]["phase"].as_str().unwrap();
        let rendered_pod = r.series.iter().filter(|s| {
            s.labels.get("namespace").map(String::as_str) == Some(ns)
                && s.labels.get("pod").map(String::as_str) == Some(name)
        });
        if matches!(phase, "Succeeded" | "Failed") {
            assert_eq!(
                rendered_pod.count(),
                0,
                "finished pod {name} must not be exported"
            );
            continue;
        }
        assert!(
            rendered_pod.count() > 0,
            "running pod {name} without usage is missing"
        );
        assert_eq!(
            r.value("kubesignal_container_cpu_usage_seconds_total", &at),
            None
        );
        for status in pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let cname = status["name"].as_str().unwrap();
            let at = [("namespace", ns), ("pod", name), ("container", cname)];
            assert_eq!(
                r.value("kubesignal_container_restarts_total", &at),
                num(&status["restartCount"]),
                "{name}/{cname}"
            );
        }
    }
}

#[track_caller]
fn assert_workload(o: &Outcome, namespace: &str, pod: &str, workload: &str, kind: &str) {
    let series = o.rendered.find(
        "kubesignal_pod_memory_working_set_bytes",
        &[("namespace", namespace), ("pod", pod)],
    );
    let series = if series.is_empty() {
        o.rendered.find(
            "kubesignal_container_restarts_total",
            &[("namespace", namespace), ("pod", pod)],
        )
    } else {
        series
    };
    assert!(!series.is_empty(), "no series for pod {namespace}/{pod}");
    for s in series {
        assert_eq!(
            (
                s.labels["workload"].as_str(),
                s.labels["workload_kind"].as_str()
            ),
            (workload, kind),
            "{pod}"
        );
    }
}

#[test]
fn the_1_31_payloads_render_the_values_computed_from_the_raw_json() {
    let o = run(&K8S_1_31);
    check_node(&o);
    assert_eq!(check_pods_and_containers(&o), 17);
    check_listed_pods_without_usage(&o);
    assert_workload(
        &o,
        "scraper",
        "e2e-deployment-7788bdb6df-fqlfk",
        "e2e-deployment",
        "Deployment",
    );
    assert_workload(
        &o,
        "kube-system",
        "coredns-6f6b679f8f-hktpp",
        "coredns",
        "Deployment",
    );
    assert_workload(
        &o,
        "kube-system",
        "kube-proxy-dhhlf",
        "kube-proxy",
        "DaemonSet",
    );
    assert_workload(
        &o,
        "scraper",
        "e2e-statefulset-0",
        "e2e-statefulset",
        "StatefulSet",
    );
    assert_workload(
        &o,
        "kube-system",
        "etcd-datagen-1-31",
        "etcd-datagen-1-31",
        "Pod",
    );
    assert_workload(
        &o,
        "scraper",
        "e2e-container-creating",
        "e2e-container-creating",
        "Pod",
    );
    // A pod whose container restarted after completing: restarts and reason from the status.
    let at = [("pod", "e2e-container-creating"), ("container", "alpine")];
    assert_eq!(
        o.rendered.value("kubesignal_container_restarts_total", &at),
        Some(3.0)
    );
    assert_eq!(
        o.rendered
            .find("kubesignal_container_last_terminated_reason", &at)[0]
            .labels["reason"],
        "Completed"
    );
}

#[test]
fn the_1_34_payloads_with_psi_render_the_values_computed_from_the_raw_json() {
    let o = run(&K8S_1_34);
    check_node(&o);
    assert_eq!(check_pods_and_containers(&o), 18);
    check_listed_pods_without_usage(&o);
    assert_workload(
        &o,
        "scraper",
        "e2e-deployment-6fb786454b-7fsxc",
        "e2e-deployment",
        "Deployment",
    );
    assert_workload(
        &o,
        "scraper",
        "e2e-cronjob-29472160-q4smw",
        "e2e-cronjob",
        "CronJob",
    );
    assert_workload(&o, "kube-system", "kindnet-zqk2n", "kindnet", "DaemonSet");
    assert_workload(
        &o,
        "scraper",
        "e2e-statefulset-1",
        "e2e-statefulset",
        "StatefulSet",
    );
    assert_workload(
        &o,
        "kube-system",
        "kube-apiserver-datagen-1-34",
        "kube-apiserver-datagen-1-34",
        "Pod",
    );
    // PSI totals are microseconds: 41213702 us of node CPU "some" stall is 41.2 s.
    assert_eq!(
        o.rendered.value(
            "kubesignal_node_cpu_pressure_seconds_total",
            &[("kind", "some")]
        ),
        Some(41.213702)
    );
    // The kindnet container is throttled; its counters come from cAdvisor, the pause and pod
    // cgroup series (container="") are not counted in.
    let at = [("pod", "kindnet-zqk2n"), ("container", "kindnet-cni")];
    assert!(
        o.rendered
            .value("kubesignal_container_cpu_cfs_periods_total", &at)
            .unwrap()
            > 0.0
    );
    assert!(
        o.rendered
            .find(
                "kubesignal_container_cpu_cfs_periods_total",
                &[("container", "")]
            )
            .is_empty()
    );
}

#[test]
fn the_legacy_minikube_payloads_with_pre_1_16_cadvisor_labels_render_correctly() {
    let o = run(&LEGACY);
    check_node(&o);
    assert_eq!(check_pods_and_containers(&o), 12);
    check_listed_pods_without_usage(&o);
    // Pre-1.11 ReplicaSet naming (encoded pod-template-hash) still resolves the Deployment.
    assert_workload(
        &o,
        "kube-system",
        "kube-state-metrics-57f4659995-6n2qq",
        "kube-state-metrics",
        "Deployment",
    );
    assert_workload(
        &o,
        "kube-system",
        "newrelic-infra-rz225",
        "newrelic-infra",
        "DaemonSet",
    );
    // In the summary but not in /pods: its own workload.
    assert_workload(&o, "kube-system", "heapster-5mz5f", "heapster-5mz5f", "Pod");
    // cAdvisor 1.15 labels (pod_name/container_name) reach the container series.
    let at = [
        ("pod", "kube-state-metrics-57f4659995-6n2qq"),
        ("container", "addon-resizer"),
    ];
    assert_eq!(
        o.rendered
            .value("kubesignal_container_cpu_cfs_periods_total", &at),
        Some(8495.0)
    );
    // The pod-level spec.resources of newrelic-infra overrides its container's limits.
    let pod = [("pod", "newrelic-infra-rz225")];
    assert_eq!(
        o.rendered.value("kubesignal_pod_cpu_limit_cores", &pod),
        Some(1.0)
    );
    assert_eq!(
        o.rendered.value("kubesignal_pod_memory_limit_bytes", &pod),
        Some(quantity("100Mi"))
    );
    assert_eq!(
        o.rendered.value("kubesignal_pod_cpu_request_cores", &pod),
        Some(0.5)
    );
    assert_eq!(
        o.rendered
            .value("kubesignal_pod_memory_request_bytes", &pod),
        Some(quantity("50Mi"))
    );
    // Restarts of a running static pod the summary does not know.
    let at = [
        ("pod", "kube-controller-manager-minikube"),
        ("container", "kube-controller-manager"),
    ];
    assert_eq!(
        o.rendered.value("kubesignal_container_restarts_total", &at),
        Some(1.0)
    );
}

#[test]
fn the_trimmed_foo_node_summary_renders_with_an_empty_pod_list() {
    let o = run(&FOO_NODE);
    check_node(&o);
    assert_eq!(check_pods_and_containers(&o), 3);
    assert_eq!(
        o.rendered
            .find("kubesignal_container_restarts_total", &[])
            .len(),
        0
    );
}

#[test]
fn the_salesforce_production_summary_renders_with_an_empty_pod_list() {
    let o = run(&SALESFORCE);
    check_node(&o);
    assert_eq!(check_pods_and_containers(&o), 1);
    let ratio = o
        .rendered
        .expect("kubesignal_node_filesystem_used_ratio", &[("fs", "root")]);
    assert!(ratio > 0.0 && ratio < 1.0);
}
