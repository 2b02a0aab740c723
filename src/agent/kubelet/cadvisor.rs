//! The few cAdvisor series kubesignal needs from the kubelet's `/metrics/cadvisor`: machine
//! capacity, CFS throttling and OOM events per container.
//!
//! Series with `container=""` are the pod cgroup and the pause sandbox, and `container="POD"`
//! is the sandbox on Docker-era kubelets: neither is a container of the pod spec, so they are
//! skipped. Kubelets before 1.16 name the labels `pod_name` and `container_name`. Sample
//! timestamps only decide between two cgroups of one container (an old run not yet cleaned up
//! and the new one): the newer sample wins.

use std::collections::HashMap;

use crate::exposition::{Entry, Format, Parser};

use super::PayloadError;

const MACHINE_CPU_CORES: &str = "machine_cpu_cores";
const MACHINE_MEMORY_BYTES: &str = "machine_memory_bytes";
const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
const CFS_THROTTLED_PERIODS: &str = "container_cpu_cfs_throttled_periods_total";
const OOM_EVENTS: &str = "container_oom_events_total";

fn wanted(name: &str) -> bool {
    matches!(
        name,
        MACHINE_CPU_CORES | MACHINE_MEMORY_BYTES | CFS_PERIODS | CFS_THROTTLED_PERIODS | OOM_EVENTS
    )
}

/// The first non-empty value among `names`.
fn label<'s>(sample: &'s crate::exposition::Sample<'_>, names: &[&str]) -> Option<&'s str> {
    names
        .iter()
        .filter_map(|n| sample.label(n))
        .find(|v| !v.is_empty())
}

/// Counters of one container from cAdvisor.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ContainerCounters {
    /// `container_cpu_cfs_periods_total`.
    pub cfs_periods_total: Option<f64>,
    /// `container_cpu_cfs_throttled_periods_total`.
    pub cfs_throttled_periods_total: Option<f64>,
    /// `container_oom_events_total`.
    pub oom_events_total: Option<f64>,
}

/// What kubesignal takes from one `/metrics/cadvisor` response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CadvisorStats {
    /// `machine_cpu_cores`.
    pub machine_cpu_cores: Option<f64>,
    /// `machine_memory_bytes`.
    pub machine_memory_bytes: Option<f64>,
    /// Counters by `namespace/pod/container` (none of the three can contain a `/`).
    containers: HashMap<String, ContainerCounters>,
}

fn key(namespace: &str, pod: &str, container: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + pod.len() + container.len() + 2);
    k.push_str(namespace);
    k.push('/');
    k.push_str(pod);
    k.push('/');
    k.push_str(container);
    k
}

impl CadvisorStats {
    /// Reads a `/metrics/cadvisor` body in the Prometheus text format.
    pub fn from_text(text: &str) -> Result<Self, PayloadError> {
        Self::parse(text, Format::PrometheusText)
    }

    /// Reads a `/metrics/cadvisor` body in the given format. Only the families kubesignal uses
    /// are parsed in full; a malformed line among them fails the whole body with its line number.
    pub fn parse(text: &str, format: Format) -> Result<Self, PayloadError> {
        let mut stats = CadvisorStats::default();
        // Timestamp of the kept sample per container and family, to prefer the newest cgroup.
        let mut kept_at: HashMap<(String, usize), Option<i64>> = HashMap::new();
        for entry in Parser::new(text, format).with_name_filter(wanted) {
            let entry = entry.map_err(|e| PayloadError::Cadvisor(e.to_string()))?;
            let Entry::Sample(sample) = entry else {
                continue;
            };
            let family = match sample.name.as_ref() {
                MACHINE_CPU_CORES => {
                    stats.machine_cpu_cores.get_or_insert(sample.value);
                    continue;
                }
                MACHINE_MEMORY_BYTES => {
                    stats.machine_memory_bytes.get_or_insert(sample.value);
                    continue;
                }
                CFS_PERIODS => 0,
                CFS_THROTTLED_PERIODS => 1,
                OOM_EVENTS => 2,
                _ => continue,
            };
            let (Some(namespace), Some(pod), Some(container)) = (
                label(&sample, &["namespace"]),
                label(&sample, &["pod", "pod_name"]),
                label(&sample, &["container", "container_name"]),
            ) else {
                continue;
            };
            if container == "POD" {
                continue;
            }
            let k = key(namespace, pod, container);
            match kept_at.get(&(k.clone(), family)) {
                Some(&kept) if sample.timestamp_ms < kept => continue,
                _ => {}
            }
            kept_at.insert((k.clone(), family), sample.timestamp_ms);
            let counters = stats.containers.entry(k).or_default();
            let slot = match family {
                0 => &mut counters.cfs_periods_total,
                1 => &mut counters.cfs_throttled_periods_total,
                _ => &mut counters.oom_events_total,
            };
            *slot = Some(sample.value);
        }
        Ok(stats)
    }

