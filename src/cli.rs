//! The command line: one binary, one subcommand per component.
//!
//! Every flag can also come from an environment variable (`KUBESIGNAL_<FLAG>`) and from the YAML
//! file given with `--config`. Precedence: command line, then environment, then config file, then
//! the built-in default. The config file is merged by turning its keys into command-line
//! arguments placed before the real ones (see [`merge_config_file`]), so every source goes
//! through the same clap validation and `--help` stays the single reference.

use std::ffi::OsString;
use std::path::Path;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::agent::AgentArgs;

/// USE and RED signals, SLO alerts and owner-routed notifications for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "kubesignal", version, about, args_override_self = true)]
pub struct Cli {
    /// Log format; `auto` is human-readable on a terminal and JSON otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "KUBESIGNAL_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax (e.g. `info,kubesignal::agent=debug`).
    #[arg(long, global = true, default_value = "info", env = "KUBESIGNAL_LOG")]
    pub log: String,

    /// The component to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-node exporter: USE series from the kubelet (or /proc) and RED series of app pods.
    Agent(Box<AgentArgs>),
    /// Demo web application with RED metrics, configurable error rate and latency.
    Demo(crate::demo::DemoArgs),
    /// Rule and SLO evaluator: Prometheus rules against a remote Prometheus-compatible API.
    Evaluator(Box<crate::evaluator::EvaluatorArgs>),
    /// Benchmarks against the real tools.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run rules over a past time range and print the alert timeline.
    Replay(crate::evaluator::replay::ReplayArgs),
    /// Prometheus rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The embedded PromQL engine.
    #[command(subcommand)]
    Promql(PromqlCommand),
    /// SLO specs to Prometheus rules.
    #[command(subcommand)]
    Slo(SloCommand),
}

/// `kubesignal bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The embedded PromQL engine against a real Prometheus on the same generated data:
    /// latency per query, result equality and memory per million samples.
    Promql(crate::bench::PromqlBenchArgs),
}

/// `kubesignal slo ...`
#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Turn SLO specs (ours or Sloth `prometheus/v1`) into recording and multiwindow,
    /// multi-burn-rate alerting rules.
    Generate(SloGenerateArgs),
}

/// Flags of `kubesignal slo generate`.
#[derive(Debug, clap::Args)]
pub struct SloGenerateArgs {
    /// SLO spec files.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Directory to write one `<spec>.rules.yaml` per spec into, or `-` for all rules on stdout
    /// (the default).
    #[arg(short = 'o', long = "output", env = "KUBESIGNAL_OUTPUT")]
    pub output: Option<std::path::PathBuf>,
}

/// `kubesignal promql ...`
#[derive(Debug, Subcommand)]
pub enum PromqlCommand {
    /// Run Prometheus's PromQL test scripts (`*.test`) against the embedded engine. Prints each
    /// failing case as `FILE:LINE: eval ...: message` and a summary per file; exits 1 when a case
    /// failed.
    Test(crate::promql::script::TestArgs),
}

/// `kubesignal rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files (plain or PrometheusRule): YAML schema, PromQL, templates, durations.
    /// Prints `FILE:LINE: error|warning: message` and exits 1 when any file has an error.
    Check(RulesCheckArgs),
    /// Run promtool unit-test files (`rule_files`, `input_series`, `alert_rule_test`,
    /// `promql_expr_test`) on the embedded PromQL engine; no Prometheus needed. Prints
    /// promtool's report and exits 1 when any test fails.
    Test(crate::rules::unittest::RulesTestArgs),
}

/// Arguments of `kubesignal rules check`.
#[derive(Debug, clap::Args)]
pub struct RulesCheckArgs {
    /// Rule files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Errors met while merging the config file into the command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a YAML mapping of flag names to values.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the line where the YAML parser knows it.
        message: String,
    },
}

