//! The embedded datasource's scraper: fetches each target's `/metrics` on an interval, parses it
//! with [`crate::exposition`] and appends the samples to the shared [`Storage`] with Prometheus's
//! scrape semantics.
//!
//! - Every sample gets the target's `job` and `instance` labels; a sample that already carries
//!   one keeps it as `exported_job`/`exported_instance` (Prometheus's `honor_labels: false`).
//! - Samples are stamped with the scrape's start time, except those with an explicit timestamp
//!   in the exposition, which keep it (Prometheus's `honor_timestamps: true`).
//! - `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//!   `scrape_samples_post_metric_relabeling` and `scrape_series_added` are written per scrape.
//! - A series a target stops exposing, and every series of a target whose scrape fails, gets one
//!   staleness marker, so queries stop seeing it at once instead of after the lookback delta.
//!   Series with explicit timestamps get none, as in Prometheus.
//! - OpenMetrics `_created` samples and exemplars are not stored (Prometheus 2.x drops them too).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::exposition::{Entry, Format, MetricType, Parser};
use crate::http::error_chain;
use crate::promql::{Labels, Storage, stale_nan};

/// One scrape target: where it is and the labels its series get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The `job` label.
    pub job: String,
    /// The `instance` label: the URL's `host:port`.
    pub instance: String,
    /// The URL fetched.
    pub url: String,
}

impl Target {
    /// Reads `URL` or `JOB=URL`. Without a job, the job is the URL's host name (so
    /// `http://127.0.0.1:9847/metrics` is job `127.0.0.1`): name your jobs when rules select on
    /// them.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        let (job, url_text) = match s.split_once('=') {
            Some((job, rest)) if !job.contains("://") && !job.contains('/') => {
                (Some(job.trim().to_string()), rest.trim())
            }
            _ => (None, s),
        };
        let url = url::Url::parse(url_text)
            .map_err(|e| format!("scrape target {s:?}: {url_text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "scrape target {s:?}: only http and https URLs can be scraped"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("scrape target {s:?}: the URL has no host"))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("scrape target {s:?}: the URL has no port"))?;
        let job = match job {
            Some(j) if j.is_empty() => {
                return Err(format!("scrape target {s:?}: the job name is empty"));
            }
            Some(j) => j,
            None => host.trim_matches(['[', ']']).to_string(),
        };
        Ok(Target {
            job,
            instance: format!("{host}:{port}"),
            url: url.to_string(),
        })
    }
}

/// Scraper settings.
#[derive(Clone, Debug)]
pub struct ScrapeConfig {
    /// Time between two scrapes of one target.
    pub interval: Duration,
    /// Longest time one scrape may take (connect, headers and body).
    pub timeout: Duration,
    /// Largest body accepted; a larger one fails the scrape.
    pub max_body_bytes: usize,
}

/// Labels of the scrape error counter.
pub type ErrorLabels = Vec<(String, String)>;

/// Why a scrape failed, as a bounded `reason` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    /// Connection refused, DNS, TLS, reset...
    #[error("connecting: {0}")]
    Connect(String),
    /// The scrape did not finish within the timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// A status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was larger than the limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The body broke off or is not UTF-8.
    #[error("reading the body: {0}")]
    Read(String),
    /// The body is not a valid exposition.
    #[error("parsing the exposition: {0}")]
    Parse(String),
}

impl ScrapeError {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "connect",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Status(_) => "http_status",
            ScrapeError::TooLarge(_) => "too_large",
            ScrapeError::Read(_) => "read",
            ScrapeError::Parse(_) => "parse",
        }
    }
}

/// One parsed sample: labels without the target labels yet, value, explicit timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    /// Labels with `__name__`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The exposition's timestamp, if it gave one.
    pub timestamp_ms: Option<i64>,
}

/// Parses an exposition body into samples; the first malformed line fails the whole scrape, as
/// in Prometheus.
pub fn parse_body(body: &str, format: Format) -> Result<Vec<Scraped>, ScrapeError> {
    let mut out = Vec::new();
    let mut counter_family: Option<String> = None;
    for entry in Parser::new(body, format) {
        match entry.map_err(|e| ScrapeError::Parse(e.to_string()))? {
            Entry::Type { family, kind } => {
                counter_family = matches!(
                    kind,
                    MetricType::Counter | MetricType::Histogram | MetricType::Summary
                )
                .then(|| family.into_owned());
            }
            Entry::Sample(s) => {
                if format == Format::OpenMetrics
                    && let Some(family) = &counter_family
                    && s.name.strip_suffix("_created") == Some(family.as_str())
                {
                    continue;
                }
                let mut labels = Vec::with_capacity(s.labels.len() + 1);
                labels.push(("__name__".to_string(), s.name.into_owned()));
                labels.extend(
                    s.labels
                        .into_iter()
                        .map(|(k, v)| (k.into_owned(), v.into_owned())),
                );
                out.push(Scraped {
                    labels,
                    value: s.value,
                    timestamp_ms: s.timestamp_ms,
                });
            }
            Entry::Help { .. } | Entry::Unit { .. } | Entry::Eof => {}
        }
    }
    Ok(out)
}

