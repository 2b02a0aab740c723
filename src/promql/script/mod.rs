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

use std::path::PathBuf;

use crate::promql::Semantics;

/// Flags of `kubesignal promql test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Engine semantics: v2 (Prometheus 2.x) or v3 (Prometheus 3).
    #[arg(long, value_enum, default_value_t = Semantics::V2)]
    pub semantics: Semantics,
    /// Also list skipped cases with the reason.
    #[arg(short, long)]
    pub verbose: bool,
    /// Prometheus test scripts (`*.test`), or directories whose `*.test` files are all run.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs every file, prints the report; returns whether no case failed.
pub fn run_test_command(args: &TestArgs) -> bool {
    let mut reports: Vec<FileReport> = Vec::new();
    for path in &args.files {
        match expand(path) {
            Ok(files) => reports.extend(files.iter().map(|f| run_file(f, args.semantics))),
            Err(error) => reports.push(FileReport {
                file: path.display().to_string(),
                error: Some(error),
                cases: Vec::new(),
            }),
        }
    }
    print!("{}", run::render(&reports, args.verbose));
    run::total(&reports).failed == 0
}

/// A file as is; a directory as its `*.test` files in name order.
fn expand(path: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| format!("{}: cannot list the directory: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let p = entry
            .map_err(|e| format!("{}: cannot list the directory: {e}", path.display()))?
            .path();
        if p.extension().is_some_and(|x| x == "test") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(format!(
            "{}: no *.test files in this directory",
            path.display()
        ));
    }
    files.sort();
    Ok(files)
}
