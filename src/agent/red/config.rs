//! The `red:` section of the agent's config file: scrape limits, static targets and the mapping
//! rules that say which application metrics are requests, errors and durations.
//!
//! Built-in rules cover the dialects recognised with no configuration (Prometheus client
//! conventions, OpenTelemetry semantic conventions, Spring Boot/Micrometer, gRPC); rules from the
//! file are tried before them, so a file can also override a built-in name.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Errors met while reading the `red:` section of the config file.
#[derive(Debug, thiserror::Error)]
pub enum RedConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML or its `red:` section does not match the schema.
    #[error("config file {path}, section `red`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the line and column from the YAML parser when it knows them.
        message: String,
    },
}

/// Settings of RED collection (the `red:` section of the agent's config file).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedConfig {
    /// Longest time one target's scrape may take, body included.
    #[serde(deserialize_with = "de_duration")]
    pub scrape_timeout: Duration,
    /// Largest (decompressed) response body accepted from one target; the download is cut off
    /// as soon as it grows past this.
    pub max_body_bytes: u64,
    /// Most samples accepted from one target; a scrape with more is rejected as a whole.
    pub sample_limit: usize,
    /// Most scrapes in flight at once.
    pub max_concurrent_scrapes: usize,
    /// Window over which the scrapes of one collection are spread (each target at a fixed
    /// offset derived from its URL). Default: half of what the interval leaves after the
    /// scrape timeout.
    #[serde(deserialize_with = "de_opt_duration")]
    pub spread: Option<Duration>,
    /// Most distinct routes kept per workload; further routes become `route="other"`.
    pub max_routes_per_workload: usize,
    /// State of a source series (or an output series) not seen for this long is dropped.
    #[serde(deserialize_with = "de_duration")]
    pub state_ttl: Duration,
    /// HTTP status codes counted as errors: exact codes or classes such as `5xx`.
    pub http_error_codes: Vec<String>,
    /// gRPC status codes counted as server errors.
    pub grpc_error_codes: Vec<String>,
    /// Whether the built-in dialects are recognised (after `rules`).
    pub builtin_dialects: bool,
    /// Extra mapping rules, tried before the built-in ones.
    pub rules: Vec<MappingRule>,
    /// Namespace and workload of `--static-target` URLs (matched by URL).
    pub static_targets: Vec<StaticTargetConfig>,
}

impl Default for RedConfig {
    fn default() -> Self {
        Self {
            scrape_timeout: Duration::from_secs(5),
            max_body_bytes: 10 * 1024 * 1024,
            sample_limit: 50_000,
            max_concurrent_scrapes: 8,
            spread: None,
            max_routes_per_workload: 100,
            state_ttl: Duration::from_secs(3600),
            http_error_codes: vec!["5xx".into()],
            grpc_error_codes: DEFAULT_GRPC_ERROR_CODES
                .iter()
                .map(|c| (*c).to_string())
                .collect(),
            builtin_dialects: true,
            rules: Vec::new(),
            static_targets: Vec::new(),
        }
    }
}

/// gRPC codes that mean the server failed, as opposed to the caller asking for something wrong
/// (InvalidArgument, NotFound, AlreadyExists, PermissionDenied, Unauthenticated,
/// FailedPrecondition, OutOfRange), asking to stop (Canceled) or being throttled or losing a race
/// by design (ResourceExhausted, Aborted).
pub const DEFAULT_GRPC_ERROR_CODES: &[&str] = &[
    "Unknown",
    "DeadlineExceeded",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
];

impl RedConfig {
    /// Reads the `red:` section of a YAML config file (other keys belong to other components
    /// and are ignored). A file without the section gives the defaults.
    pub fn from_file(path: &Path) -> Result<Self, RedConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RedConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|message| RedConfigError::Invalid {
            path: display,
            message,
        })
    }

    /// Reads the `red:` section of a YAML document; the error names what is wrong.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            red: Option<RedConfig>,
        }
        let doc: Option<Doc> = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let config = doc.and_then(|d| d.red).unwrap_or_default();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_concurrent_scrapes == 0 {
            return Err("max_concurrent_scrapes must be at least 1".into());
        }
        if self.max_routes_per_workload == 0 {
            return Err("max_routes_per_workload must be at least 1".into());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.metric.is_empty() {
                return Err(format!("rules[{i}]: `metric` is empty"));
            }
            if rule.route.is_empty() && rule.route_template.is_none() {
                return Err(format!(
                    "rules[{i}] ({}): give `route` label names or a `route_template`",
                    rule.metric
                ));
            }
        }
        for (i, t) in self.static_targets.iter().enumerate() {
            reqwest::Url::parse(&t.url)
                .map_err(|e| format!("static_targets[{i}]: url `{}`: {e}", t.url))?;
        }
        Ok(())
    }

    /// The rules in the order they are tried: the file's, then the built-in dialects.
    pub fn effective_rules(&self) -> Vec<MappingRule> {
        let mut rules = self.rules.clone();
        if self.builtin_dialects {
            rules.extend(builtin_rules(
                &self.http_error_codes,
                &self.grpc_error_codes,
            ));
        }
        rules
    }
}

