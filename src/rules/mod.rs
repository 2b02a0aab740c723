//! Prometheus rule files: the on-disk model shared by `rules check`, the evaluator and
//! `slo generate`, how files are loaded, and how they are validated.

pub mod check;
pub mod duration;
pub mod file;
pub mod load;
pub mod unittest;
