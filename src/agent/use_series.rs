//! The USE join: kubelet usage x pod specs and statuses x cAdvisor counters -> one snapshot of
//! everything the agent exports for its node.
//!
//! What is present where, and what we do about mismatches:
//! - The Summary API decides which pods and containers have usage. A summary pod missing from
//!   `/pods` (created or deleted between the two requests, or `/pods` unavailable) is still
//!   exported with its usage; without owner references it is labelled as its own workload
//!   (`workload=<pod>`, `workload_kind="Pod"`) and has no requests or limits.
//! - A pod in `/pods` missing from the summary, or a spec container missing from its summary
//!   pod (not started yet, or waiting in CrashLoopBackOff), is exported with what its spec and
//!   status say (requests, limits, restarts, last termination reason) while the pod is not
//!   terminal. Succeeded and Failed pods without usage are left out: they hold no resources.
//! - Init containers that are not sidecars are exported only while the summary shows them
//!   running, so their requests do not linger after start-up.
//! - A pod or container that is gone from both sources is simply absent from the new snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::kubelet::cadvisor::CadvisorStats;
use super::kubelet::pods::{Pod, PodList, ResourceRequirements};
use super::kubelet::summary::{CpuStats, FsStats, NetworkStats, PodStats, PsiStats, Summary};
use super::workload::{self, WorkloadKind};

/// The identity labels shared by a pod's series and its containers' series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID (not exported; keys the CPU rate state across pod re-creations).
    pub uid: String,
    /// Workload name.
    pub workload: String,
    /// Workload kind.
    pub workload_kind: WorkloadKind,
}

/// Pressure stall counters of one resource, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Psi {
    /// Time during which at least one task stalled.
    pub some_seconds_total: f64,
    /// Time during which all non-idle tasks stalled (absent for CPU on old kernels).
    pub full_seconds_total: Option<f64>,
}

impl Psi {
    /// Converts the kubelet's PSI block. Its `total` is the kernel's value in microseconds.
    pub fn from_stats(psi: &PsiStats) -> Option<Psi> {
        Some(Psi {
            some_seconds_total: micros_to_seconds(psi.some?.total),
            full_seconds_total: psi.full.map(|f| micros_to_seconds(f.total)),
        })
    }
}

fn micros_to_seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Which node filesystem a `filesystem_used_ratio` sample describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeFs {
    /// The node's root filesystem (kubelet `node.fs`).
    Root,
    /// The container runtime's image filesystem (`node.runtime.imageFs`).
    Image,
}

impl NodeFs {
    /// The `fs` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeFs::Root => "root",
            NodeFs::Image => "image",
        }
    }
}

/// Use of one node filesystem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeFsUse {
    /// Which filesystem.
    pub fs: NodeFs,
    /// Bytes used.
    pub used_bytes: Option<f64>,
    /// Size.
    pub capacity_bytes: Option<f64>,
    /// used / capacity, when the capacity is known and non-zero.
    pub used_ratio: Option<f64>,
}

/// Node-level USE.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUse {
    /// Cumulative CPU time of the node.
    pub cpu_usage_seconds_total: Option<f64>,
    /// Current CPU use in cores (kubelet's rate, or derived from two collections).
    pub cpu_usage_cores: Option<f64>,
    /// CPU cores of the machine (cAdvisor `machine_cpu_cores`).
    pub cpu_capacity_cores: Option<f64>,
    /// cpu_usage_cores / cpu_capacity_cores.
    pub cpu_utilization_ratio: Option<f64>,
    /// Working set memory of the node.
    pub memory_working_set_bytes: Option<f64>,
    /// Memory of the machine (cAdvisor `machine_memory_bytes`, else the kubelet's available +
    /// working set, which is how the kubelet computes available).
    pub memory_capacity_bytes: Option<f64>,
    /// Working set / capacity.
    pub memory_utilization_ratio: Option<f64>,
    /// CPU pressure.
    pub cpu_pressure: Option<Psi>,
    /// Memory pressure.
    pub memory_pressure: Option<Psi>,
    /// I/O pressure.
    pub io_pressure: Option<Psi>,
    /// Bytes received (default interface).
    pub network_receive_bytes_total: Option<f64>,
    /// Bytes sent (default interface).
    pub network_transmit_bytes_total: Option<f64>,
    /// Receive errors (default interface).
    pub network_receive_errors_total: Option<f64>,
    /// Transmit errors (default interface).
    pub network_transmit_errors_total: Option<f64>,
    /// Root and image filesystems, when reported.
    pub filesystems: Vec<NodeFsUse>,
}

