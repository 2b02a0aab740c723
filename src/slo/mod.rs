//! SLO specs to Prometheus rules: multiwindow, multi-burn-rate alerts after the SRE workbook.
//!
//! Two input formats are read into one model, [`Slo`]: our own spec (`slos/*.yaml`, see
//! [`spec`]) and Sloth's `prometheus/v1` files (see [`sloth`]). [`generate`] turns each SLO into
//! recording rules (error ratios per window, budget series) and alerting rules (page, ticket,
//! no data). `docs/slo.md` is the user-facing reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub mod decimal;
pub mod generate;
mod locate;
pub mod sloth;
pub mod spec;

pub use decimal::Decimal;

use crate::rules::file::RuleFile;

/// The `{{.window}}` placeholder of SLI query templates (Sloth's spelling, spaces allowed).
pub const WINDOW_PLACEHOLDER: &str = "{{.window}}";

/// One SLO, whatever format it was written in.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// Unique id, the `slo` label of every generated series and alert (`<service>-<name>`).
    pub id: String,
    /// The service the SLO belongs to.
    pub service: String,
    /// Kubernetes namespace of the service, when known.
    pub namespace: Option<String>,
    /// Team that owns the service and receives its alerts, when known.
    pub owner: Option<String>,
    /// Objective in percent, strictly between 0 and 100.
    pub objective: Decimal,
    /// SLO window (compliance period) in whole days.
    pub window_days: u32,
    /// Free text shown in the info series.
    pub description: String,
    /// What kind of SLI this is (`availability`, `latency`, `custom`, `sloth-events`, `sloth-raw`).
    pub sli_kind: String,
    /// The SLI queries.
    pub sli: SliQueries,
    /// Labels added to every generated rule.
    pub labels: BTreeMap<String, String>,
    /// How alerts are raised.
    pub alerting: Alerting,
}

/// SLI queries as templates containing [`WINDOW_PLACEHOLDER`].
#[derive(Clone, Debug, PartialEq)]
pub enum SliQueries {
    /// Bad and total events, recorded separately so long windows are traffic-weighted.
    Events {
        /// Bad events per second over the window.
        errors: String,
        /// All events per second over the window.
        total: String,
        /// Count of events over the window, for the minimum-traffic guard; when `None` the guard
        /// multiplies `total` by the window's length in seconds.
        total_count: Option<String>,
        /// Expression whose absence means the SLI has no data.
        presence: String,
    },
    /// A ready-made error ratio (Sloth's `sli.raw`): long windows cannot be traffic-weighted.
    Ratio {
        /// Error ratio over the window.
        ratio: String,
    },
}

/// Alerting settings of one SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct Alerting {
    /// Name of the burn-rate alerts (page and ticket share it; `severity` tells them apart).
    pub name: String,
    /// The page tier, unless disabled.
    pub page: Option<TierAlert>,
    /// The ticket tier, unless disabled.
    pub ticket: Option<TierAlert>,
    /// Whether to raise the no-data alert.
    pub no_data: bool,
    /// Requests per long window below which no burn-rate alert fires (0: no guard).
    pub min_requests: u64,
    /// Runbook link, when known.
    pub runbook_url: Option<String>,
    /// Dashboard link.
    pub dashboard_url: String,
    /// What the person who receives the alert should do first.
    pub suggested_action: String,
    /// Labels added to every alert of this SLO.
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every burn-rate alert of this SLO (they override ours).
    pub annotations: BTreeMap<String, String>,
}

/// Per-tier overrides (Sloth's `page_alert` / `ticket_alert`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierAlert {
    /// Labels that override the generated ones for this tier.
    pub labels: BTreeMap<String, String>,
    /// Annotations that override the generated ones for this tier.
    pub annotations: BTreeMap<String, String>,
}

