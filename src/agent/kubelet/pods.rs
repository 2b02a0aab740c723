//! The kubelet's pod list (`/pods`, a core/v1 `PodList`), reduced to what kubesignal reads:
//! identity, owners, labels and annotations, resources, and container status.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::{PayloadError, decode_json, null_as_default};

/// The whole `/pods` document.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodList {
    /// The pods bound to this node.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Pod>,
}

impl PodList {
    /// Decodes a `/pods` response body.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PayloadError> {
        decode_json("/pods", bytes)
    }
}

/// One pod.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pod {
    /// Name, namespace, owners, labels, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Containers and their resources.
    #[serde(default)]
    pub spec: PodSpec,
    /// Phase, IP and container statuses.
    #[serde(default)]
    pub status: PodStatus,
}

impl Pod {
    /// The container spec (app, init or sidecar) with this name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.spec
            .containers
            .iter()
            .chain(&self.spec.init_containers)
            .find(|c| c.name == name)
    }

    /// The status (app or init container) of the container with this name.
    pub fn container_status(&self, name: &str) -> Option<&ContainerStatus> {
        self.status
            .container_statuses
            .iter()
            .chain(&self.status.init_container_statuses)
            .find(|c| c.name == name)
    }

    /// True once the pod has finished for good (`Succeeded` or `Failed`): its containers no
    /// longer run and its resources are released.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// The metadata fields kubesignal uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Pod name.
    #[serde(default)]
    pub name: String,
    /// Pod namespace.
    #[serde(default)]
    pub namespace: String,
    /// Pod UID.
    #[serde(default)]
    pub uid: String,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (scrape hints, owners).
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Objects that own this pod; at most one is the controller.
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_references: Vec<OwnerReference>,
}

/// A reference to an owning object.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// API group and version of the owner.
    #[serde(default)]
    pub api_version: String,
    /// Kind of the owner (ReplicaSet, StatefulSet, Node, ...).
    #[serde(default)]
    pub kind: String,
    /// Name of the owner.
    #[serde(default)]
    pub name: String,
    /// UID of the owner.
    #[serde(default)]
    pub uid: String,
    /// Whether this owner is the managing controller.
    pub controller: Option<bool>,
}

/// The spec fields kubesignal uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod is bound to.
    pub node_name: Option<String>,
    /// App containers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    /// Init containers, including sidecars (`restartPolicy: Always`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_containers: Vec<Container>,
    /// Pod-level requests and limits (Kubernetes 1.34+); when set they bound the whole pod.
    pub resources: Option<ResourceRequirements>,
}

/// One container of the spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Requests and limits.
    pub resources: Option<ResourceRequirements>,
    /// `Always` on an init container makes it a sidecar that runs alongside the app.
    pub restart_policy: Option<String>,
    /// Declared ports (where a scrape target without a `prometheus.io/port` annotation is).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<ContainerPort>,
}

/// A port a container declares.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name (`http-metrics`, `https`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// The port number in the pod's network namespace.
    pub container_port: u16,
    /// `TCP` (the default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl Container {
    /// True for an init container that keeps running next to the app containers.
    pub fn is_sidecar(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }
}

/// Requests and limits of a container or pod.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResourceRequirements {
    /// Upper bounds, by resource name (`cpu`, `memory`, ...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub limits: BTreeMap<String, Quantity>,
    /// Reserved amounts, by resource name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub requests: BTreeMap<String, Quantity>,
}

impl ResourceRequirements {
    /// CPU limit in cores.
    pub fn cpu_limit(&self) -> Option<f64> {
        self.limits.get("cpu").map(|q| q.0)
    }
    /// CPU request in cores.
    pub fn cpu_request(&self) -> Option<f64> {
        self.requests.get("cpu").map(|q| q.0)
    }
    /// Memory limit in bytes.
    pub fn memory_limit(&self) -> Option<f64> {
        self.limits.get("memory").map(|q| q.0)
    }
    /// Memory request in bytes.
    pub fn memory_request(&self) -> Option<f64> {
        self.requests.get("memory").map(|q| q.0)
    }
}

/// The status fields kubesignal uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub phase: Option<String>,
    /// The pod's IP, for scraping its metrics.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// App container statuses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
    /// Init and sidecar container statuses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

/// Status of one container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// How many times the container restarted.
    #[serde(default)]
    pub restart_count: u64,
    /// The previous run of the container, if it ended.
    pub last_state: Option<ContainerState>,
}