/// Pod-level USE.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUse {
    /// Which pod.
    pub pod: Arc<PodRef>,
    /// Cumulative CPU time of the pod cgroup.
    pub cpu_usage_seconds_total: Option<f64>,
    /// Current CPU use in cores.
    pub cpu_usage_cores: Option<f64>,
    /// Working set memory of the pod cgroup.
    pub memory_working_set_bytes: Option<f64>,
    /// Pod CPU request: `spec.resources` when set, else the sum of the containers that set one.
    pub cpu_request_cores: Option<f64>,
    /// Pod CPU limit: `spec.resources` when set, else the sum over the containers when every
    /// one sets a limit (one unlimited container leaves the pod unlimited).
    pub cpu_limit_cores: Option<f64>,
    /// Pod memory request, as for CPU.
    pub memory_request_bytes: Option<f64>,
    /// Pod memory limit, as for CPU.
    pub memory_limit_bytes: Option<f64>,
    /// cpu_usage_cores / cpu_limit_cores.
    pub cpu_limit_utilization_ratio: Option<f64>,
    /// memory_working_set_bytes / memory_limit_bytes.
    pub memory_limit_utilization_ratio: Option<f64>,
    /// Bytes received by the pod's network namespace.
    pub network_receive_bytes_total: Option<f64>,
    /// Bytes sent.
    pub network_transmit_bytes_total: Option<f64>,
    /// Receive errors.
    pub network_receive_errors_total: Option<f64>,
    /// Transmit errors.
    pub network_transmit_errors_total: Option<f64>,
    /// Ephemeral storage used (writable layers, logs, emptyDir).
    pub ephemeral_storage_used_bytes: Option<f64>,
}

/// Container-level USE.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUse {
    /// The pod the container runs in.
    pub pod: Arc<PodRef>,
    /// Container name.
    pub container: String,
    /// Cumulative CPU time.
    pub cpu_usage_seconds_total: Option<f64>,
    /// Current CPU use in cores.
    pub cpu_usage_cores: Option<f64>,
    /// CPU request.
    pub cpu_request_cores: Option<f64>,
    /// CPU limit.
    pub cpu_limit_cores: Option<f64>,
    /// cpu_usage_cores / cpu_limit_cores.
    pub cpu_limit_utilization_ratio: Option<f64>,
    /// cpu_usage_cores / cpu_request_cores.
    pub cpu_request_utilization_ratio: Option<f64>,
    /// CFS enforcement periods (cAdvisor).
    pub cpu_cfs_periods_total: Option<f64>,
    /// CFS periods in which the container was throttled (cAdvisor).
    pub cpu_cfs_throttled_periods_total: Option<f64>,
    /// Working set memory.
    pub memory_working_set_bytes: Option<f64>,
    /// Memory request.
    pub memory_request_bytes: Option<f64>,
    /// Memory limit.
    pub memory_limit_bytes: Option<f64>,
    /// memory_working_set_bytes / memory_limit_bytes.
    pub memory_limit_utilization_ratio: Option<f64>,
    /// OOM events in the container's cgroup (cAdvisor; stays 0 on many setups).
    pub oom_events_total: Option<f64>,
    /// Restarts from the pod status.
    pub restarts_total: Option<f64>,
    /// Why the previous run ended (`OOMKilled`, `Error`, ...), from the pod status.
    pub last_terminated_reason: Option<String>,
    /// CPU pressure of the container.
    pub cpu_pressure: Option<Psi>,
    /// Memory pressure of the container.
    pub memory_pressure: Option<Psi>,
}

/// How well the three sources agreed; for logs and self-metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Summary pods that `/pods` did not list (exported without owners and limits).
    pub pods_without_metadata: usize,
    /// Non-terminal `/pods` pods the summary had no usage for (exported from spec and status).
    pub pods_without_usage: usize,
    /// Duplicate pod or container entries in the summary that were dropped.
    pub duplicates_dropped: usize,
}

/// Everything the agent exports about its node's USE at one collection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UseSnapshot {
    /// Value of the `node` label.
    pub node: String,
    /// Node-level series.
    pub node_use: NodeUse,
    /// Pod-level series, sorted by namespace and pod.
    pub pods: Vec<PodUse>,
    /// Container-level series, sorted by namespace, pod and container.
    pub containers: Vec<ContainerUse>,
    /// How the sources matched up.
    pub stats: JoinStats,
}

/// One CPU counter reading, kept to derive a rate at the next collection.
#[derive(Clone, Copy, Debug)]
struct CpuSample {
    time: DateTime<Utc>,
    core_nanos: u64,
}

/// What a collection needs from the previous one: the CPU counters, to derive a rate when the
/// kubelet does not report `usageNanoCores` (or reports 0).
#[derive(Debug, Default)]
pub struct UseState {
    cpu: HashMap<String, CpuSample>,
}

/// Keys CPU samples; a re-created pod (new UID) starts afresh.
fn cpu_key(kind: &str, pod: &PodRef, container: &str) -> String {
    format!(
        "{kind}/{}/{}/{}/{container}",
        pod.namespace, pod.pod, pod.uid
    )
}

const NODE_KEY: &str = "node";