/// Default name of the burn-rate alerts.
pub const DEFAULT_ALERT_NAME: &str = "SLOErrorBudgetBurn";
/// Name of the no-data alert.
pub const NO_DATA_ALERT_NAME: &str = "SLONoData";
/// Default SLO window in days.
pub const DEFAULT_WINDOW_DAYS: u32 = 30;
/// Shortest SLO window: the longest alert window is 3d, and the window must exceed it.
pub const MIN_WINDOW_DAYS: u32 = 7;
/// Grafana path of the SLO dashboard, used when a spec gives no `dashboard_url`.
pub const DEFAULT_DASHBOARD_PATH: &str = "/d/kubesignal-slo/kubesignal-slo";

/// Errors of reading specs and writing rules; each names the file and, where it applies, the
/// field.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// The spec file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The spec file.
        file: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The spec is not valid YAML or does not match the format (serde's message carries the
    /// field path and line/column).
    #[error("{file}: {message}")]
    Format {
        /// The spec file.
        file: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// A field has a value the generator cannot use.
    #[error("{}{}: field `{field}`: {message}", file.display(), at_line(*line))]
    Invalid {
        /// The spec file.
        file: PathBuf,
        /// Line of the field, when it could be found (block-style YAML).
        line: Option<usize>,
        /// Path of the field, e.g. `slos[1].objective`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A feature of the input format that we do not support.
    #[error(
        "{}{}: field `{field}`: {message} is not supported by kubesignal slo generate",
        file.display(),
        at_line(*line)
    )]
    Unsupported {
        /// The spec file.
        file: PathBuf,
        /// Line of the field, when it could be found.
        line: Option<usize>,
        /// The field that uses it.
        field: String,
        /// The feature.
        message: String,
    },
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Write {
        /// Output file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// Reads one spec file (our format or Sloth `prometheus/v1`) into SLOs.
pub fn load_file(path: &Path) -> Result<Vec<Slo>, SloError> {
    let text = std::fs::read_to_string(path).map_err(|source| SloError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    load_str(path, &text)
}

/// Reads spec text; `path` is only used in error messages.
pub fn load_str(path: &Path, text: &str) -> Result<Vec<Slo>, SloError> {
    load_unlocated(path, text).map_err(|mut e| {
        if let SloError::Invalid { field, line, .. } | SloError::Unsupported { field, line, .. } =
            &mut e
            && line.is_none()
        {
            *line = locate::field_line(text, field);
        }
        e
    })
}

fn load_unlocated(path: &Path, text: &str) -> Result<Vec<Slo>, SloError> {
    let format_err = |e: serde_yaml_ng::Error| SloError::Format {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(format_err)?;
    let top = doc.as_mapping();
    let get = |key: &str| top.and_then(|m| m.get(key)).and_then(|v| v.as_str());
    if let Some(version) = get("version") {
        if version == sloth::SLOTH_VERSION {
            return sloth::load(path, text);
        }
        return Err(SloError::Invalid {
            line: None,
            file: path.to_path_buf(),
            field: "version".into(),
            message: format!(
                "unknown version `{version}` (Sloth files use `{}`)",
                sloth::SLOTH_VERSION
            ),
        });
    }
    if let Some(api) = get("apiVersion")
        && api != spec::API_VERSION
    {
        let what = if api.starts_with("sloth.slok.dev") {
            format!(
                "Sloth's Kubernetes form (`apiVersion: {api}`); use its `version: \"prometheus/v1\"` file form"
            )
        } else if api.starts_with("openslo") {
            format!("OpenSLO (`apiVersion: {api}`)")
        } else {
            format!("`apiVersion: {api}` (expected `{}`)", spec::API_VERSION)
        };
        return Err(SloError::Unsupported {
            line: None,
            file: path.to_path_buf(),
            field: "apiVersion".into(),
            message: what,
        });
    }
    spec::load(path, text)
}

/// Reads every file and generates one rule file per input, checking that SLO ids are unique
/// across all of them.
pub fn generate_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, RuleFile)>, SloError> {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for path in paths {
        let slos = load_file(path)?;
        let mut ids = BTreeSet::new();
        for slo in &slos {
            if !ids.insert(slo.id.clone()) {
                return Err(SloError::Invalid {
                    line: None,
                    file: path.clone(),
                    field: "slos".into(),
                    message: format!(
                        "SLO id `{}` is defined twice; give the SLOs of one service different `name`s",
                        slo.id
                    ),
                });
            }
            if let Some(first) = seen.get(&slo.id) {
                return Err(SloError::Invalid {
                    line: None,
                    file: path.clone(),
                    field: "slo".into(),
                    message: format!(
                        "SLO id `{}` is already defined in {}; ids (`<service>-<name>`) must be unique",
                        slo.id,
                        first.display()
                    ),
                });
            }
        }
        for id in ids {
            seen.insert(id, path.clone());
        }
        out.push((path.clone(), generate::rule_file(&slos)));
    }
    Ok(out)
}

/// Serializes a rule file with a header that says where it came from.
pub fn render(sources: &[&Path], file: &RuleFile) -> String {
    let names: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
    let body = serde_yaml_ng::to_string(file).unwrap_or_else(|e| format!("# {e}\n"));
    format!(
        "# Generated by `kubesignal slo generate` from {}. Do not edit: change the spec and regenerate.\n{body}",
        names.join(", ")
    )
}

/// Runs `slo generate`: writes one `<stem>.rules.yaml` per input into `output`, or every group
/// into one document on stdout when `output` is `None` or `-`.
pub fn run_generate(files: &[PathBuf], output: Option<&Path>) -> Result<Vec<PathBuf>, SloError> {
    let generated = generate_files(files)?;
    match output {
        Some(dir) if dir != Path::new("-") => {
            std::fs::create_dir_all(dir).map_err(|source| SloError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut written = Vec::new();
            for (src, file) in &generated {
                let stem = src
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "slo".into());
                let path = dir.join(format!("{stem}.rules.yaml"));
                std::fs::write(&path, render(&[src], file)).map_err(|source| SloError::Write {
                    path: path.clone(),
                    source,
                })?;
                written.push(path);
            }
            Ok(written)
        }
        _ => {
            let mut all = RuleFile::default();
            for (_, file) in &generated {
                all.groups.extend(file.groups.iter().cloned());
            }
            let sources: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
            use std::io::Write;
            std::io::stdout()
                .write_all(render(&sources, &all).as_bytes())
                .map_err(|source| SloError::Write {
                    path: PathBuf::from("-"),
                    source,
                })?;
            Ok(Vec::new())
        }
    }
}

/// Replaces the window placeholder (`{{.window}}`, spaces inside the braces allowed).
pub fn render_window(template: &str, window: &str) -> String {
    window_regex().replace_all(template, window).into_owned()
}

/// Whether a template contains the window placeholder.
pub fn has_window(template: &str) -> bool {
    window_regex().is_match(template)
}

fn window_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\{\{\s*\.window\s*\}\}").expect("static regex"))
}

/// Checks that a query template has the placeholder and parses as PromQL once filled in.
pub(crate) fn check_query(file: &Path, field: &str, template: &str) -> Result<(), SloError> {
    let invalid = |message: String| SloError::Invalid {
        line: None,
        file: file.to_path_buf(),
        field: field.to_string(),
        message,
    };
    if !has_window(template) {
        return Err(invalid(format!(
            "the query must contain the `{WINDOW_PLACEHOLDER}` placeholder where the range goes, e.g. `rate(x[{WINDOW_PLACEHOLDER}])`"
        )));
    }
    let query = render_window(template, "5m");
    promql_parser::parser::parse(&query)
        .map_err(|e| invalid(format!("not valid PromQL (with the window set to 5m): {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_slos_with_the_same_id_are_refused_within_and_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = "service: a\nnamespace: b\nowner: c\nobjective: 99\n";
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, one).unwrap();
        std::fs::write(&b, one).unwrap();
        let err = generate_files(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.yaml") && err.contains("a.yaml"), "{err}");
        assert!(err.contains("a-availability"), "{err}");
        let list = dir.path().join("list.yaml");
        std::fs::write(
            &list,
            format!(
                "slos:\n  - {}\n  - {}",
                one.replace('\n', "\n    "),
                one.replace('\n', "\n    ")
            ),
        )
        .unwrap();
        let err = generate_files(&[list]).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
    }
}
