//! The per-node agent: collects USE series from the kubelet (or from `/proc` when there is no
//! kubelet) and RED series from application pods, and serves them on `/metrics`.

pub mod kubelet;
pub mod red;
pub mod render;
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

    /// YAML config file: flag names as keys, plus the agent's own sections.
    #[arg(long, env = "KUBESIGNAL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    tracing::info!(listen = %args.listen, "agent starting");
    Ok(())
}
