//! The `embedded` datasource: PromQL answered in process by [`crate::promql::Engine`] over a
//! shared in-memory [`Storage`], instead of over HTTP.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::alert::Labels;
use super::datasource::{BoxFuture, Datasource, DatasourceError, Sample};
use crate::promql::{Engine, EvalError, Storage, Value};

/// A datasource that evaluates queries against a store in this process.
#[derive(Clone, Debug)]
pub struct EmbeddedDatasource {
    storage: Arc<RwLock<Storage>>,
    engine: Engine,
}

impl EmbeddedDatasource {
    /// Queries `storage` with `engine`.
    pub fn new(storage: Arc<RwLock<Storage>>, engine: Engine) -> Self {
        EmbeddedDatasource { storage, engine }
    }

    /// The store queries read from.
    pub fn storage(&self) -> &Arc<RwLock<Storage>> {
        &self.storage
    }

    /// The engine queries run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Evaluates `expr` at `ts` synchronously.
    pub fn query_now(&self, expr: &str, ts: DateTime<Utc>) -> Result<Vec<Sample>, DatasourceError> {
        let storage = self
            .storage
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = self
            .engine
            .instant(&storage, expr, ts.timestamp_millis())
            .map_err(|e| DatasourceError::Api {
                expr: expr.to_string(),
                error_type: error_type(&e).to_string(),
                message: e.to_string(),
            })?;
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
