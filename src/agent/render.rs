//! Exposition of the USE snapshot through `prometheus-client`: a [`Collector`] that encodes the
//! latest snapshot at scrape time, and content negotiation between OpenMetrics and the
//! Prometheus text format 0.0.4.
//!
//! Family names in the tables below are the exported sample names. `prometheus-client` builds
//! them from a stem, a unit suffix and, for counters, `_total`; [`FamilySpec::stem`] takes the
//! name apart so the output matches the tables exactly.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::use_series::{ContainerUse, NodeFsUse, NodeUse, PodRef, PodUse, Psi, UseSnapshot};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text (`# UNIT`, `# EOF`, counter families named without `_total`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    PrometheusText,
}

/// Content type of OpenMetrics 1.0.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// Picks the format for a request's `Accept` header: OpenMetrics when the client ranks it at
    /// least as high as the text format (Prometheus does), the text format otherwise, including
    /// when the header is absent or only says `*/*`.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut openmetrics_q: f32 = 0.0;
        let mut text_q: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics_q = openmetrics_q.max(q),
                "text/plain" | "text/*" | "*/*" => text_q = text_q.max(q),
                _ => {}
            }
        }
        if openmetrics_q > 0.0 && openmetrics_q >= text_q {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Encodes everything registered in `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?
        }
    }
    Ok(out)
}

/// Renders one snapshot on its own (tests, benchmarks, one-shot output).
pub fn render(snapshot: UseSnapshot, format: Format) -> Result<String, fmt::Error> {
    let cell = Arc::new(SnapshotCell::default());
    cell.store(snapshot);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(UseCollector::new(cell)));
    encode(&registry, format)
}

/// Holds the latest snapshot; the collection loop stores, scrapes read.
#[derive(Debug, Default)]
pub struct SnapshotCell(RwLock<Option<Arc<UseSnapshot>>>);

impl SnapshotCell {
    /// Replaces the snapshot; series absent from it disappear from the next scrape.
    pub fn store(&self, snapshot: UseSnapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snapshot));
    }

    /// The latest snapshot, if a collection has succeeded yet.
    pub fn load(&self) -> Option<Arc<UseSnapshot>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Encodes the latest [`UseSnapshot`] at scrape time; register it with
/// [`Registry::register_collector`].
#[derive(Debug)]
pub struct UseCollector {
    cell: Arc<SnapshotCell>,
}

impl UseCollector {
    /// A collector reading from `cell`.
    pub fn new(cell: Arc<SnapshotCell>) -> Self {
        UseCollector { cell }
    }
}

impl Collector for UseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        match self.cell.load() {
            Some(snapshot) => encode_snapshot(&snapshot, &mut encoder),
            None => Ok(()),
        }
    }
}

/// Type, name, unit and help of one exported family.
#[derive(Clone, Copy, Debug)]
pub struct FamilySpec {
    /// The exported sample name (with `_total` for counters).
    pub name: &'static str,
    /// Counter or gauge.
    pub counter: bool,
    /// Unit suffix of the name, if it has one (`seconds`, `bytes`, `cores`, `ratio`).
    pub unit: Option<&'static str>,
    /// The `# HELP` text.
    pub help: &'static str,
}

impl FamilySpec {
    const fn counter(name: &'static str, unit: Option<&'static str>, help: &'static str) -> Self {
        FamilySpec {
            name,
            counter: true,
            unit,
            help,
        }
    }

    const fn gauge(name: &'static str, unit: Option<&'static str>, help: &'static str) -> Self {
        FamilySpec {
            name,
            counter: false,
            unit,
            help,
        }
    }

    /// The name without `_total` and without the unit suffix: what `prometheus-client` wants.
    pub fn stem(&self) -> &'static str {
        let mut stem = self.name;
        if self.counter {
            stem = stem.strip_suffix("_total").unwrap_or(stem);
        }
        if let Some(unit) = self.unit {
            stem = stem
                .strip_suffix(unit)
                .and_then(|s| s.strip_suffix('_'))
                .unwrap_or(stem);
        }
        stem
    }

    fn prometheus_unit(&self) -> Option<Unit> {
        self.unit.map(|u| match u {
            "seconds" => Unit::Seconds,
            "bytes" => Unit::Bytes,
            other => Unit::Other(other.to_owned()),
        })
    }

    fn metric_type(&self) -> MetricType {
        if self.counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        }
    }
}

