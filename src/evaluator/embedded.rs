//! The `embedded` datasource: PromQL answered in process by [`crate::promql::Engine`] over a
//! shared in-memory [`Storage`], instead of over HTTP.
//!
//! With `--datasource embedded` the evaluator fills that store itself: [`super::scrape`] scrapes
//! the `--scrape` targets, recording rule results and `ALERTS` are written back into it, the
//! store is cut to the retention the rules need ([`super::retention`]) and snapshotted to
//! `--state-dir` ([`super::snapshot`]), and [`super::query_api`] serves Prometheus's query API
//! over it. [`EmbeddedRuntime`] runs those background tasks.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::alert::Labels;
use super::datasource::{BoxFuture, Datasource, DatasourceError, Sample};
use super::group::{Group, RecordSink, parse_duration};
use super::retention::{self, Retention};
use super::scrape::{self, ErrorLabels, ScrapeConfig, Target};
use super::{remote_write, snapshot};
use crate::promql::{Engine, EngineOptions, EvalError, Semantics, Storage, Value};

/// A datasource that evaluates queries against a store in this process.
#[derive(Clone, Debug)]
pub struct EmbeddedDatasource {
    storage: Arc<RwLock<Storage>>,
    engine: Engine,
}

impl EmbeddedDatasource {
    /// Queries `storage` with `engine`.
    pub fn new(storage: Arc<RwLock<Storage>>, engine: Engine) -> Self {
        EmbeddedDatasource { storage, engine }
    }

    /// The store queries read from.
    pub fn storage(&self) -> &Arc<RwLock<Storage>> {
        &self.storage
    }

    /// The engine queries run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Evaluates `expr` at `ts` synchronously.
    pub fn query_now(&self, expr: &str, ts: DateTime<Utc>) -> Result<Vec<Sample>, DatasourceError> {
        let api_error = |e: EvalError| DatasourceError::Api {
            expr: expr.to_string(),
            error_type: error_type(&e).to_string(),
            message: e.to_string(),
        };
        let parsed = self.engine.parse_cached(expr).map_err(api_error)?;
        let storage = self
            .storage
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = self
            .engine
            .instant_expr(&storage, &parsed, ts.timestamp_millis())
            .map_err(api_error)?;
        Ok(match value {
            Value::Scalar(p) => vec![Sample {
                labels: Labels::new(),
                value: p.v,
            }],
            Value::Vector(v) => v
                .into_iter()
                .map(|s| Sample {
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.v,
                })
                .collect(),
            other => {
                return Err(DatasourceError::Api {
                    expr: expr.to_string(),
                    error_type: "bad_data".to_string(),
                    message: format!(
                        "expression returned a {}, rules need an instant vector or scalar",
                        other.type_name()
                    ),
                });
            }
        })
    }
}

/// Prometheus's HTTP API `errorType` for an engine error.
pub fn error_type(e: &EvalError) -> &'static str {
    match e {
        EvalError::Parse(_) => "bad_data",
        EvalError::Execution(_) | EvalError::TooManySamples => "execution",
        EvalError::Timeout => "timeout",
    }
}

impl Datasource for EmbeddedDatasource {
    fn query<'a>(
        &'a self,
        expr: &'a str,
        ts: DateTime<Utc>,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<Sample>, DatasourceError>> {
        Box::pin(async move {
            // A long window over a big store takes a while: keep it off the async workers.
            let this = self.clone();
            let owned = expr.to_string();
            match tokio::task::spawn_blocking(move || this.query_now(&owned, ts)).await {
                Ok(result) => result,
                Err(e) => Err(DatasourceError::Api {
                    expr: expr.to_string(),
                    error_type: "internal".to_string(),
                    message: format!("the query task failed: {e}"),
                }),
            }
        })
    }
}

fn to_promql_labels(labels: &Labels) -> crate::promql::Labels {
    crate::promql::Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl EmbeddedDatasource {
    /// Appends `points` to the store (rule results, `ALERTS`, their staleness markers).
    pub fn append(&self, points: impl IntoIterator<Item = (Labels, i64, f64)>) {
        let mut storage = self
            .storage
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (labels, t, v) in points {
            storage.append(&to_promql_labels(&labels), t, v);
        }
    }
}

/// Recording rule results go straight back into the store, so later rules see them in the same
/// cycle, as in Prometheus.
impl RecordSink for EmbeddedDatasource {
    fn write<'a>(
        &'a self,
        series: &'a [Sample],
        ts: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let t = ts.timestamp_millis();
            self.append(series.iter().map(|s| (s.labels.clone(), t, s.value)));
            Ok(())
        })
    }
}

