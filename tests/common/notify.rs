//! Helpers for the notification tests: a real SMTP server process (aiosmtpd), a real Prometheus
//! with backfilled data, a recording HTTP receiver, and an HTTP server that speaks the Kubernetes
//! API's list and watch.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use kubesignal::notify::outbox::OutboxOptions;
use kubesignal::notify::owners::KubeConfig;
use kubesignal::notify::{Alert, ContextQuerier, Notifier, NotifierConfig, NotifierHandle};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        assert!(Instant::now() < end, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The system Python with aiosmtpd (Debian's `python3-aiosmtpd`).
const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server (aiosmtpd) storing every message in a Maildir; killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts aiosmtpd on `port` (use [`free_port`]).
    pub fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts aiosmtpd with extra command-line options (e.g. `--tlscert`/`--tlskey`).
    pub fn start_with(port: u16, extra: &[&std::ffi::OsStr]) -> Self {
        let ok = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "these tests need an SMTP server: install Debian's python3-aiosmtpd \
             (apt-get install -y python3-aiosmtpd) so that `{PYTHON} -m aiosmtpd` works"
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let mut child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        wait_for_port(port, &mut child, "aiosmtpd");
        Self {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// Starts an aiosmtpd server that requires AUTH (PLAIN/LOGIN, allowed without TLS) and
    /// accepts only `user` with `password`.
    pub fn start_with_auth(port: u16, user: &str, password: &str) -> Self {
        const SCRIPT: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
host, port, maildir, user, password = sys.argv[1:6]
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(maildir), hostname=host, port=int(port), authenticator=check,
               auth_required=True, auth_require_tls=False)
c.start()
while True:
    time.sleep(3600)
"#;
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let mut child = Command::new(PYTHON)
            .args(["-c", SCRIPT, "127.0.0.1", &port.to_string()])
            .arg(&maildir)
            .args([user, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd with auth (needs python3-aiosmtpd)");
        wait_for_port(port, &mut child, "aiosmtpd (auth)");
        Self {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// The raw messages received so far.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                files.sort();
                for f in files {
                    if let Ok(b) = std::fs::read(&f) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus serving data backfilled with promtool from OpenMetrics text; killed on drop.
pub struct PrometheusServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Backfills `openmetrics` (must end with `# EOF`) and starts Prometheus on it.
    pub fn with_data(openmetrics: &str) -> Self {
        for tool in ["prometheus", "promtool"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "these tests need `{tool}` on PATH: apt-get install -y prometheus"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let om = dir.path().join("data.om");
        std::fs::write(&om, openmetrics).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").unwrap();
        let port = free_port();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=30d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        wait_for_port(port, &mut child, "prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http_probe::blocking_get_ok(&format!("{url}/-/ready"));
            if ready {
                break;
            }
            assert!(Instant::now() < end, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking GET over a std TCP stream (the test crate has no blocking reqwest).
mod http_probe {
    use std::io::{Read, Write};
    pub fn blocking_get_ok(url: &str) -> bool {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut s) = std::net::TcpStream::connect(host) else {
            return false;
        };
        let _ = write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
    }
}

/// One request received by [`HttpSink`].
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A recording HTTP receiver; answers each request with the next status of its script (the last
/// one repeats), 200 when unscripted.
#[derive(Clone, Default)]
pub struct HttpSink {
    pub received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
    pub url: String,
}

impl HttpSink {
    pub async fn start(statuses: Vec<u16>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sink = HttpSink {
            received: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses)),
            url,
        };
        let state = sink.clone();
        let app = axum::Router::new()
            .fallback(
                |State(s): State<HttpSink>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    s.received.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    let mut st = s.statuses.lock().unwrap();
                    let code = if st.len() > 1 {
                        st.remove(0)
                    } else {
                        st.first().copied().unwrap_or(200)
                    };
                    StatusCode::from_u16(code).unwrap()
                },
            )
            .with_state(state);
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        sink
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn to_path(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

/// The Kubernetes API paths the fake serves.
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/deployments";
pub const STATEFULSETS: &str = "/apis/apps/v1/statefulsets";
pub const DAEMONSETS: &str = "/apis/apps/v1/daemonsets";

struct KubeState {
    objects: Mutex<HashMap<&'static str, Vec<Value>>>,
    rv: AtomicU64,
    events: HashMap<&'static str, broadcast::Sender<Value>>,
    watches: AtomicUsize,
    lists: AtomicUsize,
    full_object_requests: AtomicUsize,
    token: String,
}

/// An HTTP server speaking the Kubernetes API's list and watch (JSON lists with
/// `metadata.resourceVersion`, `?watch=true` streams of newline-delimited events) for namespaces,
/// deployments, statefulsets and daemonsets, with bearer-token auth. Like the API server, it
/// answers `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1` with
/// metadata-only objects.
pub struct FakeKube {
    state: Arc<KubeState>,
    pub url: String,
    pub token_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn kind_of(path: &str) -> (&'static str, &'static str, &'static str) {
    match path {
        NAMESPACES => ("NamespaceList", "v1", "Namespace"),
        DEPLOYMENTS => ("DeploymentList", "apps/v1", "Deployment"),
        STATEFULSETS => ("StatefulSetList", "apps/v1", "StatefulSet"),
        _ => ("DaemonSetList", "apps/v1", "DaemonSet"),
    }
}

impl FakeKube {
    pub async fn start(objects: HashMap<&'static str, Vec<Value>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token".to_string();
        // As the kubelet writes a projected token: no trailing newline.
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, &token).unwrap();
        // As `echo $TOKEN > file` writes one.
        std::fs::write(dir.path().join("token-echoed"), format!("{token}\n")).unwrap();
        let events = [NAMESPACES, DEPLOYMENTS, STATEFULSETS, DAEMONSETS]
            .into_iter()
            .map(|p| (p, broadcast::channel(64).0))
            .collect();
        let state = Arc::new(KubeState {
            objects: Mutex::new(objects),
            rv: AtomicU64::new(48_213),
            events,
            watches: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            full_object_requests: AtomicUsize::new(0),
            token,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle_kube)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            state,
            url,
            token_file,
            _dir: dir,
        }
    }

    pub fn config(&self) -> KubeConfig {
        KubeConfig {
            api_url: self.url.clone(),
            token_file: Some(self.token_file.clone()),
            ca_file: None,
        }
    }

    /// The client configuration with a hand-written token file that ends in a newline.
    pub fn config_with_echoed_token(&self) -> KubeConfig {
        KubeConfig {
            token_file: Some(self._dir.path().join("token-echoed")),
            ..self.config()
        }
    }

    /// Number of open watch requests so far.
    pub fn watches(&self) -> usize {
        self.state.watches.load(Ordering::SeqCst)
    }

    /// Number of list requests so far.
    pub fn lists(&self) -> usize {
        self.state.lists.load(Ordering::SeqCst)
    }

    /// Number of list or watch requests that asked for whole objects rather than metadata only.
    pub fn full_object_requests(&self) -> usize {
        self.state.full_object_requests.load(Ordering::SeqCst)
    }

    /// Replaces an object (matched by namespace and name) and sends a MODIFIED watch event.
    pub fn modify(&self, path: &'static str, mut object: Value) {
        let rv = self.state.rv.fetch_add(1, Ordering::SeqCst) + 1;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        {
            let mut objects = self.state.objects.lock().unwrap();
            let list = objects.entry(path).or_default();
            let same = |o: &Value| {
                o["metadata"]["name"] == object["metadata"]["name"]
                    && o["metadata"]["namespace"] == object["metadata"]["namespace"]
            };
            list.retain(|o| !same(o));
            list.push(object.clone());
        }
        self.state.events[path]
            .send(json!({"type": "MODIFIED", "object": object}))
            .expect("no watcher connected");
    }

    /// Sends a watch ERROR event with `410 Gone` (the client must list again).
    pub fn expire_watch(&self, path: &'static str) {
        let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "too old resource version: 1 (48300)", "reason": "Expired", "code": 410}});
        self.state.events[path]
            .send(event)
            .expect("no watcher connected");
    }

    /// Replaces an object without telling watchers (visible only to a new list).
    pub fn replace_silently(&self, path: &'static str, object: Value) {
        let mut objects = self.state.objects.lock().unwrap();
        let list = objects.entry(path).or_default();
        list.retain(|o| {
            !(o["metadata"]["name"] == object["metadata"]["name"]
                && o["metadata"]["namespace"] == object["metadata"]["namespace"])
        });
        list.push(object);
    }
}

async fn handle_kube(
    State(state): State<Arc<KubeState>>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", state.token) {
        return Response::builder()
            .status(401)
            .body(Body::from(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
            ))
            .unwrap();
    }
    let path: &'static str = match uri.path() {
        NAMESPACES => NAMESPACES,
        DEPLOYMENTS => DEPLOYMENTS,
        STATEFULSETS => STATEFULSETS,
        DAEMONSETS => DAEMONSETS,
        _ => return Response::builder().status(404).body(Body::empty()).unwrap(),
    };
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let watch = q.get("watch").is_some_and(|w| w == "1" || w == "true");
    let metadata_only = accept.contains(if watch {
        "as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    } else {
        "as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    });
    if !metadata_only {
        state.full_object_requests.fetch_add(1, Ordering::SeqCst);
    }
    if watch {
        let rx = state.events[path].subscribe();
        state.watches.fetch_add(1, Ordering::SeqCst);
        let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(mut event) => {
                        if metadata_only && event["type"] != "ERROR" {
                            event["object"] = partial_metadata(&event["object"]);
                        }
                        let line = event.to_string() + "\n";
                        return Some((Ok::<_, std::io::Error>(line), rx));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    state.lists.fetch_add(1, Ordering::SeqCst);
    let (list_kind, api_version, _) = kind_of(path);
    let items: Vec<Value> = state
        .objects
        .lock()
        .unwrap()
        .get(path)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            if metadata_only {
                return partial_metadata(&o);
            }
            // Lists omit kind/apiVersion on items, as the real API server does.
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    let (list_kind, api_version) = if metadata_only {
        ("PartialObjectMetadataList", "meta.k8s.io/v1")
    } else {
        (list_kind, api_version)
    };
    let body = json!({
        "kind": list_kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": state.rv.load(Ordering::SeqCst).to_string()},
        "items": items,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The metadata-only form of an object, as the API server sends it for `as=PartialObjectMetadata`.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

/// A Namespace object shaped like the API server's.
pub fn namespace(name: &str, annotations: &[(&str, &str)]) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": format!("6f1d2c1e-0000-4000-8000-{:012x}", kubesignal::notify::fnv1a(name.as_bytes()) & 0xffff_ffff_ffff),
            "resourceVersion": "41022",
            "creationTimestamp": "2026-09-14T08:12:44Z",
            "labels": {"kubernetes.io/metadata.name": name},
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
                "time": "2026-09-14T08:12:44Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}}}]
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

/// An apps/v1 workload (Deployment, StatefulSet or DaemonSet) shaped like the API server's.
pub fn workload(kind: &str, namespace: &str, name: &str, annotations: &[(&str, &str)]) -> Value {
    let mut ann: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    if kind == "Deployment" {
        ann.insert("deployment.kubernetes.io/revision".into(), json!("7"));
    }
    let mut spec = json!({
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": name}},
            "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1.8.2"),
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler", "securityContext": {}}
        },
        "revisionHistoryLimit": 10
    });
    let status = match kind {
        "DaemonSet" => {
            json!({"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberAvailable": 3,
                "numberMisscheduled": 0, "numberReady": 3, "observedGeneration": 2, "updatedNumberScheduled": 3})
        }
        "StatefulSet" => {
            spec["replicas"] = json!(3);
            spec["serviceName"] = json!(name);
            spec["podManagementPolicy"] = json!("OrderedReady");
            json!({"availableReplicas": 3, "currentReplicas": 3, "readyReplicas": 3, "replicas": 3,
                "observedGeneration": 4, "collisionCount": 0})
        }
        _ => {
            spec["replicas"] = json!(3);
            spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
            json!({"availableReplicas": 3, "readyReplicas": 3, "replicas": 3, "updatedReplicas": 3,
                "observedGeneration": 7,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastTransitionTime": "2026-11-20T10:01:02Z", "lastUpdateTime": "2026-11-20T10:01:02Z"}]})
        }
    };
    json!({
        "kind": kind,
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("0b7c4a52-1111-4222-8333-{:012x}", kubesignal::notify::fnv1a(name.as_bytes()) & 0xffff_ffff_ffff),
            "resourceVersion": "47990",
            "generation": 7,
            "creationTimestamp": "2026-10-02T14:30:00Z",
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
            "annotations": ann
        },
        "spec": spec,
        "status": status
    })
}

/// Writes a routing file.
pub fn write_routing(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("routing.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a notifier with fast retries.
pub async fn start_notifier(
    routing: &Path,
    state_dir: &Path,
    kube: Option<KubeConfig>,
    querier: Arc<dyn ContextQuerier>,
) -> (NotifierHandle, Registry) {
    let mut registry = Registry::default();
    let mut config = NotifierConfig::new(routing, "http://kubesignal.example.com:9095");
    config.kubernetes = kube;
    config.outbox = OutboxOptions {
        base_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(800),
        ..OutboxOptions::default()
    };
    config.delivery_timeout = Duration::from_secs(5);
    let handle = Notifier::start(config, state_dir, querier, &mut registry)
        .await
        .expect("starting the notifier");
    (handle, registry)
}

/// A firing alert.
pub fn alert(labels: &[(&str, &str)], starts_at: DateTime<Utc>) -> Alert {
    Alert {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: BTreeMap::new(),
        starts_at,
        ends_at: None,
        generator_url: "http://kubesignal.example.com:9095/graph?g0.expr=up&g0.tab=1".into(),
        value: None,
        expr: None,
    }
}

/// The registry's text exposition.
pub fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// Value of one sample in the text exposition (`name{labels}` exactly as printed).
pub fn metric(registry: &Registry, series: &str) -> Option<f64> {
    metrics_text(registry)
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}
