//! The Prometheus template language for alert labels and annotations: Go's `text/template`
//! syntax (`{{ $labels.instance }}`, pipelines, `if`/`range`/`with`, `define`/`template`) with
//! Prometheus's functions (`humanize*`, `query`, `label`, `reReplaceAll`, ...), so existing rule
//! files render exactly as Prometheus renders them.
//!
//! Our own implementation: no maintained Rust crate covers Go's template syntax together with
//! Go's number formatting, which alert texts depend on byte for byte.
//!
//! Like Prometheus, every template sees `$labels`, `$externalLabels`, `$externalURL` and
//! `$value` (Prometheus declares them in a preamble), plus `$activeAt` (a kubesignal extension:
//! when the alert became active). Missing labels render as the empty string
//! (`missingkey=zero`).

mod exec;
mod funcs;
mod gofmt;
mod parse;
mod value;

use std::collections::BTreeMap;
use std::rc::Rc;

use chrono::{DateTime, Utc};

use value::Value;

/// The variables Prometheus's preamble declares, plus our `$activeAt`.
const PREAMBLE_VARS: &[&str] = &[
    "$labels",
    "$externalLabels",
    "$externalURL",
    "$value",
    "$activeAt",
];

/// A parsed template, ready to render many times.
#[derive(Debug)]
pub struct Template {
    name: String,
    root: parse::List,
    defines: BTreeMap<String, parse::List>,
}

/// The data an alert template renders with.
#[derive(Clone, Copy, Debug)]
pub struct TemplateData<'a> {
    /// The alert's labels (`$labels`, `.Labels`), including `__name__` where the series has one.
    pub labels: &'a BTreeMap<String, String>,
    /// The evaluator's external labels (`$externalLabels`).
    pub external_labels: &'a BTreeMap<String, String>,
    /// The evaluator's external URL (`$externalURL`).
    pub external_url: &'a str,
    /// The sample value that triggered the alert (`$value`).
    pub value: f64,
    /// When the alert became active (`$activeAt`), if known.
    pub active_at: Option<DateTime<Utc>>,
}

/// One sample returned to a template by the `query` function.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    /// The series labels, including `__name__` when the series has one.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// Runs instant queries for the template function `query`, at the evaluation timestamp.
pub trait TemplateQuerier {
    /// Runs `promql` and returns its instant vector, or a message saying why it failed.
    fn query(&self, promql: &str) -> Result<Vec<QuerySample>, String>;
}

/// Why a template could not be parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template text is not valid.
    #[error("template: {name}:{line}: {message}")]
    Parse {
        /// The template's name (e.g. `__alert_HighLatency`).
        name: String,
        /// 1-based line within the template text.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Rendering failed (a function error, a bad field access, a failed query).
    #[error("template: {message}")]
    Exec {
        /// The template's name.
        name: String,
        /// What went wrong, in Go's words: `NAME:LINE: executing "NAME" at <NODE>: ...`.
        message: String,
    },
}

impl Template {
    /// Parses `text`; `name` appears in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let parsed = parse::parse(text, PREAMBLE_VARS, &funcs::exists).map_err(|e| {
            TemplateError::Parse {
                name: name.to_string(),
                line: e.line,
                message: e.message,
            }
        })?;
        Ok(Template {
            name: name.to_string(),
            root: parsed.root,
            defines: parsed.defines,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders the template. Without a `querier`, calling `query` is an error.
    pub fn render(
        &self,
        data: &TemplateData,
        querier: Option<&dyn TemplateQuerier>,
    ) -> Result<String, TemplateError> {
        let labels = Value::string_map(data.labels);
        let external_labels = Value::string_map(data.external_labels);
        let external_url = Value::Str(data.external_url.to_string());
        let value = Value::Float(data.value);
        let active_at = data.active_at.map_or(Value::Nil, Value::Time);
        let dot = Value::Struct(
            "*template.tmplData",
            Rc::new(vec![
                ("Labels", labels.clone()),
                ("ExternalLabels", external_labels.clone()),
                ("ExternalURL", external_url.clone()),
                ("Value", value.clone()),
                ("ActiveAt", active_at.clone()),
            ]),
        );
        let vars = vec![
            ("$".to_string(), dot.clone()),
            ("$labels".to_string(), labels),
            ("$externalLabels".to_string(), external_labels),
            ("$externalURL".to_string(), external_url),
            ("$value".to_string(), value),
            ("$activeAt".to_string(), active_at),
        ];
        let env = funcs::Env {
            external_url: data.external_url,
            querier,
        };
        let mut exec = exec::Exec::new(&self.defines, &env, vars);
        let mut out = String::new();
        exec.run(&self.root, &dot, &mut out).map_err(|e| {
            let name = &self.name;
            let at = e.at.map(|a| format!(" at <{a}>")).unwrap_or_default();
            TemplateError::Exec {
                name: name.clone(),
                message: format!("{name}:{}: executing \"{name}\"{at}: {}", e.line, e.message),
            }
        })?;
        Ok(out)
    }
}

/// Parse-and-render in one go, for label/annotation values.
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData,
    querier: Option<&dyn TemplateQuerier>,
) -> Result<String, TemplateError> {
    // Most label values hold no action at all; skip the parser for them.
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    Template::parse(name, text)?.render(data, querier)
}

#[cfg(test)]
mod tests;