/// Which datasource the evaluator queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasourceKind {
    /// A Prometheus-compatible HTTP API (`--datasource-url`).
    Prometheus,
    /// A URL given straight to `--datasource`: the same as `--datasource-url URL`.
    PrometheusAt(String),
    /// The in-process engine over the store filled by `--scrape`.
    Embedded,
}

/// Reads `--datasource`: `prometheus`, `embedded` or a URL.
pub fn parse_datasource_kind(s: &str) -> Result<DatasourceKind, String> {
    match s {
        "prometheus" => Ok(DatasourceKind::Prometheus),
        "embedded" => Ok(DatasourceKind::Embedded),
        url if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(DatasourceKind::PrometheusAt(url.to_string()))
        }
        other => Err(format!(
            "{other:?}: expected `prometheus`, `embedded` or an http(s) URL"
        )),
    }
}

/// Flags of the embedded datasource (used with `--datasource embedded`).
#[derive(Clone, Debug, Args)]
pub struct EmbeddedArgs {
    /// Scrape target `URL` or `JOB=URL` (repeatable). Without `JOB=` the job label is the
    /// URL's host name; `instance` is always `host:port`.
    #[arg(long = "scrape", env = "KUBESIGNAL_SCRAPE", value_delimiter = ',', value_parser = Target::parse)]
    pub scrape: Vec<Target>,

    /// Time between two scrapes of a target.
    #[arg(long, env = "KUBESIGNAL_SCRAPE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,

    /// Longest time one scrape may take; capped at the scrape interval.
    #[arg(long, env = "KUBESIGNAL_SCRAPE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub scrape_timeout: Duration,

    /// Largest scrape body accepted; a larger one fails the scrape.
    #[arg(long, env = "KUBESIGNAL_SCRAPE_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub scrape_max_body_bytes: usize,

    /// Keep at least this much history, e.g. for dashboards, even when the rules need less.
    #[arg(long, env = "KUBESIGNAL_MIN_RETENTION", default_value = "0s", value_parser = parse_duration)]
    pub min_retention: Duration,

    /// How often the store is snapshotted to --state-dir (also at shutdown).
    #[arg(long, env = "KUBESIGNAL_SNAPSHOT_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub snapshot_interval: Duration,

    /// Longest time one query may run (Prometheus's `--query.timeout`).
    #[arg(long, env = "KUBESIGNAL_QUERY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Most samples one query may hold at once (Prometheus's `--query.max-samples`).
    #[arg(
        long,
        env = "KUBESIGNAL_QUERY_MAX_SAMPLES",
        default_value_t = 50_000_000
    )]
    pub query_max_samples: usize,

    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    #[arg(long, env = "KUBESIGNAL_QUERY_LOOKBACK_DELTA", default_value = "5m", value_parser = parse_duration)]
    pub query_lookback_delta: Duration,

    /// PromQL semantics: v2 (Prometheus 2.x, closed windows) or v3 (Prometheus 3, left-open).
    #[arg(long, env = "KUBESIGNAL_SEMANTICS", value_enum, default_value_t = Semantics::V2)]
    pub semantics: Semantics,
}

impl EmbeddedArgs {
    /// The engine settings these flags ask for; subqueries without a step use the rules'
    /// evaluation interval, as in Prometheus.
    pub fn engine_options(&self, evaluation_interval: Duration) -> EngineOptions {
        EngineOptions {
            lookback: self.query_lookback_delta,
            max_samples: self.query_max_samples,
            timeout: self.query_timeout,
            semantics: self.semantics,
            default_subquery_step: evaluation_interval,
        }
    }
}

/// Metrics of the embedded datasource, registered beside the evaluator's.
#[derive(Clone, Debug, Default)]
pub struct EmbeddedMetrics {
    scrape_errors: Family<ErrorLabels, Counter>,
    scrapes: Family<ErrorLabels, Counter>,
    series: Gauge,
    samples: Gauge,
    memory: Gauge,
    retention: Gauge<f64, AtomicU64>,
    snapshot_failures: Counter,
    snapshot_bytes: Gauge,
}

