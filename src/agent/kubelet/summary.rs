//! The kubelet Summary API (`/stats/summary`), reduced to the fields kubesignal reads.
//!
//! Every field is optional or defaulted: kubelets of different versions and runtimes omit
//! different parts (no PSI before 1.33 or on cgroup v1, no pod-level CPU in old payloads, no
//! `usageNanoCores` with some CRI runtimes).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{PayloadError, decode_json, null_as_default};

/// The whole `/stats/summary` document.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Summary {
    /// Node-level usage.
    #[serde(default)]
    pub node: NodeStats,
    /// One entry per pod the kubelet has stats for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pods: Vec<PodStats>,
}

impl Summary {
    /// Decodes a `/stats/summary` response body.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PayloadError> {
        decode_json("/stats/summary", bytes)
    }
}

/// Node-level usage.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name as the kubelet knows it.
    #[serde(default)]
    pub node_name: String,
    /// Kubelet, runtime, pods and misc system cgroups.
    #[serde(default, deserialize_with = "null_as_default")]
    pub system_containers: Vec<ContainerStats>,
    /// CPU of the whole node.
    pub cpu: Option<CpuStats>,
    /// Memory of the whole node.
    pub memory: Option<MemoryStats>,
    /// I/O pressure (kubelet 1.33+ on cgroup v2).
    pub io: Option<IoStats>,
    /// The node's network.
    pub network: Option<NetworkStats>,
    /// The node's root filesystem.
    pub fs: Option<FsStats>,
    /// Filesystems of the container runtime.
    pub runtime: Option<RuntimeStats>,
}

/// CPU usage of a node, pod or container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When the sample was taken; used to derive a rate between two collections.
    pub time: Option<DateTime<Utc>>,
    /// Current usage in billionths of a core; missing or 0 with some runtimes.
    pub usage_nano_cores: Option<u64>,
    /// Cumulative CPU time in nanoseconds.
    pub usage_core_nano_seconds: Option<u64>,
    /// Pressure stall information.
    pub psi: Option<PsiStats>,
}

/// Pressure stall information of one resource.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PsiStats {
    /// Time during which all non-idle tasks stalled.
    pub full: Option<PsiData>,
    /// Time during which at least one task stalled.
    pub some: Option<PsiData>,
}

/// One PSI line. `total` is the kernel's cumulative stall time in MICROseconds (the API docs say
/// nanoseconds; the kubelet passes the kernel value through unchanged).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct PsiData {
    /// Cumulative stall time, microseconds.
    #[serde(default)]
    pub total: u64,
    /// Share of the last 10 s stalled, as a percentage.
    #[serde(default)]
    pub avg10: f64,
    /// Share of the last 60 s stalled, as a percentage.
    #[serde(default)]
    pub avg60: f64,
    /// Share of the last 300 s stalled, as a percentage.
    #[serde(default)]
    pub avg300: f64,
}

/// Memory usage of a node, pod or container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// Memory left before the limit (or the node's capacity).
    pub available_bytes: Option<u64>,
    /// Total usage including reclaimable page cache.
    pub usage_bytes: Option<u64>,
    /// Usage that cannot be reclaimed easily: what the OOM killer and eviction look at.
    pub working_set_bytes: Option<u64>,
    /// Pressure stall information.
    pub psi: Option<PsiStats>,
}

/// I/O pressure of a node, pod or container.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct IoStats {
    /// Pressure stall information.
    pub psi: Option<PsiStats>,
}

/// Network counters: the default interface's at the top level, every interface in `interfaces`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    /// Name of the default interface.
    pub name: Option<String>,
    /// Bytes received on the default interface.
    pub rx_bytes: Option<u64>,
    /// Receive errors on the default interface.
    pub rx_errors: Option<u64>,
    /// Bytes sent on the default interface.
    pub tx_bytes: Option<u64>,
    /// Transmit errors on the default interface.
    pub tx_errors: Option<u64>,
    /// Every interface, the default one included.
    #[serde(default, deserialize_with = "null_as_default")]
    pub interfaces: Vec<InterfaceStats>,
}

/// Counters of one network interface.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    pub rx_errors: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Transmit errors.
    pub tx_errors: Option<u64>,
}

/// Use of one filesystem.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// Bytes free for unprivileged users.
    pub available_bytes: Option<u64>,
    /// Size of the filesystem.
    pub capacity_bytes: Option<u64>,
    /// Bytes used (for a pod or container: by that pod or container).
    pub used_bytes: Option<u64>,
}

/// Filesystems of the container runtime.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images are stored.
    pub image_fs: Option<FsStats>,
    /// Where container writable layers are stored (split image filesystems, 1.30+).
    pub container_fs: Option<FsStats>,
}

/// Identity of a pod in the Summary API.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodReference {
    /// Pod name.
    #[serde(default)]
    pub name: String,
    /// Pod namespace.
    #[serde(default)]
    pub namespace: String,
    /// Pod UID.
    #[serde(default)]
    pub uid: String,
}

/// Usage of one pod.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    #[serde(default)]
    pub pod_ref: PodReference,
    /// Usage of each running container.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<ContainerStats>,
    /// CPU of the pod cgroup (absent in payloads before about 1.10).
    pub cpu: Option<CpuStats>,
    /// Memory of the pod cgroup.
    pub memory: Option<MemoryStats>,
    /// Network of the pod's sandbox.
    pub network: Option<NetworkStats>,
    /// Ephemeral storage used by the pod (writable layers, logs, emptyDirs).
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<FsStats>,
}

/// Usage of one container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Container name as in the pod spec.
    #[serde(default)]
    pub name: String,
    /// CPU of the container.
    pub cpu: Option<CpuStats>,
    /// Memory of the container.
    pub memory: Option<MemoryStats>,
    /// I/O pressure of the container.
    pub io: Option<IoStats>,
    /// The container's writable layer.
    pub rootfs: Option<FsStats>,
    /// The container's logs.
    pub logs: Option<FsStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_typed_field_is_reported_with_its_path_and_position() {
        let json = br#"{"node":{"nodeName":"n","cpu":{"usageCoreNanoSeconds":"lots"}},"pods":[]}"#;
        let err = Summary::from_json(json).unwrap_err().to_string();
        assert!(err.contains("/stats/summary"), "{err}");
        assert!(err.contains("node.cpu.usageCoreNanoSeconds"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
    }

    #[test]
    fn a_truncated_body_is_an_error_not_a_partial_summary() {
        let json =
            br#"{"node":{"nodeName":"n","cpu":{"usageCoreNanoSeconds":1}},"pods":[{"podRef""#;
        let err = Summary::from_json(json).unwrap_err().to_string();
        assert!(err.contains("EOF"), "{err}");
    }

    #[test]
    fn trailing_garbage_after_the_document_is_refused() {
        let err = Summary::from_json(br#"{"node":{}} x"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn missing_and_null_parts_read_as_absent() {
        let s = Summary::from_json(br#"{"node":{"nodeName":"n","cpu":null},"pods":null}"#).unwrap();
        assert!(s.node.cpu.is_none() && s.pods.is_empty());
    }
}
