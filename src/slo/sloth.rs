//! Sloth's `prometheus/v1` spec files, read unchanged into our SLO model.
//!
//! Mapping: `service` and `slos[].name` make the SLO id (`<service>-<name>`, Sloth's
//! `sloth_id`); service and SLO `labels` go on every rule; `sli.events` become bad/total
//! queries, `sli.raw` a ready-made ratio; `alerting.name/labels/annotations` and
//! `page_alert`/`ticket_alert` (`disable`, `labels`, `annotations`) shape the two alert tiers.
//! Plugins (`sli.plugin`, `slos[].plugins`, `slo_plugins`) run Sloth's Go code, which we do not
//! have, so files using them are refused with an error naming the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::spec::{DecimalField, check_objective, valid_label_name};
use super::{
    Alerting, DEFAULT_ALERT_NAME, DEFAULT_DASHBOARD_PATH, DEFAULT_WINDOW_DAYS, SliQueries, Slo,
    SloError, TierAlert,
};

/// The `version` that marks a Sloth file.
pub const SLOTH_VERSION: &str = "prometheus/v1";

/// A Sloth `prometheus/v1` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothSpec {
    /// `prometheus/v1`.
    pub version: String,
    /// The service.
    pub service: String,
    /// Labels for every rule.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// File-wide SLO plugins (not supported).
    #[serde(default)]
    pub slo_plugins: Option<serde_yaml_ng::Value>,
    /// The SLOs.
    pub slos: Vec<SlothSlo>,
}

/// One Sloth SLO.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothSlo {
    /// Name within the service.
    pub name: String,
    /// Objective in percent.
    pub objective: DecimalField,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Labels for this SLO's rules.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The SLI.
    pub sli: SlothSli,
    /// Alerting.
    #[serde(default)]
    pub alerting: SlothAlerting,
    /// SLO plugins (not supported).
    #[serde(default)]
    pub plugins: Option<serde_yaml_ng::Value>,
}

/// A Sloth SLI: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothSli {
    /// A ready-made error ratio query.
    #[serde(default)]
    pub raw: Option<SlothRaw>,
    /// Bad and total event queries.
    #[serde(default)]
    pub events: Option<SlothEvents>,
    /// An SLI plugin (not supported).
    #[serde(default)]
    pub plugin: Option<serde_yaml_ng::Value>,
}

/// `sli.raw`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothRaw {
    /// Error ratio over `{{.window}}`.
    pub error_ratio_query: String,
}

/// `sli.events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothEvents {
    /// Bad events over `{{.window}}`.
    pub error_query: String,
    /// All events over `{{.window}}`.
    pub total_query: String,
}

/// `alerting`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothAlerting {
    /// Alert name for both tiers.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels on both tiers.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations on both tiers.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The page tier.
    #[serde(default)]
    pub page_alert: SlothAlert,
    /// The ticket tier.
    #[serde(default)]
    pub ticket_alert: SlothAlert,
}

/// `page_alert` / `ticket_alert`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlothAlert {
    /// Drop this tier.
    #[serde(default)]
    pub disable: bool,
    /// Labels of this tier.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of this tier.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Reads a Sloth file into SLOs.
