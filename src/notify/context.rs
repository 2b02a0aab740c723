//! The context carried by every email and Slack notification: who and what is affected, for how
//! long, the current value, SLO burn rates and budget left, runbook and suggested action, a Grafana
//! link with the dashboard's variables and a time range, the top contributors and recent restarts,
//! and a chart.
//!
//! Follow-up data comes from the datasource through [`ContextQuerier`]; each query has a time
//! limit, and a failed query only leaves its part of the context empty: the notification still goes
//! out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Alert;
use super::group::Notification;
use super::routing::{Routing, parse_duration};

/// A label set.
pub type Labels = BTreeMap<String, String>;

/// One series of a range query: its labels and points.
pub type Series = (Labels, Vec<(DateTime<Utc>, f64)>);

/// Errors of follow-up queries.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Transport or HTTP status error.
    #[error("query {query:?} to {url}: {message}")]
    Request {
        /// The datasource URL.
        url: String,
        /// The PromQL.
        query: String,
        /// What went wrong.
        message: String,
    },
    /// The query took longer than allowed.
    #[error("query {0:?} timed out")]
    Timeout(String),
}

/// Runs the follow-up PromQL queries that fill a notification's context.
#[async_trait]
pub trait ContextQuerier: Send + Sync {
    /// Instant query at `time`: each result series' labels and value.
    async fn query(
        &self,
        promql: &str,
        time: DateTime<Utc>,
    ) -> Result<Vec<(Labels, f64)>, QueryError>;

    /// Range query: each result series' labels and points.
    async fn query_range(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Series>, QueryError>;
}

/// A querier for setups without a datasource: every query returns nothing.
pub struct NoQuerier;

#[async_trait]
impl ContextQuerier for NoQuerier {
    async fn query(&self, _: &str, _: DateTime<Utc>) -> Result<Vec<(Labels, f64)>, QueryError> {
        Ok(Vec::new())
    }
    async fn query_range(
        &self,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: Duration,
    ) -> Result<Vec<Series>, QueryError> {
        Ok(Vec::new())
    }
}

/// [`ContextQuerier`] over the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`), so it
/// works with Prometheus, Thanos, Mimir and VictoriaMetrics.
pub struct PrometheusQuerier {
    base: String,
    client: reqwest::Client,
    token_file: Option<PathBuf>,
}

impl PrometheusQuerier {
    /// A querier for the datasource at `base` (e.g. `http://prometheus:9090`).
    pub fn new(base: &str, client: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            client,
            token_file: None,
        }
    }