impl UseState {
    /// A state with no previous collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins one collection's payloads into a snapshot and remembers the CPU counters.
    ///
    /// `node_name` is the `node` label; when empty, the summary's `nodeName` is used. Pass an
    /// empty [`PodList`] or [`CadvisorStats::default`] when that endpoint failed: the series it
    /// feeds are then absent, the others unaffected.
    pub fn join(
        &mut self,
        node_name: &str,
        summary: &Summary,
        pods: &PodList,
        cadvisor: &CadvisorStats,
    ) -> UseSnapshot {
        let mut next = HashMap::with_capacity(self.cpu.len());
        let node = if node_name.is_empty() {
            summary.node.node_name.clone()
        } else {
            node_name.to_owned()
        };
        let node_use = self.node_use(summary, cadvisor, &mut next);

        let by_name: HashMap<(&str, &str), &Pod> = pods
            .items
            .iter()
            .map(|p| ((p.metadata.namespace.as_str(), p.metadata.name.as_str()), p))
            .collect();
        let mut stats = JoinStats::default();
        let mut pod_uses = Vec::with_capacity(summary.pods.len());
        let mut containers = Vec::new();
        let mut seen_pods: HashSet<(&str, &str)> = HashSet::with_capacity(summary.pods.len());

        for ps in prefer_listed_uids(&summary.pods, &by_name) {
            let key = (ps.pod_ref.namespace.as_str(), ps.pod_ref.name.as_str());
            if !seen_pods.insert(key) {
                stats.duplicates_dropped += 1;
                continue;
            }
            let spec = by_name.get(&key).copied();
            if spec.is_none() {
                stats.pods_without_metadata += 1;
            }
            let pod_ref = Arc::new(pod_ref(
                &ps.pod_ref.namespace,
                &ps.pod_ref.name,
                &ps.pod_ref.uid,
                spec,
            ));
            let mut seen_containers = HashSet::with_capacity(ps.containers.len());
            for cs in &ps.containers {
                if !seen_containers.insert(cs.name.as_str()) {
                    stats.duplicates_dropped += 1;
                    continue;
                }
                let mut c = ContainerUse::empty(pod_ref.clone(), &cs.name);
                if let Some(cpu) = &cs.cpu {
                    c.cpu_usage_seconds_total = cpu.usage_core_nano_seconds.map(nanos_to_seconds);
                    c.cpu_usage_cores =
                        self.cores(cpu, cpu_key("container", &pod_ref, &cs.name), &mut next);
                    c.cpu_pressure = cpu.psi.as_ref().and_then(Psi::from_stats);
                }
                if let Some(mem) = &cs.memory {
                    c.memory_working_set_bytes = mem.working_set_bytes.map(|b| b as f64);
                    c.memory_pressure = mem.psi.as_ref().and_then(Psi::from_stats);
                }
                c.fill_from_spec(spec, cadvisor);
                containers.push(c);
            }
            if let Some(spec) = spec.filter(|p| !p.is_terminal()) {
                for name in long_running_containers(spec) {
                    if !seen_containers.contains(name) {
                        let mut c = ContainerUse::empty(pod_ref.clone(), name);
                        c.fill_from_spec(Some(spec), cadvisor);
                        containers.push(c);
                    }
                }
            }
            pod_uses.push(self.pod_use(pod_ref, Some(ps), spec, &mut next));
        }

        for spec in &pods.items {
            let key = (
                spec.metadata.namespace.as_str(),
                spec.metadata.name.as_str(),
            );
            if spec.is_terminal() || seen_pods.contains(&key) {
                continue;
            }
            seen_pods.insert(key);
            stats.pods_without_usage += 1;
            let m = &spec.metadata;
            let pod_ref = Arc::new(pod_ref(&m.namespace, &m.name, &m.uid, Some(spec)));
            for name in long_running_containers(spec) {
                let mut c = ContainerUse::empty(pod_ref.clone(), name);
                c.fill_from_spec(Some(spec), cadvisor);
                containers.push(c);
            }
            pod_uses.push(self.pod_use(pod_ref, None, Some(spec), &mut next));
        }

        pod_uses.sort_by(|a, b| pod_order(&a.pod, &b.pod));
        containers
            .sort_by(|a, b| pod_order(&a.pod, &b.pod).then_with(|| a.container.cmp(&b.container)));
        self.cpu = next;
        UseSnapshot {
            node,
            node_use,
            pods: pod_uses,
            containers,
            stats,
        }
    }

    fn node_use(
        &self,
        summary: &Summary,
        cadvisor: &CadvisorStats,
        next: &mut HashMap<String, CpuSample>,
    ) -> NodeUse {
        let n = &summary.node;
        let mut u = NodeUse {
            cpu_capacity_cores: cadvisor.machine_cpu_cores,
            ..NodeUse::default()
        };
        if let Some(cpu) = &n.cpu {
            u.cpu_usage_seconds_total = cpu.usage_core_nano_seconds.map(nanos_to_seconds);
            u.cpu_usage_cores = self.cores(cpu, NODE_KEY.to_owned(), next);
            u.cpu_pressure = cpu.psi.as_ref().and_then(Psi::from_stats);
        }
        u.cpu_utilization_ratio = ratio(u.cpu_usage_cores, u.cpu_capacity_cores);
        if let Some(mem) = &n.memory {
            u.memory_working_set_bytes = mem.working_set_bytes.map(|b| b as f64);
            u.memory_pressure = mem.psi.as_ref().and_then(Psi::from_stats);
            u.memory_capacity_bytes = cadvisor
                .machine_memory_bytes
                .or_else(|| Some((mem.available_bytes? + mem.working_set_bytes?) as f64));
        }
        u.memory_utilization_ratio = ratio(u.memory_working_set_bytes, u.memory_capacity_bytes);
        u.io_pressure =
            n.io.as_ref()
                .and_then(|io| io.psi.as_ref())
                .and_then(Psi::from_stats);
        if let Some(net) = &n.network {
            let t = NetTotals::of(net);
            u.network_receive_bytes_total = t.rx_bytes;
            u.network_transmit_bytes_total = t.tx_bytes;
            u.network_receive_errors_total = t.rx_errors;
            u.network_transmit_errors_total = t.tx_errors;
        }
        let image_fs = n.runtime.as_ref().and_then(|r| r.image_fs.as_ref());
        for (fs, stats) in [(NodeFs::Root, n.fs.as_ref()), (NodeFs::Image, image_fs)] {
            if let Some(stats) = stats {
                u.filesystems.push(node_fs_use(fs, stats));
            }
        }
        u
    }

