//! Our SLO spec format (`slos/*.yaml`, `apiVersion: kubesignal.io/v1`): one SLO per file, or a
//! list under `slos:`. `docs/slo.md` documents every field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::{
    Alerting, DEFAULT_ALERT_NAME, DEFAULT_DASHBOARD_PATH, DEFAULT_WINDOW_DAYS, Decimal,
    MIN_WINDOW_DAYS, SliQueries, Slo, SloError, TierAlert,
};

/// The `apiVersion` of our spec files.
pub const API_VERSION: &str = "kubesignal.io/v1";

/// Bucket bounds (seconds) assumed for `kubesignal_red_request_duration_seconds` when a latency
/// SLI gives no `buckets:`: the Prometheus client libraries' defaults, which most apps keep.
pub const DEFAULT_LATENCY_BUCKETS: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
];

/// Requests counter of the agent's RED series.
pub const RED_REQUESTS: &str = "kubesignal_red_requests_total";
/// Errors counter of the agent's RED series.
pub const RED_ERRORS: &str = "kubesignal_red_errors_total";
/// Duration histogram of the agent's RED series (without the `_bucket`/`_count` suffix).
pub const RED_DURATION: &str = "kubesignal_red_request_duration_seconds";

/// A file holding several SLOs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloList {
    /// Must be `kubesignal.io/v1` when given.
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    /// `SLOList` when given.
    #[serde(default)]
    pub kind: Option<String>,
    /// The SLOs.
    pub slos: Vec<SloSpec>,
}

/// One SLO as written in a spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// Must be `kubesignal.io/v1` when given.
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    /// `SLO` when given.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name within the service; default: the SLI kind (`availability`, `latency`, `custom`).
    #[serde(default)]
    pub name: Option<String>,
    /// Service name.
    pub service: String,
    /// Kubernetes namespace of the workload.
    pub namespace: String,
    /// Workload (Deployment, StatefulSet, ...) name; default: the service name.
    #[serde(default)]
    pub workload: Option<String>,
    /// Owning team; alerts are routed to it.
    pub owner: String,
    /// Objective in percent, e.g. `99.9`.
    pub objective: DecimalField,
    /// SLO window, whole days (`30d`, `4w`); default 30d.
    #[serde(default)]
    pub window: Option<String>,
    /// What the SLO promises, in words.
    #[serde(default)]
    pub description: Option<String>,
    /// Runbook link put on every alert.
    #[serde(default)]
    pub runbook_url: Option<String>,
    /// Extra labels on every generated rule.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The SLI; default: availability from the workload's RED series.
    #[serde(default)]
    pub sli: Option<SliSpec>,
    /// Alerting settings.
    #[serde(default)]
    pub alerting: AlertingSpec,
}

/// The SLI: exactly one of the three kinds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliSpec {
    /// Share of requests that are not errors, from the RED series.
    #[serde(default)]
    pub availability: Option<AvailabilitySpec>,
    /// Share of requests faster than a threshold, from the RED duration histogram.
    #[serde(default)]
    pub latency: Option<LatencySpec>,
    /// Any PromQL pair of bad and total event rates.
    #[serde(default)]
    pub custom: Option<CustomSpec>,
}

/// The SLI kind chosen in a spec.
enum SliKind {
    Availability(AvailabilitySpec),
    Latency(LatencySpec),
    Custom(CustomSpec),
}

/// Availability SLI options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilitySpec {
    /// Only these routes (exact values of the `route` label); default: all.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Only these methods; default: all.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Latency SLI options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    /// Requests slower than this many seconds are bad; must be a bucket bound.
    pub threshold: DecimalField,
    /// The histogram's bucket bounds; default [`DEFAULT_LATENCY_BUCKETS`].
    #[serde(default)]
    pub buckets: Option<Vec<DecimalField>>,
    /// Only these routes; default: all.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Only these methods; default: all.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Custom SLI queries, each with a `{{.window}}` placeholder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSpec {
    /// Bad events per second over `{{.window}}`.
    pub error_query: String,
    /// All events per second over `{{.window}}`.
    pub total_query: String,
}

/// Alerting options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSpec {
    /// Alert name; default `SLOErrorBudgetBurn`.
    #[serde(default)]
    pub name: Option<String>,
    /// Raise page alerts (fast burn).
    #[serde(default = "yes")]
    pub page: bool,
    /// Raise ticket alerts (slow burn).
    #[serde(default = "yes")]
    pub ticket: bool,
    /// Raise the no-data alert.
    #[serde(default = "yes")]
    pub no_data: bool,
    /// Requests per long window below which no burn-rate alert fires; 0 disables the guard.
    #[serde(default)]
    pub min_requests: u64,
    /// Dashboard link; default: the kubesignal SLO dashboard with this SLO selected.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// First step for the person paged.
    #[serde(default)]
    pub suggested_action: Option<String>,
}

