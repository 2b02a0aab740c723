//! One collection: fetch what the source offers, decode it, join it into a [`UseSnapshot`].
//! Failures are counted per source and reason; the caller bounds the whole collection in time.

use std::time::Instant;

use super::kubelet::PayloadError;
use super::kubelet::cadvisor::CadvisorStats;
use super::kubelet::client::{Endpoint, KubeletClient, KubeletError};
use super::kubelet::pods::PodList;
use super::kubelet::summary::Summary;
use super::local::{LocalError, LocalSource};
use super::self_metrics::SelfMetrics;
use super::use_series::{UseSnapshot, UseState};

/// Why a collection produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A kubelet endpoint could not be fetched.
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    /// A kubelet payload could not be decoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The host could not be read.
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// Where usage comes from, with what it keeps between collections.
#[derive(Debug)]
pub enum Source {
    /// The kubelet of this node.
    Kubelet {
        /// Client for the kubelet (direct or through the API server).
        client: KubeletClient,
        /// Node name used in the `node` label.
        node: String,
        /// State carried between joins (CPU counters for rates).
        state: UseState,
    },
    /// `/proc` of this host.
    Local {
        /// The reader.
        source: LocalSource,
        /// Node name used in the `node` label.
        node: String,
    },
}

impl Source {
    /// The `source` label of this source's self-metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Kubelet { .. } => "kubelet",
            Source::Local { .. } => "local",
        }
    }

    /// The node name this source reports for.
    pub fn node(&self) -> &str {
        match self {
            Source::Kubelet { node, .. } | Source::Local { node, .. } => node,
        }
    }

    /// Runs one collection. The pod list is returned too: RED target discovery reads it.
    pub async fn collect(
        &mut self,
        metrics: &SelfMetrics,
    ) -> Result<(UseSnapshot, Option<PodList>), CollectError> {
        match self {
            Source::Kubelet {
                client,
                node,
                state,
            } => {
                let (summary, pods, cadvisor) = tokio::join!(
                    fetch(client, Endpoint::Summary, metrics),
                    fetch(client, Endpoint::Pods, metrics),
                    fetch(client, Endpoint::Cadvisor, metrics),
                );
                let summary = decoded(Endpoint::Summary, metrics, Summary::from_json(&summary?))?;
                let pods = decoded(Endpoint::Pods, metrics, PodList::from_json(&pods?))?;
                // Throttling, OOM events and capacity are extras: a node whose cAdvisor
                // endpoint fails still gets its usage series.
                let cadvisor = match cadvisor {
                    Ok(body) => decoded(Endpoint::Cadvisor, metrics, parse_cadvisor(&body))
                        .unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "cAdvisor payload ignored");
                            CadvisorStats::default()
                        }),
                    Err(e) => {
                        tracing::warn!(error = %e, "cAdvisor endpoint unavailable");
                        CadvisorStats::default()
                    }
                };
                let snapshot = state.join(node, &summary, &pods, &cadvisor);
                Ok((snapshot, Some(pods)))
            }
            Source::Local { source, node } => {
                let started = Instant::now();
                let result = source.read();
                metrics.duration("local", started.elapsed().as_secs_f64());
                let (reading, utilization) =
                    result.inspect_err(|_| metrics.error("local", "read"))?;
                Ok((super::local::snapshot(node, &reading, utilization), None))
            }
        }
    }
}

/// Fetches one endpoint, timing it and counting its failure.
async fn fetch(
    client: &KubeletClient,
    endpoint: Endpoint,
    metrics: &SelfMetrics,
) -> Result<Vec<u8>, KubeletError> {
    let started = Instant::now();
    let result = client.fetch(endpoint).await;
    metrics.duration(endpoint.source_label(), started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics.error(endpoint.source_label(), e.reason());
    }
    result
}

/// Counts a decoding failure of `endpoint`.
fn decoded<T>(
    endpoint: Endpoint,
    metrics: &SelfMetrics,
    result: Result<T, PayloadError>,
) -> Result<T, PayloadError> {
    if result.is_err() {
        metrics.error(endpoint.source_label(), "decode");
    }
    result
}

/// Interim cAdvisor reader until the kubelet module grows its own.
fn parse_cadvisor(body: &[u8]) -> Result<CadvisorStats, PayloadError> {
    use crate::exposition::{Entry, Format, Parser};
    let text = std::str::from_utf8(body).map_err(|e| PayloadError::Cadvisor(e.to_string()))?;
    let mut stats = CadvisorStats::default();
    let keep: fn(&str) -> bool = |name| {
        name.starts_with("machine_")
            || name.starts_with("container_cpu_cfs")
            || name == "container_oom_events_total"
    };
    for entry in Parser::new(text, Format::PrometheusText).with_name_filter(keep) {
        let Entry::Sample(s) = entry.map_err(|e| PayloadError::Cadvisor(e.to_string()))? else {
            continue;
        };
        match s.name.as_ref() {
            "machine_cpu_cores" => stats.machine_cpu_cores = Some(s.value),
            "machine_memory_bytes" => stats.machine_memory_bytes = Some(s.value),
            name => {
                let container = s.label("container").or_else(|| s.label("container_name"));
                let pod = s.label("pod").or_else(|| s.label("pod_name"));
                let (Some(ns), Some(pod), Some(c)) = (s.label("namespace"), pod, container) else {
                    continue;
                };
                if c.is_empty() || c == "POD" {
                    continue;
                }
                let counters = stats.container_mut(ns, pod, c);
                match name {
                    "container_cpu_cfs_periods_total" => counters.cfs_periods_total = Some(s.value),
                    "container_cpu_cfs_throttled_periods_total" => {
                        counters.cfs_throttled_periods_total = Some(s.value)
                    }
                    "container_oom_events_total" => counters.oom_events_total = Some(s.value),
                    _ => {}
                }
            }
        }
    }
    Ok(stats)
}
