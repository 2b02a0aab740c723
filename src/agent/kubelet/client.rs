//! HTTPS client for the kubelet's read-only endpoints, directly or through the API server's node
//! proxy. Verifies TLS by default, sends the service-account token, and refuses bodies over a size
//! limit without buffering them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Certificate, Identity, StatusCode};

use super::kubeconfig::{Kubeconfig, KubeconfigError};
use crate::http::error_chain;

/// Default service-account files mounted into every pod.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Default cluster CA mounted into every pod.
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The kubelet endpoints the agent reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/stats/summary`: node, pod and container usage.
    Summary,
    /// `/metrics/cadvisor`: throttling, OOM events, machine capacity.
    Cadvisor,
    /// `/pods`: specs (requests, limits, owners) and statuses (restarts).
    Pods,
}

impl Endpoint {
    /// The path on the kubelet.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Summary => "/stats/summary",
            Endpoint::Cadvisor => "/metrics/cadvisor",
            Endpoint::Pods => "/pods",
        }
    }

    /// The `source` label value of self-metrics about this endpoint.
    pub fn source_label(self) -> &'static str {
        match self {
            Endpoint::Summary => "kubelet_summary",
            Endpoint::Cadvisor => "kubelet_cadvisor",
            Endpoint::Pods => "kubelet_pods",
        }
    }
}

/// How to reach the kubelet.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Base URL (`https://node-1:10250`), without a trailing slash.
    pub url: String,
    /// Connect to this address instead of resolving the URL's host, while still verifying the
    /// certificate against the host name (kubelet certificates often lack IP SANs).
    pub connect_ip: Option<IpAddr>,
    /// CA bundle to verify the kubelet with; only these CAs are trusted when set.
    pub ca_file: Option<PathBuf>,
    /// Bearer token file, read again for every request (projected tokens rotate).
    pub token_file: Option<PathBuf>,
    /// Skip certificate verification (explicit opt-in only).
    pub insecure_skip_verify: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: u64,
}

/// What went wrong talking to the kubelet. [`KubeletError::reason`] gives a short, bounded label
/// for the error counter.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The client could not be built (CA file, client certificate).
    #[error("setting up the kubelet client: {0}")]
    Setup(String),
    /// The kubeconfig could not be used.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// The token file could not be read.
    #[error("reading the bearer token file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("GET {url}: timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// Connection, TLS or protocol failure.
    #[error("GET {url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// Why, with the underlying causes.
        message: String,
    },
    /// The kubelet answered with a non-success status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The body is larger than the limit; reading stopped at the limit.
    #[error("GET {url}: body larger than the {limit}-byte limit")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
}

impl KubeletError {
    /// A short label value for `kubesignal_agent_scrape_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            KubeletError::Setup(_) | KubeletError::Kubeconfig(_) => "config",
            KubeletError::Token { .. } => "token",
            KubeletError::Timeout { .. } => "timeout",
            KubeletError::Transport { .. } => "connect",
            KubeletError::Status { status, .. } => match status.as_u16() {
                401 => "unauthorized",
                403 => "forbidden",
                400..=499 => "http_4xx",
                _ => "http_5xx",
            },
            KubeletError::TooLarge { .. } => "too_large",
        }
    }
}

/// Credentials added to every request.
#[derive(Clone, Debug)]
enum Auth {
    None,
    TokenFile(PathBuf),
    Token(String),
}

/// A client for one kubelet.
#[derive(Clone, Debug)]
pub struct KubeletClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    max_body_bytes: u64,
}