    fn pod_use(
        &self,
        pod: Arc<PodRef>,
        usage: Option<&PodStats>,
        spec: Option<&Pod>,
        next: &mut HashMap<String, CpuSample>,
    ) -> PodUse {
        let mut u = PodUse {
            pod,
            cpu_usage_seconds_total: None,
            cpu_usage_cores: None,
            memory_working_set_bytes: None,
            cpu_request_cores: None,
            cpu_limit_cores: None,
            memory_request_bytes: None,
            memory_limit_bytes: None,
            cpu_limit_utilization_ratio: None,
            memory_limit_utilization_ratio: None,
            network_receive_bytes_total: None,
            network_transmit_bytes_total: None,
            network_receive_errors_total: None,
            network_transmit_errors_total: None,
            ephemeral_storage_used_bytes: None,
        };
        if let Some(ps) = usage {
            if let Some(cpu) = &ps.cpu {
                u.cpu_usage_seconds_total = cpu.usage_core_nano_seconds.map(nanos_to_seconds);
                u.cpu_usage_cores = self.cores(cpu, cpu_key("pod", &u.pod, ""), next);
            }
            u.memory_working_set_bytes = ps
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes)
                .map(|b| b as f64);
            if let Some(net) = &ps.network {
                let t = NetTotals::of(net);
                u.network_receive_bytes_total = t.rx_bytes;
                u.network_transmit_bytes_total = t.tx_bytes;
                u.network_receive_errors_total = t.rx_errors;
                u.network_transmit_errors_total = t.tx_errors;
            }
            u.ephemeral_storage_used_bytes = ps
                .ephemeral_storage
                .as_ref()
                .and_then(|e| e.used_bytes)
                .map(|b| b as f64);
        }
        if let Some(spec) = spec {
            let r = PodResources::of(spec);
            u.cpu_request_cores = r.cpu_request;
            u.cpu_limit_cores = r.cpu_limit;
            u.memory_request_bytes = r.memory_request;
            u.memory_limit_bytes = r.memory_limit;
        }
        u.cpu_limit_utilization_ratio = ratio(u.cpu_usage_cores, u.cpu_limit_cores);
        u.memory_limit_utilization_ratio = ratio(u.memory_working_set_bytes, u.memory_limit_bytes);
        u
    }

    /// CPU use in cores: the kubelet's `usageNanoCores` when it is there and non-zero, else the
    /// counter's increase since the previous collection over the time between the two samples.
    fn cores(
        &self,
        cpu: &CpuStats,
        key: String,
        next: &mut HashMap<String, CpuSample>,
    ) -> Option<f64> {
        let reported = cpu
            .usage_nano_cores
            .filter(|&n| n > 0)
            .map(|n| n as f64 / 1e9);
        let current = match (cpu.time, cpu.usage_core_nano_seconds) {
            (Some(time), Some(core_nanos)) => Some(CpuSample { time, core_nanos }),
            _ => None,
        };
        let previous = self.cpu.get(&key).copied();
        let derived = match (previous, current) {
            (Some(prev), Some(cur))
                if cur.time > prev.time && cur.core_nanos >= prev.core_nanos =>
            {
                let seconds = (cur.time - prev.time).as_seconds_f64();
                Some((cur.core_nanos - prev.core_nanos) as f64 / 1e9 / seconds)
            }
            _ => None,
        };
        // A sample not newer than the kept one (the kubelet's stats cache did not refresh)
        // leaves the older sample in place, so the next rate spans a real interval.
        let keep = match (previous, current) {
            (Some(prev), Some(cur))
                if cur.time <= prev.time && cur.core_nanos >= prev.core_nanos =>
            {
                Some(prev)
            }
            (_, cur) => cur,
        };
        if let Some(sample) = keep {
            next.insert(key, sample);
        }
        reported.or(derived)
    }
}

fn pod_order(a: &PodRef, b: &PodRef) -> std::cmp::Ordering {
    a.namespace
        .cmp(&b.namespace)
        .then_with(|| a.pod.cmp(&b.pod))
}

/// Orders summary pods so that, of two entries with the same namespace and name (an old and a
/// re-created pod), the one whose UID `/pods` lists comes first and is kept.
fn prefer_listed_uids<'a>(
    pods: &'a [PodStats],
    listed: &HashMap<(&str, &str), &Pod>,
) -> impl Iterator<Item = &'a PodStats> {
    let uid_matches = |ps: &PodStats| {
        listed
            .get(&(ps.pod_ref.namespace.as_str(), ps.pod_ref.name.as_str()))
            .is_some_and(|p| p.metadata.uid == ps.pod_ref.uid)
    };
    pods.iter()
        .filter(move |ps| uid_matches(ps))
        .chain(pods.iter().filter(move |ps| !uid_matches(ps)))
}

fn pod_ref(namespace: &str, name: &str, uid: &str, spec: Option<&Pod>) -> PodRef {
    let w = match spec {
        Some(p) => workload::resolve(&p.metadata),
        None => workload::Workload {
            name: name.to_owned(),
            kind: WorkloadKind::Pod,
        },
    };
    PodRef {
        namespace: namespace.to_owned(),
        pod: name.to_owned(),
        uid: uid.to_owned(),
        workload: w.name,
        workload_kind: w.kind,
    }
}