    /// Sends `Authorization: Bearer <token from file>` with every query.
    pub fn with_bearer_token_file(mut self, file: PathBuf) -> Self {
        self.token_file = Some(file);
        self
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<ApiData, QueryError> {
        let query = params
            .iter()
            .find(|(k, _)| *k == "query")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let err = |message: String| QueryError::Request {
            url: self.base.clone(),
            query: query.clone(),
            message,
        };
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .form(params);
        if let Some(f) = &self.token_file {
            let token = std::fs::read_to_string(f)
                .map_err(|e| err(format!("reading token file {}: {e}", f.display())))?;
            req = req.bearer_auth(token.trim());
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body: ApiResponse = resp
            .json()
            .await
            .map_err(|e| err(format!("status {status}: {e}")))?;
        match (body.status.as_str(), body.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(err(body
                .error
                .unwrap_or_else(|| format!("status {status}")))),
        }
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    metric: Labels,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: Labels,
    values: Vec<(f64, String)>,
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

fn ts(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64).unwrap_or_default()
}

#[async_trait]
impl ContextQuerier for PrometheusQuerier {
    async fn query(
        &self,
        promql: &str,
        time: DateTime<Utc>,
    ) -> Result<Vec<(Labels, f64)>, QueryError> {
        let params = [
            ("query", promql.to_string()),
            (
                "time",
                format!("{:.3}", time.timestamp_millis() as f64 / 1000.0),
            ),
        ];
        Ok(match self.get("/api/v1/query", &params).await? {
            ApiData::Vector(v) => v
                .into_iter()
                .map(|s| (s.metric, parse_value(&s.value.1)))
                .collect(),
            ApiData::Scalar((_, v)) => vec![(Labels::new(), parse_value(&v))],
            _ => Vec::new(),
        })
    }

    async fn query_range(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Series>, QueryError> {
        let params = [
            ("query", promql.to_string()),
            (
                "start",
                format!("{:.3}", start.timestamp_millis() as f64 / 1000.0),
            ),
            (
                "end",
                format!("{:.3}", end.timestamp_millis() as f64 / 1000.0),
            ),
            ("step", format!("{:.3}", step.as_secs_f64().max(1.0))),
        ];
        Ok(match self.get("/api/v1/query_range", &params).await? {
            ApiData::Matrix(m) => m
                .into_iter()
                .map(|s| {
                    let points = s
                        .values
                        .into_iter()
                        .map(|(t, v)| (ts(t), parse_value(&v)))
                        .collect();
                    (s.metric, points)
                })
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// Burn rate of one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BurnRate {
    /// Window (`5m`, `1h`, ...).
    pub window: String,
    /// Error ratio over the window divided by the error budget.
    pub rate: f64,
    /// `rate` for display (`14.4x`).
    pub display: String,
}

/// SLO part of the context.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SloContext {
    /// The SLO id (`slo` label).
    pub name: String,
    /// Burn rate per window, shortest window first.
    pub burn_rates: Vec<BurnRate>,
    /// Error budget left over the SLO window, in percent (may be negative).
    pub error_budget_left: Option<String>,
    /// The long window of the alert and its burn-rate threshold.
    pub long_window: Option<String>,
    /// Burn-rate threshold of the alert's tier.
    pub threshold: Option<String>,
}

/// One of the top contributors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contributor {
    /// Label value (a route or a pod).
    pub name: String,
    /// Its value, formatted.
    pub value: String,
}

/// Recent restarts or OOM kills of one container.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Restart {
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// Restarts in the last hour.
    pub restarts: u64,
    /// OOM kills in the last hour.
    pub oom_kills: u64,
}

/// Context of one alert.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlertContext {
    /// `firing` or `resolved`.
    pub status: String,
    /// Alert name.
    pub alertname: String,
    /// Service (`service`, else `workload`, else `job` label).
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Workload.
    pub workload: String,
    /// Severity.
    pub severity: String,
    /// Owner (route name; `triage` when nobody owns it).
    pub owner: String,
    /// Start time, RFC 3339.
    pub starts_at: String,
    /// How long it has been firing (or had fired, when resolved).
    pub firing_for: String,
    /// End time when resolved.
    pub ends_at: Option<String>,
    /// Current value, formatted.
    pub value: Option<String>,
    /// All labels.
    pub labels: Labels,
    /// Labels whose values differ between the alerts of the group.
    pub differing_labels: Labels,
    /// `summary` annotation.
    pub summary: String,
    /// `description` annotation.
    pub description: String,
    /// `runbook_url` annotation.
    pub runbook_url: String,
    /// `suggested_action` annotation.
    pub suggested_action: String,
    /// Link to the expression.
    pub generator_url: String,
    /// Link to the Grafana dashboard.
    pub grafana_url: Option<String>,
    /// SLO context for SLO alerts.
    pub slo: Option<SloContext>,
    /// What the contributors are (`route` or `pod`).
    pub contributor_kind: String,
    /// Top 3 contributors.
    pub top_contributors: Vec<Contributor>,
    /// Recent restarts and OOM kills of the workload.
    pub restarts: Vec<Restart>,
}

/// Context of one group notification (the template input).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NotificationContext {
    /// `firing` or `resolved`.
    pub status: String,
    /// Route (owner or `triage`).
    pub owner: String,
    /// Why it is sent.
    pub reason: String,
    /// The group's `group_by` label values.
    pub group_labels: Labels,
    /// Labels every alert shares.
    pub common_labels: Labels,
    /// Annotations every alert shares.
    pub common_annotations: Labels,
    /// Firing alerts in the notification.
    pub firing_count: usize,
    /// Resolved alerts in the notification.
    pub resolved_count: usize,
    /// A short title: the alert name(s).
    pub title: String,
    /// The evaluator's URL.
    pub external_url: String,
    /// Alerts, firing first.
    pub alerts: Vec<AlertContext>,
    /// Chart image (PNG) of the first alert.
    #[serde(skip)]
    pub chart_png: Option<Vec<u8>>,
    /// Content-ID of the chart in emails.
    pub chart_cid: Option<String>,
    /// What the chart shows.
    pub chart_caption: Option<String>,
    /// Notification time, RFC 3339.
    pub sent_at: String,
}

/// Alerts that get the follow-up queries (the rest get the fields carried by the alert).
const DETAILED_ALERTS: usize = 3;

/// Builds the context of a notification.
pub async fn build(
    n: &Notification,
    routing: &Routing,
    external_url: &str,
    querier: &dyn ContextQuerier,
    timeout: Duration,
) -> NotificationContext {
    let now = n.at;
    let differing = differing_keys(&n.alerts);
    let mut alerts = Vec::with_capacity(n.alerts.len());
    for (i, a) in n.alerts.iter().enumerate() {
        let mut c = basic(a, &n.route, now, &differing);
        c.grafana_url = grafana_link(routing, a, now);
        if i < DETAILED_ALERTS {
            enrich(&mut c, a, now, querier, timeout).await;
        }
        alerts.push(c);
    }
    let firing_count = alerts.iter().filter(|a| a.status == "firing").count();
    let mut names: Vec<&str> = n.alerts.iter().map(Alert::name).collect();
    names.dedup();
    let chart = match n.alerts.first() {
        Some(a) => chart_for(a, now, querier, timeout).await,
        None => None,
    };
    let (chart_png, chart_caption) = chart.unzip();
    NotificationContext {
        status: n.status().to_string(),
        owner: n.route.clone(),
        reason: serde_json::to_value(n.reason)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        group_labels: n.group_labels.clone(),
        common_labels: common(n.alerts.iter().map(|a| &a.labels)),
        common_annotations: common(n.alerts.iter().map(|a| &a.annotations)),
        firing_count,
        resolved_count: alerts.len() - firing_count,
        title: names.join(", "),
        external_url: external_url.to_string(),
        alerts,
        chart_cid: chart_png
            .as_ref()
            .map(|_| format!("chart-{}@kubesignal", n.key)),
        chart_png,
        chart_caption,
        sent_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

fn basic(a: &Alert, route: &str, now: DateTime<Utc>, differing: &BTreeSet<String>) -> AlertContext {
    let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
    let ann = |k: &str| a.annotations.get(k).cloned().unwrap_or_default();
    let firing = a.is_firing(now);
    let end = if firing {
        now
    } else {
        a.ends_at.unwrap_or(now)
    };
    let service = ["service", "workload", "job"]
        .iter()
        .find_map(|k| a.labels.get(*k).filter(|v| !v.is_empty()).cloned())
        .unwrap_or_default();
    AlertContext {
        status: if firing { "firing" } else { "resolved" }.into(),
        alertname: a.name().to_string(),
        service,
        namespace: label("namespace"),
        workload: label("workload"),
        severity: label("severity"),
        owner: route.to_string(),
        starts_at: a
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        firing_for: humanize_duration(end - a.starts_at),
        ends_at: (!firing)
            .then(|| {
                a.ends_at
                    .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            })
            .flatten(),
        value: a.value.map(format_value),
        labels: a.labels.clone(),
        differing_labels: a
            .labels
            .iter()
            .filter(|(k, _)| differing.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        summary: ann("summary"),
        description: ann("description"),
        runbook_url: ann("runbook_url"),
        suggested_action: ann("suggested_action"),
        generator_url: a.generator_url.clone(),
        ..AlertContext::default()
    }
}

/// Label names whose values are not the same in every alert.
fn differing_keys(alerts: &[Alert]) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = alerts.iter().flat_map(|a| a.labels.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let mut values = alerts.iter().map(|a| a.labels.get(*k));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .cloned()
        .collect()
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Escapes a label value for a PromQL selector.
fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{namespace="..",workload=".."}` for the alert's workload, if it names one.
fn workload_selector(a: &Alert) -> Option<String> {
    let ns = a.label("namespace").filter(|s| !s.is_empty())?;
    let w = a
        .label("workload")
        .or_else(|| a.label("service"))
        .filter(|s| !s.is_empty())?;
    Some(format!("{{namespace={},workload={}}}", q(ns), q(w)))
}

async fn timed<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, QueryError>>,
    what: &str,
) -> Option<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "context query failed");
            None
        }
        Err(_) => {
            tracing::warn!(query = what, "context query timed out");
            None
        }
    }
}

async fn enrich(
    c: &mut AlertContext,
    a: &Alert,
    now: DateTime<Utc>,
    querier: &dyn ContextQuerier,
    timeout: Duration,
) {
    let at = if a.is_firing(now) {
        now
    } else {
        a.ends_at.unwrap_or(now)
    };
    if let Some(slo) = a.label("slo").filter(|s| !s.is_empty()) {
        c.slo = Some(slo_context(a, slo, at, querier, timeout).await);
    }
    let Some(sel) = workload_selector(a) else {
        return;
    };
    let expr = a.expr.as_deref().unwrap_or("");
    let red = a.labels.contains_key("slo") || expr.contains("kubesignal_red_");
    let (kind, query) = if red {
        (
            "route",
            format!("topk(3, sum by (route) (rate(kubesignal_red_errors_total{sel}[5m])))"),
        )
    } else if expr.contains("memory") {
        (
            "pod",
            format!("topk(3, sum by (pod) (kubesignal_container_memory_working_set_bytes{sel}))"),
        )
    } else {
        (
            "pod",
            format!(
                "topk(3, sum by (pod) (rate(kubesignal_container_cpu_usage_seconds_total{sel}[5m])))"
            ),
        )
    };
    if let Some(mut rows) = timed(timeout, querier.query(&query, at), &query).await {
        rows.sort_by(|x, y| y.1.total_cmp(&x.1));
        c.contributor_kind = kind.into();
        c.top_contributors = rows
            .into_iter()
            .take(3)
            .map(|(l, v)| Contributor {
                name: l.get(kind).cloned().unwrap_or_default(),
                value: format_value(v),
            })
            .collect();
    }
    let mut restarts: BTreeMap<(String, String), Restart> = BTreeMap::new();
    for (series, oom) in [
        ("kubesignal_container_restarts_total", false),
        ("kubesignal_container_oom_events_total", true),
    ] {
        let query = format!("sum by (pod, container) (increase({series}{sel}[1h])) > 0");
        for (l, v) in timed(timeout, querier.query(&query, at), &query)
            .await
            .unwrap_or_default()
        {
            let pod = l.get("pod").cloned().unwrap_or_default();
            let container = l.get("container").cloned().unwrap_or_default();
            let r = restarts
                .entry((pod.clone(), container.clone()))
                .or_insert(Restart {
                    pod,
                    container,
                    restarts: 0,
                    oom_kills: 0,
                });
            let n = v.round().max(0.0) as u64;
            if oom {
                r.oom_kills = n;
            } else {
                r.restarts = n;
            }
        }
    }
    c.restarts = restarts.into_values().collect();
}

async fn slo_context(
    a: &Alert,
    slo: &str,
    at: DateTime<Utc>,
    querier: &dyn ContextQuerier,
    timeout: Duration,
) -> SloContext {
    let sel = format!("slo={}", q(slo));
    let budget_q = format!("slo:error_budget:ratio{{{sel}}}");
    let budget = timed(timeout, querier.query(&budget_q, at), &budget_q)
        .await
        .and_then(|r| r.first().map(|x| x.1))
        .filter(|b| *b > 0.0);
    let mut ctx = SloContext {
        name: slo.to_string(),
        long_window: a.label("long_window").map(String::from),
        threshold: a
            .label("burn_rate_threshold")
            .and_then(|t| t.parse::<f64>().ok())
            .map(|t| format!("{}x", format_value(t))),
        ..SloContext::default()
    };
    if let Some(budget) = budget {
        let ratios_q = format!("{{__name__=~\"slo:sli_error:ratio_rate.+\",{sel}}}");
        let mut rates: Vec<(Duration, BurnRate)> =
            timed(timeout, querier.query(&ratios_q, at), &ratios_q)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(l, v)| {
                    let window = l
                        .get("__name__")?
                        .strip_prefix("slo:sli_error:ratio_rate")?
                        .to_string();
                    let d = parse_duration(&window).ok()?;
                    let rate = v / budget;
                    Some((
                        d,
                        BurnRate {
                            display: format!("{}x", format_value(rate)),
                            window,
                            rate,
                        },
                    ))
                })
                .collect();
        rates.sort_by_key(|(d, _)| *d);
        // The full SLO window (30d) is the budget, not a burn-rate window.
        ctx.burn_rates = rates
            .into_iter()
            .filter(|(d, _)| *d <= Duration::from_secs(3 * 86400))
            .map(|(_, r)| r)
            .collect();
    }
    let left_q = format!("slo:error_budget:remaining_ratio{{{sel}}}");
    ctx.error_budget_left = timed(timeout, querier.query(&left_q, at), &left_q)
        .await
        .and_then(|r| r.first().map(|x| x.1))
        .map(|v| format!("{:.1}%", v * 100.0));
    ctx
}

/// The chart of an alert: for an SLO alert its error ratio over the long window with the alert's
/// threshold; otherwise its expression around the time it fired.
async fn chart_for(
    a: &Alert,
    now: DateTime<Utc>,
    querier: &dyn ContextQuerier,
    timeout: Duration,
) -> Option<(Vec<u8>, String)> {
    let end = if a.is_firing(now) {
        now
    } else {
        a.ends_at.unwrap_or(now)
    };
    let (query, span, threshold, caption) = if let Some(slo) = a.label("slo") {
        let window = a.label("long_window").unwrap_or("1h");
        let span = parse_duration(window).unwrap_or(Duration::from_secs(3600));
        let sel = format!("slo={}", q(slo));
        let budget_q = format!("slo:error_budget:ratio{{{sel}}}");
        let budget = timed(timeout, querier.query(&budget_q, end), &budget_q)
            .await
            .and_then(|r| r.first().map(|x| x.1));
        let factor = a
            .label("burn_rate_threshold")
            .and_then(|t| t.parse::<f64>().ok());
        let threshold = budget.zip(factor).map(|(b, f)| b * f);
        (
            format!("slo:sli_error:ratio_rate{window}{{{sel}}}"),
            span.max(Duration::from_secs(3600)),
            threshold,
            format!("Error ratio of SLO {slo} over {window}, threshold dashed"),
        )
    } else {
        let expr = a.expr.clone()?;
        let fired = (end - a.starts_at).to_std().unwrap_or_default();
        let span = (fired * 3).clamp(Duration::from_secs(3600), Duration::from_secs(86400));
        (
            expr,
            span,
            None,
            format!(
                "{} over the last {}",
                a.name(),
                humanize_duration(chrono::Duration::from_std(span).unwrap_or_default())
            ),
        )
    };
    let start = end - chrono::Duration::from_std(span).ok()?;
    let step = (span / 120).max(Duration::from_secs(15));
    let series = timed(
        timeout,
        querier.query_range(&query, start, end, step),
        &query,
    )
    .await?;
    if series.iter().all(|(_, p)| p.is_empty()) {
        return None;
    }
    let png = super::chart::render(&series, threshold, Some(a.starts_at), &caption)
        .map_err(|e| tracing::warn!(error = %e, "cannot draw the chart"))
        .ok()?;
    Some((png, caption))
}

/// A link to the dashboard matching the alert, with its variables and a time range around it.
pub fn grafana_link(routing: &Routing, a: &Alert, now: DateTime<Utc>) -> Option<String> {
    let base = routing.file.grafana_url.as_deref()?.trim_end_matches('/');
    let uids = &routing.file.grafana_dashboards;
    let has = |k: &str| a.label(k).is_some_and(|v| !v.is_empty());
    let (uid, vars): (&str, &[&str]) = if has("slo") {
        (&uids.slo, &["slo", "namespace", "service"])
    } else if has("route")
        || a.expr
            .as_deref()
            .is_some_and(|e| e.contains("kubesignal_red_"))
    {
        (&uids.red, &["namespace", "workload", "service"])
    } else if has("workload") || has("pod") {
        (&uids.workload, &["namespace", "workload", "pod"])
    } else if has("node") {
        (&uids.node, &["node"])
    } else {
        return None;
    };
    let from = (a.starts_at - chrono::Duration::hours(1)).timestamp_millis();
    let to = match a.ends_at.filter(|_| !a.is_firing(now)) {
        Some(e) => (e + chrono::Duration::minutes(15))
            .timestamp_millis()
            .to_string(),
        None => "now".to_string(),
    };
    let mut url = format!("{base}/d/{uid}?orgId=1&from={from}&to={to}");
    for v in vars {
        if let Some(val) = a.label(v).filter(|s| !s.is_empty()) {
            url.push_str(&format!("&var-{v}={}", urlencode(val)));
        }
    }
    Some(url)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `1d 2h`, `3h 5m`, `4m 10s`, `12s`: the two largest units.
pub fn humanize_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |rest, (name, size)| {
            let n = *rest / size;
            *rest %= size;
            Some((n, *name))
        })
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Four significant digits, without float noise (`0.1235`, `14.4`, `1234`, `1.235e+06`).
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_the_two_largest_units() {
        assert_eq!(humanize_duration(chrono::Duration::seconds(12)), "12s");
        assert_eq!(humanize_duration(chrono::Duration::seconds(3725)), "1h 2m");
        assert_eq!(humanize_duration(chrono::Duration::seconds(90000)), "1d 1h");
        assert_eq!(humanize_duration(chrono::Duration::seconds(7200)), "2h");
    }

    #[test]
    fn values_have_four_significant_digits() {
        assert_eq!(format_value(14.4), "14.4");
        assert_eq!(format_value(0.123456), "0.1235");
        assert_eq!(format_value(1234.0), "1234");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(2.5e9), "2.500e9");
    }

    #[test]
    fn differing_labels_are_those_not_shared_by_every_alert() {
        let mk = |pod: &str| Alert {
            labels: [("alertname", "A"), ("pod", pod)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Labels::new(),
            starts_at: Utc::now(),
            ends_at: None,
            generator_url: String::new(),
            value: None,
            expr: None,
        };
        let keys = differing_keys(&[mk("a"), mk("b")]);
        assert_eq!(keys, BTreeSet::from(["pod".to_string()]));
    }

    #[test]
    fn selectors_escape_quotes_and_backslashes() {
        assert_eq!(q(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