const SECONDS: Option<&str> = Some("seconds");
const BYTES: Option<&str> = Some("bytes");
const CORES: Option<&str> = Some("cores");
const RATIO: Option<&str> = Some("ratio");

type NodeGet = fn(&NodeUse) -> Option<f64>;
type PodGet = fn(&PodUse) -> Option<f64>;
type ContainerGet = fn(&ContainerUse) -> Option<f64>;
type PsiGet<T> = fn(&T) -> Option<Psi>;
type FsGet = fn(&NodeFsUse) -> Option<f64>;

/// Node families with one sample each.
pub const NODE_FAMILIES: &[(FamilySpec, NodeGet)] = &[
    (
        FamilySpec::counter(
            "kubesignal_node_cpu_usage_seconds_total",
            SECONDS,
            "CPU time the node has spent busy, summed over cores.",
        ),
        |n| n.cpu_usage_seconds_total,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_cpu_capacity_cores",
            CORES,
            "CPU cores of the machine.",
        ),
        |n| n.cpu_capacity_cores,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_cpu_utilization_ratio",
            RATIO,
            "Share of the node's CPU cores in use over the kubelet's last sampling window.",
        ),
        |n| n.cpu_utilization_ratio,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_memory_working_set_bytes",
            BYTES,
            "Memory the node uses that cannot be reclaimed without pressure.",
        ),
        |n| n.memory_working_set_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_memory_capacity_bytes",
            BYTES,
            "Memory of the machine.",
        ),
        |n| n.memory_capacity_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_memory_utilization_ratio",
            RATIO,
            "Working set memory as a share of the machine's memory.",
        ),
        |n| n.memory_utilization_ratio,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_network_receive_bytes_total",
            BYTES,
            "Bytes received on the node's default network interface.",
        ),
        |n| n.network_receive_bytes_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_network_transmit_bytes_total",
            BYTES,
            "Bytes sent on the node's default network interface.",
        ),
        |n| n.network_transmit_bytes_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_network_receive_errors_total",
            None,
            "Receive errors on the node's default network interface.",
        ),
        |n| n.network_receive_errors_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_network_transmit_errors_total",
            None,
            "Transmit errors on the node's default network interface.",
        ),
        |n| n.network_transmit_errors_total,
    ),
];

/// Node pressure families, one sample per `kind` (`some`, `full`).
pub const NODE_PSI_FAMILIES: &[(FamilySpec, PsiGet<NodeUse>)] = &[
    (
        FamilySpec::counter(
            "kubesignal_node_cpu_pressure_seconds_total",
            SECONDS,
            "Time tasks on the node waited for CPU: kind=some while at least one did, kind=full while all non-idle ones did.",
        ),
        |n| n.cpu_pressure,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_memory_pressure_seconds_total",
            SECONDS,
            "Time tasks on the node stalled on memory: kind=some while at least one did, kind=full while all non-idle ones did.",
        ),
        |n| n.memory_pressure,
    ),
    (
        FamilySpec::counter(
            "kubesignal_node_io_pressure_seconds_total",
            SECONDS,
            "Time tasks on the node stalled on I/O: kind=some while at least one did, kind=full while all non-idle ones did.",
        ),
        |n| n.io_pressure,
    ),
];

/// Node filesystem families, one sample per `fs` (`root`, `image`).
pub const NODE_FS_FAMILIES: &[(FamilySpec, FsGet)] = &[
    (
        FamilySpec::gauge(
            "kubesignal_node_filesystem_used_ratio",
            RATIO,
            "Share of the filesystem in use: fs=root is the node's root, fs=image the runtime's image store.",
        ),
        |f| f.used_ratio,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_filesystem_used_bytes",
            BYTES,
            "Bytes in use on the filesystem (fs=root or fs=image).",
        ),
        |f| f.used_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_node_filesystem_capacity_bytes",
            BYTES,
            "Size of the filesystem (fs=root or fs=image).",
        ),
        |f| f.capacity_bytes,
    ),
];