impl KubeletClient {
    /// A client that talks to the kubelet directly.
    pub fn direct(config: &KubeletConfig) -> Result<Self, KubeletError> {
        let mut builder = base_builder(config.timeout);
        if let Some(ca) = &config.ca_file {
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate_bundle(ca)?;
        }
        if config.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(ip) = config.connect_ip {
            let url = reqwest::Url::parse(&config.url)
                .map_err(|e| KubeletError::Setup(format!("kubelet URL {}: {e}", config.url)))?;
            let host = url.host_str().unwrap_or_default().to_string();
            let port = url.port_or_known_default().unwrap_or(10250);
            builder = builder.resolve(&host, (ip, port).into());
        }
        let http = builder
            .build()
            .map_err(|e| KubeletError::Setup(error_chain(&e)))?;
        Ok(KubeletClient {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            auth: config
                .token_file
                .clone()
                .map_or(Auth::None, Auth::TokenFile),
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// A client that reaches the kubelet of `node` through the API server's node proxy
    /// (`/api/v1/nodes/{node}/proxy`), with the credentials of a kubeconfig.
    pub fn node_proxy(
        kubeconfig: &Path,
        node: &str,
        timeout: Duration,
        max_body_bytes: u64,
    ) -> Result<Self, KubeletError> {
        let kc = Kubeconfig::load(kubeconfig)?;
        let target = kc.current()?;
        let mut builder = base_builder(timeout);
        if let Some(ca_pem) = &target.ca_pem {
            let certs = Certificate::from_pem_bundle(ca_pem)
                .map_err(|e| KubeletError::Setup(format!("cluster CA: {}", error_chain(&e))))?;
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if target.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(identity_pem) = &target.client_identity_pem {
            let identity = Identity::from_pem(identity_pem).map_err(|e| {
                KubeletError::Setup(format!("client certificate: {}", error_chain(&e)))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| KubeletError::Setup(error_chain(&e)))?;
        let auth = match (&target.token, &target.token_file) {
            (Some(t), _) => Auth::Token(t.clone()),
            (None, Some(f)) => Auth::TokenFile(f.clone()),
            _ => Auth::None,
        };
        Ok(KubeletClient {
            http,
            base: format!(
                "{}/api/v1/nodes/{}/proxy",
                target.server.trim_end_matches('/'),
                node
            ),
            auth,
            max_body_bytes,
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Fetches one endpoint's body, refusing it past the size limit.
    pub async fn fetch(&self, endpoint: Endpoint) -> Result<Vec<u8>, KubeletError> {
        let mut body = Vec::new();
        self.fetch_with(endpoint, |chunk| {
            body.extend_from_slice(chunk);
            true
        })
        .await?;
        Ok(body)
    }

    /// Fetches one endpoint, handing each chunk of the body to `sink` as it arrives (so a large
    /// cAdvisor text is parsed without being held whole). `sink` returns false to stop reading.
    /// The size limit applies to the whole body.
    pub async fn fetch_with(
        &self,
        endpoint: Endpoint,
        mut sink: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), KubeletError> {
        let url = format!("{}{}", self.base, endpoint.path());
        let mut request = self.http.get(&url);
        match &self.auth {
            Auth::None => {}
            Auth::Token(t) => request = request.bearer_auth(t),
            Auth::TokenFile(path) => {
                let token = tokio::fs::read_to_string(path).await.map_err(|source| {
                    KubeletError::Token {
                        path: path.clone(),
                        source,
                    }
                })?;
                request = request.bearer_auth(token.trim());
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        if !response.status().is_success() {
            return Err(KubeletError::Status {
                url,
                status: response.status(),
            });
        }
        let limit = self.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(KubeletError::TooLarge { url, limit });
        }
        let mut received: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&url, &e))?
        {
            received += chunk.len() as u64;
            if received > limit {
                return Err(KubeletError::TooLarge { url, limit });
            }
            if !sink(&chunk) {
                break;
            }
        }
        Ok(())
    }
}

trait BuilderExt: Sized {
    fn add_root_certificate_bundle(self, path: &Path) -> Result<Self, KubeletError>;
}

impl BuilderExt for reqwest::ClientBuilder {
    fn add_root_certificate_bundle(mut self, path: &Path) -> Result<Self, KubeletError> {
        let pem = std::fs::read(path)
            .map_err(|e| KubeletError::Setup(format!("reading CA file {}: {e}", path.display())))?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            KubeletError::Setup(format!("CA file {}: {}", path.display(), error_chain(&e)))
        })?;
        if certs.is_empty() {
            return Err(KubeletError::Setup(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        for c in certs {
            self = self.add_root_certificate(c);
        }
        Ok(self)
    }
}

fn base_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("kubesignal/", env!("CARGO_PKG_VERSION")))
}

fn transport_error(url: &str, e: &reqwest::Error) -> KubeletError {
    if e.is_timeout() {
        KubeletError::Timeout {
            url: url.to_string(),
        }
    } else {
        KubeletError::Transport {
            url: url.to_string(),
            message: error_chain(e),
        }
    }
}
