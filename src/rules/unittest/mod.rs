//! `kubesignal rules test`: promtool's unit-test files (`rule_files`, `input_series` in the
//! expanding notation, `alert_rule_test`, `promql_expr_test`) run on the embedded PromQL engine
//! and the evaluator's own rule engine, so rule tests need no Prometheus.
//!
//! Semantics follow `promtool test rules` of Prometheus 2.42: rules are evaluated at every
//! `evaluation_interval` from 0 to the last `eval_time`, groups in `group_eval_order` (then file
//! order), recording results and `ALERTS`/`ALERTS_FOR_STATE` written back so later rules and
//! expressions see them; an alert test compares the firing alerts (labels and expanded
//! annotations) of the evaluation at or just before its `eval_time`; a test group without
//! `interval` loads its series with interval 0. Output and exit status are promtool's.

pub mod model;
pub mod run;

use std::io::Write;
use std::path::PathBuf;

pub use run::{FileResult, Options, test_file};

use crate::promql::Semantics;

/// Flags of `kubesignal rules test`.
#[derive(Clone, Debug, clap::Args)]
pub struct RulesTestArgs {
    /// promtool unit-test files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Which promtool to behave like: v2 is promtool 2.42 (closed windows; a test group
    /// without `interval` loads its series at interval 0), v3 is Prometheus 3 (left-open
    /// windows; such a group uses `evaluation_interval`).
    #[arg(long, env = "KUBESIGNAL_SEMANTICS", value_enum, default_value_t = Semantics::V2)]
    pub semantics: Semantics,
}

fn quiet() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
}

/// Runs every file, printing promtool's report: `Unit Testing:  FILE`, then `  SUCCESS` on
/// `out`, or `  FAILED:` and the failures on `err`. Returns whether every file passed.
pub fn run_files(
    args: &RulesTestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    // Templates may call `query`, which runs synchronously inside an evaluation: that needs
    // the multi-threaded runtime. The evaluator logs failed rules and templates; here they are
    // part of the report, so its threads log nothing.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| {
            std::mem::forget(tracing::dispatcher::set_default(&quiet()));
        })
        .build()?;
    let opts = Options {
        semantics: args.semantics,
    };
    let mut all_passed = true;
    for file in &args.files {
        writeln!(out, "Unit Testing:  {}", file.display())?;
        out.flush()?;
        let mut warnings = Vec::new();
        let result = tracing::dispatcher::with_default(&quiet(), || {
            runtime.block_on(test_file(file, opts, &mut warnings))
        });
        for w in warnings {
            writeln!(err, "  WARNING: {w}")?;
        }
        match result {
            Ok(()) => writeln!(out, "  SUCCESS")?,
            Err(errors) => {
                all_passed = false;
                writeln!(err, "  FAILED:")?;
                for e in errors {
                    writeln!(err, "{e}")?;
                    // promtool separates failures with a blank line on stdout.
                    err.flush()?;
                    writeln!(out)?;
                    out.flush()?;
                }
            }
        }
        writeln!(out)?;
    }
    out.flush()?;
    err.flush()?;
    Ok(all_passed)
}
