//! RED signals from the applications on this node: discover targets, scrape them within limits,
//! normalize each dialect onto one schema, aggregate per workload monotonically, and encode the
//! result on the agent's `/metrics`.
//!
//! How the agent uses it:
//!
//! ```text
//! let config = RedConfig::from_file(path)?;            // the `red:` section; defaults without it
//! let mut red = RedCollector::new(config, node, interval)?;
//! registry.register_collector(Box::new(red.metrics())); // once: /metrics encodes the latest result
//! let statics = red.static_targets(&args.static_target)?;
//! loop {                                               // once per interval
//!     let mut targets = targets::pod_targets(&pod_list, node);
//!     targets.extend(statics.iter().cloned());
//!     red.collect(targets).await;                      // publishes the new snapshot itself
//! }
//! ```
//!
//! `collect` spreads the scrapes over `spread` (each target at a fixed offset from a hash of its
//! URL) and returns after the last one, so the interval must exceed `spread + scrape_timeout`
//! (the default spread guarantees that).

pub mod aggregate;
pub mod config;
pub mod dialect;
pub mod render;
pub mod scrape;
pub mod targets;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exposition::Format;
use aggregate::{Aggregator, WorkloadRef};
use config::RedConfig;
use dialect::{Dialects, ExtractError, Extracted};
use render::{RedMetrics, RedSnapshot, TargetStatus};
use scrape::FetchError;
pub use targets::Target;

/// Errors setting up RED collection.
#[derive(Debug, thiserror::Error)]
pub enum RedError {
    /// The HTTP client could not be built (TLS roots).
    #[error("building the HTTP client for application targets: {0}")]
    Client(#[from] reqwest::Error),
    /// A static target is unusable.
    #[error(transparent)]
    Target(#[from] targets::TargetError),
}

/// Why one scrape gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Fetching failed (timeout, body limit, status, connection).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The body was malformed or over the sample limit.
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

impl ScrapeError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Fetch(e) => e.reason(),
            ScrapeError::Extract(ExtractError::SampleLimit { .. }) => "sample_limit",
            ScrapeError::Extract(_) => "parse",
        }
    }
}

/// The outcome of scraping one target.
#[derive(Debug)]
pub struct Scraped {
    /// The target.
    pub target: Target,
    /// Its observations, or why there are none.
    pub result: Result<Extracted, ScrapeError>,
    /// How long fetching and parsing took.
    pub duration: Duration,
}

/// RED collection state kept across collections.
#[derive(Debug)]
pub struct RedCollector {
    config: RedConfig,
    node: String,
    dialects: Arc<Dialects>,
    client: reqwest::Client,
    spread: Duration,
    aggregator: Aggregator,
    failures: BTreeMap<(WorkloadRef, &'static str), u64>,
    metrics: RedMetrics,
}

impl RedCollector {
    /// A collector for the agent on `node`, collecting every `interval`. Scrapes are spread
    /// over `config.spread`, by default half of what the interval leaves after the timeout.
    pub fn new(
        config: RedConfig,
        node: impl Into<String>,
        interval: Duration,
    ) -> Result<Self, RedError> {
        let spread = config
            .spread
            .unwrap_or_else(|| interval.saturating_sub(config.scrape_timeout) / 2);
        Ok(Self {
            dialects: Arc::new(Dialects::new(config.effective_rules())),
            client: scrape::client()?,
            spread,
            aggregator: Aggregator::new(config.max_routes_per_workload, config.state_ttl),
            failures: BTreeMap::new(),
            metrics: RedMetrics::default(),
            node: node.into(),
            config,
        })
    }

    /// The handle `/metrics` encodes from: register it once with
    /// `registry.register_collector(Box::new(collector.metrics()))`.
    pub fn metrics(&self) -> RedMetrics {
        self.metrics.clone()
    }

    /// Targets for the `--static-target` URLs, placed by the config's `static_targets`.
    pub fn static_targets(&self, urls: &[String]) -> Result<Vec<Target>, RedError> {
        Ok(targets::static_targets(urls, &self.config.static_targets)?)
    }