impl EmbeddedMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = EmbeddedMetrics::default();
        registry.register(
            "kubesignal_evaluator_scrape_errors",
            "Failed scrapes of the embedded datasource, by target URL and reason (connect, timeout, http_status, too_large, read, parse)",
            m.scrape_errors.clone(),
        );
        registry.register(
            "kubesignal_evaluator_scrapes",
            "Scrapes of the embedded datasource, by target URL",
            m.scrapes.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_series",
            "Series in the embedded store",
            m.series.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_samples",
            "Samples in the embedded store",
            m.samples.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_memory_bytes",
            "Estimated heap memory of the embedded store's samples and labels (updated every 30s)",
            m.memory.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_retention_seconds",
            "History the embedded store keeps: the longest rule window, for and keep_firing_for, plus a margin",
            m.retention.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_snapshot_failures",
            "Snapshots of the embedded store that could not be written",
            m.snapshot_failures.clone(),
        );
        registry.register(
            "kubesignal_evaluator_embedded_snapshot_bytes",
            "Size of the last snapshot written",
            m.snapshot_bytes.clone(),
        );
        m
    }

    fn observe(&self, storage: &Storage) {
        self.series.set(storage.series_count() as i64);
        self.samples.set(storage.sample_count() as i64);
    }
}

/// Extra history kept beyond what the rules need: a late evaluation, a reload or a slow restart
/// must not find its window cut short.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(600);

/// The running embedded datasource: scrapers, retention, snapshots and the `ALERTS` writer.
pub struct EmbeddedRuntime {
    /// The datasource the rule groups and the query API use.
    pub datasource: EmbeddedDatasource,
    /// Where `ALERTS` and `ALERTS_FOR_STATE` go (the group tasks' remote-write queue).
    pub alerts_tx: mpsc::Sender<Vec<remote_write::Point>>,
    retention: Arc<std::sync::Mutex<Duration>>,
    metrics: EmbeddedMetrics,
    state_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedRuntime")
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl EmbeddedRuntime {
    /// Loads the snapshot from `state_dir` (a damaged one is logged and ignored), then starts
    /// scraping, retention, snapshots and the `ALERTS` writer.
    pub fn start(
        args: &EmbeddedArgs,
        groups: &[Group],
        evaluation_interval: Duration,
        state_dir: Option<PathBuf>,
        metrics: EmbeddedMetrics,
    ) -> EmbeddedRuntime {
        let opts = args.engine_options(evaluation_interval);
        let detail = retention::for_groups(groups, opts.lookback, RETENTION_MARGIN);
        let keep = detail.total().max(args.min_retention);
        log_retention(&detail, keep);
        metrics.retention.set(keep.as_secs_f64());

        let mut storage = Storage::new();
        if let Some(dir) = &state_dir {
            match snapshot::load(dir) {
                Ok(Some(s)) => {
                    tracing::info!(
                        series = s.series_count(),
                        samples = s.sample_count(),
                        "embedded store restored from snapshot"
                    );
                    storage = s;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "ignoring the embedded store snapshot; starting empty")
                }
            }
        }
        storage.truncate_before(cutoff(keep));
        metrics.observe(&storage);
        metrics.memory.set(storage.memory_bytes() as i64);
        let storage = Arc::new(RwLock::new(storage));
        let datasource = EmbeddedDatasource::new(storage.clone(), Engine::new(opts));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let config = ScrapeConfig {
            interval: args.scrape_interval,
            timeout: if args.scrape_timeout > args.scrape_interval {
                tracing::info!(
                    timeout = ?args.scrape_timeout,
                    interval = ?args.scrape_interval,
                    "scrape timeout longer than the interval; using the interval"
                );
                args.scrape_interval
            } else {
                args.scrape_timeout
            },
            max_body_bytes: args.scrape_max_body_bytes,
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("kubesignal/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let m = metrics.clone();
        let scraper = scrape::Scraper {
            config: config.clone(),
            client,
            storage: storage.clone(),
            errors: metrics.scrape_errors.clone(),
            on_scrape: Arc::new(move |t: &Target, s: &Storage| {
                m.scrapes
                    .get_or_create(&vec![("target".into(), t.url.clone())])
                    .inc();
                m.observe(s);
            }),
        };
        if args.scrape.is_empty() {
            tracing::warn!(
                "--datasource embedded without --scrape targets: queries see only recorded series, ALERTS and the snapshot"
            );
        }
        let n = args.scrape.len().max(1) as u32;
        for (i, target) in args.scrape.iter().enumerate() {
            tracing::info!(url = %target.url, job = %target.job, instance = %target.instance, "scraping");
            tasks.push(tokio::spawn(scrape::run_target(
                scraper.clone(),
                target.clone(),
                config.interval * i as u32 / n,
                stop_rx.clone(),
            )));
        }

        let retention = Arc::new(std::sync::Mutex::new(keep));
        tasks.push(tokio::spawn(housekeeping(
            storage.clone(),
            retention.clone(),
            metrics.clone(),
            state_dir.clone(),
            args.snapshot_interval,
            stop_rx.clone(),
        )));

        let (alerts_tx, mut alerts_rx) = mpsc::channel::<Vec<remote_write::Point>>(256);
        let sink = datasource.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(points) = alerts_rx.recv().await {
                sink.append(points.into_iter().map(|p| (p.labels, p.ts, p.value)));
            }
        }));

