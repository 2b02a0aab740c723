//! Owner resolution: who owns an alert, and which extra receivers its workload or namespace asks for.
//!
//! First match wins: the alert's `owner` label, then its `team` label, then the
//! `kubesignal.io/owner` annotation of the alert's workload, then of its namespace; otherwise nobody
//! (the triage receiver). `kubesignal.io/email` (comma-separated) and `kubesignal.io/slack-channel`
//! on the workload or the namespace add receivers.
//!
//! Annotations come from the Kubernetes API through kube-rs watchers (one per resource kind) that
//! request only object metadata (`PartialObjectMetadata`) and feed a cache holding just the
//! `kubesignal.io/*` annotations, the way a kube-runtime reflector feeds its store. The watcher
//! owns the protocol: paginated lists, resource versions, bookmarks, re-listing on `410 Gone`, and
//! backoff on errors.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::{Api, ObjectMeta, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
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
    /// Bearer token file (kube-rs re-reads it: projected tokens rotate).
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

    /// A kube-rs client for this API server: the CA bundle (when given) is the only trust root,
    /// and the bearer token is read from the token file, which kube-rs re-reads as it rotates.
    pub fn client(&self) -> Result<kube::Client, KubeError> {
        let url: http::Uri = self.api_url.parse().map_err(|source| KubeError::Url {
            url: self.api_url.clone(),
            source,
        })?;
        let mut config = kube::Config::new(url);
        if let Some(ca) = &self.ca_file {
            let path = ca.display().to_string();
            let pem = std::fs::read(ca).map_err(|source| KubeError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|e| KubeError::CaPem {
                    path: path.clone(),
                    detail: Some(e.to_string()),
                })?;
            if certs.is_empty() {
                return Err(KubeError::CaPem { path, detail: None });
            }
            config.root_cert = Some(certs);
            // kube-rs re-reads this file to follow CA rotation.
            config.root_cert_file = Some(ca.clone());
        }
        if let Some(file) = &self.token_file {
            let path = file
                .to_str()
                .ok_or_else(|| KubeError::TokenPath(file.display().to_string()))?;
            let token = std::fs::read_to_string(file).map_err(|source| KubeError::TokenFile {
                path: path.to_string(),
                source,
            })?;
            if token.trim() == token {
                config.auth_info.token_file = Some(path.to_string());
            } else {
                // kube-rs sends the file's content verbatim, and a header value cannot end in a
                // newline; a hand-written file (`echo $TOKEN > file`) is static anyway.
                tracing::warn!(
                    file = path,
                    "the Kubernetes token file ends with whitespace; \
                    using its trimmed content, later changes to the file are not picked up"
                );
                config.auth_info.token =
                    Some(secrecy::SecretString::from(token.trim().to_string()));
            }
        }
        kube::Client::try_from(config).map_err(|source| KubeError::Client {
            url: self.api_url.clone(),
            source,
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

    /// Starts one metadata watcher per kind against the API server; they run until aborted.
    pub fn start_watchers(
        self: &Arc<Self>,
        config: KubeConfig,
    ) -> Result<Vec<JoinHandle<()>>, KubeError> {
        let client = config.client()?;
        Ok(vec![
            tokio::spawn(Arc::clone(self).reflect::<Namespace>(client.clone(), Kind::Namespace)),
            tokio::spawn(Arc::clone(self).reflect::<Deployment>(client.clone(), Kind::Deployment)),
            tokio::spawn(
                Arc::clone(self).reflect::<StatefulSet>(client.clone(), Kind::StatefulSet),
            ),
            tokio::spawn(Arc::clone(self).reflect::<DaemonSet>(client, Kind::DaemonSet)),
        ])
    }

    fn replace_kind(&self, kind: Kind, items: Vec<(String, String, Owned)>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.retain(|k, _| k.0 != kind);
        for (ns, name, owned) in items {
            cache.insert((kind, ns, name), owned);
        }
    }

    fn apply(&self, kind: Kind, deleted: bool, meta: &ObjectMeta) {
        let key = (
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match annotations_of(meta).filter(|_| !deleted) {
            Some(owned) => {
                cache.insert(key, owned);
            }
            None => {
                cache.remove(&key);
            }
        }
    }

    /// Mirrors one kind into the cache. Like a reflector's store, the listed objects are buffered
    /// between `Init` and `InitDone` and then swapped in at once, so a re-list (after `410 Gone`)
    /// also drops objects deleted while the watch was down.
    async fn reflect<K>(self: Arc<Self>, client: kube::Client, kind: Kind)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let api: Api<PartialObjectMeta<K>> = Api::all(client);
        let mut events =
            std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        let mut listed: Vec<(String, String, Owned)> = Vec::new();
        let mut first = true;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(obj)) => {
                    if let Some(owned) = annotations_of(&obj.metadata) {
                        listed.push((
                            obj.metadata.namespace.unwrap_or_default(),
                            obj.metadata.name.unwrap_or_default(),
                            owned,
                        ));
                    }
                }
                Ok(Event::InitDone) => {
                    self.replace_kind(kind, std::mem::take(&mut listed));
                    if first {
                        first = false;
                        self.synced.send_modify(|n| *n += 1);
                    }
                }
                Ok(Event::Apply(obj)) => self.apply(kind, false, &obj.metadata),
                Ok(Event::Delete(obj)) => self.apply(kind, true, &obj.metadata),
                // The watcher recovers on the next poll (re-listing when the version expired).
                Err(e) => {
                    tracing::warn!(kind = ?kind, error = %e, "Kubernetes watch failed; retrying")
                }
            }
        }
    }
}

