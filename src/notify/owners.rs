//! Owner resolution: who owns an alert, and which extra receivers its workload or namespace asks for.
//!
//! First match wins: the alert's `owner` label, then its `team` label, then the
//! `kubesignal.io/owner` annotation of the alert's workload, then of its namespace; otherwise nobody
//! (the triage receiver). `kubesignal.io/email` (comma-separated) and `kubesignal.io/slack-channel`
//! on the workload or the namespace add receivers.
//!
//! Annotations come from the Kubernetes API through a small list+watch client (one reflector per
//! resource kind) that keeps only the `kubesignal.io/*` annotations in memory. We use plain reqwest
//! rather than kube-rs/k8s-openapi: four read-only resources and three fields do not justify
//! compiling the full typed API, and the watch protocol is simple (newline-delimited JSON events,
//! re-list on `410 Gone`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Annotation naming the owner of a workload or namespace.
pub const OWNER_ANNOTATION: &str = "kubesignal.io/owner";
/// Annotation adding email recipients (comma-separated).
pub const EMAIL_ANNOTATION: &str = "kubesignal.io/email";
/// Annotation adding a Slack channel.
pub const SLACK_ANNOTATION: &str = "kubesignal.io/slack-channel";

/// How to reach the Kubernetes API.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// API server base URL, e.g. `https://kubernetes.default.svc`.
    pub api_url: String,
    /// Bearer token file (re-read on every request: projected tokens rotate).
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) for the API server's certificate.
    pub ca_file: Option<PathBuf>,
}

impl KubeConfig {
    /// The in-cluster configuration from the service account mount, when running in a pod.
    pub fn in_cluster() -> Option<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let sa = PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount");
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Some(Self {
            api_url: format!("https://{host}:{port}"),
            token_file: Some(sa.join("token")),
            ca_file: Some(sa.join("ca.crt")),
        })
    }
}

/// Where an owner was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// The alert's `owner` or `team` label.
    Label,
    /// The workload's `kubesignal.io/owner` annotation.
    Workload,
    /// The namespace's `kubesignal.io/owner` annotation.
    Namespace,
    /// No owner found.
    #[default]
    None,
}

/// Result of owner resolution for one alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resolution {
    /// The owner, if any.
    pub owner: Option<String>,
    /// Where the owner came from.
    pub source: OwnerSource,
    /// Extra email recipients from annotations.
    pub emails: Vec<String>,
    /// Slack channel from annotations (the workload's wins over the namespace's).
    pub slack_channel: Option<String>,
}

/// The workload kinds we watch, with their API paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `v1` Namespace.
    Namespace,
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl Kind {
    /// All watched kinds.
    pub const ALL: [Kind; 4] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
    ];

    fn path(self) -> &'static str {
        match self {
            Kind::Namespace => "/api/v1/namespaces",
            Kind::Deployment => "/apis/apps/v1/deployments",
            Kind::StatefulSet => "/apis/apps/v1/statefulsets",
            Kind::DaemonSet => "/apis/apps/v1/daemonsets",
        }
    }

    fn from_label(kind: &str) -> Option<Kind> {
        match kind.to_ascii_lowercase().as_str() {
            "deployment" => Some(Kind::Deployment),
            "statefulset" => Some(Kind::StatefulSet),
            "daemonset" => Some(Kind::DaemonSet),
            _ => None,
        }
    }
}

/// The `kubesignal.io/*` annotations of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Owned {
    owner: Option<String>,
    emails: Vec<String>,
    slack_channel: Option<String>,
}

impl Owned {
    fn from_annotations(a: &BTreeMap<String, String>) -> Option<Owned> {
        let clean = |v: &String| Some(v.trim().to_string()).filter(|s| !s.is_empty());
        let owned = Owned {
            owner: a.get(OWNER_ANNOTATION).and_then(clean),
            emails: a
                .get(EMAIL_ANNOTATION)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            slack_channel: a
                .get(SLACK_ANNOTATION)
                .and_then(clean)
                .map(|c| c.trim_start_matches('#').to_string()),
        };
        (owned != Owned::default()).then_some(owned)
    }
}

