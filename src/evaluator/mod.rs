//! `kubesignal evaluator`: Prometheus alerting and recording rules evaluated against a remote
//! Prometheus-compatible API, with Prometheus's state machine, persisted state, Alertmanager
//! notifications, and the read APIs Grafana and the Prometheus UI understand.
//!
//! Module map: [`datasource`] queries, [`group`] loads and evaluates groups, [`alert`] is the
//! state machine, [`recording`] recording rules, [`store`] persistence, [`notifier`] sending,
//! [`api`] HTTP, [`replay`] the same engine over a past range.

pub mod alert;
pub mod api;
pub mod data_file;
pub mod datasource;
pub mod embedded;
pub mod group;
pub mod metrics;
pub mod notifier;
pub mod query_api;
pub mod recording;
pub mod remote_write;
pub mod render;
pub mod replay;
pub mod retention;
pub mod scrape;
pub mod snapshot;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use alert::Labels;
use datasource::{Datasource, HttpConfig, HttpDatasource};
use group::{EvalContext, Group, load_groups, missed_ticks, parse_duration, slot_at};
use metrics::Metrics;
use notifier::{AlertSink, Alertmanager, OutAlert, OwnerRouting};
use render::Templater;
use store::Store;

/// `NAME=VALUE` for repeatable label and header flags.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

/// How to reach the Prometheus-compatible datasource (shared by `evaluator` and `replay`).
#[derive(Clone, Debug, Args)]
pub struct DatasourceArgs {
    /// Base URL of the Prometheus HTTP API (Prometheus, Thanos, Mimir's /prometheus, VictoriaMetrics).
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_URL")]
    pub datasource_url: Option<String>,

    /// Timeout of one query request.
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub datasource_timeout: Duration,

    /// File holding a bearer token, re-read on every request.
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_BEARER_TOKEN_FILE")]
    pub datasource_bearer_token_file: Option<PathBuf>,

    /// Basic-auth user name.
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_BASIC_AUTH_USERNAME")]
    pub datasource_basic_auth_username: Option<String>,

    /// File holding the basic-auth password.
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_BASIC_AUTH_PASSWORD_FILE")]
    pub datasource_basic_auth_password_file: Option<PathBuf>,

    /// PEM CA bundle to trust for the datasource's TLS certificate.
    #[arg(long, env = "KUBESIGNAL_DATASOURCE_CA_FILE")]
    pub datasource_ca_file: Option<PathBuf>,

    /// Extra request header NAME=VALUE (repeatable), e.g. `X-Scope-OrgID=tenant`.
    #[arg(long = "datasource-header", env = "KUBESIGNAL_DATASOURCE_HEADER", value_parser = parse_key_value, value_delimiter = ',')]
    pub datasource_headers: Vec<(String, String)>,
}

impl DatasourceArgs {
    /// The HTTP client these flags describe.
    pub fn build(&self) -> Result<HttpDatasource, datasource::DatasourceError> {
        let url = self
            .datasource_url
            .clone()
            .ok_or(datasource::DatasourceError::NoUrl)?;
        HttpDatasource::new(HttpConfig {
            url,
            timeout: self.datasource_timeout,
            bearer_token_file: self.datasource_bearer_token_file.clone(),
            basic_auth_username: self.datasource_basic_auth_username.clone(),
            basic_auth_password_file: self.datasource_basic_auth_password_file.clone(),
            ca_file: self.datasource_ca_file.clone(),
            headers: self.datasource_headers.clone(),
        })
    }
}

/// Flags of `kubesignal evaluator`.
#[derive(Clone, Debug, Args)]
pub struct EvaluatorArgs {
    /// Rule file, directory or glob (repeatable). Plain Prometheus rule files and
    /// PrometheusRule resources.
    #[arg(long, env = "KUBESIGNAL_RULES", required = true, value_delimiter = ',')]
    pub rules: Vec<String>,

    /// Where rule queries go: `prometheus` (the HTTP API at --datasource-url, the default),
    /// `embedded` (an in-process PromQL engine over the --scrape targets, no Prometheus needed),
    /// or a Prometheus URL (same as --datasource-url).
    #[arg(long = "datasource", id = "datasource_kind", value_name = "prometheus|embedded|URL", env = "KUBESIGNAL_DATASOURCE", default_value = "prometheus", value_parser = embedded::parse_datasource_kind)]
    pub datasource_kind: embedded::DatasourceKind,

    /// Datasource connection.
    #[command(flatten)]
    pub datasource: DatasourceArgs,

