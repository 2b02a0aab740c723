//! `kubesignal replay`: the evaluator's rules and state machine run over a past time range with
//! a virtual clock, querying the datasource at each step's timestamp, printing the alert
//! timeline (when each alert went pending, firing, inactive).

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::DatasourceArgs;
use super::alert::{AlertState, Labels, format_labels};
use super::datasource::Datasource;
use super::group::{EvalContext, Group, RecordSink, load_groups, parse_duration};
use super::remote_write::RemoteWriter;
use super::render::Templater;

/// How the timeline is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One readable line per state change.
    Text,
    /// One JSON object per line per state change: `{"time","alertname","labels","state"}`,
    /// plus the alert's `annotations` at that moment.
    Json,
}

/// Flags of `kubesignal replay`.
#[derive(Clone, Debug, Args)]
#[command(group(clap::ArgGroup::new("replay-source").required(true).args(["datasource_url", "data"])))]
pub struct ReplayArgs {
    /// Rule file, directory or glob (repeatable).
    #[arg(long, env = "KUBESIGNAL_RULES", required = true, value_delimiter = ',')]
    pub rules: Vec<String>,

    /// Datasource connection.
    #[command(flatten)]
    pub datasource: DatasourceArgs,

    /// Replay over the samples of this file instead of a datasource: OpenMetrics text (what
    /// `promtool tsdb create-blocks-from openmetrics` takes) or the Prometheus text format, with
    /// a timestamp on every sample. Queries run on the embedded PromQL engine, and recording
    /// results are written back into it.
    #[arg(long, env = "KUBESIGNAL_DATA", value_name = "FILE", conflicts_with_all = ["datasource_url", "remote_write_url"])]
    pub data: Option<std::path::PathBuf>,

    /// Start of the range (RFC 3339), the first evaluation.
    #[arg(long, env = "KUBESIGNAL_FROM", value_parser = parse_rfc3339)]
    pub from: DateTime<Utc>,

    /// End of the range (RFC 3339), inclusive.
    #[arg(long, env = "KUBESIGNAL_TO", value_parser = parse_rfc3339)]
    pub to: DateTime<Utc>,

    /// Time between two evaluations (Prometheus duration: 30s, 1m, ...).
    #[arg(long, env = "KUBESIGNAL_STEP", default_value = "1m", value_parser = parse_duration)]
    pub step: Duration,

    /// Output format.
    #[arg(long, env = "KUBESIGNAL_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Also print every recorded series of recording rules at each step
    /// (json: `{"time","record","labels","value"}`).
    #[arg(long, env = "KUBESIGNAL_EMIT_RECORDED")]
    pub emit_recorded: bool,

    /// Remote-write endpoint to write recording results back to at each step, so that rules
    /// built on recorded series (SLO burn-rate alerts, for one) see them. The store must accept
    /// past samples: Prometheus needs --web.enable-remote-write-receiver and a
    /// `storage.tsdb.out_of_order_time_window` covering the range.
    #[arg(long, env = "KUBESIGNAL_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,

    /// Label available to templates as `$externalLabels` (NAME=VALUE, repeatable).
    #[arg(long = "external-label", env = "KUBESIGNAL_EXTERNAL_LABEL", value_parser = super::parse_key_value, value_delimiter = ',')]
    pub external_labels: Vec<(String, String)>,

    /// URL available to templates as `$externalURL`.
    #[arg(long, env = "KUBESIGNAL_EXTERNAL_URL", default_value = "")]
    pub external_url: String,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The rules did not load.
    #[error(transparent)]
    Load(#[from] super::group::LoadError),
    /// The datasource client could not be built.
    #[error(transparent)]
    Datasource(#[from] super::datasource::DatasourceError),
    /// The range or step is unusable.
    #[error("{0}")]
    Range(String),
    /// The `--data` file could not be loaded.
    #[error(transparent)]
    Data(#[from] super::data_file::DataFileError),
    /// Writing the output failed.
    #[error("writing the timeline: {0}")]
    Output(#[from] std::io::Error),
    /// Some queries failed; the timeline holds state unchanged across them.
    #[error(
        "{0} rule evaluations failed during the replay (see the log); the timeline keeps state unchanged across them"
    )]
    Failures(u64),
}

/// One line of the JSON timeline.
#[derive(Debug, Serialize)]
struct AlertLine<'a> {
    time: String,
    alertname: &'a str,
    labels: &'a Labels,
    state: AlertState,
    annotations: &'a Labels,
}

#[derive(Debug, Serialize)]
struct RecordLine<'a> {
    time: String,
    record: &'a str,
    labels: Labels,
    value: f64,
}