type Key = (Kind, String, String);

/// Cached annotations of namespaces and workloads, and the resolution logic.
pub struct OwnerResolver {
    cache: RwLock<HashMap<Key, Owned>>,
    synced: watch::Sender<u32>,
}

impl Default for OwnerResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl OwnerResolver {
    /// An empty resolver (labels only until watchers are started).
    pub fn new() -> Self {
        Self {
            cache: RwLock::new(HashMap::new()),
            synced: watch::channel(0).0,
        }
    }

    /// Resolves an alert's owner and extra receivers from its labels and the cached annotations.
    pub fn resolve(&self, labels: &BTreeMap<String, String>) -> Resolution {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let ns = labels.get("namespace").filter(|s| !s.is_empty());
        let workload = ns.and_then(|ns| {
            workload_of(labels).and_then(|(kind, name)| {
                let kinds: &[Kind] = match kind {
                    Some(k) => &[k][..],
                    None => &[Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet][..],
                };
                kinds
                    .iter()
                    .find_map(|k| cache.get(&(*k, ns.clone(), name.clone())))
            })
        });
        let namespace = ns.and_then(|ns| cache.get(&(Kind::Namespace, String::new(), ns.clone())));
        let label_owner = ["owner", "team"]
            .iter()
            .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()).cloned());
        let (owner, source) = if let Some(o) = label_owner {
            (Some(o), OwnerSource::Label)
        } else if let Some(o) = workload.and_then(|w| w.owner.clone()) {
            (Some(o), OwnerSource::Workload)
        } else if let Some(o) = namespace.and_then(|n| n.owner.clone()) {
            (Some(o), OwnerSource::Namespace)
        } else {
            (None, OwnerSource::None)
        };
        let mut emails: Vec<String> = workload
            .iter()
            .chain(namespace.iter())
            .flat_map(|o| o.emails.iter().cloned())
            .collect();
        emails.sort();
        emails.dedup();
        Resolution {
            owner,
            source,
            emails,
            slack_channel: workload
                .and_then(|w| w.slack_channel.clone())
                .or_else(|| namespace.and_then(|n| n.slack_channel.clone())),
        }
    }

    /// Waits until every kind has been listed once (returns at once when no watcher runs, after
    /// `start_watchers` has been called it waits for all of them).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let all = Kind::ALL.len() as u32;
        let _ = rx.wait_for(|n| *n >= all).await;
    }

    /// Starts one list+watch reflector per kind against the API server.
    pub fn start_watchers(
        self: &Arc<Self>,
        config: KubeConfig,
    ) -> Result<Vec<JoinHandle<()>>, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30));
        if let Some(ca) = &config.ca_file {
            match std::fs::read(ca)
                .ok()
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).ok())
            {
                Some(cert) => builder = builder.add_root_certificate(cert),
                None => tracing::warn!(file = %ca.display(), "cannot read the Kubernetes CA file"),
            }
        }
        let client = builder.build()?;
        Ok(Kind::ALL
            .iter()
            .map(|kind| {
                let me = Arc::clone(self);
                let client = client.clone();
                let config = config.clone();
                let kind = *kind;
                tokio::spawn(async move { me.reflect(client, config, kind).await })
            })
            .collect())
    }

    fn replace_kind(&self, kind: Kind, items: Vec<(String, String, Owned)>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.retain(|k, _| k.0 != kind);
        for (ns, name, owned) in items {
            cache.insert((kind, ns, name), owned);
        }
    }

    fn apply(&self, kind: Kind, event: &str, meta: &ObjectMeta) {
        let key = (
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone(),
        );
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match (event, Owned::from_annotations(&meta.annotations)) {
            ("DELETED", _) | (_, None) => {
                cache.remove(&key);
            }
            (_, Some(owned)) => {
                cache.insert(key, owned);
            }
        }
    }

    async fn reflect(self: Arc<Self>, client: reqwest::Client, config: KubeConfig, kind: Kind) {
        let mut first = true;
        let mut backoff = Duration::from_millis(500);
        loop {
            match list(&client, &config, kind).await {
                Ok((items, mut rv)) => {
                    backoff = Duration::from_millis(500);
                    self.replace_kind(kind, items);
                    if first {
                        first = false;
                        self.synced.send_modify(|n| *n += 1);
                    }
                    // Watch until the server says our version is too old (410) or errors persist.
                    let mut failures = 0;
                    loop {
                        match self.watch(&client, &config, kind, &mut rv).await {
                            Ok(WatchEnd::Gone) => break,
                            Ok(WatchEnd::Closed) => failures = 0,
                            Err(e) => {
                                failures += 1;
                                tracing::warn!(kind = ?kind, error = %e, "Kubernetes watch failed");
                                if failures >= 3 {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = ?kind, error = %e, "Kubernetes list failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn watch(
        &self,
        client: &reqwest::Client,
        config: &KubeConfig,
        kind: Kind,
        rv: &mut String,
    ) -> Result<WatchEnd, KubeError> {
        let url = format!(
            "{}{}?watch=1&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={}",
            config.api_url.trim_end_matches('/'),
            kind.path(),
            rv
        );
        let mut resp = authorized(client.get(&url), config)?
            .timeout(Duration::from_secs(330))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::GONE {
            return Ok(WatchEnd::Gone);
        }
        if !resp.status().is_success() {
            return Err(KubeError::Status(resp.status().as_u16(), url_path(&url)));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: WatchEvent = serde_json::from_slice(&line)?;
                match event.kind.as_str() {
                    "ADDED" | "MODIFIED" | "DELETED" => {
                        let obj: Object = serde_json::from_value(event.object)?;
                        self.apply(kind, &event.kind, &obj.metadata);
                        *rv = obj.metadata.resource_version;
                    }
                    "BOOKMARK" => {
                        let obj: Object = serde_json::from_value(event.object)?;
                        *rv = obj.metadata.resource_version;
                    }
                    "ERROR" => {
                        let status: StatusObject = serde_json::from_value(event.object)?;
                        if status.code == 410 {
                            return Ok(WatchEnd::Gone);
                        }
                        return Err(KubeError::Status(status.code, status.message));
                    }
                    other => tracing::debug!(event = other, "ignoring unknown watch event"),
                }
            }
        }
        Ok(WatchEnd::Closed)
    }
}

enum WatchEnd {
    /// The resource version expired: list again.
    Gone,
    /// The server ended the watch normally (timeout): watch again from the last version.
    Closed,
}

/// Errors talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Transport error.
    #[error("request to the Kubernetes API failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Non-success status.
    #[error("Kubernetes API answered {0} for {1}")]
    Status(u16, String),
    /// Body not understood.
    #[error("unexpected Kubernetes API response: {0}")]
    Decode(#[from] serde_json::Error),
    /// Token file unreadable.
    #[error("reading the Kubernetes token file {0}: {1}")]
    Token(String, std::io::Error),
}

fn url_path(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.path().to_string())
}

fn authorized(
    req: reqwest::RequestBuilder,
    config: &KubeConfig,
) -> Result<reqwest::RequestBuilder, KubeError> {
    Ok(match &config.token_file {
        Some(file) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| KubeError::Token(file.display().to_string(), e))?;
            req.bearer_auth(token.trim())
        }
        None => req,
    })
}

async fn list(
    client: &reqwest::Client,
    config: &KubeConfig,
    kind: Kind,
) -> Result<(Vec<(String, String, Owned)>, String), KubeError> {
    let mut items = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let mut url = format!(
            "{}{}?limit=500",
            config.api_url.trim_end_matches('/'),
            kind.path()
        );
        if let Some(c) = &cont {
            url.push_str("&continue=");
            url.push_str(&urlencode(c));
        }
        let resp = authorized(client.get(&url), config)?
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(KubeError::Status(resp.status().as_u16(), url_path(&url)));
        }
        let page: List = serde_json::from_slice(&resp.bytes().await?)?;
        for obj in page.items {
            if let Some(owned) = Owned::from_annotations(&obj.metadata.annotations) {
                items.push((
                    obj.metadata.namespace.unwrap_or_default(),
                    obj.metadata.name,
                    owned,
                ));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => cont = Some(c),
            None => return Ok((items, page.metadata.resource_version)),
        }
    }
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

/// The alert's workload: `workload` (+ `workload_kind`) as the agent exports them, else the
/// kube-state-metrics style `deployment`/`statefulset`/`daemonset` labels.
fn workload_of(labels: &BTreeMap<String, String>) -> Option<(Option<Kind>, String)> {
    if let Some(w) = labels.get("workload").filter(|s| !s.is_empty()) {
        let kind = labels
            .get("workload_kind")
            .and_then(|k| Kind::from_label(k));
        return Some((kind, w.clone()));
    }
    [
        ("deployment", Kind::Deployment),
        ("statefulset", Kind::StatefulSet),
        ("daemonset", Kind::DaemonSet),
    ]
    .iter()
    .find_map(|(l, k)| {
        labels
            .get(*l)
            .filter(|s| !s.is_empty())
            .map(|v| (Some(*k), v.clone()))
    })
}

#[derive(Deserialize)]
struct List {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Object>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    metadata: ObjectMeta,
}

#[derive(Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct StatusObject {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn annotated(pairs: &[(&str, &str)]) -> Owned {
        Owned::from_annotations(&labels(pairs)).unwrap()
    }

    fn resolver() -> OwnerResolver {
        let r = OwnerResolver::new();
        r.replace_kind(
            Kind::Namespace,
            vec![(
                String::new(),
                "shop".into(),
                annotated(&[
                    (OWNER_ANNOTATION, "shop-team"),
                    (EMAIL_ANNOTATION, "ns@example.com"),
                    (SLACK_ANNOTATION, "#shop"),
                ]),
            )],
        );
        r.replace_kind(
            Kind::Deployment,
            vec![(
                "shop".into(),
                "checkout".into(),
                annotated(&[(OWNER_ANNOTATION, "payments"), (SLACK_ANNOTATION, "pay")]),
            )],
        );
        r
    }

    #[test]
    fn the_owner_label_beats_the_team_label_and_all_annotations() {
        let r = resolver();
        let res = r.resolve(&labels(&[
            ("team", "t"),
            ("owner", "o"),
            ("namespace", "shop"),
            ("workload", "checkout"),
        ]));
        assert_eq!(res.owner.as_deref(), Some("o"));
        assert_eq!(res.source, OwnerSource::Label);
        let res = r.resolve(&labels(&[("team", "t"), ("namespace", "shop")]));
        assert_eq!(res.owner.as_deref(), Some("t"));
    }

    #[test]
    fn the_workload_annotation_beats_the_namespace_annotation() {
        let r = resolver();
        let res = r.resolve(&labels(&[
            ("namespace", "shop"),
            ("workload", "checkout"),
            ("workload_kind", "Deployment"),
        ]));
        assert_eq!(res.owner.as_deref(), Some("payments"));
        assert_eq!(res.source, OwnerSource::Workload);
        assert_eq!(res.slack_channel.as_deref(), Some("pay"));
        assert_eq!(res.emails, vec!["ns@example.com".to_string()]);
        let res = r.resolve(&labels(&[("namespace", "shop"), ("workload", "cart")]));
        assert_eq!(res.owner.as_deref(), Some("shop-team"));
        assert_eq!(res.source, OwnerSource::Namespace);
        assert_eq!(res.slack_channel.as_deref(), Some("shop"));
    }

    #[test]
    fn an_alert_without_labels_or_annotations_has_no_owner() {
        let r = resolver();
        let res = r.resolve(&labels(&[("namespace", "other"), ("workload", "x")]));
        assert_eq!(res, Resolution::default());
    }
}
