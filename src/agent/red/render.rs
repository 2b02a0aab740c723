//! The RED families and per-target health on `/metrics`, through `prometheus-client`'s
//! [`Collector`] trait: [`RedMetrics`] is registered once and encodes the latest published
//! [`RedSnapshot`] on every scrape of the agent.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::{Registry, Unit};

use super::aggregate::{GuardCounts, OutputKey, OutputValues, WorkloadRef};

/// Health of one target at its last scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetStatus {
    /// Namespace.
    pub namespace: String,
    /// Workload.
    pub workload: String,
    /// Pod (for a static target: the URL's `host:port`).
    pub pod: String,
    /// Whether the last scrape succeeded.
    pub up: bool,
    /// How long the last scrape took, in seconds.
    pub scrape_duration_seconds: f64,
    /// Samples in the last successful scrape (0 after a failure).
    pub samples: usize,
}

/// Everything one collection produced, ready to encode.
#[derive(Clone, Debug, Default)]
pub struct RedSnapshot {
    /// Value of the `node` label.
    pub node: String,
    /// RED series, sorted by labels.
    pub series: Vec<(OutputKey, OutputValues)>,
    /// One entry per target of the last collection.
    pub targets: Vec<TargetStatus>,
    /// Failed scrapes so far per workload and reason (`timeout`, `body_limit`, `sample_limit`,
    /// `parse`, `http_status`, `connect`).
    pub scrape_failures: Vec<(WorkloadRef, &'static str, u64)>,
    /// Route-cap and bucket-mismatch counts per workload.
    pub guards: Vec<(WorkloadRef, GuardCounts)>,
    /// Source series the aggregator keeps state for.
    pub source_series: usize,
}

/// The shared, latest snapshot: the collector publishes into it, `/metrics` reads from it.
#[derive(Clone, Debug, Default)]
pub struct RedMetrics {
    latest: Arc<RwLock<Arc<RedSnapshot>>>,
}

impl RedMetrics {
    /// Replaces the snapshot served on `/metrics`.
    pub fn publish(&self, snapshot: Arc<RedSnapshot>) {
        // A poisoned lock only means a reader panicked; the data is a plain Arc swap.
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// The snapshot currently served.
    pub fn latest(&self) -> Arc<RedSnapshot> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Collector for RedMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.latest(), encoder)
    }
}

/// Encodes a snapshot as OpenMetrics text (what a registry holding only the RED families gives).
pub fn encode_text(snapshot: &RedSnapshot) -> String {
    let metrics = RedMetrics::default();
    metrics.publish(Arc::new(snapshot.clone()));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

type Labels<'a> = Vec<(&'a str, &'a str)>;
type NoExemplar = Exemplar<Labels<'static>, f64>;

fn red_labels<'a>(node: &'a str, key: &'a OutputKey) -> Labels<'a> {
    vec![
        ("node", node),
        ("namespace", &key.workload.namespace),
        ("workload", &key.workload.workload),
        ("workload_kind", &key.workload.workload_kind),
        ("route", &key.route),
        ("method", &key.method),
        ("code", &key.code),
    ]
}

fn workload_labels(w: &WorkloadRef) -> Labels<'_> {
    vec![("namespace", &w.namespace), ("workload", &w.workload)]
}

fn target_labels(t: &TargetStatus) -> Labels<'_> {
    vec![
        ("namespace", &t.namespace),
        ("workload", &t.workload),
        ("pod", &t.pod),
    ]
}

fn encode_snapshot(s: &RedSnapshot, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let node = s.node.as_str();
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_red_requests",
            "Requests served by the workload's pods on this node (monotonic across pod restarts and deletion).",
            None,
            MetricType::Counter,
        )?;
        for (key, v) in &s.series {
            if let Some(requests) = v.requests {
                let labels = red_labels(node, key);
                m.encode_family(&labels)?
                    .encode_counter::<Labels, f64, f64>(&requests, None::<&NoExemplar>)?;
            }
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_red_errors",
            "Requests that failed on the server side (HTTP 5xx, gRPC server-error codes, or as configured).",
            None,
            MetricType::Counter,
        )?;
        for (key, v) in &s.series {
            if v.requests.is_some() {
                let labels = red_labels(node, key);
                m.encode_family(&labels)?
                    .encode_counter::<Labels, f64, f64>(&v.errors, None::<&NoExemplar>)?;
            }
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_red_request_duration",
            "Request durations with the application's own bucket bounds; summaries give only +Inf.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (key, v) in &s.series {
            let Some(h) = &v.histogram else { continue };
            // The encoder wants per-bucket (not cumulative) counts.
            let mut buckets = Vec::with_capacity(h.cumulative.len());
            let mut previous = 0.0;
            for (i, c) in h.cumulative.iter().enumerate() {
                let bound = h.bounds.get(i).copied().unwrap_or(f64::INFINITY);
                buckets.push((bound, (c - previous).max(0.0).round() as u64));
                previous = c.max(previous);
            }
            let labels = red_labels(node, key);
            m.encode_family(&labels)?.encode_histogram::<Labels>(
                h.sum,
                h.count.max(0.0).round() as u64,
                &buckets,
                None::<&HashMap<usize, NoExemplar>>,
            )?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_target_up",
            "1 when the last scrape of the application target succeeded, 0 otherwise.",
            None,
            MetricType::Gauge,
        )?;
        for t in &s.targets {
            let labels = target_labels(t);
            m.encode_family(&labels)?.encode_gauge(&i64::from(t.up))?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_target_scrape_duration",
            "Duration of the last scrape of the application target.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for t in &s.targets {
            let labels = target_labels(t);
            m.encode_family(&labels)?
                .encode_gauge(&t.scrape_duration_seconds)?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_target_samples",
            "Samples in the last successful scrape of the application target.",
            None,
            MetricType::Gauge,
        )?;
        for t in &s.targets {
            let labels = target_labels(t);
            m.encode_family(&labels)?
                .encode_gauge(&(t.samples as u64))?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_target_scrape_failures",
            "Failed or rejected scrapes of application targets, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (w, reason, n) in &s.scrape_failures {
            let mut labels = workload_labels(w);
            labels.push(("reason", reason));
            m.encode_family(&labels)?
                .encode_counter::<Labels, u64, f64>(n, None::<&NoExemplar>)?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_red_routes_collapsed",
            "Source series whose route was folded into route=\"other\" by the per-workload route cap.",
            None,
            MetricType::Counter,
        )?;
        for (w, g) in &s.guards {
            m.encode_family(&workload_labels(w))?
                .encode_counter::<Labels, u64, f64>(&g.collapsed_routes, None::<&NoExemplar>)?;
        }
    }
    {
        let mut m = encoder.encode_descriptor(
            "kubesignal_agent_red_bucket_mismatches",
            "Source histograms left out of a RED histogram because their bucket bounds differ.",
            None,
            MetricType::Counter,
        )?;
        for (w, g) in &s.guards {
            m.encode_family(&workload_labels(w))?
                .encode_counter::<Labels, u64, f64>(&g.bucket_mismatches, None::<&NoExemplar>)?;
        }
    }
    let mut m = encoder.encode_descriptor(
        "kubesignal_agent_red_source_series",
        "Application series the RED aggregator keeps state for.",
        None,
        MetricType::Gauge,
    )?;
    m.encode_gauge(&(s.source_series as u64))?;
    Ok(())
}
