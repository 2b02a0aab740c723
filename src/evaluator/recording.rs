//! Recording rules: a query's result renamed to the rule's `record` name, with the rule's labels.

use std::collections::BTreeSet;

use super::alert::{Labels, format_labels};
use super::datasource::Sample;

/// A recording rule and its last result.
#[derive(Clone, Debug)]
pub struct RecordingRule {
    /// `record:` name (the metric name of the result).
    pub name: String,
    /// PromQL expression.
    pub expr: String,
    /// Labels set on every result series (group labels merged under the rule's).
    pub labels: Labels,
    /// Series written at the last successful evaluation.
    pub last_result: Vec<Sample>,
}

/// Why a recording rule's result was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordingError {
    /// Two samples became the same series once renamed and relabelled.
    #[error("vector contains metrics with the same labelset after applying rule labels: {0}")]
    DuplicateLabelSet(String),
    /// More series than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} series")]
    LimitExceeded {
        /// The group's limit.
        limit: u64,
        /// How many series the rule produced.
        count: usize,
    },
}

impl RecordingRule {
    /// A rule with no result yet.
    pub fn new(name: String, expr: String, labels: Labels) -> Self {
        RecordingRule {
            name,
            expr,
            labels,
            last_result: Vec::new(),
        }
    }

    /// Turns a query result into the recorded series (Prometheus's `RecordingRule.Eval`):
    /// `__name__` becomes the rule name and the rule's labels override the sample's.
    pub fn apply(&mut self, samples: &[Sample], limit: u64) -> Result<&[Sample], RecordingError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(samples.len());
        for s in samples {
            let mut labels = s.labels.clone();
            labels.insert("__name__".into(), self.name.clone());
            for (k, v) in &self.labels {
                if v.is_empty() {
                    labels.remove(k);
                } else {
                    labels.insert(k.clone(), v.clone());
                }
            }
            if !seen.insert(labels.clone()) {
                return Err(RecordingError::DuplicateLabelSet(format_labels(&labels)));
            }
            out.push(Sample {
                labels,
                value: s.value,
            });
        }
        if limit > 0 && out.len() as u64 > limit {
            return Err(RecordingError::LimitExceeded {
                limit,
                count: out.len(),
            });
        }
        self.last_result = out;
        Ok(&self.last_result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn results_are_renamed_and_get_the_rule_labels() {
        let mut labels = Labels::new();
        labels.insert("team".into(), "db".into());
        let mut r = RecordingRule::new("job:up:sum".into(), "sum by (job) (up)".into(), labels);
        let out = r
            .apply(&[sample(&[("job", "a"), ("team", "x")], 3.0)], 0)
            .unwrap();
        assert_eq!(out[0].labels["__name__"], "job:up:sum");
        assert_eq!(out[0].labels["team"], "db");
        assert_eq!(out[0].value, 3.0);
    }

    #[test]
    fn series_that_collide_after_renaming_fail_the_rule() {
        let mut r = RecordingRule::new("x".into(), "up".into(), Labels::new());
        let err = r
            .apply(
                &[
                    sample(&[("__name__", "a"), ("job", "j")], 1.0),
                    sample(&[("__name__", "b"), ("job", "j")], 1.0),
                ],
                0,
            )
            .unwrap_err();
        assert!(matches!(err, RecordingError::DuplicateLabelSet(_)));
    }

    #[test]
    fn more_series_than_the_limit_fail_the_rule() {
        let mut r = RecordingRule::new("x".into(), "up".into(), Labels::new());
        let err = r
            .apply(&[sample(&[("a", "1")], 1.0), sample(&[("a", "2")], 1.0)], 1)
            .unwrap_err();
        assert_eq!(err, RecordingError::LimitExceeded { limit: 1, count: 2 });
    }
}