/// The label set a scraped sample is stored under: its own labels plus `job` and `instance`,
/// clashing ones moved to `exported_*`.
pub fn target_labels(target: &Target, labels: Vec<(String, String)>) -> Labels {
    let mut pairs: Vec<(String, String)> = labels
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "job" | "instance" => (format!("exported_{k}"), v),
            _ => (k, v),
        })
        .collect();
    pairs.push(("job".into(), target.job.clone()));
    pairs.push(("instance".into(), target.instance.clone()));
    Labels::from_pairs(pairs)
}

fn meta_labels(target: &Target, name: &str) -> Labels {
    Labels::from_pairs([
        ("__name__", name),
        ("job", target.job.as_str()),
        ("instance", target.instance.as_str()),
    ])
}

/// One target's state between scrapes: the series its last scrape wrote (for staleness).
#[derive(Debug)]
pub struct TargetState {
    target: Target,
    last_series: HashSet<Labels>,
}

impl TargetState {
    /// A target not scraped yet.
    pub fn new(target: Target) -> Self {
        TargetState {
            target,
            last_series: HashSet::new(),
        }
    }

    /// Writes the outcome of one scrape that started at `t` (ms) and took `duration`: its
    /// samples, or `None` when it failed.
    pub fn record(
        &mut self,
        storage: &mut Storage,
        t: i64,
        duration: Duration,
        outcome: Option<Vec<Scraped>>,
    ) {
        let (up, samples) = match outcome {
            Some(samples) => (1.0, samples),
            None => (0.0, Vec::new()),
        };
        let scraped = samples.len();
        let mut current = HashSet::with_capacity(samples.len());
        for s in samples {
            let labels = target_labels(&self.target, s.labels);
            match s.timestamp_ms {
                Some(ts) => storage.append(&labels, ts, s.value),
                None => {
                    storage.append(&labels, t, s.value);
                    current.insert(labels);
                }
            }
        }
        for gone in self.last_series.difference(&current) {
            storage.append(gone, t, stale_nan());
        }
        let added = current.difference(&self.last_series).count();
        self.last_series = current;
        storage.append(&meta_labels(&self.target, "up"), t, up);
        storage.append(
            &meta_labels(&self.target, "scrape_duration_seconds"),
            t,
            duration.as_secs_f64(),
        );
        // No relabelling here, so "post metric relabeling" is the same count, as Prometheus
        // reports it for a job without metric_relabel_configs.
        for name in [
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
        ] {
            storage.append(&meta_labels(&self.target, name), t, scraped as f64);
        }
        storage.append(
            &meta_labels(&self.target, "scrape_series_added"),
            t,
            added as f64,
        );
    }
}

