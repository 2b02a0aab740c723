//! A kubelet played by a real HTTPS server: it serves the captured kubelet payloads from
//! `../shared/fixtures`, checks the bearer token like the real one, and can be told to misbehave
//! (hang, answer 401, send a huge or broken body, go away and come back).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

#[path = "fixtures.rs"]
mod shared_fixtures;

/// Path of the shared fixtures.
pub fn fixtures() -> PathBuf {
    shared_fixtures::dir()
}

/// One kubelet's payloads: summary, pod list and cAdvisor text of the same cluster.
#[derive(Clone, Debug)]
pub struct FixtureSet {
    pub name: &'static str,
    pub summary: PathBuf,
    pub pods: PathBuf,
    pub cadvisor: Option<PathBuf>,
}

/// The fixture sets captured together, matched by version.
pub fn fixture_sets() -> Vec<FixtureSet> {
    let f = fixtures();
    vec![
        FixtureSet {
            name: "k8s-1.31",
            summary: f.join("kubelet-summary/nri-k8s-1_31-summary.json"),
            pods: f.join("kubelet-pods/nri-k8s-1_31-pods.json"),
            cadvisor: Some(f.join("cadvisor/nri-k8s-1_31-cadvisor.prom")),
        },
        FixtureSet {
            name: "k8s-1.34-psi",
            summary: f.join("kubelet-summary/nri-k8s-1_34-psi-summary.json"),
            pods: f.join("kubelet-pods/nri-k8s-1_34-pods.json"),
            cadvisor: Some(f.join("cadvisor/nri-k8s-1_34-cadvisor.prom")),
        },
        FixtureSet {
            name: "minikube-legacy",
            summary: f.join("kubelet-summary/nri-minikube-legacy-summary.json"),
            pods: f.join("kubelet-pods/nri-minikube-legacy-pods.json"),
            cadvisor: Some(f.join("cadvisor/nri-k8s-1_15-legacy-labels-cadvisor.prom")),
        },
    ]
}

/// How the fake kubelet answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// Serve the payloads.
    Serve,
    /// Accept the request and never answer.
    Hang,
    /// Answer every request with this status.
    Status(u16),
    /// Stream a body of this many bytes on `/stats/summary`.
    HugeSummary(u64),
    /// Cut the summary JSON in half.
    TruncatedSummary,
    /// Serve a summary whose fields have the wrong JSON types.
    WrongTypedSummary,
}

struct Shared {
    summary: Vec<u8>,
    pods: Vec<u8>,
    cadvisor: Vec<u8>,
    token: String,
    behaviour: Behaviour,
    requests: AtomicUsize,
}

/// A running fake kubelet.
pub struct FakeKubelet {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Base URL, using the host name in its certificate.
    pub url: String,
    /// PEM file of the CA that signed its certificate.
    pub ca_file: PathBuf,
    /// File holding the token it accepts.
    pub token_file: PathBuf,
    shared: Arc<Mutex<Shared>>,
    acceptor: TlsAcceptor,
    task: Option<JoinHandle<()>>,
    /// Closes open connections too when the kubelet "goes away".
    gone: Option<tokio::sync::watch::Sender<bool>>,
    _dir: tempfile::TempDir,
}

impl FakeKubelet {
    /// Starts a kubelet serving `set` on 127.0.0.1, with a certificate for `localhost` signed by
    /// a fresh CA.
    pub async fn start(set: &FixtureSet) -> FakeKubelet {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let cadvisor = set.cadvisor.as_deref().map(read).unwrap_or_default();
        Self::start_with(read(&set.summary), read(&set.pods), cadvisor).await
    }

    /// Starts a kubelet serving the given bodies.
    pub async fn start_with(summary: Vec<u8>, pods: Vec<u8>, cadvisor: Vec<u8>) -> FakeKubelet {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = certificates();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let token = "kubesignal-test-token-0123456789".to_string();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();

        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let shared = Arc::new(Mutex::new(Shared {
            summary,
            pods,
            cadvisor,
            token,
            behaviour: Behaviour::Serve,
            requests: AtomicUsize::new(0),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut kubelet = FakeKubelet {
            addr,
            url: format!("https://localhost:{}", addr.port()),
            ca_file,
            token_file,
            shared,
            acceptor,
            task: None,
            gone: None,
            _dir: dir,
        };
        kubelet.spawn(listener);
        kubelet
    }

    fn spawn(&mut self, listener: TcpListener) {
        let router = Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        let acceptor = self.acceptor.clone();
        let (gone_tx, gone_rx) = tokio::sync::watch::channel(false);
        self.gone = Some(gone_tx);
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
                let mut gone = gone_rx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let router = router.clone();
                        async move {
                            use tower::ServiceExt;
                            router.oneshot(req).await
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = gone.changed() => {}
                    }
                });
            }
        }));
    }

    /// Changes how the kubelet answers from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.lock().unwrap().behaviour = behaviour;
    }

    /// Replaces the summary body.
    pub fn set_summary(&self, body: Vec<u8>) {
        self.shared.lock().unwrap().summary = body;
    }

    /// Replaces the pod list body.
    pub fn set_pods(&self, body: Vec<u8>) {
        self.shared.lock().unwrap().pods = body;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.lock().unwrap().requests.load(Ordering::Relaxed)
    }

    /// Stops listening: connections are refused until [`FakeKubelet::restart`].
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(gone) = self.gone.take() {
            let _ = gone.send(true);
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.spawn(listener);
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (behaviour, token, body) = {
        let s = shared.lock().unwrap();
        s.requests.fetch_add(1, Ordering::Relaxed);
        let body = match kubelet_path(uri.path()) {
            "/stats/summary" => Some(s.summary.clone()),
            "/pods" => Some(s.pods.clone()),
            "/metrics/cadvisor" => Some(s.cadvisor.clone()),
            _ => None,
        };
        (s.behaviour.clone(), s.token.clone(), body)
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {token}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let Some(body) = body else {
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    };
    let is_summary = kubelet_path(uri.path()) == "/stats/summary";
    match behaviour {
        Behaviour::Serve => body.into_response(),
        Behaviour::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Behaviour::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Behaviour::HugeSummary(size) if is_summary => {
            let chunk = bytes_chunk();
            let chunks = size.div_ceil(chunk.len() as u64);
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream).into_response()
        }
        Behaviour::TruncatedSummary if is_summary => {
            body[..body.len() / 2].to_vec().into_response()
        }
        Behaviour::WrongTypedSummary if is_summary => {
            br#"{"node": {"nodeName": 42, "cpu": {"usageCoreNanoSeconds": "lots"}}, "pods": {}}"#
                .to_vec()
                .into_response()
        }
        _ => body.into_response(),
    }
}

/// The kubelet path of a request, also when it came through the API server's node proxy
/// (`/api/v1/nodes/NODE/proxy/stats/summary`).
fn kubelet_path(path: &str) -> &str {
    path.strip_prefix("/api/v1/nodes/")
        .and_then(|rest| rest.split_once("/proxy"))
        .map_or(path, |(_, rest)| rest)
}

fn bytes_chunk() -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; 1 << 20])
}

/// A fresh CA, and a `localhost` certificate it signed: (CA PEM, leaf PEM, leaf key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubesignal test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}