impl ContainerStatus {
    /// Why the previous run ended (`OOMKilled`, `Error`, `Completed`, ...), when it did.
    pub fn last_terminated_reason(&self) -> Option<&str> {
        self.last_state
            .as_ref()?
            .terminated
            .as_ref()?
            .reason
            .as_deref()
            .filter(|r| !r.is_empty())
    }
}

/// A container state; kubesignal only reads the terminated one.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerState {
    /// Set when the run ended.
    pub terminated: Option<ContainerStateTerminated>,
}

/// How a container run ended.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    /// Short reason, e.g. `OOMKilled`.
    pub reason: Option<String>,
    /// The process's exit code.
    #[serde(default)]
    pub exit_code: i64,
}

/// A Kubernetes resource quantity (`500m`, `30Mi`, `1.5`, `2e3`) as a plain number in base
/// units: cores for CPU, bytes for memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantity(pub f64);

impl std::str::FromStr for Quantity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = s.as_bytes();
        // The number is an optional sign, digits and at most one decimal point.
        let mut end = 0;
        if matches!(bytes.first(), Some(b'+' | b'-')) {
            end = 1;
        }
        let digits_start = end;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
            end += 1;
        }
        let number = &s[..end];
        if end == digits_start || number[digits_start..].matches('.').count() > 1 {
            return Err(format!("invalid quantity {s:?}: expected a number first"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid quantity {s:?}: bad number {number:?}"))?;
        let suffix = &s[end..];
        let multiplier = match suffix {
            "" => 1.0,
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024.0,
            "Mi" => 1024.0f64.powi(2),
            "Gi" => 1024.0f64.powi(3),
            "Ti" => 1024.0f64.powi(4),
            "Pi" => 1024.0f64.powi(5),
            "Ei" => 1024.0f64.powi(6),
            _ => {
                let exponent = suffix
                    .strip_prefix(['e', 'E'])
                    .and_then(|e| e.parse::<i32>().ok())
                    .ok_or_else(|| format!("invalid quantity {s:?}: unknown suffix {suffix:?}"))?;
                10f64.powi(exponent)
            }
        };
        Ok(Quantity(value * multiplier))
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl serde::de::Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a resource quantity such as \"500m\" or \"30Mi\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                v.parse().map_err(E::custom)
            }

            // The API server always sends strings; hand-written payloads sometimes carry numbers.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v as f64))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v as f64))
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> f64 {
        s.parse::<Quantity>().unwrap().0
    }

    #[test]
    fn quantities_use_decimal_binary_and_exponent_suffixes() {
        assert_eq!(q("500m"), 0.5);
        assert_eq!(q("2"), 2.0);
        assert_eq!(q("0.25"), 0.25);
        assert_eq!(q("30Mi"), 31_457_280.0);
        assert_eq!(q("5M"), 5_000_000.0);
        assert_eq!(q("1Gi"), 1_073_741_824.0);
        assert_eq!(q("2e3"), 2000.0);
        assert_eq!(q("1E"), 1e18);
        assert_eq!(q("1500u"), 0.0015);
    }

    #[test]
    fn malformed_quantities_are_rejected_with_the_text() {
        let err = "12Q".parse::<Quantity>().unwrap_err();
        assert!(err.contains("\"12Q\"") && err.contains("suffix"), "{err}");
        assert!("Mi".parse::<Quantity>().is_err());
        assert!("1.2.3".parse::<Quantity>().is_err());
    }

    #[test]
    fn a_bad_quantity_in_a_pod_list_names_the_field() {
        let json = br#"{"items":[{"metadata":{"name":"a"},"spec":{"containers":[
            {"name":"c","resources":{"limits":{"cpu":"lots"}}}]}}]}"#;
        let err = PodList::from_json(json).unwrap_err().to_string();
        assert!(
            err.contains("items[0].spec.containers[0].resources.limits.cpu"),
            "{err}"
        );
        assert!(err.contains("lots"), "{err}");
    }

    #[test]
    fn null_lists_from_go_are_read_as_empty() {
        let json = br#"{"items":[{"metadata":{"name":"a","ownerReferences":null,"labels":null},
            "spec":{"containers":null},"status":{"containerStatuses":null}}]}"#;
        let pods = PodList::from_json(json).unwrap();
        assert_eq!(pods.items[0].metadata.name, "a");
        assert!(pods.items[0].spec.containers.is_empty());
        assert!(pods.items[0].metadata.owner_references.is_empty());
    }
}
