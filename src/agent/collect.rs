//! One collection: fetch what the source offers, decode it, join it into a [`UseSnapshot`].
//! Failures are counted per source and reason; the caller bounds the whole collection in time.

use std::time::Instant;

use super::kubelet::PayloadError;
use super::kubelet::cadvisor::{CadvisorReader, CadvisorStats};
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
                    fetch_cadvisor(client, metrics),
                );
                let summary = decoded(Endpoint::Summary, metrics, Summary::from_json(&summary?))?;
                let pods = decoded(Endpoint::Pods, metrics, PodList::from_json(&pods?))?;
                // Throttling, OOM events and capacity are extras: a node whose cAdvisor
                // endpoint fails still gets its usage series.
                let cadvisor = cadvisor.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cAdvisor series skipped this collection");
                    CadvisorStats::default()
                });
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

/// Fetches and parses the cAdvisor text chunk by chunk, so a busy node's multi-megabyte payload
/// is never held whole.
async fn fetch_cadvisor(
    client: &KubeletClient,
    metrics: &SelfMetrics,
) -> Result<CadvisorStats, CollectError> {
    let endpoint = Endpoint::Cadvisor;
    let started = Instant::now();
    let mut reader = CadvisorReader::new();
    let mut parse_error = None;
    let fetched = client
        .fetch_with(endpoint, |chunk| match reader.feed(chunk) {
            Ok(()) => true,
            Err(e) => {
                parse_error = Some(e);
                false
            }
        })
        .await;
    metrics.duration(endpoint.source_label(), started.elapsed().as_secs_f64());
    if let Err(e) = fetched {
        metrics.error(endpoint.source_label(), e.reason());
        return Err(e.into());
    }
    let parsed = match parse_error {
        Some(e) => Err(e),
        None => reader.finish(),
    };
    Ok(decoded(endpoint, metrics, parsed)?)
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
