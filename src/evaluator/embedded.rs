//! The `embedded` datasource: PromQL answered in process by [`crate::promql::Engine`] over a
//! shared in-memory [`Storage`], instead of over HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::alert::Labels;
use super::datasource::{BoxFuture, Datasource, DatasourceError, Sample};
use crate::promql::{Engine, EvalError, Storage, Value};

/// Past this many distinct expressions the parse cache starts over (they come from rule files
/// and templates, so this only bounds memory against pathological inputs).
const PARSED_LIMIT: usize = 10_000;

/// Parsed expressions by text.
type ParseCache = Arc<Mutex<HashMap<String, Arc<promql_parser::parser::Expr>>>>;

/// A datasource that evaluates queries against a store in this process.
#[derive(Clone, Debug)]
pub struct EmbeddedDatasource {
    storage: Arc<RwLock<Storage>>,
    engine: Engine,
    // Rules run the same expressions at every evaluation; parsing compiles their regex
    // matchers, which otherwise dominates the cost of a rule evaluation.
    parsed: ParseCache,
}

impl EmbeddedDatasource {
    /// Queries `storage` with `engine`.
    pub fn new(storage: Arc<RwLock<Storage>>, engine: Engine) -> Self {
        EmbeddedDatasource {
            storage,
            engine,
            parsed: ParseCache::default(),
        }
    }

    /// The store queries read from.
    pub fn storage(&self) -> &Arc<RwLock<Storage>> {
        &self.storage
    }

    /// The engine queries run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// `expr` parsed, from the cache when it was seen before.
    fn parse(&self, expr: &str) -> Result<Arc<promql_parser::parser::Expr>, EvalError> {
        if let Some(found) = self.parsed.lock().ok().and_then(|c| c.get(expr).cloned()) {
            return Ok(found);
        }
        let parsed = Arc::new(Engine::parse(expr)?);
        if let Ok(mut cache) = self.parsed.lock() {
            if cache.len() >= PARSED_LIMIT {
                cache.clear();
            }
            cache.insert(expr.to_string(), parsed.clone());
        }
        Ok(parsed)
    }

    /// Evaluates `expr` at `ts` synchronously.
    pub fn query_now(&self, expr: &str, ts: DateTime<Utc>) -> Result<Vec<Sample>, DatasourceError> {
        let api_error = |e: EvalError| DatasourceError::Api {
            expr: expr.to_string(),
            error_type: error_type(&e).to_string(),
            message: e.to_string(),
        };
        let parsed = self.parse(expr).map_err(api_error)?;
        let storage = self
            .storage
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = self
            .engine
            .instant_expr(&storage, &parsed, ts.timestamp_millis())
            .map_err(api_error)?;
        Ok(match value {
            Value::Scalar(p) => vec![Sample {
                labels: Labels::new(),
                value: p.v,
            }],
            Value::Vector(v) => v
                .into_iter()
                .map(|s| Sample {
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.v,
                })
                .collect(),
            other => {
                return Err(DatasourceError::Api {
                    expr: expr.to_string(),
                    error_type: "bad_data".to_string(),
                    message: format!(
                        "expression returned a {}, rules need an instant vector or scalar",
                        other.type_name()
                    ),
                });
            }
        })
    }
}

/// Prometheus's HTTP API `errorType` for an engine error.
pub fn error_type(e: &EvalError) -> &'static str {
    match e {
        EvalError::Parse(_) => "bad_data",
        EvalError::Execution(_) | EvalError::TooManySamples => "execution",
        EvalError::Timeout => "timeout",
    }
}

impl Datasource for EmbeddedDatasource {
    fn query<'a>(
        &'a self,
        expr: &'a str,
        ts: DateTime<Utc>,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<Sample>, DatasourceError>> {
        Box::pin(async move { self.query_now(expr, ts) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Labels as PromLabels;

    #[test]
    fn a_repeated_query_is_parsed_once_and_sees_new_samples() {
        let storage = Arc::new(RwLock::new(Storage::new()));
        let up = PromLabels::from_pairs([("__name__", "up"), ("job", "api")]);
        storage.write().unwrap().append(&up, 0, 1.0);
        let ds = EmbeddedDatasource::new(storage.clone(), Engine::default());
        let q = r#"up{job=~"a.*"}"#;
        let first = ds
            .query_now(q, DateTime::from_timestamp(0, 0).unwrap())
            .unwrap();
        assert_eq!(first[0].value, 1.0);
        storage.write().unwrap().append(&up, 60_000, 2.0);
        let second = ds
            .query_now(q, DateTime::from_timestamp(60, 0).unwrap())
            .unwrap();
        assert_eq!(second[0].value, 2.0);
        assert_eq!(ds.parsed.lock().unwrap().len(), 1);
        let err = ds
            .query_now("up +", DateTime::from_timestamp(60, 0).unwrap())
            .unwrap_err();
        assert!(
            matches!(err, DatasourceError::Api { ref error_type, .. } if error_type == "bad_data"),
            "{err}"
        );
        assert_eq!(
            ds.parsed.lock().unwrap().len(),
            1,
            "failed parses are not cached"
        );
    }
}