    /// Scraping, retention and snapshots of the embedded datasource.
    #[command(flatten)]
    pub embedded: embedded::EmbeddedArgs,

    /// Address to serve the APIs, the alerts page and /metrics on.
    #[arg(long, env = "KUBESIGNAL_LISTEN", default_value = "0.0.0.0:9848")]
    pub listen: SocketAddr,

    /// Directory for persisted alert state; without it state lives in memory only.
    #[arg(long, env = "KUBESIGNAL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Owner routing file: alerts go to the owners of the affected service by e-mail, Slack,
    /// webhook or Alertmanager (docs/notifications.md). Needs --state-dir (the outbox lives
    /// there). Works alongside --alertmanager-url.
    #[arg(long, env = "KUBESIGNAL_ROUTING_FILE")]
    pub routing_file: Option<PathBuf>,

    /// Directory of notification template overrides (email_subject.txt, email.txt, email.html,
    /// slack.md); the built-in templates otherwise.
    #[arg(long, env = "KUBESIGNAL_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,

    /// Alertmanager base URL to send alerts to (repeatable).
    #[arg(long, env = "KUBESIGNAL_ALERTMANAGER_URL", value_delimiter = ',')]
    pub alertmanager_url: Vec<String>,

    /// URL this evaluator is reached at; used in generatorURL and `$externalURL`.
    #[arg(long, env = "KUBESIGNAL_EXTERNAL_URL", default_value = "")]
    pub external_url: String,

    /// Label NAME=VALUE added to sent alerts that lack it, and `$externalLabels` (repeatable).
    #[arg(long = "external-label", env = "KUBESIGNAL_EXTERNAL_LABEL", value_parser = parse_key_value, value_delimiter = ',')]
    pub external_labels: Vec<(String, String)>,

    /// Interval of groups that set none.
    #[arg(long, env = "KUBESIGNAL_EVALUATION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub evaluation_interval: Duration,

    /// Minimum time between two sends of the same firing alert.
    #[arg(long, env = "KUBESIGNAL_RESEND_DELAY", default_value = "1m", value_parser = parse_duration)]
    pub resend_delay: Duration,

    /// While queries fail, keep re-sending firing alerts for this long; also the longest
    /// downtime after which pending alerts' `for` progress is restored.
    #[arg(long, env = "KUBESIGNAL_OUTAGE_TOLERANCE", default_value = "1h", value_parser = parse_duration)]
    pub outage_tolerance: Duration,

    /// After a restart, a restored pending alert fires no sooner than this; rules whose
    /// `for` is shorter start afresh (Prometheus's --rules.alert.for-grace-period).
    #[arg(long, env = "KUBESIGNAL_FOR_GRACE_PERIOD", default_value = "10m", value_parser = parse_duration)]
    pub for_grace_period: Duration,

    /// Prometheus remote-write endpoint (e.g. http://prometheus:9090/api/v1/write) for
    /// recording rule results, ALERTS and ALERTS_FOR_STATE.
    #[arg(long, env = "KUBESIGNAL_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,

    /// Timeout of one remote-write request.
    #[arg(long, env = "KUBESIGNAL_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub remote_write_timeout: Duration,

    /// Timeout of one Alertmanager request.
    #[arg(long, env = "KUBESIGNAL_ALERTMANAGER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub alertmanager_timeout: Duration,

