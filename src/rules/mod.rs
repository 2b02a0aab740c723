//! Prometheus rule files: the on-disk model shared by `rules check`, the evaluator and
//! `slo generate`.

pub mod file;