        EmbeddedRuntime {
            datasource,
            alerts_tx,
            retention,
            metrics,
            state_dir,
            stop,
            tasks,
        }
    }

    /// Recomputes the retention after the rules were reloaded.
    pub fn rules_changed(&self, groups: &[Group], min: Duration) {
        let detail = retention::for_groups(
            groups,
            self.datasource.engine().options().lookback,
            RETENTION_MARGIN,
        );
        let keep = detail.total().max(min);
        log_retention(&detail, keep);
        self.metrics.retention.set(keep.as_secs_f64());
        if let Ok(mut r) = self.retention.lock() {
            *r = keep;
        }
    }

    /// Stops scraping and writes a last snapshot.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        drop(self.alerts_tx);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(dir) = &self.state_dir {
            write_snapshot(self.datasource.storage(), dir, &self.metrics).await;
        }
    }
}

fn log_retention(detail: &Retention, keep: Duration) {
    tracing::info!(
        retention = %humantime::format_duration(keep),
        longest_query_window = %humantime::format_duration(detail.query_window),
        longest_for = %humantime::format_duration(detail.hold),
        margin = %humantime::format_duration(detail.margin),
        "embedded store retention"
    );
}

fn cutoff(keep: Duration) -> i64 {
    Utc::now().timestamp_millis() - keep.as_millis().min(i64::MAX as u128) as i64
}

async fn write_snapshot(
    storage: &Arc<RwLock<Storage>>,
    dir: &std::path::Path,
    m: &EmbeddedMetrics,
) {
    // Encoding is a memory copy under the read lock; the slow file write happens outside it.
    let data = {
        let s = storage.read().unwrap_or_else(|p| p.into_inner());
        snapshot::encode(&s)
    };
    let len = data.len();
    let dir = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || snapshot::write(&dir, &data)).await;
    match result {
        Ok(Ok(())) => {
            m.snapshot_bytes.set(len as i64);
            tracing::debug!(bytes = len, "embedded store snapshot written");
        }
        Ok(Err(e)) => {
            m.snapshot_failures.inc();
            tracing::error!(error = %e, "writing the embedded store snapshot failed");
        }
        Err(e) => {
            m.snapshot_failures.inc();
            tracing::error!(error = %e, "the snapshot task failed");
        }
    }
}