pub fn load(path: &Path, text: &str) -> Result<Vec<Slo>, SloError> {
    let spec: SlothSpec = serde_yaml_ng::from_str(text).map_err(|e| SloError::Format {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let invalid = |field: String, message: String| SloError::Invalid {
        line: None,
        file: path.to_path_buf(),
        field,
        message,
    };
    let unsupported = |field: String, message: &str| SloError::Unsupported {
        line: None,
        file: path.to_path_buf(),
        field,
        message: message.to_string(),
    };
    if spec.slo_plugins.is_some() {
        return Err(unsupported(
            "slo_plugins".into(),
            "Sloth SLO plugins (Go code run by Sloth)",
        ));
    }
    if spec.service.trim().is_empty() {
        return Err(invalid("service".into(), "must not be empty".into()));
    }
    if spec.slos.is_empty() {
        return Err(invalid("slos".into(), "the list is empty".into()));
    }
    let mut out = Vec::new();
    for (i, s) in spec.slos.into_iter().enumerate() {
        let at = |field: &str| format!("slos[{i}].{field}");
        if s.plugins.is_some() {
            return Err(unsupported(
                at("plugins"),
                "Sloth SLO plugins (Go code run by Sloth)",
            ));
        }
        check_objective(s.objective.0).map_err(|m| invalid(at("objective"), m))?;
        let mut labels = spec.labels.clone();
        labels.extend(s.labels.clone());
        for name in labels.keys() {
            if !valid_label_name(name) {
                return Err(invalid(
                    at(&format!("labels.{name}")),
                    "not a valid Prometheus label name".into(),
                ));
            }
        }
        let (kind, sli) = match (&s.sli.raw, &s.sli.events, &s.sli.plugin) {
            (_, _, Some(_)) => {
                return Err(unsupported(
                    at("sli.plugin"),
                    "Sloth SLI plugins (Go code run by Sloth); write the queries as `sli.events`",
                ));
            }
            (Some(raw), None, None) => {
                super::check_query(
                    path,
                    &at("sli.raw.error_ratio_query"),
                    &raw.error_ratio_query,
                )?;
                (
                    "sloth-raw",
                    SliQueries::Ratio {
                        ratio: raw.error_ratio_query.trim().to_string(),
                    },
                )
            }
            (None, Some(ev), None) => {
                super::check_query(path, &at("sli.events.error_query"), &ev.error_query)?;
                super::check_query(path, &at("sli.events.total_query"), &ev.total_query)?;
                (
                    "sloth-events",
                    SliQueries::Events {
                        errors: ev.error_query.trim().to_string(),
                        total: ev.total_query.trim().to_string(),
                        total_count: None,
                        presence: super::render_window(ev.total_query.trim(), "10m"),
                    },
                )
            }
            _ => {
                return Err(invalid(
                    at("sli"),
                    "exactly one of `events`, `raw` or `plugin` is needed".into(),
                ));
            }
        };
        let id = format!("{}-{}", spec.service, s.name);
        let a = s.alerting;
        for (field, map) in [
            ("alerting.labels", &a.labels),
            ("alerting.page_alert.labels", &a.page_alert.labels),
            ("alerting.ticket_alert.labels", &a.ticket_alert.labels),
        ] {
            if let Some(bad) = map.keys().find(|k| !valid_label_name(k)) {
                return Err(invalid(
                    at(&format!("{field}.{bad}")),
                    "not a valid Prometheus label name".into(),
                ));
            }
        }
        let runbook_url = a
            .annotations
            .get("runbook_url")
            .or_else(|| a.annotations.get("runbook"))
            .cloned();
        let page = (!a.page_alert.disable).then(|| TierAlert {
            labels: a.page_alert.labels.clone(),
            annotations: a.page_alert.annotations.clone(),
        });
        let ticket = (!a.ticket_alert.disable).then(|| TierAlert {
            labels: a.ticket_alert.labels.clone(),
            annotations: a.ticket_alert.annotations.clone(),
        });
        let no_data = page.is_some() || ticket.is_some();
        out.push(Slo {
            id: id.clone(),
            service: spec.service.clone(),
            namespace: labels.get("namespace").cloned(),
            owner: labels
                .get("owner")
                .or_else(|| labels.get("team"))
                .cloned(),
            objective: s.objective.0,
            window_days: DEFAULT_WINDOW_DAYS,
            description: s.description.unwrap_or_default(),
            sli_kind: kind.to_string(),
            sli,
            labels,
            alerting: Alerting {
                name: a.name.unwrap_or_else(|| DEFAULT_ALERT_NAME.to_string()),
                page,
                ticket,
                no_data,
                min_requests: 0,
                runbook_url,
                dashboard_url: format!("{DEFAULT_DASHBOARD_PATH}?var-slo={id}"),
                suggested_action: format!(
                    "Open the dashboard for {id}, find where the bad events come from and whether a change started the burn; roll back or mitigate."
                ),
                labels: a.labels,
                annotations: a.annotations,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::generate;

    const SPEC: &str = r#"version: "prometheus/v1"
service: "api"
labels: {owner: "team-api", namespace: "prod"}
slos:
  - name: "ratio"
    objective: 99.5
    sli:
      raw:
        error_ratio_query: sum(rate(e[{{.window}}])) / sum(rate(t[{{.window}}]))
    alerting:
      name: ApiBurn
      labels: {category: availability}
      annotations: {runbook: "https://r.example.com"}
      page_alert: {labels: {severity: critical}}
      ticket_alert: {disable: true}
"#;

    #[test]
    fn a_sloth_slo_keeps_its_names_labels_and_tier_overrides() {
        let slos = load(Path::new("s.yml"), SPEC).unwrap();
        let slo = &slos[0];
        assert_eq!(slo.id, "api-ratio");
        assert_eq!(slo.owner.as_deref(), Some("team-api"));
        assert_eq!(slo.namespace.as_deref(), Some("prod"));
        assert!(slo.alerting.ticket.is_none());
        assert_eq!(
            slo.alerting.runbook_url.as_deref(),
            Some("https://r.example.com")
        );
        let file = generate::rule_file(&slos);
        let alerts: Vec<_> = file
            .groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter(|r| r.alert.as_deref() == Some("ApiBurn"))
            .collect();
        assert_eq!(alerts.len(), 1, "the ticket tier is disabled");
        assert_eq!(alerts[0].labels["severity"], "critical");
        assert_eq!(alerts[0].labels["sloth_severity"], "page");
        assert_eq!(alerts[0].labels["category"], "availability");
        assert!(
            alerts[0]
                .expr
                .contains("(sum(rate(e[1h])) / sum(rate(t[1h]))) > 0.072")
        );
    }

    #[test]
    fn an_sli_plugin_is_refused_naming_the_field() {
        let text = SPEC.replace(
            "      raw:\n        error_ratio_query: sum(rate(e[{{.window}}])) / sum(rate(t[{{.window}}]))\n",
            "      plugin: {id: x}\n",
        );
        let err = load(Path::new("s.yml"), &text).unwrap_err().to_string();
        assert!(err.contains("s.yml"), "{err}");
        assert!(err.contains("`slos[0].sli.plugin`"), "{err}");
        assert!(err.contains("not supported"), "{err}");
    }
}