/// Pod families.
pub const POD_FAMILIES: &[(FamilySpec, PodGet)] = &[
    (
        FamilySpec::counter(
            "kubesignal_pod_cpu_usage_seconds_total",
            SECONDS,
            "CPU time the pod has used, all its containers together.",
        ),
        |p| p.cpu_usage_seconds_total,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_memory_working_set_bytes",
            BYTES,
            "Working set memory of the pod, all its containers together.",
        ),
        |p| p.memory_working_set_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_cpu_request_cores",
            CORES,
            "CPU the pod requests: its pod-level request, else the sum of its containers' requests.",
        ),
        |p| p.cpu_request_cores,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_cpu_limit_cores",
            CORES,
            "CPU limit of the pod: its pod-level limit, else the sum of its containers' limits when every container has one.",
        ),
        |p| p.cpu_limit_cores,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_memory_request_bytes",
            BYTES,
            "Memory the pod requests: its pod-level request, else the sum of its containers' requests.",
        ),
        |p| p.memory_request_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_memory_limit_bytes",
            BYTES,
            "Memory limit of the pod: its pod-level limit, else the sum of its containers' limits when every container has one.",
        ),
        |p| p.memory_limit_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_cpu_limit_utilization_ratio",
            RATIO,
            "CPU the pod uses as a share of its CPU limit.",
        ),
        |p| p.cpu_limit_utilization_ratio,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_memory_limit_utilization_ratio",
            RATIO,
            "Working set memory of the pod as a share of its memory limit.",
        ),
        |p| p.memory_limit_utilization_ratio,
    ),
    (
        FamilySpec::counter(
            "kubesignal_pod_network_receive_bytes_total",
            BYTES,
            "Bytes the pod received.",
        ),
        |p| p.network_receive_bytes_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_pod_network_transmit_bytes_total",
            BYTES,
            "Bytes the pod sent.",
        ),
        |p| p.network_transmit_bytes_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_pod_network_receive_errors_total",
            None,
            "Errors while the pod received packets.",
        ),
        |p| p.network_receive_errors_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_pod_network_transmit_errors_total",
            None,
            "Errors while the pod sent packets.",
        ),
        |p| p.network_transmit_errors_total,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_pod_ephemeral_storage_used_bytes",
            BYTES,
            "Local ephemeral storage the pod uses: writable layers, logs and emptyDir volumes.",
        ),
        |p| p.ephemeral_storage_used_bytes,
    ),
];

/// Container families with one sample each.
pub const CONTAINER_FAMILIES: &[(FamilySpec, ContainerGet)] = &[
    (
        FamilySpec::counter(
            "kubesignal_container_cpu_usage_seconds_total",
            SECONDS,
            "CPU time the container has used.",
        ),
        |c| c.cpu_usage_seconds_total,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_cpu_request_cores",
            CORES,
            "CPU the container requests; absent when it requests none.",
        ),
        |c| c.cpu_request_cores,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_cpu_limit_cores",
            CORES,
            "CPU limit of the container; absent when it has none.",
        ),
        |c| c.cpu_limit_cores,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_cpu_limit_utilization_ratio",
            RATIO,
            "CPU the container uses as a share of its CPU limit; absent without a limit.",
        ),
        |c| c.cpu_limit_utilization_ratio,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_cpu_request_utilization_ratio",
            RATIO,
            "CPU the container uses as a share of its CPU request; absent without a request.",
        ),
        |c| c.cpu_request_utilization_ratio,
    ),
    (
        FamilySpec::counter(
            "kubesignal_container_cpu_cfs_periods_total",
            None,
            "CFS scheduler periods in which the container could run, as cAdvisor counts them.",
        ),
        |c| c.cpu_cfs_periods_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_container_cpu_cfs_throttled_periods_total",
            None,
            "CFS scheduler periods in which the container hit its CPU limit and was throttled.",
        ),
        |c| c.cpu_cfs_throttled_periods_total,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_memory_working_set_bytes",
            BYTES,
            "Working set memory of the container, the figure its memory limit is enforced against.",
        ),
        |c| c.memory_working_set_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_memory_request_bytes",
            BYTES,
            "Memory the container requests; absent when it requests none.",
        ),
        |c| c.memory_request_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_memory_limit_bytes",
            BYTES,
            "Memory limit of the container; absent when it has none.",
        ),
        |c| c.memory_limit_bytes,
    ),
    (
        FamilySpec::gauge(
            "kubesignal_container_memory_limit_utilization_ratio",
            RATIO,
            "Working set memory of the container as a share of its memory limit; absent without a limit.",
        ),
        |c| c.memory_limit_utilization_ratio,
    ),
    (
        FamilySpec::counter(
            "kubesignal_container_oom_events_total",
            None,
            "Out-of-memory events cAdvisor saw in the container's cgroup (stays 0 on many setups; see restarts and last_terminated_reason).",
        ),
        |c| c.oom_events_total,
    ),
    (
        FamilySpec::counter(
            "kubesignal_container_restarts_total",
            None,
            "Times the kubelet restarted the container, from the pod status.",
        ),
        |c| c.restarts_total,
    ),
];

