//! The agent's own health series: how long each source took, why collections failed, how many
//! series it exports, which build it is.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of per-source series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `kubelet_summary`, `kubelet_pods`, `kubelet_cadvisor`, `local`, `collection`, ...
    pub source: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Where the error happened.
    pub source: String,
    /// A short, bounded reason (`timeout`, `unauthorized`, `too_large`, `decode`, ...).
    pub reason: String,
}

/// Labels of the collection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `failure`.
    pub outcome: String,
}

/// Labels of the build info series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Handles on the self-metric families; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SelfMetrics {
    /// Duration of the last fetch or collection, per source.
    pub scrape_duration: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    /// Failures per source and reason.
    pub scrape_errors: Family<ErrorLabels, Counter>,
    /// Collections attempted, per outcome.
    pub collections: Family<OutcomeLabels, Counter>,
    /// Series in the last exported snapshot.
    pub series: Gauge,
    /// Unix time of the last successful collection.
    pub last_success: Gauge<f64, AtomicU64>,
}

impl SelfMetrics {
    /// Registers every family in `registry` (names get the `kubesignal_agent_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let agent = registry.sub_registry_with_prefix("kubesignal_agent");
        agent.register(
            "scrape_duration_seconds",
            "Seconds the last fetch of each source took (collection: the whole collection)",
            self.scrape_duration.clone(),
        );
        agent.register(
            "scrape_errors",
            "Failed fetches or parses, by source and reason",
            self.scrape_errors.clone(),
        );
        agent.register(
            "collections",
            "Collections by outcome (success or failure)",
            self.collections.clone(),
        );
        agent.register(
            "series",
            "USE samples in the latest snapshot",
            self.series.clone(),
        );
        agent.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful collection",
            self.last_success.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        agent.register("build_info", "The running kubesignal build", build);
    }

    /// Counts one failure of `source` for `reason`.
    pub fn error(&self, source: &str, reason: &str) {
        self.scrape_errors
            .get_or_create(&ErrorLabels {
                source: source.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records how long `source` took.
    pub fn duration(&self, source: &str, seconds: f64) {
        self.scrape_duration
            .get_or_create(&SourceLabels {
                source: source.to_string(),
            })
            .set(seconds);
    }

    /// Counts a collection outcome.
    pub fn collection(&self, outcome: &str) {
        self.collections
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
