//! An embedded PromQL engine: an in-memory series store and an evaluator for the AST of
//! `promql-parser`.
//!
//! It serves `kubesignal promql test` (Prometheus's own acceptance scripts), `kubesignal rules
//! test` (promtool's unit-test format), replay over files, and the evaluator's `embedded`
//! datasource. Prometheus 2.x semantics are the default; [`Semantics::V3`] switches to the range
//! and lookback boundaries of Prometheus 3.

pub mod chunk;
pub mod engine;
mod eval;
pub mod notation;
pub mod script;
pub mod storage;
pub mod value;

pub use engine::{Engine, EngineOptions, EvalError, Semantics};
pub use storage::{DecodeCache, SeriesView, Storage, matcher_sets};
pub use value::{Labels, Point, Sample, Series, Value, is_stale, stale_nan};
