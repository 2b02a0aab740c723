//! Instant queries against a Prometheus-compatible HTTP API (`/api/v1/query`), the way the
//! evaluator needs them: at an exact evaluation timestamp, within a deadline, retried with
//! exponential backoff on transient failures, with the auth options real deployments use
//! (bearer token file re-read on every request, basic auth, custom CA, extra headers such as
//! Mimir's `X-Scope-OrgID`).
//!
//! The [`Datasource`] trait is the seam where an embedded PromQL engine can plug in later.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::alert::Labels;
use crate::http::error_chain;

/// A boxed future, so [`Datasource`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One sample of an instant vector (a scalar result is one sample without labels).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Labels, including `__name__` when the series has one.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Something that answers PromQL instant queries.
pub trait Datasource: Send + Sync {
    /// Evaluates `expr` at `ts`, giving up at `deadline`.
    fn query<'a>(
        &'a self,
        expr: &'a str,
        ts: DateTime<Utc>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<Sample>, DatasourceError>>;
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    /// No datasource URL was given.
    #[error("no datasource: set --datasource-url (the evaluator also takes --datasource embedded)")]
    NoUrl,
    /// A local file (token, password, CA) could not be read or used.
    #[error("reading {what} {path}: {message}")]
    Config {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The request did not complete (connection refused, timeout, ...).
    #[error("querying {url}: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error status and no API error body.
    #[error("querying {url}: HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The API reported an error (bad query, execution failure, ...).
    #[error("query {expr:?} failed: {error_type}: {message}")]
    Api {
        /// The expression.
        expr: String,
        /// Prometheus's `errorType` (`bad_data`, `execution`, `timeout`, ...).
        error_type: String,
        /// Prometheus's `error`.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("querying {url}: unexpected response: {message}")]
    Decode {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The evaluation deadline passed before an answer came.
    #[error(
        "query {expr:?} gave no answer within the evaluation deadline ({attempts} attempts; last error: {last})"
    )]
    Deadline {
        /// The expression.
        expr: String,
        /// How many requests were made.
        attempts: u32,
        /// The last error seen.
        last: String,
    },
}

impl DatasourceError {
    /// Whether trying again may help.
    fn is_transient(&self) -> bool {
        match self {
            DatasourceError::Transport { .. } => true,
            DatasourceError::Status { status, .. } => *status == 429 || *status >= 500,
            DatasourceError::Api { error_type, .. } => {
                matches!(error_type.as_str(), "timeout" | "unavailable" | "internal")
            }
            _ => false,
        }
    }
}

/// How to reach and authenticate to the datasource.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// Base URL (`http://prometheus:9090`, or a Mimir `.../prometheus` prefix).
    pub url: String,
    /// Timeout of one request.
    pub timeout: Duration,
    /// File holding a bearer token; read on every request so rotated tokens are picked up.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user name.
    pub basic_auth_username: Option<String>,
    /// File holding the basic-auth password.
    pub basic_auth_password_file: Option<PathBuf>,
    /// PEM bundle of CAs to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

/// The Prometheus HTTP API client.
pub struct HttpDatasource {
    config: HttpConfig,
    endpoint: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpDatasource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDatasource")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl HttpDatasource {
    /// Builds the client; fails when the CA file or a header is unusable.
    pub fn new(config: HttpConfig) -> Result<Self, DatasourceError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kubesignal/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| DatasourceError::Config {
                what: "CA file",
                path: path.clone(),
                message: e.to_string(),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                DatasourceError::Config {
                    what: "CA file",
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(DatasourceError::Config {
                    what: "CA file",
                    path: path.clone(),
                    message: "no PEM certificate in it".into(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| DatasourceError::Transport {
            url: config.url.clone(),
            message: format!("building the HTTP client: {e}"),
        })?;
        let endpoint = format!("{}/api/v1/query", config.url.trim_end_matches('/'));
        Ok(HttpDatasource {
            config,
            endpoint,
            client,
        })
    }

    async fn attempt(
        &self,
        expr: &str,
        ts: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<Sample>, DatasourceError> {
        let time = format_timestamp(ts);
        let mut req = self
            .client
            .post(&self.endpoint)
            .timeout(timeout)
            .form(&[("query", expr), ("time", time.as_str())]);
        for (name, value) in &self.config.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(path) = &self.config.bearer_token_file {
            let token = read_secret("bearer token file", path)?;
            req = req.bearer_auth(token);
        }
        if let Some(user) = &self.config.basic_auth_username {
            let password = match &self.config.basic_auth_password_file {
                Some(path) => Some(read_secret("basic-auth password file", path)?),
                None => None,
            };
            req = req.basic_auth(user, password);
        }
        let resp = req.send().await.map_err(|e| DatasourceError::Transport {
            url: self.endpoint.clone(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| DatasourceError::Transport {
            url: self.endpoint.clone(),
            message: error_chain(&e),
        })?;
        parse_response(&self.endpoint, expr, status.as_u16(), &body)
    }
}

impl Datasource for HttpDatasource {
    fn query<'a>(
        &'a self,
        expr: &'a str,
        ts: DateTime<Utc>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<Sample>, DatasourceError>> {
        Box::pin(async move {
            let mut backoff = Duration::from_millis(100);
            let mut attempts = 0;
            loop {
                let now = Instant::now();
                let left = deadline.saturating_duration_since(now);
                let timeout = self.config.timeout.min(left);
                attempts += 1;
                let err = match self
                    .attempt(expr, ts, timeout.max(Duration::from_millis(1)))
                    .await
                {
                    Ok(samples) => return Ok(samples),
                    Err(e) => e,
                };
                if !err.is_transient() {
                    return Err(err);
                }
                if Instant::now() + backoff >= deadline {
                    return Err(DatasourceError::Deadline {
                        expr: expr.to_string(),
                        attempts,
                        last: err.to_string(),
                    });
                }
                tracing::debug!(error = %err, attempts, "query failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }
}

fn read_secret(what: &'static str, path: &PathBuf) -> Result<String, DatasourceError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| DatasourceError::Config {
            what,
            path: path.clone(),
            message: e.to_string(),
        })
}

/// Unix seconds with millisecond precision, as the API takes them.
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    format!("{}.{:03}", ts.timestamp(), ts.timestamp_subsec_millis())
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: Labels,
    value: (f64, String),
}

/// Turns an HTTP answer into samples or a typed error.
fn parse_response(
    url: &str,
    expr: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<Sample>, DatasourceError> {
    let decoded: Result<ApiResponse, _> = serde_json::from_slice(body);
    let resp = match decoded {
        Ok(r) => r,
        Err(e) => {
            if !(200..300).contains(&status) {
                return Err(DatasourceError::Status {
                    url: url.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                });
            }
            return Err(DatasourceError::Decode {
                url: url.to_string(),
                message: e.to_string(),
            });
        }
    };
    if resp.status != "success" {
        return Err(DatasourceError::Api {
            expr: expr.to_string(),
            error_type: resp.error_type.unwrap_or_else(|| format!("HTTP {status}")),
            message: resp.error.unwrap_or_default(),
        });
    }
    let decode = |message: String| DatasourceError::Decode {
        url: url.to_string(),
        message,
    };
    let data = resp.data.ok_or_else(|| decode("no data".into()))?;
    match data.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> =
                serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
            items
                .into_iter()
                .map(|item| {
                    Ok(Sample {
                        labels: item.metric,
                        value: parse_value(&item.value.1).map_err(decode)?,
                    })
                })
                .collect()
        }
        "scalar" => {
            let (_, v): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| decode(e.to_string()))?;
            Ok(vec![Sample {
                labels: Labels::new(),
                value: parse_value(&v).map_err(decode)?,
            }])
        }
        other => Err(DatasourceError::Api {
            expr: expr.to_string(),
            error_type: "bad_data".into(),
            message: format!(
                "rule expressions must give an instant vector or a scalar, not a {other}"
            ),
        }),
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| format!("sample value {s:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_answer_becomes_samples_with_their_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1700000000.5,"0"]},
            {"metric":{"job":"b"},"value":[1700000000.5,"+Inf"]}]}}"#;
        let s = parse_response("u", "up", 200, body).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["__name__"], "up");
        assert_eq!(s[0].value, 0.0);
        assert!(s[1].value.is_infinite());
    }

    #[test]
    fn a_scalar_answer_is_one_sample_without_labels() {
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}"#;
        let s = parse_response("u", "2.5", 200, body).unwrap();
        assert_eq!(
            s,
            vec![Sample {
                labels: Labels::new(),
                value: 2.5
            }]
        );
    }

    #[test]
    fn an_api_error_keeps_its_type_and_message_and_is_not_retried() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse_response("u", "up{", 400, body).unwrap_err();
        assert!(e.to_string().contains("parse error at char 3"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn a_gateway_error_without_an_api_body_is_transient() {
        let e = parse_response("u", "up", 502, b"<html>bad gateway</html>").unwrap_err();
        assert!(
            matches!(e, DatasourceError::Status { status: 502, .. }),
            "{e}"
        );
        assert!(e.is_transient());
    }

    #[test]
    fn timestamps_are_sent_as_unix_seconds_with_milliseconds() {
        let ts = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        assert_eq!(format_timestamp(ts), "1700000000.250");
    }
}
