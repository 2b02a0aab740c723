//! Which application endpoints to scrape: annotated pods on this node and static targets.
//!
//! A pod is a target when it is `Running`, has a pod IP, and is annotated
//! `prometheus.io/scrape: "true"`. `prometheus.io/port` gives the port; it is required, because
//! the kubelet pod model we decode does not carry container ports to fall back on (a pod without
//! it is skipped and logged at debug level). `prometheus.io/path` defaults to `/metrics` and
//! `prometheus.io/scheme` to `http`.

use crate::agent::kubelet::pods::{Pod, PodList};
use crate::agent::workload;

use super::aggregate::WorkloadRef;
use super::config::StaticTargetConfig;

/// Annotation that opts a pod in.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// Annotation giving the port.
pub const PORT_ANNOTATION: &str = "prometheus.io/port";
/// Annotation giving the path.
pub const PATH_ANNOTATION: &str = "prometheus.io/path";
/// Annotation giving the scheme.
pub const SCHEME_ANNOTATION: &str = "prometheus.io/scheme";
/// Namespace of static targets the config does not place.
pub const STATIC_NAMESPACE: &str = "static";

/// One application endpoint to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Full URL of its metrics endpoint.
    pub url: String,
    /// The workload its series are aggregated into.
    pub workload: WorkloadRef,
    /// Pod name (for a static target: the URL's `host:port`).
    pub pod: String,
}

impl Target {
    /// Stable identity of the target for per-source state: the same pod and URL give the same
    /// identity at every collection.
    pub fn id(&self) -> String {
        format!("{}/{}|{}", self.workload.namespace, self.pod, self.url)
    }
}

/// Errors in the static target list.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A `--static-target` value (or a `red.static_targets[].url`) is not a usable URL.
    #[error("static target `{url}`: {message}")]
    BadStaticTarget {
        /// The value given.
        url: String,
        /// What is wrong.
        message: String,
    },
}

/// Targets among the pods of `pods` running on `node` (pods naming no node are kept, since the
/// kubelet's `/pods` lists only its own).
pub fn pod_targets(pods: &PodList, node: &str) -> Vec<Target> {
    pods.items
        .iter()
        .filter(|p| {
            p.spec
                .node_name
                .as_deref()
                .is_none_or(|n| n.is_empty() || n == node)
        })
        .filter_map(pod_target)
        .collect()
}

/// The target of one pod, if it is annotated, running and reachable.
pub fn pod_target(pod: &Pod) -> Option<Target> {
    let meta = &pod.metadata;
    let annotation = |name: &str| meta.annotations.get(name).map(|s| s.trim());
    if annotation(SCRAPE_ANNOTATION) != Some("true") {
        return None;
    }
    if pod.status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = pod.status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    let port = match annotation(PORT_ANNOTATION) {
        Some(port) => {
            let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
                tracing::warn!(namespace = %meta.namespace, pod = %meta.name, port, "{PORT_ANNOTATION} is not a port number; skipped");
                return None;
            };
            port
        }
        None => {
            let Some(port) = declared_metrics_port(pod) else {
                tracing::debug!(namespace = %meta.namespace, pod = %meta.name, "scrape annotation without {PORT_ANNOTATION} and no single declared TCP port; skipped");
                return None;
            };
            port
        }
    };
    let scheme = match annotation(SCHEME_ANNOTATION) {
        None | Some("") | Some("http") => "http",
        Some("https") => "https",
        Some(other) => {
            tracing::warn!(namespace = %meta.namespace, pod = %meta.name, scheme = other, "{SCHEME_ANNOTATION} must be http or https; skipped");
            return None;
        }
    };
    let path = match annotation(PATH_ANNOTATION) {
        None | Some("") => "/metrics".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let w = workload::resolve(meta);
    Some(Target {
        url: format!("{scheme}://{host}:{port}{path}"),
        workload: WorkloadRef {
            namespace: meta.namespace.clone(),
            workload: w.name,
            workload_kind: w.kind.as_str().to_string(),
        },
        pod: meta.name.clone(),
    })
}

/// The port to scrape when the pod does not say: its only declared TCP port, or else the one
/// declared port whose name mentions metrics. Several candidates are ambiguous: none is chosen.
fn declared_metrics_port(pod: &Pod) -> Option<u16> {
    let tcp: Vec<_> = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter(|p| p.container_port > 0)
        .collect();
    if let [only] = tcp.as_slice() {
        return Some(only.container_port);
    }
    let named: Vec<_> = tcp
        .iter()
        .filter(|p| p.name.as_deref().is_some_and(|n| n.contains("metrics")))
        .collect();
    match named.as_slice() {
        [only] => Some(only.container_port),
        _ => None,
    }
}