    /// Scrapes every target once (each at its fixed offset in the spread window, at most
    /// `max_concurrent_scrapes` at a time), folds the results into the RED series, publishes
    /// the new snapshot to [`RedCollector::metrics`] and returns it. Never fails: a failed target
    /// is reported as down and counted, and the others are unaffected.
    pub async fn collect(&mut self, targets: Vec<Target>) -> Arc<RedSnapshot> {
        let mut unique = HashSet::new();
        let targets: Vec<Target> = targets
            .into_iter()
            .filter(|t| unique.insert(t.id()))
            .collect();
        let started = tokio::time::Instant::now();
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_scrapes));
        let mut tasks = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let offset = scrape::spread_offset(&target.url, self.spread);
            let (permits, client, dialects) =
                (permits.clone(), self.client.clone(), self.dialects.clone());
            let (url, timeout) = (target.url.clone(), self.config.scrape_timeout);
            let (max_body, sample_limit) = (self.config.max_body_bytes, self.config.sample_limit);
            tasks.spawn(async move {
                tokio::time::sleep_until(started + offset).await;
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                let t0 = Instant::now();
                let result =
                    scrape_one(&client, &dialects, &url, timeout, max_body, sample_limit).await;
                (index, result, t0.elapsed())
            });
        }
        let mut results: Vec<Option<(Result<Extracted, ScrapeError>, Duration)>> =
            (0..targets.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result, took)) => results[index] = Some((result, took)),
                Err(e) => tracing::error!(error = %e, "a scrape task failed"),
            }
        }
        let scraped = targets
            .into_iter()
            .zip(results)
            .map(|(target, result)| {
                let (result, duration) = result.unwrap_or_else(|| {
                    let failed = FetchError::Connect("scrape task failed".into());
                    (Err(ScrapeError::Fetch(failed)), Duration::ZERO)
                });
                Scraped {
                    target,
                    result,
                    duration,
                }
            })
            .collect();
        self.fold(scraped)
    }

    /// Parses and normalizes one scrape body with this collector's rules and sample limit
    /// (the CPU part of a scrape; [`RedCollector::collect`] does it right after fetching).
    pub fn parse(&self, body: &str, format: Format) -> Result<Extracted, ScrapeError> {
        Ok(self
            .dialects
            .extract(body, format, self.config.sample_limit)?)
    }

    /// Folds one collection's scrape results into the RED series, drops stale state,
    /// publishes the new snapshot and returns it.
    pub fn fold(&mut self, scraped: Vec<Scraped>) -> Arc<RedSnapshot> {
        let now = Instant::now();
        let mut statuses = Vec::with_capacity(scraped.len());
        let mut targets = Vec::with_capacity(scraped.len());
        for Scraped {
            target,
            result,
            duration,
        } in scraped
        {
            let mut status = TargetStatus {
                namespace: target.workload.namespace.clone(),
                workload: target.workload.workload.clone(),
                pod: target.pod.clone(),
                up: false,
                scrape_duration_seconds: duration.as_secs_f64(),
                samples: 0,
            };
            match result {
                Ok(extracted) => {
                    status.up = true;
                    status.samples = extracted.samples;
                    self.aggregator.apply(
                        &target.id(),
                        &target.workload,
                        extracted.observations,
                        extracted.process_start,
                        now,
                    );
                }
                Err(e) => {
                    tracing::warn!(url = %target.url, namespace = %target.workload.namespace, pod = %target.pod, reason = e.reason(), error = %e, "scrape failed");
                    *self
                        .failures
                        .entry((target.workload.clone(), e.reason()))
                        .or_default() += 1;
                }
            }
            statuses.push(status);
            targets.push(target);
        }
        self.aggregator.evict(now);

        let series = self.aggregator.outputs();
        // Failure counts live as long as their workload has a target or RED series.
        let live: HashSet<&WorkloadRef> = targets
            .iter()
            .map(|t| &t.workload)
            .chain(series.iter().map(|(k, _)| &k.workload))
            .collect();
        self.failures.retain(|(w, _), _| live.contains(w));
        let snapshot = Arc::new(RedSnapshot {
            node: self.node.clone(),
            series,
            targets: statuses,
            scrape_failures: self
                .failures
                .iter()
                .map(|((w, reason), n)| (w.clone(), *reason, *n))
                .collect(),
            guards: self.aggregator.guards(),
            source_series: self.aggregator.source_series(),
        });
        self.metrics.publish(snapshot.clone());
        snapshot
    }
}

async fn scrape_one(
    client: &reqwest::Client,
    dialects: &Dialects,
    url: &str,
    timeout: Duration,
    max_body: u64,
    sample_limit: usize,
) -> Result<Extracted, ScrapeError> {
    let fetched = scrape::fetch(client, url, timeout, max_body).await?;
    Ok(dialects.extract(&fetched.body, fetched.format, sample_limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_collection_runs_on_a_spawned_task_and_publishes_its_snapshot() {
        let mut collector =
            RedCollector::new(RedConfig::default(), "node-1", Duration::from_secs(15)).unwrap();
        let metrics = collector.metrics();
        // tokio::spawn needs a Send future: the agent's loop can run collections on a task.
        let snapshot = tokio::spawn(async move { collector.collect(Vec::new()).await })
            .await
            .unwrap();
        assert_eq!(snapshot.node, "node-1");
        assert!(Arc::ptr_eq(&snapshot, &metrics.latest()));
    }
}