/// Cuts the store to the retention and snapshots it, on their intervals, until stopped.
async fn housekeeping(
    storage: Arc<RwLock<Storage>>,
    retention: Arc<std::sync::Mutex<Duration>>,
    metrics: EmbeddedMetrics,
    state_dir: Option<PathBuf>,
    snapshot_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let truncate_every = Duration::from_secs(30);
    let mut truncate_at = Instant::now() + truncate_every;
    let mut snapshot_at = Instant::now() + snapshot_interval;
    loop {
        let next = truncate_at.min(snapshot_at);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        if now >= truncate_at {
            let keep = retention.lock().map(|r| *r).unwrap_or(Duration::MAX);
            let mut s = storage.write().unwrap_or_else(|p| p.into_inner());
            s.truncate_before(cutoff(keep));
            metrics.observe(&s);
            metrics.memory.set(s.memory_bytes() as i64);
            truncate_at = now + truncate_every;
        }
        if now >= snapshot_at {
            if let Some(dir) = &state_dir {
                write_snapshot(&storage, dir, &metrics).await;
            }
            snapshot_at = now + snapshot_interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_datasource_flag_takes_a_kind_or_a_url() {
        assert_eq!(
            parse_datasource_kind("embedded"),
            Ok(DatasourceKind::Embedded)
        );
        assert_eq!(
            parse_datasource_kind("prometheus"),
            Ok(DatasourceKind::Prometheus)
        );
        assert_eq!(
            parse_datasource_kind("http://prom:9090"),
            Ok(DatasourceKind::PrometheusAt("http://prom:9090".into()))
        );
        assert!(
            parse_datasource_kind("mimir")
                .unwrap_err()
                .contains("embedded")
        );
    }

    #[test]
    fn recorded_results_are_written_back_into_the_store() {
        let ds = EmbeddedDatasource::new(Arc::new(RwLock::new(Storage::new())), Engine::default());
        let labels: Labels = [("__name__".to_string(), "job:up:sum".to_string())].into();
        let ts = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(RecordSink::write(&ds, &[Sample { labels, value: 3.0 }], ts))
            .unwrap();
        let s = ds.storage().read().unwrap();
        let got: Vec<_> = s
            .iter()
            .map(|v| {
                let points = v.all_samples();
                (
                    v.labels.to_string(),
                    points.iter().map(|p| p.t).collect::<Vec<_>>(),
                    points.iter().map(|p| p.v).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("job:up:sum".to_string(), vec![1_700_000_000_000], vec![3.0])]
        );
    }
}

#[cfg(test)]
mod parse_cache_tests {
    use super::*;

    #[test]
    fn query_flags_reach_the_engine() {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: EmbeddedArgs,
        }
        let w = <Wrapper as clap::Parser>::try_parse_from([
            "x",
            "--query-timeout",
            "5s",
            "--query-max-samples",
            "1000",
            "--query-lookback-delta",
            "1m",
            "--semantics",
            "v3",
        ])
        .unwrap();
        let o = w.args.engine_options(Duration::from_secs(30));
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.max_samples, 1000);
        assert_eq!(o.lookback, Duration::from_secs(60));
        assert_eq!(o.semantics, Semantics::V3);
        assert_eq!(o.default_subquery_step, Duration::from_secs(30));
        let defaults = <Wrapper as clap::Parser>::try_parse_from(["x"]).unwrap();
        let o = defaults.args.engine_options(Duration::from_secs(60));
        assert_eq!(o.timeout, Duration::from_secs(120));
        assert_eq!(o.semantics, Semantics::V2);
    }
    use crate::promql::Labels as PromLabels;

    #[test]
    fn a_repeated_query_is_parsed_once_and_sees_new_samples() {
        let storage = Arc::new(RwLock::new(Storage::new()));
        let up = PromLabels::from_pairs([("__name__", "up"), ("job", "api")]);
        storage.write().unwrap().append(&up, 0, 1.0);
        let ds = EmbeddedDatasource::new(storage.clone(), Engine::default());
        let q = r#"up{job=~"a.*"}"#;
        let first = ds
            .query_now(q, DateTime::from_timestamp(0, 0).unwrap())
            .unwrap();
        assert_eq!(first[0].value, 1.0);
        storage.write().unwrap().append(&up, 60_000, 2.0);
        let second = ds
            .query_now(q, DateTime::from_timestamp(60, 0).unwrap())
            .unwrap();
        assert_eq!(second[0].value, 2.0);
        assert_eq!(ds.engine().parsed_count(), 1);
        let err = ds
            .query_now("up +", DateTime::from_timestamp(60, 0).unwrap())
            .unwrap_err();
        assert!(
            matches!(err, DatasourceError::Api { ref error_type, .. } if error_type == "bad_data"),
            "{err}"
        );
        assert_eq!(
            ds.engine().parsed_count(),
            1,
            "failed parses are not cached"
        );
    }
}