/// Returns `args` with the keys of the `--config` file (if any) inserted as flags after the
/// subcommand, so that flags given on the command line win.
///
/// Keys are flag names (`kubelet-url` or `kubelet_url`). A key whose environment variable is set
/// is skipped (the environment beats the file). Keys that are not flags of the subcommand are
/// left to the component, which reads its own sections of the same file.
pub fn merge_config_file(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let strings: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(path) = config_path(&strings) else {
        return Ok(args);
    };
    let Some(sub_pos) = subcommand_position(&strings) else {
        return Ok(args);
    };
    let cmd = Cli::command();
    let mut sub = cmd.clone();
    for name in &strings[1..=sub_pos] {
        if let Some(found) = sub.find_subcommand(name) {
            sub = found.clone();
        }
    }
    let flags: Vec<(String, bool, Option<String>)> = sub
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let multiple = matches!(a.get_action(), clap::ArgAction::Append);
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            Some((long, multiple, env))
        })
        .collect();

    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| ConfigFileError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let map = match doc {
        serde_yaml_ng::Value::Mapping(m) => m,
        serde_yaml_ng::Value::Null => return Ok(args),
        _ => {
            return Err(ConfigFileError::Invalid {
                path,
                message: "expected a mapping of flag names to values".into(),
            });
        }
    };

    let mut injected: Vec<OsString> = Vec::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let flag = key.replace('_', "-");
        let Some((long, multiple, env)) = flags.iter().find(|(l, _, _)| *l == flag) else {
            continue;
        };
        if long == "config" {
            continue;
        }
        if env.as_ref().is_some_and(|e| std::env::var_os(e).is_some()) {
            continue;
        }
        let on_command_line = strings
            .iter()
            .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")));
        if *multiple && on_command_line {
            continue;
        }
        let values = match value {
            serde_yaml_ng::Value::Sequence(items) => items,
            other => vec![other],
        };
        for v in values {
            match v {
                serde_yaml_ng::Value::Bool(true) => injected.push(format!("--{long}").into()),
                serde_yaml_ng::Value::Bool(false) | serde_yaml_ng::Value::Null => {}
                serde_yaml_ng::Value::String(s) => injected.push(format!("--{long}={s}").into()),
                serde_yaml_ng::Value::Number(n) => injected.push(format!("--{long}={n}").into()),
                _ => {
                    return Err(ConfigFileError::Invalid {
                        path,
                        message: format!("key `{key}`: expected a scalar or a list of scalars"),
                    });
                }
            }
        }
    }
    let mut merged: Vec<OsString> = args[..=sub_pos].to_vec();
    merged.extend(injected);
    merged.extend_from_slice(&args[sub_pos + 1..]);
    Ok(merged)
}

/// The value of `--config` on the command line or in `KUBESIGNAL_CONFIG`.
fn config_path(args: &[String]) -> Option<String> {
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        if a == "--config" {
            return iter.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_string());
        }
    }
    std::env::var("KUBESIGNAL_CONFIG")
        .ok()
        .filter(|p| Path::new(p).exists())
}

/// Index of the innermost subcommand name in `args` (e.g. `generate` in `slo generate`).
fn subcommand_position(args: &[String]) -> Option<usize> {
    let mut cmd = Cli::command();
    let mut pos = None;
    for (i, a) in args.iter().enumerate().skip(1) {
        if a.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(a) {
            Some(found) => {
                cmd = found.clone();
                pos = Some(i);
            }
            None => break,
        }
    }
    pos
}

/// Runs the chosen subcommand to completion; the exit code says how it went.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    // Only the subcommands that serve or poll need the async runtime.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Agent(args) => runtime()?.block_on(crate::agent::run(*args))?,
        Command::Demo(args) => runtime()?.block_on(crate::demo::run(args))?,
        Command::Evaluator(args) => runtime()?.block_on(crate::evaluator::run(*args))?,
        Command::Replay(args) => runtime()?.block_on(crate::evaluator::run_replay(args))?,
        Command::Bench(BenchCommand::Promql(args)) => {
            let report = crate::bench::run(&args, |line| eprintln!("{line}"))?;
            print!("{report}");
            if report.mismatches().next().is_some() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Rules(RulesCommand::Check(args)) => {
            let report = crate::rules::check::check_files(&args.files);
            print!("{report}");
            if report.errors() > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Rules(RulesCommand::Test(args)) => {
            let passed = crate::rules::unittest::run_files(
                &args,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            if !passed {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Promql(PromqlCommand::Test(args)) => {
            if !crate::promql::script::run_test_command(&args) {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Slo(SloCommand::Generate(args)) => {
            let written = crate::slo::run_generate(&args.files, args.output.as_deref())?;
            for path in written {
                tracing::info!(path = %path.display(), "wrote rules");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_file_values_come_before_command_line_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:1\ninterval: 30s\nstatic-target: [http://a/metrics, http://b/metrics]\nnot_a_flag: {x: 1}\n",
        )
        .unwrap();
        let merged = merge_config_file(os(&[
            "kubesignal",
            "agent",
            "--config",
            path.to_str().unwrap(),
            "--interval",
            "5s",
        ]))
        .unwrap();
        let cli = Cli::try_parse_from(merged).unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("expected the agent subcommand");
        };
        assert_eq!(a.listen.to_string(), "127.0.0.1:1");
        assert_eq!(a.interval, std::time::Duration::from_secs(5));
        assert_eq!(a.static_target.len(), 2);
    }

    #[test]
    fn a_config_file_that_is_not_a_mapping_is_rejected_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "- just\n- a list\n").unwrap();
        let err = merge_config_file(os(&[
            "kubesignal",
            "agent",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }
}
