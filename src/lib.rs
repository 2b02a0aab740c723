//! kubesignal: USE and RED signals for Kubernetes, SLO alerts, and notifications that reach the
//! owners of the affected service.
//!
//! The binary (`src/main.rs`) is a thin shell over this library: each subcommand lives in its own
//! module tree.

pub mod agent;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod evaluator;
pub mod exposition;
pub mod http;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod slo;
pub mod telemetry;
pub mod template;