fn annotations_of(meta: &ObjectMeta) -> Option<Owned> {
    meta.annotations.as_ref().and_then(Owned::from_annotations)
}

/// Errors setting up the Kubernetes API client.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server URL does not parse.
    #[error("Kubernetes API URL {url:?} is invalid: {source}")]
    Url {
        /// The configured URL.
        url: String,
        /// Why it is invalid.
        source: http::uri::InvalidUri,
    },
    /// The CA bundle is unreadable.
    #[error("reading the Kubernetes CA file {path}: {source}")]
    CaFile {
        /// The CA file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The CA bundle holds no usable PEM certificate.
    #[error("the Kubernetes CA file {path} holds no valid PEM certificate{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    CaPem {
        /// The CA file.
        path: String,
        /// The PEM parser's complaint, if any.
        detail: Option<String>,
    },
    /// The token file is unreadable.
    #[error("reading the Kubernetes token file {path}: {source}")]
    TokenFile {
        /// The token file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The token file path is not UTF-8 (kube-rs takes it as a string).
    #[error("the Kubernetes token file path {0} is not valid UTF-8")]
    TokenPath(String),
    /// kube-rs refused the configuration (e.g. the TLS setup failed).
    #[error("building the Kubernetes client for {url}: {source}")]
    Client {
        /// The API server URL.
        url: String,
        /// What went wrong.
        source: kube::Error,
    },
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

    fn config(dir: &std::path::Path) -> KubeConfig {
        KubeConfig {
            api_url: "https://127.0.0.1:6443".into(),
            token_file: Some(dir.join("token")),
            ca_file: Some(dir.join("ca.crt")),
        }
    }

    #[tokio::test]
    async fn an_unusable_ca_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t\n").unwrap();
        let err = config(dir.path()).client().err().expect("an error");
        assert!(matches!(err, KubeError::CaFile { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
        std::fs::write(dir.path().join("ca.crt"), "not a certificate\n").unwrap();
        let err = config(dir.path()).client().err().expect("an error");
        assert!(matches!(err, KubeError::CaPem { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_token_file_is_an_error_and_a_bad_url_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.ca_file = None;
        let err = c.client().err().expect("an error");
        assert!(matches!(err, KubeError::TokenFile { .. }), "{err:?}");
        assert!(err.to_string().contains("token"), "{err}");
        c.token_file = None;
        c.api_url = "https://exa mple:443".into();
        let err = c.client().err().expect("an error");
        assert!(err.to_string().contains("exa mple"), "{err}");
        c.api_url = "https://127.0.0.1:6443".into();
        assert!(c.client().is_ok());
    }

    #[test]
    fn an_alert_without_labels_or_annotations_has_no_owner() {
        let r = resolver();
        let res = r.resolve(&labels(&[("namespace", "other"), ("workload", "x")]));
        assert_eq!(res, Resolution::default());
    }
}
