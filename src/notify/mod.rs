//! Notifications: alerts to the people who own the affected service, with the context to act.
//!
//! The evaluator hands alerts to a running [`Notifier`] with [`Notifier::submit`], the same shape
//! and semantics as Alertmanager's `POST /api/v2/alerts` (re-submit firing alerts on every resend,
//! resolved ones with `ends_at` in the past). The pipeline:
//!
//! 1. [`owners`]: resolve the owner (label, workload annotation, namespace annotation, or triage);
//! 2. [`routing`]: the owner's receivers and grouping options from the routing file;
//! 3. [`group`]: aggregation groups, `group_wait`/`group_interval`/`repeat_interval`, dedupe and
//!    inhibition, as Alertmanager does them;
//! 4. [`context`], [`chart`], [`templates`]: the context (follow-up queries, Grafana link, chart)
//!    rendered into each channel's format ([`email`], [`slack`], [`webhook`], [`alertmanager`]);
//! 5. [`outbox`]: stored durably, then delivered with retries until delivered or expired.
//!
//! Wiring (for the evaluator): see [`Notifier::start`].

pub mod alertmanager;
pub mod chart;
pub mod context;
pub mod email;
pub mod group;
pub mod outbox;
pub mod owners;
pub mod routing;
pub mod slack;
pub mod templates;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use context::{ContextQuerier, NoQuerier, PrometheusQuerier, QueryError};

use group::{Dispatcher, Notification};
use outbox::{Delivery, HttpTarget, Outbox, OutboxItem, OutboxOptions, Outcome};
use owners::{KubeConfig, OwnerResolver, Resolution};
use routing::{Receiver, Routing, RoutingError};
use templates::Templates;

