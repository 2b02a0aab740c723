//! The `kubesignal` binary: parse the command line, set up logging, run the chosen component.

use std::process::ExitCode;

use clap::Parser;
use kubesignal::cli::{self, Cli};

fn main() -> ExitCode {
    let args = match cli::merge_config_file(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    kubesignal::telemetry::init_logging(cli.log_format, &cli.log);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