/// Container pressure families, one sample per `kind`.
pub const CONTAINER_PSI_FAMILIES: &[(FamilySpec, PsiGet<ContainerUse>)] = &[
    (
        FamilySpec::counter(
            "kubesignal_container_cpu_pressure_seconds_total",
            SECONDS,
            "Time the container's tasks waited for CPU: kind=some while at least one did, kind=full while all did.",
        ),
        |c| c.cpu_pressure,
    ),
    (
        FamilySpec::counter(
            "kubesignal_container_memory_pressure_seconds_total",
            SECONDS,
            "Time the container's tasks stalled on memory: kind=some while at least one did, kind=full while all did.",
        ),
        |c| c.memory_pressure,
    ),
];

/// The family carrying the last termination reason as a label.
pub const LAST_TERMINATED_REASON: FamilySpec = FamilySpec::gauge(
    "kubesignal_container_last_terminated_reason",
    None,
    "Always 1; the reason label says why the container's previous run ended (OOMKilled, Error, Completed, ...).",
);

/// Labels of one sample: node, then the pod's identity, the container, one extra label.
struct SeriesLabels<'a> {
    node: &'a str,
    pod: Option<&'a PodRef>,
    container: Option<&'a str>,
    extra: Option<(&'static str, &'a str)>,
}

impl<'a> SeriesLabels<'a> {
    fn node(node: &'a str) -> Self {
        SeriesLabels {
            node,
            pod: None,
            container: None,
            extra: None,
        }
    }

