//! Query entry points, options and errors.

use std::time::Duration;

use super::storage::Storage;
use super::value::{Series, Value};

/// Which Prometheus major version's boundary rules to follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Semantics {
    /// Prometheus 2.x: range selectors and lookback are closed at both ends, `[t-range, t]`.
    #[default]
    V2,
    /// Prometheus 3: ranges and lookback are left-open, `(t-range, t]`, and regex `.` matches
    /// newlines.
    V3,
}

/// Engine settings. The defaults are Prometheus's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (5m).
    pub lookback: Duration,
    /// The most samples a query may hold in memory at once (50 million in Prometheus; the
    /// acceptance suite uses 10 000).
    pub max_samples: usize,
    /// How long a query may run.
    pub timeout: Duration,
    /// Boundary semantics.
    pub semantics: Semantics,
    /// Step of a subquery written without one (`[10m:]`): the rule or global evaluation interval.
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            semantics: Semantics::V2,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Why a query failed. The messages follow Prometheus's wording where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query is not valid PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated on this data (e.g. many-to-many matching).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its time limit.
    #[error("query timed out in expression evaluation")]
    Timeout,
}

/// The PromQL engine. It holds settings only; data comes from the [`Storage`] each call is given.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with the given settings.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// The engine's settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `t` (milliseconds since the epoch).
    pub fn instant(&self, storage: &Storage, query: &str, t: i64) -> Result<Value, EvalError> {
        let _ = (storage, query, t);
        Err(EvalError::Execution("not built yet".into()))
    }

    /// Evaluates `query` at every step from `start` to `end` (milliseconds, inclusive).
    pub fn range(
        &self,
        storage: &Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let _ = (storage, query, start, end, step);
        Err(EvalError::Execution("not built yet".into()))
    }
}
