//! Expansion of alert label and annotation templates through the Prometheus template language
//! ([`crate::template`]), with the data Prometheus gives them (`$labels`, `$value`,
//! `$externalLabels`, `$externalURL`) plus `$activeAt`, and the `query` function answered by
//! the evaluator's datasource at the evaluation timestamp.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::alert::{Labels, RenderInput};
use super::datasource::Datasource;
use crate::template::{QuerySample, Template, TemplateData, TemplateQuerier};

/// Parsed templates by text, so each is parsed once rather than once per alert per evaluation.
type Cache = Arc<Mutex<HashMap<String, Result<Arc<Template>, String>>>>;

/// Past this many distinct template texts the cache starts over (texts come from rule files,
/// so this only bounds memory against pathological inputs).
const CACHE_LIMIT: usize = 50_000;

/// What templates can see besides the sample.
#[derive(Clone, Debug, Default)]
pub struct Templater {
    /// `--external-label`s.
    pub external_labels: Labels,
    /// `--external-url`.
    pub external_url: String,
    cache: Cache,
}

impl Templater {
    /// Expands one template; an error becomes the text Prometheus would put there, and is
    /// logged, but never fails the evaluation.
    pub fn render(&self, input: RenderInput<'_>, querier: Option<&dyn TemplateQuerier>) -> String {
        let data = TemplateData {
            labels: input.labels,
            external_labels: &self.external_labels,
            external_url: &self.external_url,
            value: input.value,
            active_at: input.active_at,
        };
        if !input.text.contains("{{") {
            return input.text.to_string();
        }
        let result = self
            .parsed(input.name, input.text)
            .and_then(|t| t.render(&data, querier).map_err(|e| e.to_string()));
        match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(template = input.name, error = %e, "expanding template failed");
                format!("<error expanding template: {e}>")
            }
        }
    }

    /// A constructor that sets the visible data and starts with an empty cache.
    pub fn new(external_labels: Labels, external_url: String) -> Self {
        Templater {
            external_labels,
            external_url,
            cache: Cache::default(),
        }
    }

    fn parsed(&self, name: &str, text: &str) -> Result<Arc<Template>, String> {
        let Ok(mut cache) = self.cache.lock() else {
            return Template::parse(name, text)
                .map(Arc::new)
                .map_err(|e| e.to_string());
        };
        if let Some(found) = cache.get(text) {
            return found.clone();
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        let parsed = Template::parse(name, text)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        cache.insert(text.to_string(), parsed.clone());
        parsed
    }
}

/// Answers the templates' `query` function from the datasource, at the evaluation time.
pub struct DatasourceQuerier<'a> {
    /// Where queries go.
    pub datasource: &'a dyn Datasource,
    /// The evaluation timestamp.
    pub ts: DateTime<Utc>,
    /// The evaluation deadline.
    pub deadline: Instant,
}

impl TemplateQuerier for DatasourceQuerier<'_> {
    fn query(&self, promql: &str) -> Result<Vec<QuerySample>, String> {
        // Templates render synchronously inside an async evaluation: step out of the async
        // context for the duration of the query (possible on the multi-threaded runtime the
        // evaluator and replay run on).
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("the query function needs the multi-threaded runtime".into());
        }
        let samples = tokio::task::block_in_place(|| {
            handle.block_on(self.datasource.query(promql, self.ts, self.deadline))
        })
        .map_err(|e| e.to_string())?;
        Ok(samples
            .into_iter()
            .map(|s| QuerySample {
                labels: s.labels,
                value: s.value,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_value_and_external_data_reach_the_template_engine() {
        let t = Templater::new(
            [("cluster".to_string(), "eu1".to_string())].into(),
            "http://eval".into(),
        );
        let labels: Labels = [("instance".to_string(), "db-1".to_string())].into();
        let out = t.render(
            RenderInput {
                name: "summary",
                text: "{{ $labels.instance }} in {{$externalLabels.cluster}} is {{ $value | humanizePercentage }} ({{ $externalURL }})",
                labels: &labels,
                value: 0.25,
                active_at: None,
            },
            None,
        );
        assert_eq!(out, "db-1 in eu1 is 25% (http://eval)");
    }

    #[test]
    fn a_failing_template_becomes_an_error_text_instead_of_failing() {
        let labels = Labels::new();
        let out = Templater::default().render(
            RenderInput {
                name: "summary",
                text: "{{ query \"up\" }}",
                labels: &labels,
                value: 0.0,
                active_at: None,
            },
            None,
        );
        assert!(out.starts_with("<error expanding template: "), "{out}");
    }
}