/// App containers and sidecars: the containers that run for the pod's whole life.
fn long_running_containers(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .containers
        .iter()
        .chain(pod.spec.init_containers.iter().filter(|c| c.is_sidecar()))
        .map(|c| c.name.as_str())
}

impl ContainerUse {
    fn empty(pod: Arc<PodRef>, name: &str) -> Self {
        ContainerUse {
            pod,
            container: name.to_owned(),
            cpu_usage_seconds_total: None,
            cpu_usage_cores: None,
            cpu_request_cores: None,
            cpu_limit_cores: None,
            cpu_limit_utilization_ratio: None,
            cpu_request_utilization_ratio: None,
            cpu_cfs_periods_total: None,
            cpu_cfs_throttled_periods_total: None,
            memory_working_set_bytes: None,
            memory_request_bytes: None,
            memory_limit_bytes: None,
            memory_limit_utilization_ratio: None,
            oom_events_total: None,
            restarts_total: None,
            last_terminated_reason: None,
            cpu_pressure: None,
            memory_pressure: None,
        }
    }

    /// Adds requests, limits, status and cAdvisor counters to the usage, then the ratios.
    fn fill_from_spec(&mut self, spec: Option<&Pod>, cadvisor: &CadvisorStats) {
        if let Some(pod) = spec {
            if let Some(r) = pod
                .container(&self.container)
                .and_then(|c| c.resources.as_ref())
            {
                self.cpu_request_cores = r.cpu_request();
                self.cpu_limit_cores = r.cpu_limit();
                self.memory_request_bytes = r.memory_request();
                self.memory_limit_bytes = r.memory_limit();
            }
            if let Some(status) = pod.container_status(&self.container) {
                self.restarts_total = Some(status.restart_count as f64);
                self.last_terminated_reason = status.last_terminated_reason().map(str::to_owned);
            }
        }
        if let Some(counters) =
            cadvisor.container(&self.pod.namespace, &self.pod.pod, &self.container)
        {
            self.cpu_cfs_periods_total = counters.cfs_periods_total;
            self.cpu_cfs_throttled_periods_total = counters.cfs_throttled_periods_total;
            self.oom_events_total = counters.oom_events_total;
        }
        self.cpu_limit_utilization_ratio = ratio(self.cpu_usage_cores, self.cpu_limit_cores);
        self.cpu_request_utilization_ratio = ratio(self.cpu_usage_cores, self.cpu_request_cores);
        self.memory_limit_utilization_ratio =
            ratio(self.memory_working_set_bytes, self.memory_limit_bytes);
    }
}

/// Pod-level requests and limits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PodResources {
    cpu_request: Option<f64>,
    cpu_limit: Option<f64>,
    memory_request: Option<f64>,
    memory_limit: Option<f64>,
}

impl PodResources {
    /// Pod-level `spec.resources` (Kubernetes 1.34) per resource when set; otherwise the app
    /// containers' and sidecars' values: requests add up over those that set one (unset means
    /// nothing reserved), limits only when every one sets a limit (unset means unbounded).
    /// Init containers that finish before the app starts do not count.
    fn of(pod: &Pod) -> Self {
        let running: Vec<Option<&ResourceRequirements>> = pod
            .spec
            .containers
            .iter()
            .chain(pod.spec.init_containers.iter().filter(|c| c.is_sidecar()))
            .map(|c| c.resources.as_ref())
            .collect();
        let sum_requests = |get: fn(&ResourceRequirements) -> Option<f64>| {
            running
                .iter()
                .filter_map(|r| r.and_then(get))
                .fold(None, |acc: Option<f64>, v| Some(acc.unwrap_or(0.0) + v))
        };
        let sum_limits = |get: fn(&ResourceRequirements) -> Option<f64>| {
            if running.is_empty() {
                return None;
            }
            running.iter().map(|r| r.and_then(get)).sum::<Option<f64>>()
        };
        let pod_level = |get: fn(&ResourceRequirements) -> Option<f64>| {
            pod.spec.resources.as_ref().and_then(get)
        };
        use ResourceRequirements as R;
        PodResources {
            cpu_request: pod_level(R::cpu_request).or_else(|| sum_requests(R::cpu_request)),
            cpu_limit: pod_level(R::cpu_limit).or_else(|| sum_limits(R::cpu_limit)),
            memory_request: pod_level(R::memory_request)
                .or_else(|| sum_requests(R::memory_request)),
            memory_limit: pod_level(R::memory_limit).or_else(|| sum_limits(R::memory_limit)),
        }
    }
}

/// Network counters of a pod or node: the top-level (default interface) fields, each falling
/// back to the sum over the listed interfaces when the payload lacks it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct NetTotals {
    rx_bytes: Option<f64>,
    tx_bytes: Option<f64>,
    rx_errors: Option<f64>,
    tx_errors: Option<f64>,
}

impl NetTotals {
    fn of(net: &NetworkStats) -> Self {
        let field =
            |top: Option<u64>, per: fn(&super::kubelet::summary::InterfaceStats) -> Option<u64>| {
                top.or_else(|| {
                    net.interfaces
                        .iter()
                        .filter_map(per)
                        .fold(None, |acc: Option<u64>, v| Some(acc.unwrap_or(0) + v))
                })
                .map(|v| v as f64)
            };
        NetTotals {
            rx_bytes: field(net.rx_bytes, |i| i.rx_bytes),
            tx_bytes: field(net.tx_bytes, |i| i.tx_bytes),
            rx_errors: field(net.rx_errors, |i| i.rx_errors),
            tx_errors: field(net.tx_errors, |i| i.tx_errors),
        }
    }
}