    /// YAML config file: flag names as keys.
    #[arg(long, env = "KUBESIGNAL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Why the evaluator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    /// The rules did not load at startup.
    #[error(transparent)]
    Load(#[from] group::LoadError),
    /// The datasource client could not be built.
    #[error(transparent)]
    Datasource(#[from] datasource::DatasourceError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The HTTP server failed.
    #[error("serving HTTP on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    /// Owner routing needs a state directory for its outbox.
    #[error("--routing-file needs --state-dir: undelivered notifications are kept there")]
    RoutingNeedsStateDir,
    /// The notification pipeline could not start.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

type ReloadReply = oneshot::Sender<Result<(), String>>;

/// State shared between the group tasks, the HTTP handlers and the reload loop.
pub struct Shared {
    groups: RwLock<Vec<Group>>,
    /// The evaluator's metrics.
    pub metrics: Arc<Metrics>,
    ready: std::sync::atomic::AtomicBool,
    reload_tx: mpsc::Sender<ReloadReply>,
    reload_error: Mutex<Option<String>>,
}

impl Shared {
    /// The latest evaluated state of every group.
    pub fn snapshot(&self) -> Vec<Group> {
        self.groups.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn publish(&self, group: &Group) {
        if let Ok(mut groups) = self.groups.write() {
            let key = group.key();
            match groups.iter_mut().find(|g| g.key() == key) {
                Some(slot) => *slot = group.clone(),
                None => groups.push(group.clone()),
            }
        }
    }

    fn replace_all(&self, groups: &[Group]) {
        if let Ok(mut g) = self.groups.write() {
            *g = groups.to_vec();
        }
    }

    /// Whether rules are loaded and running.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The error of the last failed reload, if the last reload failed.
    pub fn last_reload_error(&self) -> Option<String> {
        self.reload_error.lock().ok().and_then(|e| e.clone())
    }

    /// Asks the engine to reload the rules and waits for the result.
    pub async fn request_reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.reload_tx
            .send(tx)
            .await
            .map_err(|_| "the evaluator is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the evaluator is shutting down".to_string())?
    }
}

/// Everything a group task needs.
struct Deps {
    datasource: Arc<dyn Datasource>,
    templater: Templater,
    resend_delay: Duration,
    outage_tolerance: Duration,
    for_grace_period: Duration,
    store: Option<Store>,
    notify: mpsc::Sender<Vec<OutAlert>>,
    shared: Arc<Shared>,
    external_url: String,
    external_labels: Labels,
    remote_write: Option<mpsc::Sender<Vec<remote_write::Point>>>,
    /// Writes recording results back as each rule runs, so later rules in the group see them
    /// in the same cycle, as in Prometheus.
    record_sink: Option<Arc<dyn group::RecordSink>>,
}

/// Runs one group on its schedule until told to stop; returns the group with its state.
async fn run_group(mut group: Group, deps: Arc<Deps>, mut stop: watch::Receiver<bool>) -> Group {
    let interval = group.interval;
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    let mut ts = slot_at(Utc::now(), interval, group.offset());
    let mut stale = remote_write::StaleTracker::default();
    loop {
        let wait = (ts + step - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return group,
        }
        let now = Utc::now();
        let missed = missed_ticks(ts, now, interval);
        if missed > 0 {
            tracing::warn!(group = %group.name, missed, "evaluation ticks missed");
        }
        ts += step * (missed as i32 + 1);
        let ctx = EvalContext {
            datasource: deps.datasource.as_ref(),
            templater: &deps.templater,
            deadline: tokio::time::Instant::now() + interval,
            resend_delay: deps.resend_delay,
            outage_tolerance: deps.outage_tolerance,
            for_grace_period: deps.for_grace_period,
            record_sink: deps.record_sink.as_deref(),
        };
        let outcome = group.evaluate(ts, &ctx).await;
        if let Some(store) = &deps.store
            && let Err(e) = store.save_group(&group)
        {
            tracing::error!(error = %e, group = %group.name, "saving alert state failed");
        }
        deps.shared.publish(&group);
        if let Some(rw) = &deps.remote_write {
            let query_ts = ts - chrono::Duration::from_std(group.query_offset).unwrap_or_default();
            // Recorded series went out inline (record_sink); ALERTS go here.
            let points = stale.points(&group, query_ts, false);
            if !points.is_empty() && rw.try_send(points).is_err() {
                tracing::warn!(group = %group.name, "remote-write queue full; samples dropped");
            }
        }
        deps.shared
            .metrics
            .group_evaluated(&group, outcome.evaluated, outcome.failed, missed);
        if !outcome.to_send.is_empty() {
            let batch: Vec<OutAlert> = outcome
                .to_send
                .iter()
                .map(|(expr, a)| {
                    OutAlert::from_alert(a, expr, &deps.external_url, &deps.external_labels)
                })
                .collect();
            let n = batch.len();
            if deps.notify.try_send(batch).is_err() {
                deps.shared.metrics.notifications_dropped(n);
            }
        }
    }
}

/// The running groups and how to stop them.
struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Group>>,
}

fn start(groups: Vec<Group>, deps: &Arc<Deps>) -> Running {
    let (stop, rx) = watch::channel(false);
    deps.shared.replace_all(&groups);
    let tasks = groups
        .into_iter()
        .map(|g| tokio::spawn(run_group(g, deps.clone(), rx.clone())))
        .collect();
    Running { stop, tasks }
}

async fn stop(running: Running) -> Vec<Group> {
    let _ = running.stop.send(true);
    let mut groups = Vec::new();
    for t in running.tasks {
        match t.await {
            Ok(g) => groups.push(g),
            Err(e) => tracing::error!(error = %e, "a group task ended abnormally"),
        }
    }
    groups
}

/// Runs the evaluator until SIGTERM or SIGINT.
pub async fn run(args: EvaluatorArgs) -> Result<(), EvaluatorError> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut registry = prometheus_client::registry::Registry::default();
    let is_embedded = args.datasource_kind == embedded::DatasourceKind::Embedded;
    let embedded_metrics = is_embedded.then(|| embedded::EmbeddedMetrics::register(&mut registry));
    let querier_url = match &args.datasource_kind {
        // Template `query` calls go to our own query API.
        embedded::DatasourceKind::Embedded => Some(own_url(args.listen)),
        embedded::DatasourceKind::PrometheusAt(url) => Some(url.clone()),
        embedded::DatasourceKind::Prometheus => args.datasource.datasource_url.clone(),
    };
    let owner_routing = match &args.routing_file {
        Some(file) => {
            let state_dir = args
                .state_dir
                .as_ref()
                .ok_or(EvaluatorError::RoutingNeedsStateDir)?;
            let mut config = crate::notify::NotifierConfig::new(file, &args.external_url);
            config.templates_dir = args.templates_dir.clone();
            let mut querier = crate::notify::context::PrometheusQuerier::new(
                querier_url.as_deref().unwrap_or_default(),
                reqwest::Client::new(),
            );
            if let Some(token) = &args.datasource.datasource_bearer_token_file {
                querier = querier.with_bearer_token_file(token.clone());
            }
            let handle =
                crate::notify::Notifier::start(config, state_dir, Arc::new(querier), &mut registry)
                    .await?;
            tracing::info!(routing_file = %file.display(), "owner routing enabled");
            Some(handle)
        }
        None => None,
    };
    let http_datasource = match &args.datasource_kind {
        embedded::DatasourceKind::Embedded => None,
        embedded::DatasourceKind::Prometheus => Some(args.datasource.build()?),
        embedded::DatasourceKind::PrometheusAt(url) => {
            let mut ds = args.datasource.clone();
            ds.datasource_url = Some(url.clone());
            Some(ds.build()?)
        }
    };
    let store = match &args.state_dir {
        Some(dir) => Some(Store::open(dir)?),
        None => None,
    };
    let mut groups = load_groups(&args.rules, args.evaluation_interval)?;
    if let Some(store) = &store {
        let removed = store.retain_only(&groups)?;
        if removed > 0 {
            tracing::info!(
                rules = removed,
                "dropped saved state of rules no longer configured"
            );
        }
        for g in &mut groups {
            let n = store.load_into(g)?;
            if n > 0 {
                tracing::info!(group = %g.name, alerts = n, "restored alert state");
            }
        }
    }

    let embedded_runtime = embedded_metrics.map(|m| {
        embedded::EmbeddedRuntime::start(
            &args.embedded,
            &groups,
            args.evaluation_interval,
            args.state_dir.clone(),
            m,
        )
    });
    let datasource: Arc<dyn Datasource> = match (&embedded_runtime, http_datasource) {
        (Some(rt), _) => Arc::new(rt.datasource.clone()),
        (None, Some(http)) => Arc::new(http),
        (None, None) => return Err(datasource::DatasourceError::NoUrl.into()),
    };

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(4);
    let shared = Arc::new(Shared {
        groups: RwLock::new(Vec::new()),
        metrics: Arc::new(Metrics::with_registry(registry)),
        ready: false.into(),
        reload_tx,
        reload_error: Mutex::new(None),
    });
    shared.metrics.reloaded(true);

    let (notify_tx, notify_rx) = mpsc::channel(1024);
    let mut sinks: Vec<Arc<dyn AlertSink>> = args
        .alertmanager_url
        .iter()
        .map(|u| Arc::new(Alertmanager::new(u, args.alertmanager_timeout)) as Arc<dyn AlertSink>)
        .collect();
    if let Some(handle) = &owner_routing {
        sinks.push(Arc::new(OwnerRouting::new(handle.notifier())));
    }
    let external_labels: Labels = args.external_labels.iter().cloned().collect();
    let remote_write_task = args.remote_write_url.as_ref().map(|url| {
        let (tx, rx) = mpsc::channel(256);
        let writer = remote_write::RemoteWriter::new(url, args.remote_write_timeout);
        let task = tokio::spawn(remote_write::run_remote_writer(
            rx,
            writer,
            shared.metrics.clone(),
        ));
        (tx, task)
    });
    let (remote_write_tx, remote_write_task) = match remote_write_task {
        Some((tx, task)) => (Some(tx), Some(task)),
        // Without remote write, the embedded store keeps ALERTS itself, as Prometheus's TSDB does.
        None => (
            embedded_runtime.as_ref().map(|rt| rt.alerts_tx.clone()),
            None,
        ),
    };
    let record_sink: Option<Arc<dyn group::RecordSink>> = match &embedded_runtime {
        Some(rt) => Some(Arc::new(rt.datasource.clone())),
        None => args.remote_write_url.as_ref().map(|url| {
            Arc::new(remote_write::RemoteWriter::new(
                url,
                args.remote_write_timeout,
            )) as Arc<dyn group::RecordSink>
        }),
    };
    let deps = Arc::new(Deps {
        datasource,
        templater: Templater::new(external_labels.clone(), args.external_url.clone()),
        resend_delay: args.resend_delay,
        outage_tolerance: args.outage_tolerance,
        for_grace_period: args.for_grace_period,
        store,
        notify: notify_tx,
        shared: shared.clone(),
        external_url: args.external_url.clone(),
        external_labels,
        remote_write: remote_write_tx,
        record_sink,
    });
    let notifier = tokio::spawn(notifier::run_notifier(
        notify_rx,
        sinks,
        shared.metrics.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| EvaluatorError::Serve {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    let (server_stop_tx, server_stop_rx) = oneshot::channel::<()>();
    let mut app = api::router(shared.clone());
    if let Some(rt) = &embedded_runtime {
        app = app.merge(query_api::router(rt.datasource.clone()));
    }
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop_rx.await;
            })
            .into_future(),
    );
    tracing::info!(listen = %addr, groups = groups.len(), "evaluator started");

    let mut running = start(groups, &deps);
    shared
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let mut hup = signal(SignalKind::hangup()).map_err(EvaluatorError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(EvaluatorError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(EvaluatorError::Signal)?;
    loop {
        let reply = tokio::select! {
            r = reload_rx.recv() => r,
            _ = hup.recv() => None,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if let Some(handle) = &owner_routing
            && let Err(e) = handle.reload()
        {
            tracing::error!(error = %e, "routing reload rejected; the previous routing stays");
        }
        let result = match load_groups(&args.rules, args.evaluation_interval) {
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "reload rejected; the previous rules keep running");
                shared.metrics.reloaded(false);
                if let Ok(mut slot) = shared.reload_error.lock() {
                    *slot = Some(msg.clone());
                }
                Err(msg)
            }
            Ok(mut new_groups) => {
                let mut old = stop(running).await;
                for g in &mut new_groups {
                    if let Some(prev) = old.iter_mut().find(|o| o.key() == g.key()) {
                        g.take_state_from(prev);
                    }
                }
                tracing::info!(groups = new_groups.len(), "rules reloaded");
                if let Some(rt) = &embedded_runtime {
                    rt.rules_changed(&new_groups, args.embedded.min_retention);
                }
                running = start(new_groups, &deps);
                shared.metrics.reloaded(true);
                if let Ok(mut slot) = shared.reload_error.lock() {
                    *slot = None;
                }
                Ok(())
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    tracing::info!("shutting down");
    shared
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let final_groups = stop(running).await;
    if let Some(store) = &deps.store {
        for g in &final_groups {
            if let Err(e) = store.save_group(g) {
                tracing::error!(error = %e, "saving alert state at shutdown failed");
            }
        }
    }
    drop(deps);
    if let Some(rt) = embedded_runtime {
        rt.shutdown().await;
    }
    // Let queued notifications go out, but do not hang on a dead Alertmanager.
    let _ = tokio::time::timeout(Duration::from_secs(10), notifier).await;
    if let Some(handle) = owner_routing {
        handle.shutdown().await;
    }
    if let Some(task) = remote_write_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = server_stop_tx.send(());
    let _ = server.await;
    Ok(())
}

/// Where this process's own HTTP API is reached from the same machine.
fn own_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Runs `kubesignal replay`, writing the timeline to stdout: over the remote datasource, or,
/// with `--data`, over the file's samples in an in-process store that also takes the recording
/// results back (so chained rules work without a remote-write endpoint).
pub async fn run_replay(args: replay::ReplayArgs) -> Result<(), replay::ReplayError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match &args.data {
        Some(path) => {
            let storage = Arc::new(RwLock::new(data_file::load(path)?));
            let engine = crate::promql::Engine::new(crate::promql::EngineOptions {
                default_subquery_step: args.step,
                ..Default::default()
            });
            let datasource = embedded::EmbeddedDatasource::new(storage, engine);
            replay::replay_with_sink(&args, &datasource, Some(&datasource), &mut out).await
        }
        None => {
            let datasource = args.datasource.build()?;
            replay::replay(&args, &datasource, &mut out).await
        }
    }
}
