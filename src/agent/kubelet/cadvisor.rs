//! The few cAdvisor series kubesignal needs from the kubelet's `/metrics/cadvisor`: machine
//! capacity, CFS throttling and OOM events per container.

use std::collections::HashMap;

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