/// Targets for `--static-target` URLs and the config's `static_targets` entries (each URL
/// once). Namespace and workload come from the config entry with the same URL, or default to
/// `static` and the URL's host; the kind is `Pod` (a lone process).
pub fn static_targets(
    urls: &[String],
    config: &[StaticTargetConfig],
) -> Result<Vec<Target>, TargetError> {
    let mut all: Vec<&str> = urls.iter().map(String::as_str).collect();
    all.extend(config.iter().map(|c| c.url.as_str()));
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for url in all {
        if !seen.insert(url) {
            continue;
        }
        let bad = |message: String| TargetError::BadStaticTarget {
            url: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme `{}` is not http or https",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| bad("no host".into()))?
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| bad("no port".into()))?;
        let entry = config.iter().find(|c| c.url == url);
        let namespace = entry
            .and_then(|c| c.namespace.clone())
            .unwrap_or_else(|| STATIC_NAMESPACE.to_string());
        let workload = entry
            .and_then(|c| c.workload.clone())
            .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
        targets.push(Target {
            url: url.to_string(),
            workload: WorkloadRef {
                namespace,
                workload,
                workload_kind: "Pod".to_string(),
            },
            pod: format!("{host}:{port}"),
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_pods() -> PodList {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/kubelet-pods/nri-k8s-1_34-pods.json"
        );
        let bytes = std::fs::read(path)
            .expect("the shared fixture ../shared/fixtures/kubelet-pods/nri-k8s-1_34-pods.json");
        PodList::from_json(&bytes).expect("fixture decodes")
    }

    #[test]
    fn only_annotated_running_pods_with_an_ip_and_a_port_become_targets() {
        let mut pods = fixture_pods();
        let running: Vec<usize> = pods
            .items
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status.phase.as_deref() == Some("Running"))
            .map(|(i, _)| i)
            .collect();
        let not_running = pods
            .items
            .iter()
            .position(|p| p.status.phase.as_deref() != Some("Running"));
        let annotate = |p: &mut Pod, port: Option<&str>| {
            p.metadata
                .annotations
                .insert(SCRAPE_ANNOTATION.into(), "true".into());
            if let Some(port) = port {
                p.metadata
                    .annotations
                    .insert(PORT_ANNOTATION.into(), port.into());
            }
        };
        annotate(&mut pods.items[running[0]], Some("8080"));
        annotate(&mut pods.items[running[1]], None);
        // No port annotation and no declared port: nothing to scrape.
        for c in &mut pods.items[running[1]].spec.containers {
            c.ports.clear();
        }
        annotate(&mut pods.items[running[2]], Some("http"));
        if let Some(i) = not_running {
            annotate(&mut pods.items[i], Some("8080"));
        }
        let targets = pod_targets(&pods, "datagen-1-34");
        assert_eq!(targets.len(), 1, "{targets:?}");
        let p = &pods.items[running[0]];
        assert_eq!(
            targets[0].url,
            format!(
                "http://{}:8080/metrics",
                p.status.pod_ip.as_deref().unwrap()
            )
        );
        assert_eq!(targets[0].pod, p.metadata.name);
        assert_eq!(targets[0].workload.namespace, p.metadata.namespace);
    }

    #[test]
    fn without_a_port_annotation_the_single_declared_port_or_the_metrics_port_is_used() {
        use crate::agent::kubelet::pods::ContainerPort;
        let mut pods = fixture_pods();
        // metrics-server declares one port, `https` 4443, in the captured pod list.
        let p = pods
            .items
            .iter_mut()
            .find(|p| p.metadata.name.starts_with("metrics-server-"))
            .unwrap();
        p.metadata
            .annotations
            .insert(SCRAPE_ANNOTATION.into(), "true".into());
        let ip = p.status.pod_ip.clone().unwrap();
        assert_eq!(
            pod_target(p).unwrap().url,
            format!("http://{ip}:4443/metrics")
        );

        let port = |name: &str, number: u16| ContainerPort {
            name: Some(name.into()),
            container_port: number,
            protocol: None,
        };
        p.spec.containers[0].ports = vec![port("http", 8080), port("http-metrics", 9102)];
        assert_eq!(
            pod_target(p).unwrap().url,
            format!("http://{ip}:9102/metrics")
        );
        p.spec.containers[0].ports = vec![port("http", 8080), port("grpc", 9090)];
        assert!(
            pod_target(p).is_none(),
            "two unnamed candidates are ambiguous"
        );
        p.metadata
            .annotations
            .insert(PORT_ANNOTATION.into(), "9090".into());
        assert_eq!(
            pod_target(p).unwrap().url,
            format!("http://{ip}:9090/metrics"),
            "the annotation wins"
        );
    }

    #[test]
    fn path_and_scheme_annotations_shape_the_url() {
        let mut pods = fixture_pods();
        let p = pods
            .items
            .iter_mut()
            .find(|p| p.status.phase.as_deref() == Some("Running"))
            .unwrap();
        for (k, v) in [
            (SCRAPE_ANNOTATION, "true"),
            (PORT_ANNOTATION, "9443"),
            (PATH_ANNOTATION, "actuator/prometheus"),
            (SCHEME_ANNOTATION, "https"),
        ] {
            p.metadata.annotations.insert(k.into(), v.into());
        }
        p.status.pod_ip = Some("fd00::5".into());
        let t = pod_target(p).unwrap();
        assert_eq!(t.url, "https://[fd00::5]:9443/actuator/prometheus");
    }

    #[test]
    fn static_targets_take_names_from_config_or_from_the_url() {
        let config = vec![StaticTargetConfig {
            url: "http://demo:8080/metrics".into(),
            namespace: Some("shop".into()),
            workload: Some("checkout".into()),
        }];
        let targets = static_targets(
            &[
                "http://127.0.0.1:9100/metrics".into(),
                "http://demo:8080/metrics".into(),
            ],
            &config,
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].workload.namespace, "static");
        assert_eq!(targets[0].workload.workload, "127.0.0.1");
        assert_eq!(targets[0].pod, "127.0.0.1:9100");
        assert_eq!(targets[1].workload.workload, "checkout");
        assert_eq!(targets[1].workload.namespace, "shop");
    }

    #[test]
    fn a_static_target_that_is_not_a_url_is_rejected_with_its_value() {
        let err = static_targets(&["demo:8080".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("demo:8080"), "{err}");
    }
}
