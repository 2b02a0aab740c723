//! The agent's `/metrics`: the latest snapshot of every component plus the agent's own health,
//! encoded at scrape time as OpenMetrics or the Prometheus text format, as the scraper asks.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;

use super::render::{Format, SnapshotCell, UseCollector};
use super::self_metrics::SelfMetrics;
use super::use_series::UseSnapshot;

/// Holds what `/metrics` serves; cheap to clone.
#[derive(Clone, Debug)]
pub struct Exporter {
    registry: Arc<Registry>,
    snapshot: Arc<SnapshotCell>,
    self_metrics: SelfMetrics,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new(Vec::new())
    }
}

impl Exporter {
    /// An exporter with an empty USE snapshot, serving `components` (the RED series) too.
    pub fn new(components: Vec<Box<dyn Collector>>) -> Self {
        let snapshot = Arc::new(SnapshotCell::default());
        let self_metrics = SelfMetrics::default();
        let mut registry = Registry::default();
        self_metrics.register(&mut registry);
        registry.register_collector(Box::new(UseCollector::new(snapshot.clone())));
        for component in components {
            registry.register_collector(component);
        }
        Exporter {
            registry: Arc::new(registry),
            snapshot,
            self_metrics,
        }
    }

    /// The agent's own health series.
    pub fn self_metrics(&self) -> &SelfMetrics {
        &self.self_metrics
    }

    /// Replaces the exported USE snapshot: series of pods and containers that are no longer
    /// in it disappear from the next scrape.
    pub fn publish(&self, snapshot: UseSnapshot) {
        self.self_metrics
            .series
            .set(super::render::series_count(&snapshot) as i64);
        self.snapshot.store(snapshot);
    }

    /// Drops every USE series (after a failed collection: absent is more honest than stale).
    /// The node name is kept for the next snapshot's labels.
    pub fn clear(&self, node: &str) {
        self.publish(UseSnapshot {
            node: node.to_string(),
            ..UseSnapshot::default()
        });
    }

    /// Encodes everything in `format`.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        super::render::encode(&self.registry, format)
    }

    /// `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

async fn metrics(State(exporter): State<Exporter>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match exporter.encode(format) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        ),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                "encoding failed\n".to_string(),
            )
        }
    }
}
