//! The parts of a kubeconfig file needed to reach the API server: the current context's cluster
//! (server, CA, TLS verification) and user (token, token file, client certificate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// A kubeconfig file (only the fields kubesignal uses).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Name of the context in use.
    #[serde(default)]
    pub current_context: Option<String>,
    /// Named clusters.
    #[serde(default)]
    pub clusters: Vec<Named<Cluster>>,
    /// Named users.
    #[serde(default)]
    pub users: Vec<Named<User>>,
    /// Named contexts.
    #[serde(default)]
    pub contexts: Vec<Named<Context>>,
    #[serde(skip)]
    dir: PathBuf,
}

/// A `{name, <kind>}` entry of a kubeconfig list.
#[derive(Debug, Deserialize)]
pub struct Named<T> {
    /// Entry name.
    pub name: String,
    /// The entry itself, under the key `cluster`, `user` or `context`.
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    pub item: T,
}

/// A cluster entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// API server URL.
    pub server: String,
    /// CA file path.
    #[serde(default)]
    pub certificate_authority: Option<PathBuf>,
    /// CA bundle, base64 PEM.
    #[serde(default)]
    pub certificate_authority_data: Option<String>,
    /// Skip TLS verification.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

/// A user entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// Bearer token file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Client certificate file.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// Client certificate, base64 PEM.
    #[serde(default)]
    pub client_certificate_data: Option<String>,
    /// Client key file.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Client key, base64 PEM.
    #[serde(default)]
    pub client_key_data: Option<String>,
}

/// A context entry.
#[derive(Debug, Default, Deserialize)]
pub struct Context {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
}

/// Where and how to reach the API server, resolved from the current context.
#[derive(Debug, Default)]
pub struct ApiTarget {
    /// API server URL.
    pub server: String,
    /// CA bundle (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Skip TLS verification.
    pub insecure_skip_verify: bool,
    /// Bearer token.
    pub token: Option<String>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// Client certificate followed by its key (PEM).
    pub client_identity_pem: Option<Vec<u8>>,
}

/// Errors reading a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read.
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid kubeconfig.
    #[error("kubeconfig {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Kubeconfig {
    /// Reads and parses a kubeconfig file.
    pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut kc: Kubeconfig =
            serde_yaml_ng::from_str(&text).map_err(|e| KubeconfigError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        kc.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(kc)
    }

    /// Resolves the current context into a server and credentials.
    pub fn current(&self) -> Result<ApiTarget, KubeconfigError> {
        let invalid = |message: String| KubeconfigError::Invalid {
            path: self.dir.clone(),
            message,
        };
        let by_name = |list_len: usize, name: &str| {
            invalid(format!("no entry named {name:?} (among {list_len})"))
        };
        let context_name = match &self.current_context {
            Some(c) => c.clone(),
            None if self.contexts.len() == 1 => self.contexts[0].name.clone(),
            None => return Err(invalid("no current-context set".into())),
        };
        let contexts: BTreeMap<&str, &Context> = self
            .contexts
            .iter()
            .map(|n| (n.name.as_str(), &n.item))
            .collect();
        let context = contexts
            .get(context_name.as_str())
            .ok_or_else(|| by_name(contexts.len(), &context_name))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .map(|c| &c.item)
            .ok_or_else(|| by_name(self.clusters.len(), &context.cluster))?;
        let user = match &context.user {
            Some(u) => Some(
                self.users
                    .iter()
                    .find(|n| &n.name == u)
                    .map(|n| &n.item)
                    .ok_or_else(|| by_name(self.users.len(), u))?,
            ),
            None => None,
        };

        let mut target = ApiTarget {
            server: cluster.server.clone(),
            insecure_skip_verify: cluster.insecure_skip_tls_verify,
            ..ApiTarget::default()
        };
        target.ca_pem = self.data_or_file(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
        )?;
        if let Some(user) = user {
            target.token = user.token.clone();
            target.token_file = user.token_file.as_ref().map(|p| self.dir.join(p));
            let cert = self.data_or_file(
                user.client_certificate_data.as_deref(),
                user.client_certificate.as_deref(),
            )?;
            let key =
                self.data_or_file(user.client_key_data.as_deref(), user.client_key.as_deref())?;
            if let (Some(mut cert), Some(key)) = (cert, key) {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                target.client_identity_pem = Some(cert);
            }
        }
        Ok(target)
    }

    fn data_or_file(
        &self,
        data: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<Vec<u8>>, KubeconfigError> {
        if let Some(data) = data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| KubeconfigError::Invalid {
                    path: self.dir.clone(),
                    message: format!("bad base64 data: {e}"),
                })?;
            return Ok(Some(bytes));
        }
        if let Some(file) = file {
            let path = self.dir.join(file);
            let bytes =
                std::fs::read(&path).map_err(|source| KubeconfigError::Read { path, source })?;
            return Ok(Some(bytes));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_context_selects_cluster_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(dir.path().join("token"), "abc\n").unwrap();
        std::fs::write(
            &path,
            r#"
apiVersion: v1
kind: Config
current-context: b
clusters:
  - name: one
    cluster: {server: "https://one:6443", insecure-skip-tls-verify: true}
  - name: two
    cluster: {server: "https://two:6443", certificate-authority-data: "aGVsbG8="}
users:
  - name: u
    user: {token-file: token}
contexts:
  - name: a
    context: {cluster: one, user: u}
  - name: b
    context: {cluster: two, user: u}
"#,
        )
        .unwrap();
        let target = Kubeconfig::load(&path).unwrap().current().unwrap();
        assert_eq!(target.server, "https://two:6443");
        assert_eq!(target.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert!(!target.insecure_skip_verify);
        assert_eq!(target.token_file, Some(dir.path().join("token")));
    }

    #[test]
    fn a_context_naming_a_missing_cluster_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "current-context: a\ncontexts: [{name: a, context: {cluster: nope}}]\n",
        )
        .unwrap();
        let err = Kubeconfig::load(&path).unwrap().current().unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