    fn with(mut self, key: &'static str, value: &'a str) -> Self {
        self.extra = Some((key, value));
        self
    }
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        ("node", self.node).encode(encoder.encode_label())?;
        if let Some(p) = self.pod {
            ("namespace", p.namespace.as_str()).encode(encoder.encode_label())?;
            ("pod", p.pod.as_str()).encode(encoder.encode_label())?;
            ("workload", p.workload.as_str()).encode(encoder.encode_label())?;
            ("workload_kind", p.workload_kind.as_str()).encode(encoder.encode_label())?;
        }
        if let Some(c) = self.container {
            ("container", c).encode(encoder.encode_label())?;
        }
        if let Some(pair) = self.extra {
            pair.encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Writes one family if it has at least one sample.
fn write_family<'a>(
    encoder: &mut DescriptorEncoder,
    spec: &FamilySpec,
    samples: impl Iterator<Item = (SeriesLabels<'a>, f64)>,
) -> Result<(), fmt::Error> {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let unit = spec.prometheus_unit();
    let mut metric =
        encoder.encode_descriptor(spec.stem(), spec.help, unit.as_ref(), spec.metric_type())?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        if spec.counter {
            sample.encode_counter::<NoLabelSet, f64, f64>(&value, None)?;
        } else {
            sample.encode_gauge(&value)?;
        }
    }
    Ok(())
}

fn psi_samples(psi: Option<Psi>) -> impl Iterator<Item = (&'static str, f64)> {
    psi.into_iter().flat_map(|p| {
        [
            ("some", Some(p.some_seconds_total)),
            ("full", p.full_seconds_total),
        ]
        .into_iter()
        .filter_map(|(kind, v)| Some((kind, v?)))
    })
}

fn pod_labels<'a>(node: &'a str, pod: &'a PodRef) -> SeriesLabels<'a> {
    SeriesLabels {
        node,
        pod: Some(pod),
        container: None,
        extra: None,
    }
}

fn container_labels<'a>(node: &'a str, c: &'a ContainerUse) -> SeriesLabels<'a> {
    SeriesLabels {
        node,
        pod: Some(&c.pod),
        container: Some(&c.container),
        extra: None,
    }
}

fn encode_snapshot(s: &UseSnapshot, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let node = s.node.as_str();
    let n = &s.node_use;
    for (spec, get) in NODE_FAMILIES {
        write_family(
            encoder,
            spec,
            get(n).map(|v| (SeriesLabels::node(node), v)).into_iter(),
        )?;
    }
    for (spec, get) in NODE_PSI_FAMILIES {
        let samples =
            psi_samples(get(n)).map(|(kind, v)| (SeriesLabels::node(node).with("kind", kind), v));
        write_family(encoder, spec, samples)?;
    }
    for (spec, get) in NODE_FS_FAMILIES {
        let samples = n
            .filesystems
            .iter()
            .filter_map(|f| Some((SeriesLabels::node(node).with("fs", f.fs.as_str()), get(f)?)));
        write_family(encoder, spec, samples)?;
    }
    for (spec, get) in POD_FAMILIES {
        let samples = s
            .pods
            .iter()
            .filter_map(|p| Some((pod_labels(node, &p.pod), get(p)?)));
        write_family(encoder, spec, samples)?;
    }
    for (spec, get) in CONTAINER_FAMILIES {
        let samples = s
            .containers
            .iter()
            .filter_map(|c| Some((container_labels(node, c), get(c)?)));
        write_family(encoder, spec, samples)?;
    }
    for (spec, get) in CONTAINER_PSI_FAMILIES {
        let samples = s.containers.iter().flat_map(|c| {
            psi_samples(get(c))
                .map(move |(kind, v)| (container_labels(node, c).with("kind", kind), v))
        });
        write_family(encoder, spec, samples)?;
    }
    let reasons = s.containers.iter().filter_map(|c| {
        let reason = c.last_terminated_reason.as_deref()?;
        Some((container_labels(node, c).with("reason", reason), 1.0))
    });
    write_family(encoder, &LAST_TERMINATED_REASON, reasons)?;
    Ok(())
}

/// Number of samples the snapshot renders to (for the agent's series-count self-metric).
pub fn series_count(s: &UseSnapshot) -> usize {
    let n = &s.node_use;
    let psi_count = |p: Option<Psi>| psi_samples(p).count();
    NODE_FAMILIES
        .iter()
        .filter(|(_, get)| get(n).is_some())
        .count()
        + NODE_PSI_FAMILIES
            .iter()
            .map(|(_, get)| psi_count(get(n)))
            .sum::<usize>()
        + NODE_FS_FAMILIES
            .iter()
            .map(|(_, get)| n.filesystems.iter().filter(|f| get(f).is_some()).count())
            .sum::<usize>()
        + s.pods
            .iter()
            .map(|p| {
                POD_FAMILIES
                    .iter()
                    .filter(|(_, get)| get(p).is_some())
                    .count()
            })
            .sum::<usize>()
        + s.containers
            .iter()
            .map(|c| {
                CONTAINER_FAMILIES
                    .iter()
                    .filter(|(_, get)| get(c).is_some())
                    .count()
                    + CONTAINER_PSI_FAMILIES
                        .iter()
                        .map(|(_, get)| psi_count(get(c)))
                        .sum::<usize>()
                    + usize::from(c.last_terminated_reason.is_some())
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::use_series::{NodeFs, NodeFsUse};
    use crate::agent::workload::WorkloadKind;

    fn all_specs() -> Vec<FamilySpec> {
        let mut specs: Vec<FamilySpec> = NODE_FAMILIES.iter().map(|f| f.0).collect();
        specs.extend(NODE_PSI_FAMILIES.iter().map(|f| f.0));
        specs.extend(NODE_FS_FAMILIES.iter().map(|f| f.0));
        specs.extend(POD_FAMILIES.iter().map(|f| f.0));
        specs.extend(CONTAINER_FAMILIES.iter().map(|f| f.0));
        specs.extend(CONTAINER_PSI_FAMILIES.iter().map(|f| f.0));
        specs.push(LAST_TERMINATED_REASON);
        specs
    }

    fn sample_snapshot() -> UseSnapshot {
        let pod = Arc::new(PodRef {
            namespace: "shop".into(),
            pod: "web-7d4b9-x2".into(),
            uid: "u".into(),
            workload: "web".into(),
            workload_kind: WorkloadKind::Deployment,
        });
        let mut snap = UseSnapshot {
            node: "n1".into(),
            ..Default::default()
        };
        snap.node_use.cpu_usage_seconds_total = Some(12.5);
        snap.node_use.cpu_pressure = Some(Psi {
            some_seconds_total: 1.5,
            full_seconds_total: Some(0.25),
        });
        snap.node_use.filesystems.push(NodeFsUse {
            fs: NodeFs::Image,
            used_bytes: Some(1.0),
            capacity_bytes: Some(4.0),
            used_ratio: Some(0.25),
        });
        let mut c = crate::agent::use_series::tests_support::container(pod, "app");
        c.restarts_total = Some(3.0);
        c.memory_limit_bytes = Some(1024.0);
        c.last_terminated_reason = Some("OOMKilled".into());
        snap.containers.push(c);
        snap
    }

    #[test]
    fn every_family_name_survives_prometheus_client_naming() {
        let mut seen = std::collections::HashSet::new();
        for spec in all_specs() {
            assert!(seen.insert(spec.name), "duplicate family {}", spec.name);
            let mut rebuilt = spec.stem().to_owned();
            if let Some(unit) = spec.unit {
                rebuilt = format!("{rebuilt}_{unit}");
            }
            if spec.counter {
                rebuilt.push_str("_total");
            }
            assert_eq!(rebuilt, spec.name);
            assert!(spec.name.starts_with("kubesignal_"), "{}", spec.name);
            // OpenMetrics would need these escaped in HELP; keep the texts plain.
            assert!(!spec.help.is_empty() && !spec.help.contains(['\n', '"', '\\']));
        }
    }

    #[test]
    fn the_text_format_names_counters_with_total_and_has_no_unit_or_eof() {
        let text = render(sample_snapshot(), Format::PrometheusText).unwrap();
        assert!(
            text.contains("# TYPE kubesignal_node_cpu_usage_seconds_total counter\n"),
            "{text}"
        );
        assert!(text.contains("\nkubesignal_node_cpu_usage_seconds_total{node=\"n1\"} 12.5\n"));
        assert!(text.contains(
            "kubesignal_node_cpu_pressure_seconds_total{node=\"n1\",kind=\"full\"} 0.25\n"
        ));
        assert!(
            text.contains("kubesignal_node_filesystem_used_ratio{node=\"n1\",fs=\"image\"} 0.25\n")
        );
        assert!(text.contains(
            "kubesignal_container_restarts_total{node=\"n1\",namespace=\"shop\",pod=\"web-7d4b9-x2\",\
             workload=\"web\",workload_kind=\"Deployment\",container=\"app\"} 3.0\n"
        ));
        assert!(text.contains("reason=\"OOMKilled\"} 1.0\n"));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF") && !text.contains("_created"));
        // Families without samples are left out entirely.
        assert!(!text.contains("kubesignal_node_memory_capacity_bytes"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = render(sample_snapshot(), Format::OpenMetrics).unwrap();
        assert!(
            text.contains("# TYPE kubesignal_node_cpu_usage_seconds counter\n"),
            "{text}"
        );
        assert!(text.contains("# UNIT kubesignal_node_cpu_usage_seconds seconds\n"));
        assert!(text.contains("\nkubesignal_node_cpu_usage_seconds_total{node=\"n1\"} 12.5\n"));
        assert!(text.contains("# UNIT kubesignal_container_memory_limit_bytes bytes\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn series_count_matches_the_rendered_samples() {
        let snap = sample_snapshot();
        let expected = series_count(&snap);
        let text = render(snap, Format::PrometheusText).unwrap();
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(expected, samples);
        assert_eq!(samples, 9);
    }

    #[test]
    fn a_scrape_shows_only_the_latest_snapshot() {
        let cell = Arc::new(SnapshotCell::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(UseCollector::new(cell.clone())));
        cell.store(sample_snapshot());
        let before = encode(&registry, Format::PrometheusText).unwrap();
        assert!(before.contains("container=\"app\""));
        let mut without_pod = sample_snapshot();
        without_pod.containers.clear();
        cell.store(without_pod);
        let after = encode(&registry, Format::PrometheusText).unwrap();
        assert!(!after.contains("pod=\"web-7d4b9-x2\""), "{after}");
        assert!(after.contains("kubesignal_node_cpu_usage_seconds_total{node=\"n1\"} 12.5"));
    }

    #[test]
    fn nothing_is_rendered_before_the_first_collection() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(UseCollector::new(Arc::default())));
        assert_eq!(encode(&registry, Format::PrometheusText).unwrap(), "");
    }

    #[test]
    fn prometheus_gets_openmetrics_and_plain_clients_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.2"
            )),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::PrometheusText
        );
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert!(
            Format::PrometheusText
                .content_type()
                .contains("version=0.0.4")
        );
    }
}