/// Namespace and workload given to a `--static-target` URL.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticTargetConfig {
    /// The URL, exactly as given to `--static-target`.
    pub url: String,
    /// Namespace label of its series; default `static`.
    pub namespace: Option<String>,
    /// Workload label of its series; default: the URL's host.
    pub workload: Option<String>,
}

/// What a mapped metric contributes.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A counter of handled requests: gives requests and errors.
    Requests,
    /// A histogram or summary of request durations: gives the duration histogram, and requests
    /// and errors from its count when its dialect has no requests counter in the scrape.
    Duration,
}

/// Unit of a duration metric.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DurationUnit {
    /// Seconds (kept as they are).
    Seconds,
    /// Milliseconds (bounds and sums divided by 1000).
    Milliseconds,
}

/// Which samples count as errors.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRule {
    /// Code values that are errors: exact values (`Internal`, `503`) or classes (`5xx`).
    pub codes: Vec<String>,
    /// Label values that are errors whatever the code, e.g. `outcome: [SERVER_ERROR]`.
    pub label_values: BTreeMap<String, Vec<String>>,
}

impl ErrorRule {
    /// Whether a code value is an error by this rule.
    pub fn code_is_error(&self, code: &str) -> bool {
        self.codes.iter().any(|pattern| code_matches(pattern, code))
    }
}

/// `5xx` matches any three-character code starting with 5; anything else matches exactly.
fn code_matches(pattern: &str, code: &str) -> bool {
    let p = pattern.as_bytes();
    if p.len() == 3 && p[0].is_ascii_digit() && p[1..].eq_ignore_ascii_case(b"xx") {
        let c = code.as_bytes();
        return c.len() == 3 && c[0] == p[0] && c[1..].iter().all(u8::is_ascii_digit);
    }
    pattern == code
}

/// Maps one application metric onto the RED schema.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// Metric name as exposed: for `requests`, the counter sample name (`_total` included);
    /// for `duration`, the histogram/summary name without `_bucket`/`_sum`/`_count`.
    pub metric: String,
    /// What the metric gives.
    pub kind: RuleKind,
    /// Rules of one dialect belong together: a duration rule feeds requests only when no
    /// requests rule of its dialect matched. Default: the metric name.
    #[serde(default)]
    pub dialect: Option<String>,
    /// Of the dialects sharing a protocol, only the first (in rule order) that matches a
    /// target's scrape is used for that target, so one application exposing two HTTP dialects is
    /// not counted twice. Default: the dialect.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Labels giving the route, first present wins.
    #[serde(default)]
    pub route: Vec<String>,
    /// Route built from labels, e.g. `/{grpc_service}/{grpc_method}`; wins over `route`.
    #[serde(default)]
    pub route_template: Option<String>,
    /// Labels giving the method, first present wins.
    #[serde(default)]
    pub method: Vec<String>,
    /// Method when no method label is present.
    #[serde(default)]
    pub default_method: Option<String>,
    /// Labels giving the response code, first present wins.
    #[serde(default)]
    pub code: Vec<String>,
    /// Which samples are errors.
    #[serde(default)]
    pub errors: ErrorRule,
    /// Unit of a duration metric; default: milliseconds when the name ends in `_milliseconds`
    /// or the family's `# UNIT` says so, seconds otherwise.
    #[serde(default)]
    pub unit: Option<DurationUnit>,
}

impl MappingRule {
    /// The dialect this rule belongs to.
    pub fn dialect(&self) -> &str {
        self.dialect.as_deref().unwrap_or(&self.metric)
    }