/// One alert, as the evaluator posts it (Alertmanager v2 postable alert plus the value and the
/// expression, which the context and the chart use).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Identifying labels (`alertname` and the series labels).
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`, `runbook_url`, `suggested_action`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved, or until when it is valid; `None`: firing with no end.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the expression in the evaluator's UI.
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// The value of the expression at the last evaluation.
    #[serde(default)]
    pub value: Option<f64>,
    /// The rule's expression.
    #[serde(default)]
    pub expr: Option<String>,
}

impl Alert {
    /// Stable hash of the labels (identifies the alert across sends and restarts).
    pub fn fingerprint(&self) -> u64 {
        let mut bytes = Vec::new();
        for (k, v) in &self.labels {
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(0xff);
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0xfe);
        }
        fnv1a(&bytes)
    }

    /// Whether the alert fires at `now` (no end, or an end in the future).
    pub fn is_firing(&self, now: DateTime<Utc>) -> bool {
        self.ends_at.is_none_or(|e| e > now)
    }

    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The alert name.
    pub fn name(&self) -> &str {
        self.label("alertname").unwrap_or("")
    }
}

/// 64-bit FNV-1a: stable across builds (unlike `DefaultHasher`), so persisted keys stay valid.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Settings of the notifier (the routing file holds the rest).
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    /// The routing file (`--routing-file`).
    pub routing_file: PathBuf,
    /// Directory with template overrides (`email_subject.txt`, `email.txt`, `email.html`,
    /// `slack.md`); built-in templates otherwise.
    pub templates_dir: Option<PathBuf>,
    /// The evaluator's external URL (`--external-url`), used in payloads and links.
    pub external_url: String,
    /// Kubernetes API for owner annotations; owner labels only when `None`.
    pub kubernetes: Option<KubeConfig>,
    /// Retry and expiry of deliveries.
    pub outbox: OutboxOptions,
    /// Time limit of each follow-up query for the context.
    pub context_timeout: Duration,
    /// Timeout of one delivery attempt.
    pub delivery_timeout: Duration,
}

impl NotifierConfig {
    /// Defaults for a routing file: in-cluster Kubernetes access when running in a pod.
    pub fn new(routing_file: impl Into<PathBuf>, external_url: impl Into<String>) -> Self {
        Self {
            routing_file: routing_file.into(),
            templates_dir: None,
            external_url: external_url.into(),
            kubernetes: KubeConfig::in_cluster(),
            outbox: OutboxOptions::default(),
            context_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors starting or running the notifier.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The routing file is unusable.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The outbox store failed.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// A template failed to load or render.
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
    /// The state directory could not be created.
    #[error("creating state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// An HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The Kubernetes API client could not be set up.
    #[error(transparent)]
    Kube(#[from] owners::KubeError),
    /// A notification could not be rendered.
    #[error("rendering a notification for {receiver}: {message}")]
    Render {
        /// Receiver name.
        receiver: String,
        /// What went wrong.
        message: String,
    },
}

/// The notifier's metrics.
#[derive(Clone, Default)]
pub struct NotifyMetrics {
    /// Notifications delivered, by integration.
    pub sent: Family<Vec<(String, String)>, Counter>,
    /// Failed delivery attempts, by integration.
    pub failed: Family<Vec<(String, String)>, Counter>,
    /// Notifications dropped after their retries expired, by integration.
    pub expired: Family<Vec<(String, String)>, Counter>,
    /// Alerts that resolved to no owner (sent to triage).
    pub unowned: Counter,
    /// Notifications waiting in the outbox.
    pub outbox_depth: Gauge<i64, AtomicI64>,
    /// Failed routing-file reloads.
    pub reload_failures: Counter,
}

impl NotifyMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubesignal_evaluator_notifications_sent",
            "Notifications delivered, by receiver integration",
            self.sent.clone(),
        );
        registry.register(
            "kubesignal_evaluator_notifications_failed",
            "Failed notification delivery attempts, by receiver integration",
            self.failed.clone(),
        );
        registry.register(
            "kubesignal_evaluator_notifications_expired",
            "Notifications dropped because they could not be delivered before expiry",
            self.expired.clone(),
        );
        registry.register(
            "kubesignal_evaluator_notifications_unowned",
            "Alerts with no owner, sent to the triage receiver only",
            self.unowned.clone(),
        );
        registry.register(
            "kubesignal_evaluator_notification_outbox_depth",
            "Notifications stored in the outbox waiting for delivery",
            self.outbox_depth.clone(),
        );
        registry.register(
            "kubesignal_evaluator_routing_reload_failures",
            "Routing file reloads that failed (the previous routing stays active)",
            self.reload_failures.clone(),
        );
    }

    fn receiver(kind: &str) -> Vec<(String, String)> {
        vec![("receiver".to_string(), kind.to_string())]
    }
}

/// The notification pipeline shared by its tasks. Obtain one with [`Notifier::start`].
pub struct Notifier {
    routing: RwLock<Arc<Routing>>,
    routing_file: PathBuf,
    owners: Arc<OwnerResolver>,
    dispatcher: tokio::sync::Mutex<Dispatcher>,
    dispatch_wake: Notify,
    outbox: Outbox,
    outbox_wake: Notify,
    templates: Templates,
    querier: Arc<dyn ContextQuerier>,
    http: reqwest::Client,
    metrics: NotifyMetrics,
    config: NotifierConfig,
}

/// A running notifier: dereferences to [`Notifier`]; stops its tasks on [`NotifierHandle::shutdown`]
/// (or, less tidily, on drop).
pub struct NotifierHandle {
    notifier: Arc<Notifier>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::ops::Deref for NotifierHandle {
    type Target = Notifier;
    fn deref(&self) -> &Notifier {
        &self.notifier
    }
}

impl Drop for NotifierHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NotifierHandle {
    /// Stops the notifier's tasks and waits for them, closing the outbox file. Undelivered
    /// notifications stay in the outbox for the next start.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The shared notifier (for handing to other tasks).
    pub fn notifier(&self) -> Arc<Notifier> {
        Arc::clone(&self.notifier)
    }
}

impl Notifier {
    /// Loads the routing file and templates, opens the outbox (`<state_dir>/outbox.redb`),
    /// registers the metrics, starts the Kubernetes watchers (when configured), the dispatcher and
    /// the delivery worker.
    ///
    /// Wiring in the evaluator:
    /// ```ignore
    /// let querier = Arc::new(PrometheusQuerier::new(&datasource_url, http_client.clone()));
    /// let notifier = Notifier::start(NotifierConfig::new(&routing_file, &external_url),
    ///                                &state_dir, querier, &mut registry).await?;
    /// notifier.submit(alerts).await;           // after each evaluation, like POST /api/v2/alerts
    /// notifier.reload()?;                      // on SIGHUP / POST /-/reload
    /// notifier.shutdown().await;               // on exit
    /// ```
    pub async fn start(
        config: NotifierConfig,
        state_dir: &Path,
        querier: Arc<dyn ContextQuerier>,
        metrics: &mut Registry,
    ) -> Result<NotifierHandle, NotifyError> {
        let routing = Routing::load(&config.routing_file)?;
        let templates = Templates::load(config.templates_dir.as_deref())?;
        std::fs::create_dir_all(state_dir).map_err(|source| NotifyError::StateDir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let (outbox, nflog) = Outbox::open(&state_dir.join("outbox.redb"), config.outbox.clone())?;
        let m = NotifyMetrics::default();
        m.register(metrics);
        m.outbox_depth.set(outbox.depth());
        let owners = Arc::new(OwnerResolver::new());
        let mut tasks = Vec::new();
        if let Some(kube) = config.kubernetes.clone() {
            tasks.extend(owners.start_watchers(kube)?);
        }
        let notifier = Arc::new(Notifier {
            routing: RwLock::new(Arc::new(routing)),
            routing_file: config.routing_file.clone(),
            owners,
            dispatcher: tokio::sync::Mutex::new(Dispatcher::with_nflog(nflog)),
            dispatch_wake: Notify::new(),
            outbox,
            outbox_wake: Notify::new(),
            templates,
            querier,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            metrics: m,
            config,
        });
        let n = Arc::clone(&notifier);
        tasks.push(tokio::spawn(async move { n.dispatch_loop().await }));
        let n = Arc::clone(&notifier);
        tasks.push(tokio::spawn(async move { n.delivery_loop().await }));
        Ok(NotifierHandle { notifier, tasks })
    }

    /// Hands alerts to the pipeline (like Alertmanager's `POST /api/v2/alerts`).
    pub async fn submit(&self, alerts: Vec<Alert>) {
        let routing = self.routing();
        let now = Utc::now();
        let mut dispatcher = self.dispatcher.lock().await;
        let unowned = dispatcher.insert_all(&routing, |l| self.owners.resolve(l), alerts, now);
        self.metrics.unowned.inc_by(unowned);
        drop(dispatcher);
        self.dispatch_wake.notify_one();
    }

    /// Re-reads the routing file. On error the previous routing stays active and the error
    /// (naming file, line and field) is returned and logged.
    pub fn reload(&self) -> Result<(), RoutingError> {
        match Routing::load(&self.routing_file) {
            Ok(r) => {
                *self.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
                tracing::info!(file = %self.routing_file.display(), "routing file reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.reload_failures.inc();
                tracing::error!(error = %e, "routing file reload failed; keeping the previous routing");
                Err(e)
            }
        }
    }

    /// The active routing.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.routing.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Owner resolution for a label set with the current annotation cache.
    pub fn resolve_owner(&self, labels: &BTreeMap<String, String>) -> Resolution {
        self.owners.resolve(labels)
    }

    /// Waits until the Kubernetes watchers have listed every kind once (never returns when no
    /// Kubernetes API is configured; use with a timeout).
    pub async fn owners_synced(&self) {
        self.owners.wait_synced().await;
    }

    /// Notifications waiting in the outbox.
    pub fn outbox_depth(&self) -> i64 {
        self.outbox.depth()
    }

    /// The metrics (for tests and the evaluator's health checks).
    pub fn metrics(&self) -> &NotifyMetrics {
        &self.metrics
    }

    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            let now = Utc::now();
            let (notifications, nflog, next) = {
                let mut d = self.dispatcher.lock().await;
                let n = d.flush_due(now);
                (n, d.take_nflog_changes(), d.next_due())
            };
            if !notifications.is_empty() || !nflog.is_empty() {
                let items = self.render_all(notifications).await;
                if let Err(e) = self.outbox.enqueue(items, nflog) {
                    tracing::error!(error = %e, "cannot store notifications in the outbox");
                }
                self.metrics.outbox_depth.set(self.outbox.depth());
                self.outbox_wake.notify_one();
            }
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.dispatch_wake.notified() => {}
            }
        }
    }

    /// Renders notifications; the context of a group is built once for all its receivers.
    async fn render_all(self: &Arc<Self>, notifications: Vec<Notification>) -> Vec<OutboxItem> {
        let routing = self.routing();
        let mut by_group: HashMap<(String, i64), Vec<Notification>> = HashMap::new();
        for n in notifications {
            by_group
                .entry((n.group_key.clone(), n.at.timestamp_nanos_opt().unwrap_or(0)))
                .or_default()
                .push(n);
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let mut set = tokio::task::JoinSet::new();
        for (_, group) in by_group {
            let me = Arc::clone(self);
            let routing = Arc::clone(&routing);
            let sem = Arc::clone(&sem);
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                me.render_group(&routing, group).await
            });
        }
        let mut items = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(v) = r {
                items.extend(v);
            }
        }
        items
    }

    async fn render_group(&self, routing: &Routing, group: Vec<Notification>) -> Vec<OutboxItem> {
        let needs_context = group
            .iter()
            .any(|n| matches!(n.receiver, Receiver::Email { .. } | Receiver::Slack { .. }));
        let ctx = if needs_context {
            Some(
                context::build(
                    &group[0],
                    routing,
                    &self.config.external_url,
                    self.querier.as_ref(),
                    self.config.context_timeout,
                )
                .await,
            )
        } else {
            None
        };
        let mut items = Vec::new();
        for n in &group {
            match self.render_one(routing, n, ctx.as_ref()) {
                Ok(delivery) => items.push(OutboxItem {
                    key: n.key.clone(),
                    receiver: n.receiver.kind().to_string(),
                    target: format!("{}/{}", n.route, n.receiver.name()),
                    delivery,
                    created_at: n.at,
                    expires_at: n.at
                        + chrono::Duration::from_std(self.config.outbox.max_age)
                            .unwrap_or(chrono::Duration::MAX),
                    attempts: 0,
                    next_attempt_at: n.at,
                    last_error: None,
                }),
                Err(e) => {
                    self.metrics
                        .failed
                        .get_or_create(&NotifyMetrics::receiver(n.receiver.kind()))
                        .inc();
                    tracing::error!(error = %e, "dropping a notification that cannot be rendered");
                }
            }
        }
        items
    }

    fn render_one(
        &self,
        routing: &Routing,
        n: &Notification,
        ctx: Option<&context::NotificationContext>,
    ) -> Result<Delivery, NotifyError> {
        let render_err = |message: String| NotifyError::Render {
            receiver: n.receiver.name(),
            message,
        };
        match &n.receiver {
            Receiver::Email { to } => {
                let ctx = ctx.ok_or_else(|| render_err("no context".into()))?;
                let smtp = routing
                    .file
                    .smtp
                    .as_ref()
                    .ok_or_else(|| render_err("no smtp section".into()))?;
                email::render(&self.templates, ctx, &smtp.from, to, &n.key)
                    .map_err(|e| render_err(e.to_string()))
            }
            Receiver::Slack { url_file, channel } => {
                let ctx = ctx.ok_or_else(|| render_err("no context".into()))?;
                let body = slack::render(&self.templates, ctx, channel.as_deref())
                    .map_err(|e| render_err(e.to_string()))?;
                Ok(Delivery::Http {
                    target: HttpTarget::UrlFile(url_file.clone()),
                    body,
                })
            }
            Receiver::Webhook { url } => Ok(Delivery::Http {
                target: HttpTarget::Url(url.clone()),
                body: webhook::render(n, &self.config.external_url),
            }),
            Receiver::Alertmanager { url } => Ok(Delivery::Http {
                target: HttpTarget::Url(alertmanager::endpoint(url)),
                body: alertmanager::render(&n.alerts),
            }),
        }
    }

    /// Keeps up to `concurrency` deliveries in flight; results are recorded in small batches
    /// (one outbox transaction each) as they complete, so a slow receiver does not hold up others.
    async fn delivery_loop(self: Arc<Self>) {
        let concurrency = self.outbox.options().concurrency.max(1);
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            let room = concurrency - inflight.len();
            if room > 0 {
                match self.outbox.take_due(Utc::now(), room) {
                    Ok(due) => {
                        for item in due {
                            let me = Arc::clone(&self);
                            inflight.spawn(async move {
                                let result = me.deliver(&item).await;
                                (item, result)
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the outbox");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let wait = self
                .outbox
                .next_due()
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            if inflight.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.outbox_wake.notified() => {}
                }
                continue;
            }
            let mut results = Vec::new();
            tokio::select! {
                Some(done) = inflight.join_next() => {
                    results.extend(done.ok());
                    while let Some(done) = inflight.try_join_next() {
                        results.extend(done.ok());
                    }
                }
                _ = tokio::time::sleep(wait), if inflight.len() < concurrency => {}
                _ = self.outbox_wake.notified(), if inflight.len() < concurrency => {}
            }
            if results.is_empty() {
                continue;
            }
            match self.outbox.finish(results, Utc::now()) {
                Ok(outcomes) => {
                    for (item, outcome) in outcomes {
                        let labels = NotifyMetrics::receiver(&item.receiver);
                        match outcome {
                            Outcome::Delivered => {
                                self.metrics.sent.get_or_create(&labels).inc();
                                tracing::info!(receiver = %item.target, key = %item.key, "notification delivered");
                            }
                            Outcome::Retry(next) => {
                                self.metrics.failed.get_or_create(&labels).inc();
                                tracing::warn!(receiver = %item.target, key = %item.key, attempts = item.attempts,
                                    error = item.last_error.as_deref().unwrap_or(""), retry_at = %next,
                                    "notification delivery failed; will retry");
                            }
                            Outcome::Expired => {
                                self.metrics.failed.get_or_create(&labels).inc();
                                self.metrics.expired.get_or_create(&labels).inc();
                                tracing::error!(receiver = %item.target, key = %item.key, attempts = item.attempts,
                                    error = item.last_error.as_deref().unwrap_or(""),
                                    "notification expired undelivered");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record delivery results in the outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            self.metrics.outbox_depth.set(self.outbox.depth());
        }
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), String> {
        match &item.delivery {
            Delivery::Email { from, to, message } => {
                let routing = self.routing();
                let smtp = routing
                    .file
                    .smtp
                    .as_ref()
                    .ok_or_else(|| "no smtp section in the routing file".to_string())?;
                email::send(smtp, from, to, message, self.config.delivery_timeout).await
            }
            Delivery::Http { target, body } => {
                let url = match target {
                    HttpTarget::Url(u) => u.clone(),
                    HttpTarget::UrlFile(f) => std::fs::read_to_string(f)
                        .map(|s| s.trim().to_string())
                        .map_err(|e| format!("reading URL file {}: {e}", f.display()))?,
                };
                let resp = self
                    .http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("Idempotency-Key", &item.key)
                    .timeout(self.config.delivery_timeout)
                    .body(body.clone())
                    .send()
                    .await
                    // The URL may be a secret (Slack): report the error without it.
                    .map_err(|e| format!("POST failed: {}", e.without_url()))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("receiver answered {status}"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_depends_on_labels_only_and_is_stable() {
        let a = Alert {
            labels: [("alertname".to_string(), "A".to_string())].into(),
            annotations: BTreeMap::new(),
            starts_at: Utc::now(),
            ends_at: None,
            generator_url: String::new(),
            value: Some(1.0),
            expr: None,
        };
        let mut b = a.clone();
        b.value = Some(2.0);
        b.annotations.insert("summary".into(), "x".into());
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.labels.insert("pod".into(), "p".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
        // FNV-1a of "a" (published test vector).
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn an_alert_parses_from_the_alertmanager_v2_shape() {
        let a: Alert = serde_json::from_str(
            r#"{"labels":{"alertname":"X"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z",
                "endsAt":"2026-01-01T00:05:00Z","generatorURL":"http://e/graph"}"#,
        )
        .unwrap();
        assert_eq!(a.name(), "X");
        assert_eq!(a.generator_url, "http://e/graph");
        assert!(!a.is_firing("2026-01-01T00:05:00Z".parse().unwrap()));
        assert!(a.is_firing("2026-01-01T00:04:59Z".parse().unwrap()));
    }
}