/// Fetches and parses one target.
pub async fn fetch(
    client: &reqwest::Client,
    target: &Target,
    config: &ScrapeConfig,
) -> Result<Vec<Scraped>, ScrapeError> {
    let work = async {
        let mut resp = client
            .get(&target.url)
            .header(reqwest::header::ACCEPT, Format::ACCEPT_HEADER)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                config.timeout.as_secs_f64().to_string(),
            )
            .send()
            .await
            .map_err(|e| ScrapeError::Connect(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        if resp
            .content_length()
            .is_some_and(|n| n > config.max_body_bytes as u64)
        {
            return Err(ScrapeError::TooLarge(config.max_body_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ScrapeError::Read(error_chain(&e)))?
        {
            if body.len() + chunk.len() > config.max_body_bytes {
                return Err(ScrapeError::TooLarge(config.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body)
            .map_err(|e| ScrapeError::Read(format!("the body is not UTF-8: {e}")))?;
        parse_body(&text, format)
    };
    match tokio::time::timeout(config.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ScrapeError::Timeout(config.timeout)),
    }
}

/// A callback run after each scrape with the store still locked.
pub type ScrapeHook = Arc<dyn Fn(&Target, &Storage) + Send + Sync>;

/// What every target's scrape loop shares.
#[derive(Clone)]
pub struct Scraper {
    /// Settings.
    pub config: ScrapeConfig,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Where samples go.
    pub storage: Arc<RwLock<Storage>>,
    /// Failures by target and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Called with the store, still locked, after each scrape was written (for gauges).
    pub on_scrape: ScrapeHook,
}

/// Scrapes `target` every interval until `stop` turns true. Scrapes of different targets are
/// spread over the interval by `phase`, so they do not all land at once.
pub async fn run_target(
    scraper: Scraper,
    target: Target,
    phase: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Scraper {
        config,
        client,
        storage,
        errors,
        on_scrape,
    } = scraper;
    let mut state = TargetState::new(target.clone());
    let mut next = Instant::now() + phase;
    let mut was_down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let t = chrono::Utc::now().timestamp_millis();
        let result = tokio::select! {
            r = fetch(&client, &target, &config) => r,
            _ = stop.changed() => return,
        };
        let duration = started.elapsed();
        let outcome = match result {
            Ok(samples) => {
                if was_down {
                    tracing::info!(url = %target.url, "scrape target is up again");
                }
                was_down = false;
                Some(samples)
            }
            Err(e) => {
                // Warn when a target goes down, not on every failed scrape of a dead target.
                if was_down {
                    tracing::debug!(url = %target.url, error = %e, "scrape failed");
                } else {
                    tracing::warn!(url = %target.url, error = %e, "scrape failed");
                }
                was_down = true;
                errors
                    .get_or_create(&vec![
                        ("target".into(), target.url.clone()),
                        ("reason".into(), e.reason().into()),
                    ])
                    .inc();
                None
            }
        };
        {
            let mut guard = storage.write().unwrap_or_else(|p| p.into_inner());
            state.record(&mut guard, t, duration, outcome);
            on_scrape(&target, &guard);
        }
        // Skip ticks a slow target overran rather than scraping back to back.
        next += config.interval;
        let now = Instant::now();
        while next <= now {
            next += config.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    fn target() -> Target {
        Target::parse("app=http://10.0.0.1:8080/metrics").unwrap()
    }

    fn values(storage: &Storage, name: &str) -> Vec<(Labels, Vec<i64>, Vec<f64>)> {
        let m = [Matcher::new(MatchOp::Equal, "__name__", name)];
        storage
            .select(&m)
            .iter()
            .map(|s| {
                let points = s.all_samples();
                (
                    s.labels.clone(),
                    points.iter().map(|p| p.t).collect(),
                    points.iter().map(|p| p.v).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_target_names_its_job_or_takes_the_host_as_job() {
        let t = target();
        assert_eq!(
            (t.job.as_str(), t.instance.as_str()),
            ("app", "10.0.0.1:8080")
        );
        let t = Target::parse("http://agent.local/metrics?x=1").unwrap();
        assert_eq!(
            (t.job.as_str(), t.instance.as_str()),
            ("agent.local", "agent.local:80")
        );
        assert!(
            Target::parse("ftp://x/metrics")
                .unwrap_err()
                .contains("http")
        );
        assert!(Target::parse("app=").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn target_labels_win_and_clashing_ones_are_kept_as_exported() {
        let l = target_labels(
            &target(),
            vec![
                ("__name__".into(), "x".into()),
                ("job".into(), "inner".into()),
            ],
        );
        assert_eq!(l.get("job"), Some("app"));
        assert_eq!(l.get("exported_job"), Some("inner"));
        assert_eq!(l.get("instance"), Some("10.0.0.1:8080"));
    }

    #[test]
    fn openmetrics_created_samples_are_dropped_and_timestamps_kept() {
        let body = "# TYPE req counter\nreq_total 3 1700000000.5\nreq_created 1600000000\n# EOF\n";
        let got = parse_body(body, Format::OpenMetrics).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels[0].1, "req_total");
        assert_eq!(got[0].timestamp_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn a_malformed_line_fails_the_scrape_with_its_line_number() {
        let err = parse_body("ok 1\nbad{ 2\n", Format::PrometheusText).unwrap_err();
        assert_eq!(err.reason(), "parse");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn a_vanished_series_and_a_failed_scrape_leave_one_stale_marker_each() {
        let mut storage = Storage::new();
        let mut state = TargetState::new(target());
        let a = || Scraped {
            labels: vec![("__name__".into(), "a".into())],
            value: 1.0,
            timestamp_ms: None,
        };
        let b = || Scraped {
            labels: vec![("__name__".into(), "b".into())],
            value: 2.0,
            timestamp_ms: None,
        };
        state.record(&mut storage, 1000, Duration::ZERO, Some(vec![a(), b()]));
        state.record(&mut storage, 2000, Duration::ZERO, Some(vec![a()]));
        state.record(&mut storage, 3000, Duration::ZERO, None);
        state.record(&mut storage, 4000, Duration::ZERO, None);

        let b_series = values(&storage, "b");
        assert_eq!(b_series[0].1, vec![1000, 2000]);
        assert!(crate::promql::is_stale(b_series[0].2[1]));
        let a_series = values(&storage, "a");
        assert_eq!(a_series[0].1, vec![1000, 2000, 3000]);
        assert!(crate::promql::is_stale(a_series[0].2[2]));
        let up = values(&storage, "up");
        assert_eq!(up[0].2, vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(up[0].0.get("job"), Some("app"));
        let n = values(&storage, "scrape_samples_scraped");
        assert_eq!(n[0].2, vec![2.0, 1.0, 0.0, 0.0]);
        let added = values(&storage, "scrape_series_added");
        assert_eq!(added[0].2, vec![2.0, 0.0, 0.0, 0.0]);
    }
}
