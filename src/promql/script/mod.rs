//! Prometheus's PromQL acceptance scripts (`*.test`): a parser of the script language and a
//! runner that executes the scripts against the embedded [`Engine`](crate::promql::Engine).
//!
//! This backs `kubesignal promql test`. What the runner cannot check, because the engine has no
//! native histograms, start timestamps or annotations, is reported as skipped, never passed
//! silently:
//!
//! * an eval that selects a series holding native histogram samples, converted by
//!   `load_with_nhcb`, or given start timestamps (`@st`), or that expects a histogram value, is a
//!   skipped case with the reason;
//! * `expect warn`/`expect info` lines (and `eval_warn`/`eval_info`) are counted as unchecked
//!   assertions while the rest of the case is still checked; `expect no_warn`/`no_info` hold
//!   trivially since the engine raises no annotations.

pub mod parse;
pub mod run;

pub use parse::{ParseError, Script, parse_script};
pub use run::{CaseResult, FileReport, Outcome, Summary, harness_options, run_file, run_script};