    /// The protocol this rule's dialect competes in.
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or_else(|| self.dialect())
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// The dialects recognised with no configuration, in the order they are tried.
pub fn builtin_rules(http_error_codes: &[String], grpc_error_codes: &[String]) -> Vec<MappingRule> {
    let http_errors = ErrorRule {
        codes: http_error_codes.to_vec(),
        label_values: BTreeMap::new(),
    };
    let rule = |metric: &str,
                kind: RuleKind,
                dialect: &str,
                route: &[&str],
                method: &[&str],
                code: &[&str]| MappingRule {
        metric: metric.into(),
        kind,
        dialect: Some(dialect.into()),
        protocol: Some("http".into()),
        route: strings(route),
        route_template: None,
        method: strings(method),
        default_method: None,
        code: strings(code),
        errors: http_errors.clone(),
        unit: None,
    };
    let prom_route = ["handler", "path", "route"];
    let prom_code = ["code", "status"];
    let mut rules = vec![
        // Prometheus client library conventions.
        rule(
            "http_requests_total",
            RuleKind::Requests,
            "prometheus",
            &prom_route,
            &["method"],
            &prom_code,
        ),
        rule(
            "http_request_duration_seconds",
            RuleKind::Duration,
            "prometheus",
            &prom_route,
            &["method"],
            &prom_code,
        ),
        rule(
            "http_request_duration_milliseconds",
            RuleKind::Duration,
            "prometheus",
            &prom_route,
            &["method"],
            &prom_code,
        ),
        // OpenTelemetry semantic conventions (stable HTTP server metric, and the older
        // milliseconds one with pre-1.20 attribute names).
        rule(
            "http_server_request_duration_seconds",
            RuleKind::Duration,
            "opentelemetry",
            &["http_route"],
            &["http_request_method"],
            &["http_response_status_code"],
        ),
        rule(
            "http_server_duration_milliseconds",
            RuleKind::Duration,
            "opentelemetry-legacy",
            &["http_route", "http_target"],
            &["http_method"],
            &["http_status_code"],
        ),
    ];
    // Spring Boot / Micrometer: an error is a 5xx or Micrometer's own SERVER_ERROR outcome.
    let mut micrometer = rule(
        "http_server_requests_seconds",
        RuleKind::Duration,
        "micrometer",
        &["uri"],
        &["method"],
        &["status"],
    );
    micrometer
        .errors
        .label_values
        .insert("outcome".into(), vec!["SERVER_ERROR".into()]);
    rules.push(micrometer);
    let grpc_errors = ErrorRule {
        codes: grpc_error_codes.to_vec(),
        label_values: BTreeMap::new(),
    };
    for (metric, kind) in [
        ("grpc_server_handled_total", RuleKind::Requests),
        ("grpc_server_handling_seconds", RuleKind::Duration),
    ] {
        rules.push(MappingRule {
            metric: metric.into(),
            kind,
            dialect: Some("grpc".into()),
            protocol: Some("grpc".into()),
            route: Vec::new(),
            route_template: Some("/{grpc_service}/{grpc_method}".into()),
            method: strings(&["grpc_type"]),
            default_method: Some("grpc".into()),
            code: strings(&["grpc_code"]),
            errors: grpc_errors.clone(),
            unit: None,
        });
    }
    rules
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("duration `{s}`: {e}")))
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| {
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("duration `{s}`: {e}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_class_matches_every_code_of_that_hundred_and_nothing_else() {
        assert!(code_matches("5xx", "503"));
        assert!(code_matches("5XX", "500"));
        assert!(!code_matches("5xx", "404"));
        assert!(!code_matches("5xx", "5000"));
        assert!(!code_matches("5xx", "Internal"));
        assert!(code_matches("Internal", "Internal"));
    }

    #[test]
    fn the_red_section_is_read_and_other_sections_are_ignored() {
        let config = RedConfig::from_yaml(
            "interval: 15s\nred:\n  scrape_timeout: 2s\n  max_routes_per_workload: 7\n  \
             rules:\n    - metric: prometheus_http_requests_total\n      kind: requests\n      \
             route: [handler]\n      code: [code]\n      errors: {codes: [5xx]}\n  \
             static_targets:\n    - {url: 'http://demo:8080/metrics', namespace: shop, workload: demo}\n",
        )
        .unwrap();
        assert_eq!(config.scrape_timeout, Duration::from_secs(2));
        assert_eq!(config.max_routes_per_workload, 7);
        assert_eq!(config.rules[0].metric, "prometheus_http_requests_total");
        assert_eq!(
            config.effective_rules()[0].dialect(),
            "prometheus_http_requests_total"
        );
        assert_eq!(config.static_targets[0].workload.as_deref(), Some("demo"));
    }

    #[test]
    fn an_unknown_key_in_the_red_section_is_rejected_with_its_name() {
        let err = RedConfig::from_yaml("red:\n  sample_limt: 5\n").unwrap_err();
        assert!(err.contains("sample_limt"), "{err}");
    }

    #[test]
    fn a_rule_without_a_route_source_is_rejected() {
        let err = RedConfig::from_yaml("red:\n  rules:\n    - {metric: x_total, kind: requests}\n")
            .unwrap_err();
        assert!(err.contains("rules[0]") && err.contains("route"), "{err}");
    }
}