impl Default for AlertingSpec {
    fn default() -> Self {
        AlertingSpec {
            name: None,
            page: true,
            ticket: true,
            no_data: true,
            min_requests: 0,
            dashboard_url: None,
            suggested_action: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A number read exactly: YAML `99.9` becomes the decimal 99.9, not the nearest binary float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecimalField(pub Decimal);

impl<'de> Deserialize<'de> for DecimalField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DecimalField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal number such as 99.9")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DecimalField, E> {
                i64::try_from(v)
                    .map(|v| DecimalField(Decimal::from_int(v)))
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DecimalField, E> {
                Ok(DecimalField(Decimal::from_int(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DecimalField, E> {
                // Rust prints the shortest string that reads back as the same f64, which is the
                // decimal the author wrote.
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DecimalField, E> {
                Decimal::parse(v).map(DecimalField).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a file in our format (one SLO, or a list under `slos:`).
pub fn load(path: &Path, text: &str) -> Result<Vec<Slo>, SloError> {
    let format_err = |e: serde_yaml_ng::Error| SloError::Format {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(format_err)?;
    let is_list = doc.as_mapping().is_some_and(|m| m.contains_key("slos"));
    let invalid = |field: String, message: String| SloError::Invalid {
        line: None,
        file: path.to_path_buf(),
        field,
        message,
    };
    let specs: Vec<(String, SloSpec)> = if is_list {
        let list: SloList = serde_yaml_ng::from_str(text).map_err(format_err)?;
        check_header(list.api_version.as_deref(), list.kind.as_deref(), "SLOList")
            .map_err(|(f, m)| invalid(f, m))?;
        if list.slos.is_empty() {
            return Err(invalid("slos".into(), "the list is empty".into()));
        }
        list.slos
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("slos[{i}]."), s))
            .collect()
    } else {
        let one: SloSpec = serde_yaml_ng::from_str(text).map_err(format_err)?;
        vec![(String::new(), one)]
    };
    specs
        .into_iter()
        .map(|(prefix, spec)| convert(path, &prefix, spec))
        .collect()
}

fn check_header(
    api: Option<&str>,
    kind: Option<&str>,
    expected_kind: &str,
) -> Result<(), (String, String)> {
    if let Some(api) = api
        && api != API_VERSION
    {
        return Err((
            "apiVersion".into(),
            format!("`{api}`: expected `{API_VERSION}`"),
        ));
    }
    if let Some(kind) = kind
        && kind != expected_kind
    {
        return Err((
            "kind".into(),
            format!("`{kind}`: expected `{expected_kind}`"),
        ));
    }
    Ok(())
}

/// Parses a window such as `30d` or `4w` into whole days.
pub fn parse_window_days(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (digits, per) = if let Some(d) = t.strip_suffix('d') {
        (d, 1)
    } else if let Some(w) = t.strip_suffix('w') {
        (w, 7)
    } else {
        return Err(format!(
            "`{text}` is not a whole number of days: write it as `<N>d` or `<N>w`, e.g. `30d`"
        ));
    };
    let n: u32 = digits.parse().map_err(|_| {
        format!("`{text}` is not a whole number of days: write it as `<N>d` or `<N>w`, e.g. `30d`")
    })?;
    let days = n
        .checked_mul(per)
        .filter(|d| *d <= 3660)
        .ok_or_else(|| format!("`{text}` is longer than 10 years"))?;
    if days < MIN_WINDOW_DAYS {
        return Err(format!(
            "`{text}` is shorter than {MIN_WINDOW_DAYS}d; the 3d ticket window needs a longer SLO window"
        ));
    }
    Ok(days)
}

/// Checks an objective in percent: strictly between 0 and 100.
pub fn check_objective(objective: Decimal) -> Result<(), String> {
    if objective <= Decimal::from_int(0) || objective >= Decimal::from_int(100) {
        return Err(format!(
            "{objective} is out of range: the objective is a percentage strictly between 0 and 100 (100 leaves no error budget)"
        ));
    }
    Ok(())
}

/// A label name valid in Prometheus.
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn convert(path: &Path, prefix: &str, spec: SloSpec) -> Result<Slo, SloError> {
    let invalid = |field: &str, message: String| SloError::Invalid {
        line: None,
        file: path.to_path_buf(),
        field: format!("{prefix}{field}"),
        message,
    };
    check_header(spec.api_version.as_deref(), spec.kind.as_deref(), "SLO")
        .map_err(|(f, m)| invalid(&f, m))?;
    check_objective(spec.objective.0).map_err(|m| invalid("objective", m))?;
    let window_days = match &spec.window {
        Some(w) => parse_window_days(w).map_err(|m| invalid("window", m))?,
        None => DEFAULT_WINDOW_DAYS,
    };
    for (field, value) in [
        ("service", &spec.service),
        ("namespace", &spec.namespace),
        ("owner", &spec.owner),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(field, "must not be empty".into()));
        }
    }
    for name in spec.labels.keys() {
        if !valid_label_name(name) {
            return Err(invalid(
                &format!("labels.{name}"),
                "not a valid Prometheus label name".into(),
            ));
        }
    }
    let workload = spec
        .workload
        .clone()
        .unwrap_or_else(|| spec.service.clone());
    let base = format!(
        "namespace=\"{}\", workload=\"{}\"",
        promql_string(&spec.namespace),
        promql_string(&workload)
    );
    let sli = match spec.sli {
        None => SliKind::Availability(AvailabilitySpec::default()),
        Some(SliSpec {
            availability: Some(a),
            latency: None,
            custom: None,
        }) => SliKind::Availability(a),
        Some(SliSpec {
            availability: None,
            latency: Some(l),
            custom: None,
        }) => SliKind::Latency(l),
        Some(SliSpec {
            availability: None,
            latency: None,
            custom: Some(c),
        }) => SliKind::Custom(c),
        Some(_) => {
            return Err(invalid(
                "sli",
                "give exactly one of `availability`, `latency` or `custom`".into(),
            ));
        }
    };
    let (kind, queries) = match sli {
        SliKind::Availability(a) => {
            let sel = selector(&base, &a.routes, &a.methods);
            (
                "availability",
                SliQueries::Events {
                    // No error series yet means no errors, not no data: the ratio's numerator is then
                    // zero, but only where there are requests.
                    errors: format!(
                        "(sum(rate({RED_ERRORS}{{{sel}}}[{{{{.window}}}}])) or 0 * sum(rate({RED_REQUESTS}{{{sel}}}[{{{{.window}}}}])))"
                    ),
                    total: format!("sum(rate({RED_REQUESTS}{{{sel}}}[{{{{.window}}}}]))"),
                    total_count: Some(format!(
                        "sum(increase({RED_REQUESTS}{{{sel}}}[{{{{.window}}}}]))"
                    )),
                    presence: format!("{RED_REQUESTS}{{{sel}}}"),
                },
            )
        }
        SliKind::Latency(l) => {
            let threshold = l.threshold.0;
            if threshold <= Decimal::from_int(0) {
                return Err(invalid(
                    "sli.latency.threshold",
                    format!("{threshold} must be above 0 seconds"),
                ));
            }
            let (buckets, source) = match &l.buckets {
                Some(b) => (
                    b.iter().map(|d| d.0).collect::<Vec<_>>(),
                    "`sli.latency.buckets`",
                ),
                None => (
                    DEFAULT_LATENCY_BUCKETS
                        .iter()
                        .map(|b| Decimal::parse(b).expect("static bucket list"))
                        .collect(),
                    "the default RED bucket list (see docs/slo.md; give `buckets:` if your app uses others)",
                ),
            };
            if !buckets.contains(&threshold) {
                let list: Vec<String> = buckets.iter().map(|b| b.to_string()).collect();
                return Err(invalid(
                    "sli.latency.threshold",
                    format!(
                        "{threshold}s is not a bucket bound of the histogram; the latency SLI counts requests at or under a bucket bound, so it must be one of {} from {source}",
                        list.join(", ")
                    ),
                ));
            }
            let sel = selector(&base, &l.routes, &l.methods);
            let le = le_matcher(threshold);
            let count = format!("sum(rate({RED_DURATION}_count{{{sel}}}[{{{{.window}}}}]))");
            (
                "latency",
                SliQueries::Events {
                    errors: format!(
                        "({count} - sum(rate({RED_DURATION}_bucket{{{sel}, {le}}}[{{{{.window}}}}])))"
                    ),
                    total: count,
                    total_count: Some(format!(
                        "sum(increase({RED_DURATION}_count{{{sel}}}[{{{{.window}}}}]))"
                    )),
                    presence: format!("{RED_DURATION}_count{{{sel}}}"),
                },
            )
        }
        SliKind::Custom(c) => {
            super::check_query(
                path,
                &format!("{prefix}sli.custom.error_query"),
                &c.error_query,
            )?;
            super::check_query(
                path,
                &format!("{prefix}sli.custom.total_query"),
                &c.total_query,
            )?;
            (
                "custom",
                SliQueries::Events {
                    presence: super::render_window(c.total_query.trim(), "10m"),
                    errors: c.error_query.trim().to_string(),
                    total: c.total_query.trim().to_string(),
                    total_count: None,
                },
            )
        }
    };
    let name = spec.name.clone().unwrap_or_else(|| kind.to_string());
    if name.trim().is_empty() {
        return Err(invalid("name", "must not be empty".into()));
    }
    let id = format!("{}-{}", spec.service, name);
    let dashboard_url = spec
        .alerting
        .dashboard_url
        .clone()
        .unwrap_or_else(|| format!("{DEFAULT_DASHBOARD_PATH}?var-slo={id}"));
    let suggested_action = spec.alerting.suggested_action.clone().unwrap_or_else(|| {
        format!(
            "Open the dashboard and look for the routes, pods or nodes of {workload} in {} where errors or slow requests started; check recent deploys and config changes, and roll back or shed load if the burn began with one.",
            spec.namespace
        )
    });
    Ok(Slo {
        id,
        service: spec.service.clone(),
        namespace: Some(spec.namespace.clone()),
        owner: Some(spec.owner.clone()),
        objective: spec.objective.0,
        window_days,
        description: spec.description.clone().unwrap_or_default(),
        sli_kind: kind.to_string(),
        sli: queries,
        labels: spec.labels.clone(),
        alerting: Alerting {
            name: spec
                .alerting
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_ALERT_NAME.to_string()),
            page: spec.alerting.page.then(TierAlert::default),
            ticket: spec.alerting.ticket.then(TierAlert::default),
            no_data: spec.alerting.no_data,
            min_requests: spec.alerting.min_requests,
            runbook_url: spec.runbook_url.clone(),
            dashboard_url,
            suggested_action,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
    })
}

/// Label matchers of a RED selector: namespace and workload, plus optional route/method sets.
fn selector(base: &str, routes: &[String], methods: &[String]) -> String {
    let mut sel = base.to_string();
    for (label, values) in [("route", routes), ("method", methods)] {
        if values.is_empty() {
            continue;
        }
        let alternatives: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
        sel.push_str(&format!(
            ", {label}=~\"{}\"",
            promql_string(&alternatives.join("|"))
        ));
    }
    sel
}

/// Matches the `le` bucket of a bound whatever the exporter's number formatting: Go clients
/// write `1`, Python clients and Prometheus 3's normalisation write `1.0`.
fn le_matcher(bound: Decimal) -> String {
    let text = bound.to_string();
    if text.contains('.') {
        format!("le=\"{text}\"")
    } else {
        format!("le=~\"{text}(\\\\.0)?\"")
    }
}

/// Escapes a value for a double-quoted PromQL string.
pub(crate) fn promql_string(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Vec<Slo>, SloError> {
        super::super::load_str(Path::new("slos/shop.yaml"), text)
    }

    const BASE: &str = "service: checkout\nnamespace: shop\nowner: team-payments\n";

    #[test]
    fn a_minimal_spec_defaults_to_availability_over_thirty_days() {
        let slos = load_text(&format!("{BASE}objective: 99.9\n")).unwrap();
        let slo = &slos[0];
        assert_eq!(slo.id, "checkout-availability");
        assert_eq!(slo.window_days, 30);
        assert_eq!(slo.objective.to_string(), "99.9");
        let SliQueries::Events { errors, total, .. } = &slo.sli else {
            panic!("events SLI expected")
        };
        assert_eq!(
            errors,
            "(sum(rate(kubesignal_red_errors_total{namespace=\"shop\", workload=\"checkout\"}[{{.window}}])) or 0 * sum(rate(kubesignal_red_requests_total{namespace=\"shop\", workload=\"checkout\"}[{{.window}}])))"
        );
        assert!(total.starts_with("sum(rate(kubesignal_red_requests_total{"));
    }

    #[test]
    fn an_objective_of_one_hundred_is_rejected_naming_file_and_field() {
        let err = load_text(&format!("{BASE}objective: 100\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("slos/shop.yaml:4: "), "{err}");
        assert!(err.contains("`objective`"), "{err}");
        assert!(err.contains("strictly between 0 and 100"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_rejected_with_its_name_and_line() {
        let err = load_text(&format!("{BASE}objective: 99.9\nobjectiv: 99\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slos/shop.yaml"), "{err}");
        assert!(err.contains("objectiv"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn an_unknown_field_deep_in_the_spec_is_reported_with_its_path() {
        let err = load_text(&format!(
            "{BASE}objective: 99.9\nsli:\n  availability:\n    route: [/a]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("route"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn a_window_in_hours_is_rejected_as_not_whole_days() {
        let err = load_text(&format!("{BASE}objective: 99.9\nwindow: 36h\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slos/shop.yaml"), "{err}");
        assert!(err.contains("`window`"), "{err}");
        assert!(err.contains("whole number of days"), "{err}");
    }

    #[test]
    fn weeks_are_whole_days_and_too_short_windows_are_refused() {
        assert_eq!(parse_window_days("4w"), Ok(28));
        assert_eq!(parse_window_days("30d"), Ok(30));
        assert!(
            parse_window_days("3d")
                .unwrap_err()
                .contains("shorter than 7d")
        );
        assert!(parse_window_days("1.5d").is_err());
        assert!(
            parse_window_days("4294967295w")
                .unwrap_err()
                .contains("10 years")
        );
    }

    #[test]
    fn custom_promql_that_does_not_parse_is_rejected_naming_the_query_field() {
        let err = load_text(&format!(
            "{BASE}objective: 99.9\nsli:\n  custom:\n    error_query: sum(rate(errors[{{{{.window}}}}])\n    total_query: sum(rate(requests[{{{{.window}}}}]))\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`sli.custom.error_query`"), "{err}");
        assert!(err.contains("not valid PromQL"), "{err}");
    }

    #[test]
    fn custom_queries_without_the_window_placeholder_are_rejected() {
        let err = load_text(&format!(
            "{BASE}objective: 99.9\nsli:\n  custom:\n    error_query: sum(rate(errors[5m]))\n    total_query: sum(rate(requests[{{{{.window}}}}]))\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`sli.custom.error_query`"), "{err}");
        assert!(err.contains("{{.window}}"), "{err}");
    }

    #[test]
    fn a_latency_threshold_off_the_bucket_bounds_is_rejected_listing_the_bounds() {
        let err = load_text(&format!(
            "{BASE}objective: 99\nsli:\n  latency:\n    threshold: 0.3\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`sli.latency.threshold`"), "{err}");
        assert!(err.starts_with("slos/shop.yaml:7: "), "{err}");
        assert!(err.contains("0.3s is not a bucket bound"), "{err}");
        assert!(err.contains("0.25, 0.5"), "{err}");
        assert!(err.contains("default RED bucket list"), "{err}");
        let ok = load_text(&format!(
            "{BASE}objective: 99\nsli:\n  latency:\n    threshold: 0.3\n    buckets: [0.1, 0.3, 1]\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_latency_sli_counts_requests_above_the_bucket_as_bad() {
        let slos = load_text(&format!(
            "{BASE}objective: 99\nsli:\n  latency:\n    threshold: 1\n    routes: ['/pay/{{id}}']\n"
        ))
        .unwrap();
        let SliQueries::Events { errors, .. } = &slos[0].sli else {
            panic!("events SLI expected")
        };
        assert!(errors.contains(r#"le=~"1(\\.0)?""#), "{errors}");
        assert!(errors.contains(r#"route=~"/pay/\\{id\\}""#), "{errors}");
        assert!(errors.starts_with("(sum(rate(kubesignal_red_request_duration_seconds_count{"));
    }

    #[test]
    fn a_list_reports_the_index_of_the_bad_slo() {
        let err = load_text(&format!(
            "slos:\n  - {}    objective: 99.9\n  - {}    objective: 0\n",
            BASE.replace('\n', "\n    ").trim_end_matches(' '),
            BASE.replace('\n', "\n    ").trim_end_matches(' ')
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("`slos[1].objective`"), "{err}");
        assert!(err.starts_with("slos/shop.yaml:9: "), "{err}");
    }

    #[test]
    fn an_objective_written_as_a_string_is_read_exactly() {
        let slos = load_text(&format!("{BASE}objective: \"99.95\"\n")).unwrap();
        assert_eq!(slos[0].objective, Decimal::parse("99.95").unwrap());
    }
}