    /// The counters of one container, if cAdvisor reported any.
    pub fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<&ContainerCounters> {
        self.containers.get(&key(namespace, pod, container))
    }

    /// The counters of one container, created empty on first use.
    pub fn container_mut(
        &mut self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> &mut ContainerCounters {
        self.containers
            .entry(key(namespace, pod, container))
            .or_default()
    }

    /// Number of containers with counters.
    pub fn container_count(&self) -> usize {
        self.containers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = r#"# HELP machine_cpu_cores Number of logical CPU cores.
# TYPE machine_cpu_cores gauge
machine_cpu_cores{boot_id="b",machine_id="m",system_uuid="s"} 10
# TYPE machine_memory_bytes gauge
machine_memory_bytes{boot_id="b"} 1.6749006848e+10
# TYPE container_cpu_cfs_periods_total counter
container_cpu_cfs_periods_total{container="",id="/kubepods/burstable/pod1",namespace="shop",pod="web-1"} 258 1768329608204
container_cpu_cfs_periods_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 313 1768329614292
# TYPE container_cpu_cfs_throttled_periods_total counter
container_cpu_cfs_throttled_periods_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 12 1768329614292
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",id="/kubepods/burstable/pod1/c1",namespace="shop",pod="web-1"} 99 1768329614292
"#;

    #[test]
    fn capacity_and_container_counters_are_read_and_timestamps_ignored() {
        let s = CadvisorStats::from_text(CURRENT).unwrap();
        assert_eq!(s.machine_cpu_cores, Some(10.0));
        assert_eq!(s.machine_memory_bytes, Some(16_749_006_848.0));
        let c = s.container("shop", "web-1", "app").unwrap();
        assert_eq!(c.cfs_periods_total, Some(313.0));
        assert_eq!(c.cfs_throttled_periods_total, Some(12.0));
        assert_eq!(c.oom_events_total, None);
    }

    #[test]
    fn the_pod_cgroup_and_pause_series_are_not_containers() {
        let s = CadvisorStats::from_text(CURRENT).unwrap();
        assert_eq!(s.container_count(), 1);
        assert!(s.container("shop", "web-1", "").is_none());
        let legacy_pause =
            "container_oom_events_total{container_name=\"POD\",namespace=\"a\",pod_name=\"p\"} 1\n";
        assert_eq!(
            CadvisorStats::from_text(legacy_pause)
                .unwrap()
                .container_count(),
            0
        );
    }

    #[test]
    fn pre_1_16_pod_name_and_container_name_labels_are_understood() {
        let text = "# TYPE container_cpu_cfs_periods_total counter\n\
            container_cpu_cfs_periods_total{container_name=\"addon-resizer\",id=\"/kubepods/podf/3\",\
            namespace=\"kube-system\",pod_name=\"kube-state-metrics-57f4659995-6n2qq\"} 8495\n\
            container_cpu_cfs_periods_total{container_name=\"\",id=\"/kubepods/podf\",namespace=\"\",pod_name=\"\"} 19649\n";
        let s = CadvisorStats::from_text(text).unwrap();
        let c = s
            .container(
                "kube-system",
                "kube-state-metrics-57f4659995-6n2qq",
                "addon-resizer",
            )
            .unwrap();
        assert_eq!(c.cfs_periods_total, Some(8495.0));
        assert_eq!(s.container_count(), 1);
    }

    #[test]
    fn of_two_cgroups_of_one_container_the_newer_sample_wins() {
        let text = "container_oom_events_total{container=\"app\",id=\"/new\",namespace=\"a\",pod=\"p\"} 2 2000\n\
                    container_oom_events_total{container=\"app\",id=\"/old\",namespace=\"a\",pod=\"p\"} 5 1000\n";
        let s = CadvisorStats::from_text(text).unwrap();
        assert_eq!(
            s.container("a", "p", "app").unwrap().oom_events_total,
            Some(2.0)
        );
    }

    #[test]
    fn a_malformed_line_in_a_used_family_is_an_error_with_its_line() {
        let text = "machine_cpu_cores 4\ncontainer_oom_events_total{container=\"app\" 1\n";
        let err = CadvisorStats::from_text(text).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        // Families kubesignal does not read are skipped without validation.
        let other = "machine_cpu_cores 4\ncontainer_fs_reads_total{oops 1\n";
        assert_eq!(
            CadvisorStats::from_text(other).unwrap().machine_cpu_cores,
            Some(4.0)
        );
    }
}
