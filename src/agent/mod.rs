//! The per-node agent: collects USE series from the kubelet (or from `/proc` when there is no
//! kubelet) and RED series from application pods, and serves them on `/metrics`.

pub mod collect;
pub mod exporter;
pub mod kubelet;
pub mod local;
pub mod red;
pub mod render;
pub mod self_metrics;
pub mod use_series;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Where the agent reads node and container usage from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// The kubelet's Summary API, cAdvisor endpoint and pod list.
    Kubelet,
    /// `/proc` and cgroup files of the host the agent runs on.
    Local,
}

/// Flags of `kubesignal agent`.
#[derive(Clone, Debug, Args)]
pub struct AgentArgs {
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(long, env = "KUBESIGNAL_LISTEN", default_value = "0.0.0.0:9847")]
    pub listen: SocketAddr,

    /// Time between two collections.
    #[arg(long, env = "KUBESIGNAL_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Name of the node this agent runs on (the downward API's spec.nodeName).
    #[arg(long, env = "K8S_NODE_NAME")]
    pub node_name: Option<String>,

    /// Usage source; default: kubelet when a kubelet URL is given or the pod runs in a cluster,
    /// local otherwise.
    #[arg(long, env = "KUBESIGNAL_SOURCE", value_enum)]
    pub source: Option<SourceKind>,

    /// Kubelet base URL; default https://NODE_NAME:10250.
    #[arg(long, env = "KUBESIGNAL_KUBELET_URL")]
    pub kubelet_url: Option<String>,

    /// CA bundle that signed the kubelet's serving certificate; default: the service account's.
    #[arg(long, env = "KUBESIGNAL_KUBELET_CA_FILE")]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Bearer token file for the kubelet; default: the service account's token.
    #[arg(long, env = "KUBESIGNAL_KUBELET_TOKEN_FILE")]
    pub kubelet_token_file: Option<PathBuf>,

    /// Do not verify the kubelet's certificate. Only for clusters whose kubelet certificates
    /// cannot be verified; never the default.
    #[arg(long, env = "KUBESIGNAL_KUBELET_INSECURE_SKIP_VERIFY")]
    pub kubelet_insecure_skip_verify: bool,

    /// Reach the kubelet through the API server's node proxy with this kubeconfig (for running
    /// outside the cluster).
    #[arg(long, env = "KUBESIGNAL_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Application /metrics URL to scrape for RED series (repeatable).
    #[arg(long, env = "KUBESIGNAL_STATIC_TARGET", value_delimiter = ',')]
    pub static_target: Vec<String>,

    /// Longest time one collection may take before it is abandoned and counted as failed.
    #[arg(long, env = "KUBESIGNAL_COLLECTION_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub collection_timeout: Duration,

    /// Largest response body accepted from the kubelet, in bytes.
    #[arg(long, env = "KUBESIGNAL_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Connect to this IP instead of resolving the node name, still verifying the kubelet's
    /// certificate against the node name (certificates often lack IP SANs).
    #[arg(long, env = "K8S_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,

    /// YAML config file: flag names as keys, plus the agent's own sections.
    #[arg(long, env = "KUBESIGNAL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The RED part of the config file or a static target is invalid.
    #[error(transparent)]
    RedConfig(#[from] red::config::RedConfigError),
    /// The RED collector could not be set up.
    #[error(transparent)]
    Red(#[from] red::RedError),
    /// The kubelet source needs a node name or URL.
    #[error("the kubelet source needs --node-name (env K8S_NODE_NAME) or --kubelet-url")]
    NoKubeletTarget,
    /// The kubelet client could not be set up.
    #[error(transparent)]
    Kubelet(#[from] kubelet::client::KubeletError),
    /// The HTTP server failed.
    #[error(transparent)]
    Serve(#[from] crate::http::ServeError),
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let source = build_source(&args)?;
    let (listener, addr) = crate::http::bind(args.listen).await?;
    tracing::info!(
        %addr,
        source = source.label(),
        node = source.node(),
        interval = ?args.interval,
        "agent listening"
    );
    let red_config = match &args.config {
        Some(path) => red::config::RedConfig::from_file(path)?,
        None => red::config::RedConfig::default(),
    };
    let red = red::RedCollector::new(red_config, source.node(), args.interval)?;
    let static_targets = red.static_targets(&args.static_target)?;
    let exporter = exporter::Exporter::new(vec![Box::new(red.metrics())]);
    let ready = crate::http::Readiness::default();
    let router = exporter
        .router()
        .merge(crate::http::health_routes(ready.clone()));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::http::serve(
        listener,
        router,
        wait_for(stop_rx.clone()),
    ));
    let signal = tokio::spawn(async move {
        crate::http::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let red = RedPart {
        collector: red,
        static_targets,
    };
    collection_loop(source, red, &args, &exporter, &ready, stop_rx).await;
    signal.abort();
    server.await.ok().transpose()?;
    tracing::info!("agent stopped");
    Ok(())
}

/// The RED side of a collection: the scraper and the targets that do not come from pods.
struct RedPart {
    collector: red::RedCollector,
    static_targets: Vec<red::targets::Target>,
}

/// Collects every `interval` until told to stop: USE first (bounded by the collection timeout),
/// then RED from the pods it listed and the static targets (each scrape bounded by its own
/// timeout, spread over part of the interval). Collections run one after another, so they
/// never overlap; a tick missed because a collection ran long is skipped, not queued.
async fn collection_loop(
    mut source: collect::Source,
    mut red: RedPart,
    args: &AgentArgs,
    exporter: &exporter::Exporter,
    ready: &crate::http::Readiness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let metrics = exporter.self_metrics();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(args.collection_timeout, source.collect(metrics)) => r,
            _ = stop.changed() => return,
        };
        metrics.duration("collection", started.elapsed().as_secs_f64());
        let mut targets = red.static_targets.clone();
        match outcome {
            Ok(Ok((snapshot, pods))) => {
                if let Some(pods) = &pods {
                    targets.extend(red::targets::pod_targets(pods, source.node()));
                }
                exporter.publish(snapshot);
                metrics.collection("success");
                metrics.last_success.set(unix_now());
                if !ready.is_ready() {
                    tracing::info!(
                        seconds = started.elapsed().as_secs_f64(),
                        "first collection done, ready"
                    );
                    ready.set_ready();
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "collection failed");
                metrics.collection("failure");
                exporter.clear(source.node());
            }
            Err(_) => {
                tracing::warn!(timeout = ?args.collection_timeout, "collection timed out");
                metrics.error("collection", "timeout");
                metrics.collection("failure");
                exporter.clear(source.node());
            }
        }
        if !targets.is_empty() {
            tokio::select! {
                _ = red.collector.collect(targets) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn wait_for(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Picks and builds the usage source from the flags.
fn build_source(args: &AgentArgs) -> Result<collect::Source, AgentError> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new(kubelet::client::SERVICE_ACCOUNT_TOKEN).exists();
    let kind = args.source.unwrap_or(
        if args.kubelet_url.is_some() || args.kubeconfig.is_some() || in_cluster {
            SourceKind::Kubelet
        } else {
            SourceKind::Local
        },
    );
    let node = args.node_name.clone().unwrap_or_else(hostname);
    match kind {
        SourceKind::Local => Ok(collect::Source::Local {
            source: local::LocalSource::default(),
            node,
        }),
        SourceKind::Kubelet => {
            let client = if let Some(kubeconfig) = &args.kubeconfig {
                let node = args
                    .node_name
                    .as_deref()
                    .ok_or(AgentError::NoKubeletTarget)?;
                kubelet::client::KubeletClient::node_proxy(
                    kubeconfig,
                    node,
                    args.collection_timeout,
                    args.max_body_bytes,
                )?
            } else {
                let url = match (&args.kubelet_url, &args.node_name) {
                    (Some(url), _) => url.clone(),
                    (None, Some(node)) => format!("https://{node}:10250"),
                    (None, None) => return Err(AgentError::NoKubeletTarget),
                };
                let default_file = |path: &str| {
                    let p = std::path::PathBuf::from(path);
                    p.exists().then_some(p)
                };
                kubelet::client::KubeletClient::direct(&kubelet::client::KubeletConfig {
                    url,
                    connect_ip: args.node_ip,
                    ca_file: args
                        .kubelet_ca_file
                        .clone()
                        .or_else(|| default_file(kubelet::client::SERVICE_ACCOUNT_CA)),
                    token_file: args
                        .kubelet_token_file
                        .clone()
                        .or_else(|| default_file(kubelet::client::SERVICE_ACCOUNT_TOKEN)),
                    insecure_skip_verify: args.kubelet_insecure_skip_verify,
                    timeout: args.collection_timeout,
                    max_body_bytes: args.max_body_bytes,
                })?
            };
            if args.kubelet_insecure_skip_verify {
                tracing::warn!(
                    "kubelet certificate verification is DISABLED (--kubelet-insecure-skip-verify)"
                );
            }
            Ok(collect::Source::Kubelet {
                client,
                node,
                state: use_series::UseState::default(),
            })
        }
    }
}

/// This host's name, for the `node` label of the local source.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