/// Runs the replay and writes the timeline to `out`.
pub async fn replay(
    args: &ReplayArgs,
    datasource: &dyn Datasource,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    replay_with_sink(args, datasource, None, out).await
}

/// [`replay`] with recording results written to `local` (the store `datasource` reads) instead
/// of `--remote-write-url`.
pub async fn replay_with_sink(
    args: &ReplayArgs,
    datasource: &dyn Datasource,
    local: Option<&dyn RecordSink>,
    out: &mut dyn Write,
) -> Result<(), ReplayError> {
    if args.step.is_zero() {
        return Err(ReplayError::Range("--step must be greater than 0".into()));
    }
    if args.to < args.from {
        return Err(ReplayError::Range(format!(
            "--to {} is before --from {}",
            args.to, args.from
        )));
    }
    let mut groups: Vec<Group> = load_groups(&args.rules, args.step)?;
    let templater = Templater::new(
        args.external_labels.iter().cloned().collect(),
        args.external_url.clone(),
    );
    let step =
        chrono::Duration::from_std(args.step).map_err(|e| ReplayError::Range(e.to_string()))?;
    let writer = args
        .remote_write_url
        .as_ref()
        .map(|url| RemoteWriter::new(url, args.datasource.datasource_timeout));
    let mut failures = 0;
    let mut ts = args.from;
    while ts <= args.to {
        for group in &mut groups {
            let ctx = EvalContext {
                datasource,
                templater: &templater,
                deadline: tokio::time::Instant::now() + args.datasource.datasource_timeout,
                resend_delay: Duration::ZERO,
                outage_tolerance: Duration::ZERO,
                for_grace_period: Duration::ZERO,
                record_sink: local.or(writer.as_ref().map(|w| w as &dyn RecordSink)),
            };
            let outcome = group.evaluate(ts, &ctx).await;
            failures += outcome.failed;
            let time = ts.to_rfc3339_opts(SecondsFormat::Secs, true);
            for tr in &outcome.transitions {
                let alertname = tr.labels.get("alertname").map(String::as_str).unwrap_or("");
                match args.output {
                    OutputFormat::Json => {
                        let line = AlertLine {
                            time: time.clone(),
                            alertname,
                            labels: &tr.labels,
                            state: tr.state,
                            annotations: &tr.annotations,
                        };
                        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
                        writeln!(out)?;
                    }
                    OutputFormat::Text => writeln!(
                        out,
                        "{time} {:<8} {alertname} {}",
                        tr.state.as_str(),
                        format_labels(&tr.labels)
                    )?,
                }
            }
            if args.emit_recorded {
                for s in &outcome.recorded {
                    let mut labels = s.labels.clone();
                    let record = labels.remove("__name__").unwrap_or_default();
                    match args.output {
                        OutputFormat::Json => {
                            let line = RecordLine {
                                time: time.clone(),
                                record: &record,
                                labels,
                                value: s.value,
                            };
                            serde_json::to_writer(&mut *out, &line)
                                .map_err(std::io::Error::from)?;
                            writeln!(out)?;
                        }
                        OutputFormat::Text => writeln!(
                            out,
                            "{time} recorded {record}{} {}",
                            format_labels(&labels),
                            s.value
                        )?,
                    }
                }
            }
        }
        ts += step;
    }
    out.flush()?;
    if failures > 0 {
        return Err(ReplayError::Failures(failures));
    }
    Ok(())
}
