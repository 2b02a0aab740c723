//! Helpers of the RED integration tests: a real HTTP application server on 127.0.0.1 whose
//! answers the test scripts, the real kubelet pod fixtures, an independent reader of exposition
//! lines, and a real Prometheus process.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use kubesignal::agent::kubelet::pods::{Pod, PodList};
use kubesignal::agent::red::render::RedMetrics;
use kubesignal::agent::red::targets::{PATH_ANNOTATION, PORT_ANNOTATION, SCRAPE_ANNOTATION};
use prometheus_client::registry::Registry;

/// A file of `../shared/fixtures` beside the repository (or `KUBESIGNAL_FIXTURES`), read whole.
pub fn fixture(relative: &str) -> String {
    let path = shared_fixtures::dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

#[path = "fixtures.rs"]
mod shared_fixtures;

/// The real kubelet `/pods` payload of the k8s 1.34 fixture cluster.
pub fn fixture_pods() -> PodList {
    PodList::from_json(fixture("kubelet-pods/nri-k8s-1_34-pods.json").as_bytes())
        .expect("the kubelet-pods fixture decodes")
}

/// Node name of that fixture.
pub const FIXTURE_NODE: &str = "datagen-1-34";

/// Takes the pod named `name` out of the fixture list, annotated for scraping at
/// `127.0.0.1:port` + `path`.
pub fn annotated_pod(pods: &PodList, name: &str, port: u16, path: &str) -> Pod {
    let mut pod = pods
        .items
        .iter()
        .find(|p| p.metadata.name == name)
        .unwrap_or_else(|| panic!("pod {name} is not in the fixture"))
        .clone();
    let a = &mut pod.metadata.annotations;
    a.insert(SCRAPE_ANNOTATION.into(), "true".into());
    a.insert(PORT_ANNOTATION.into(), port.to_string());
    a.insert(PATH_ANNOTATION.into(), path.into());
    pod.status.pod_ip = Some("127.0.0.1".into());
    pod
}

/// What the application server answers on one path.
#[derive(Clone)]
pub enum Reply {
    /// A body with a content type, optionally gzip-compressed (by the real `gzip` program).
    Body {
        /// The bytes sent.
        bytes: Arc<Vec<u8>>,
        /// `Content-Type`.
        content_type: &'static str,
        /// Whether `Content-Encoding: gzip` is set.
        gzip: bool,
    },
    /// Never answers.
    Hang,
    /// Answers `body` (text format) after a delay.
    Slow {
        /// The body.
        body: Arc<String>,
        /// How long to wait before answering.
        delay: Duration,
    },
    /// A valid-looking exposition generated lazily, `bytes` long in total.
    Endless {
        /// Total size.
        bytes: u64,
    },
    /// One series per label value, `count` of them, generated lazily.
    ManyLabels {
        /// Number of distinct label values.
        count: u64,
    },
}

/// Prometheus text format 0.0.4.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics 1.0 text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Reply {
    /// A plain text body.
    pub fn text(body: impl Into<String>, content_type: &'static str) -> Self {
        Reply::Body {
            bytes: Arc::new(body.into().into_bytes()),
            content_type,
            gzip: false,
        }
    }

    /// A body compressed with the system's `gzip`.
    pub fn gzipped(body: &str, content_type: &'static str) -> Self {
        use std::io::Write;
        let mut child = Command::new("gzip")
            .args(["-c", "-n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the `gzip` program is needed by this test: apt-get install -y gzip");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gzip failed");
        Reply::Body {
            bytes: Arc::new(out.stdout),
            content_type,
            gzip: true,
        }
    }
}

#[derive(Default)]
struct AppState {
    routes: Mutex<HashMap<String, Reply>>,
    streamed: AtomicU64,
    accept: Mutex<Vec<String>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// A real HTTP server (axum on 127.0.0.1:0) answering each path as scripted.
pub struct AppServer {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AppServer {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(AppState::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    /// Sets (or replaces) what `path` answers.
    pub fn set(&self, path: &str, reply: Reply) {
        self.state.routes.lock().unwrap().insert(path.into(), reply);
    }

    /// Makes `path` answer 404 from now on.
    pub fn remove(&self, path: &str) {
        self.state.routes.lock().unwrap().remove(path);
    }

    /// Bytes produced so far by the lazily generated bodies.
    pub fn streamed_bytes(&self) -> u64 {
        self.state.streamed.load(Ordering::Relaxed)
    }

    /// Most `Slow` requests being answered at the same time so far.
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// `Accept` headers received so far.
    pub fn accept_headers(&self) -> Vec<String> {
        self.state.accept.lock().unwrap().clone()
    }

    /// URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn answer(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        state.accept.lock().unwrap().push(accept.to_string());
    }
    let reply = state.routes.lock().unwrap().get(uri.path()).cloned();
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    match reply {
        Reply::Body {
            bytes,
            content_type,
            gzip,
        } => {
            let mut r = Response::builder().header(header::CONTENT_TYPE, content_type);
            if gzip {
                r = r.header(header::CONTENT_ENCODING, "gzip");
            }
            r.body(Body::from((*bytes).clone())).unwrap()
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Slow { body, delay } => {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            Response::builder()
                .header(header::CONTENT_TYPE, TEXT)
                .body(Body::from((*body).clone()))
                .unwrap()
        }
        Reply::Endless { bytes } => {
            let chunk: Arc<Vec<u8>> = Arc::new(
                "endless_metric{kind=\"filler\"} 1\n"
                    .repeat(2048)
                    .into_bytes(),
            );
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let (chunk, state) = (chunk.clone(), state.clone());
                async move {
                    if sent >= bytes {
                        return None;
                    }
                    state
                        .streamed
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    Some((
                        Ok::<_, std::io::Error>((*chunk).clone()),
                        sent + chunk.len() as u64,
                    ))
                }
            });
            streaming(stream)
        }
        Reply::ManyLabels { count } => {
            let stream = futures_util::stream::unfold(0u64, move |next| {
                let state = state.clone();
                async move {
                    if next >= count {
                        return None;
                    }
                    let end = (next + 2000).min(count);
                    let mut text = String::with_capacity(2000 * 48);
                    for i in next..end {
                        text.push_str(&format!(
                            "http_requests_total{{code=\"200\",handler=\"/item/{i}\"}} 1\n"
                        ));
                    }
                    state
                        .streamed
                        .fetch_add(text.len() as u64, Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(text.into_bytes()), end))
                }
            });
            streaming(stream)
        }
    }
}

fn streaming<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
{
    Response::builder()
        .header(header::CONTENT_TYPE, TEXT)
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Labels and value of one sample line.
pub type Series = (BTreeMap<String, String>, f64);

/// The samples named exactly `name` in exposition text, read line by line with a regex (kept
/// independent of the crate's parser on purpose).
pub fn samples(text: &str, name: &str) -> Vec<Series> {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            let close = rest.rfind('}').expect("closing brace");
            (&rest[..close], rest[close + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            continue;
        };
        let value = value.split_whitespace().next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in line {line}")),
        };
        let labels = label
            .captures_iter(labels)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect();
        out.push((labels, value));
    }
    out
}

/// Builds a label map from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Serves a registry holding the RED collector on `/metrics` (what the agent does), on a free
/// loopback port.
pub struct MetricsServer {
    /// Its address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetricsServer {
    /// Starts serving `metrics`.
    pub async fn start(metrics: RedMetrics) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics));
        let registry = Arc::new(registry);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    prometheus_client::encoding::text::encode(&mut body, &registry).unwrap();
                    Response::builder()
                        .header(header::CONTENT_TYPE, OPENMETRICS)
                        .body(Body::from(body))
                        .unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }
}

/// A real Prometheus server scraping one target every second; killed on drop.
pub struct PrometheusProcess {
    child: Child,
    /// Base URL of its HTTP API.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrometheusProcess {
    /// Starts `prometheus` scraping `target` (host:port) at 1s and waits until it is ready.
    pub async fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: agent\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the real Prometheus server is needed by this test: \
                 apt-get install -y prometheus (the `prometheus` binary on PATH)",
            );
        let p = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/-/ready", p.url)).send().await
                && r.status().is_success()
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready on port {port}");
    }

    /// Runs an instant query now and returns its vector result.
    pub async fn query(&self, promql: &str) -> Vec<Series> {
        self.query_at(promql, None).await
    }

    /// Runs an instant query at `time` (Unix seconds; now when `None`).
    pub async fn query_at(&self, promql: &str, time: Option<f64>) -> Vec<Series> {
        let mut params = vec![("query", promql.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "query {promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {promql}: not a vector: {body}"))
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