fn node_fs_use(fs: NodeFs, stats: &FsStats) -> NodeFsUse {
    let used_bytes = stats.used_bytes.map(|b| b as f64);
    let capacity_bytes = stats.capacity_bytes.map(|b| b as f64);
    NodeFsUse {
        fs,
        used_bytes,
        capacity_bytes,
        used_ratio: ratio(used_bytes, capacity_bytes),
    }
}

fn nanos_to_seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// `part / whole`, only when both exist and the whole is positive.
fn ratio(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => Some(p / w),
        _ => None,
    }
}

/// Constructors for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A container with no data, in `pod`.
    pub(crate) fn container(pod: Arc<PodRef>, name: &str) -> ContainerUse {
        ContainerUse::empty(pod, name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn summary(v: serde_json::Value) -> Summary {
        serde_json::from_value(v).unwrap()
    }

    fn pods(v: serde_json::Value) -> PodList {
        serde_json::from_value(v).unwrap()
    }

    fn one_container_summary(time: &str, nano_cores: Option<u64>, core_nanos: u64) -> Summary {
        let mut cpu = json!({"time": time, "usageCoreNanoSeconds": core_nanos});
        if let Some(n) = nano_cores {
            cpu["usageNanoCores"] = json!(n);
        }
        summary(json!({
            "node": {"nodeName": "n1", "cpu": cpu.clone()},
            "pods": [{
                "podRef": {"name": "web-1", "namespace": "shop", "uid": "u1"},
                "cpu": cpu.clone(),
                "memory": {"workingSetBytes": 100},
                "containers": [{"name": "app", "cpu": cpu, "memory": {"workingSetBytes": 100}}]
            }]
        }))
    }

    fn web_pod(container_resources: serde_json::Value) -> PodList {
        pods(json!({"items": [{
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]},
            "spec": {"containers": [{"name": "app", "resources": container_resources}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 4,
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}
        }]}))
    }

    fn join_once(s: &Summary, p: &PodList) -> UseSnapshot {
        UseState::new().join("n1", s, p, &CadvisorStats::default())
    }

    #[test]
    fn psi_totals_are_read_as_microseconds() {
        let psi: PsiStats = serde_json::from_value(json!({
            "some": {"total": 41_213_702, "avg10": 81.76},
            "full": {"total": 38_512_654, "avg10": 74.0}
        }))
        .unwrap();
        let p = Psi::from_stats(&psi).unwrap();
        assert_eq!(p.some_seconds_total, 41.213702);
        assert_eq!(p.full_seconds_total, Some(38.512654));
        let some_only: PsiStats = serde_json::from_value(json!({"some": {"total": 5}})).unwrap();
        assert_eq!(
            Psi::from_stats(&some_only).unwrap().full_seconds_total,
            None
        );
    }

    #[test]
    fn ratios_are_absent_when_there_is_no_limit_or_request() {
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(50_000_000), 1_000_000_000);
        let snap = join_once(&s, &web_pod(json!({})));
        let c = &snap.containers[0];
        assert_eq!(c.cpu_usage_cores, Some(0.05));
        assert_eq!(c.cpu_limit_cores, None);
        assert_eq!(c.cpu_limit_utilization_ratio, None);
        assert_eq!(c.cpu_request_utilization_ratio, None);
        assert_eq!(c.memory_limit_utilization_ratio, None);
        assert_eq!(snap.pods[0].cpu_limit_utilization_ratio, None);
        // A zero limit is no denominator either.
        let zero = join_once(&s, &web_pod(json!({"limits": {"cpu": "0"}})));
        assert_eq!(zero.containers[0].cpu_limit_cores, Some(0.0));
        assert_eq!(zero.containers[0].cpu_limit_utilization_ratio, None);
    }

    #[test]
    fn ratios_divide_usage_by_limits_and_requests() {
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(50_000_000), 1_000_000_000);
        let p = web_pod(json!({"limits": {"cpu": "200m", "memory": "400"},
                               "requests": {"cpu": "100m", "memory": "200"}}));
        let c = &join_once(&s, &p).containers[0];
        assert_eq!(c.cpu_limit_utilization_ratio, Some(0.25));
        assert_eq!(c.cpu_request_utilization_ratio, Some(0.5));
        assert_eq!(c.memory_limit_utilization_ratio, Some(0.25));
        assert_eq!(c.restarts_total, Some(4.0));
        assert_eq!(c.last_terminated_reason.as_deref(), Some("OOMKilled"));
        assert_eq!(c.pod.workload, "web");
        assert_eq!(c.pod.workload_kind, WorkloadKind::StatefulSet);
    }

    #[test]
    fn without_usage_nano_cores_the_rate_comes_from_two_collections() {
        let p = web_pod(json!({"limits": {"cpu": "2"}}));
        let mut state = UseState::new();
        let cad = CadvisorStats::default();
        let first = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:00Z", None, 10_000_000_000),
            &p,
            &cad,
        );
        assert_eq!(first.containers[0].cpu_usage_cores, None);
        assert_eq!(first.containers[0].cpu_usage_seconds_total, Some(10.0));
        // 3 s of CPU over 10 s of wall time: 0.3 cores, 0.15 of a 2-core limit.
        let second = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:10Z", Some(0), 13_000_000_000),
            &p,
            &cad,
        );
        let c = &second.containers[0];
        assert!((c.cpu_usage_cores.unwrap() - 0.3).abs() < 1e-12);
        assert!((c.cpu_limit_utilization_ratio.unwrap() - 0.15).abs() < 1e-12);
        assert!((second.node_use.cpu_usage_cores.unwrap() - 0.3).abs() < 1e-12);
        assert!((second.pods[0].cpu_usage_cores.unwrap() - 0.3).abs() < 1e-12);
    }

    #[test]
    fn a_reported_rate_wins_and_a_counter_reset_gives_no_derived_rate() {
        let p = web_pod(json!({}));
        let mut state = UseState::new();
        let cad = CadvisorStats::default();
        state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:00Z", None, 10_000_000_000),
            &p,
            &cad,
        );
        let reported = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:10Z", Some(700_000_000), 11_000_000_000),
            &p,
            &cad,
        );
        assert_eq!(reported.containers[0].cpu_usage_cores, Some(0.7));
        let reset = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:20Z", None, 1_000_000_000),
            &p,
            &cad,
        );
        assert_eq!(reset.containers[0].cpu_usage_cores, None);
        let after = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:30Z", None, 3_000_000_000),
            &p,
            &cad,
        );
        assert!((after.containers[0].cpu_usage_cores.unwrap() - 0.2).abs() < 1e-12);
    }

    #[test]
    fn a_sample_that_did_not_advance_keeps_the_older_one_for_the_next_rate() {
        let p = web_pod(json!({}));
        let mut state = UseState::new();
        let cad = CadvisorStats::default();
        state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:00Z", None, 10_000_000_000),
            &p,
            &cad,
        );
        let same = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:00Z", None, 10_000_000_000),
            &p,
            &cad,
        );
        assert_eq!(same.containers[0].cpu_usage_cores, None);
        let later = state.join(
            "n1",
            &one_container_summary("2026-01-13T18:40:20Z", None, 14_000_000_000),
            &p,
            &cad,
        );
        assert!((later.containers[0].cpu_usage_cores.unwrap() - 0.2).abs() < 1e-12);
    }

    fn two_container_pod(
        pod_resources: Option<serde_json::Value>,
        second_limits: serde_json::Value,
    ) -> PodList {
        let mut spec = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "100"}, "requests": {"cpu": "500m"}}},
            {"name": "b", "resources": {"limits": second_limits, "requests": {"cpu": "250m", "memory": "10"}}}
        ]});
        if let Some(r) = pod_resources {
            spec["resources"] = r;
        }
        pods(
            json!({"items": [{"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
            "spec": spec, "status": {"phase": "Running"}}]}),
        )
    }

    #[test]
    fn pod_limits_add_up_only_when_every_container_sets_one() {
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(1), 1);
        let all = join_once(
            &s,
            &two_container_pod(None, json!({"cpu": "2", "memory": "50"})),
        );
        assert_eq!(all.pods[0].cpu_limit_cores, Some(3.0));
        assert_eq!(all.pods[0].memory_limit_bytes, Some(150.0));
        assert_eq!(all.pods[0].cpu_request_cores, Some(0.75));
        assert_eq!(all.pods[0].memory_request_bytes, Some(10.0));
        let partial = join_once(&s, &two_container_pod(None, json!({"cpu": "2"})));
        assert_eq!(partial.pods[0].cpu_limit_cores, Some(3.0));
        assert_eq!(partial.pods[0].memory_limit_bytes, None);
        assert_eq!(partial.pods[0].memory_limit_utilization_ratio, None);
    }

    #[test]
    fn pod_level_resources_override_the_container_sum() {
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(1), 1);
        let p = two_container_pod(
            Some(json!({"limits": {"memory": "1000"}, "requests": {"cpu": "1"}})),
            json!({"cpu": "2", "memory": "50"}),
        );
        let snap = join_once(&s, &p);
        let pod = &snap.pods[0];
        assert_eq!(pod.memory_limit_bytes, Some(1000.0));
        assert_eq!(pod.cpu_request_cores, Some(1.0));
        // Resources the pod level leaves unset still come from the containers.
        assert_eq!(pod.cpu_limit_cores, Some(3.0));
        assert_eq!(pod.memory_request_bytes, Some(10.0));
        assert_eq!(pod.memory_limit_utilization_ratio, Some(0.1));
    }

    #[test]
    fn a_summary_pod_unknown_to_the_pod_list_is_its_own_workload_without_limits() {
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(20_000_000), 1);
        let snap = join_once(&s, &PodList::default());
        assert_eq!(snap.stats.pods_without_metadata, 1);
        let c = &snap.containers[0];
        assert_eq!(
            (c.pod.workload.as_str(), c.pod.workload_kind),
            ("web-1", WorkloadKind::Pod)
        );
        assert_eq!(c.cpu_usage_cores, Some(0.02));
        assert_eq!(c.cpu_request_cores, None);
        assert_eq!(c.restarts_total, None);
    }

    #[test]
    fn a_running_pod_without_usage_still_reports_restarts_and_limits_and_a_finished_one_does_not() {
        let list = pods(json!({"items": [
            {"metadata": {"name": "crashy", "namespace": "ns", "uid": "c1"},
             "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"}}}],
                      "initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}]},
             "status": {"phase": "Running", "containerStatuses": [{"name": "main", "restartCount": 9}]}},
            {"metadata": {"name": "done", "namespace": "ns", "uid": "d1"},
             "spec": {"containers": [{"name": "main"}]},
             "status": {"phase": "Succeeded", "containerStatuses": [{"name": "main", "restartCount": 1}]}}
        ]}));
        let snap = join_once(&Summary::default(), &list);
        assert_eq!(snap.stats.pods_without_usage, 1);
        let names: Vec<_> = snap
            .containers
            .iter()
            .map(|c| (c.pod.pod.as_str(), c.container.as_str()))
            .collect();
        assert_eq!(names, [("crashy", "main"), ("crashy", "proxy")]);
        assert_eq!(snap.containers[0].restarts_total, Some(9.0));
        assert_eq!(snap.containers[0].memory_limit_bytes, Some(67_108_864.0));
        assert_eq!(snap.containers[0].cpu_usage_seconds_total, None);
        assert_eq!(snap.pods.len(), 1);
        // `proxy` sets no limit, so the pod as a whole has none.
        assert_eq!(snap.pods[0].memory_limit_bytes, None);
    }

    #[test]
    fn series_of_a_pod_that_went_away_are_not_in_the_next_snapshot() {
        let mut state = UseState::new();
        let cad = CadvisorStats::default();
        let p = web_pod(json!({}));
        let s = one_container_summary("2026-01-13T18:40:00Z", Some(1), 1);
        assert_eq!(state.join("n1", &s, &p, &cad).containers.len(), 1);
        let gone = state.join("n1", &Summary::default(), &PodList::default(), &cad);
        assert!(gone.pods.is_empty() && gone.containers.is_empty());
        assert!(state.cpu.keys().all(|k| k == NODE_KEY));
    }

    #[test]
    fn of_two_summary_entries_for_one_pod_name_the_listed_uid_is_kept() {
        let s = summary(json!({"node": {"nodeName": "n1"}, "pods": [
            {"podRef": {"name": "web-1", "namespace": "shop", "uid": "old"},
             "containers": [{"name": "app", "memory": {"workingSetBytes": 1}}]},
            {"podRef": {"name": "web-1", "namespace": "shop", "uid": "u1"},
             "containers": [{"name": "app", "memory": {"workingSetBytes": 2}},
                            {"name": "app", "memory": {"workingSetBytes": 3}}]}
        ]}));
        let snap = join_once(&s, &web_pod(json!({})));
        assert_eq!(snap.containers.len(), 1);
        assert_eq!(snap.containers[0].memory_working_set_bytes, Some(2.0));
        assert_eq!(snap.stats.duplicates_dropped, 2);
    }

    #[test]
    fn cadvisor_counters_and_capacity_are_joined() {
        let mut cad = CadvisorStats::default();
        cad.machine_cpu_cores = Some(4.0);
        cad.machine_memory_bytes = Some(1000.0);
        let c = cad.container_mut("shop", "web-1", "app");
        c.cfs_periods_total = Some(10.0);
        c.cfs_throttled_periods_total = Some(3.0);
        c.oom_events_total = Some(0.0);
        let mut s = one_container_summary("2026-01-13T18:40:00Z", Some(2_000_000_000), 1);
        s.node.memory = Some(serde_json::from_value(json!({"workingSetBytes": 250})).unwrap());
        let snap = UseState::new().join("", &s, &web_pod(json!({})), &cad);
        assert_eq!(snap.node, "n1");
        assert_eq!(snap.node_use.cpu_utilization_ratio, Some(0.5));
        assert_eq!(snap.node_use.memory_utilization_ratio, Some(0.25));
        let c = &snap.containers[0];
        assert_eq!(c.cpu_cfs_periods_total, Some(10.0));
        assert_eq!(c.cpu_cfs_throttled_periods_total, Some(3.0));
        assert_eq!(c.oom_events_total, Some(0.0));
    }

    #[test]
    fn without_cadvisor_memory_capacity_is_available_plus_working_set() {
        let s = summary(json!({"node": {"nodeName": "n1",
            "memory": {"availableBytes": 750, "workingSetBytes": 250}}}));
        let snap = join_once(&s, &PodList::default());
        assert_eq!(snap.node_use.memory_capacity_bytes, Some(1000.0));
        assert_eq!(snap.node_use.cpu_capacity_cores, None);
        assert_eq!(snap.node_use.cpu_utilization_ratio, None);
    }

    #[test]
    fn pod_network_falls_back_to_the_sum_over_interfaces() {
        let s = summary(json!({"node": {"nodeName": "n1"}, "pods": [{
            "podRef": {"name": "p", "namespace": "ns", "uid": "x"},
            "network": {"rxBytes": 7, "interfaces": [
                {"name": "eth0", "rxBytes": 5, "txBytes": 1, "rxErrors": 2, "txErrors": 0},
                {"name": "eth1", "rxBytes": 2, "txBytes": 4, "rxErrors": 1}
            ]}
        }]}));
        let pod = &join_once(&s, &PodList::default()).pods[0];
        assert_eq!(pod.network_receive_bytes_total, Some(7.0));
        assert_eq!(pod.network_transmit_bytes_total, Some(5.0));
        assert_eq!(pod.network_receive_errors_total, Some(3.0));
        assert_eq!(pod.network_transmit_errors_total, Some(0.0));
    }
}
