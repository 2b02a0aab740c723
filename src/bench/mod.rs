//! `kubesignal bench promql`: our embedded PromQL engine against the real Prometheus, in one
//! run on the same data.
//!
//! A deterministic RED-shaped data set ([`data`]) is loaded into our [`Storage`] and, through
//! `promtool tsdb create-blocks-from openmetrics`, into a Prometheus started on loopback. Each
//! query of [`queries`] is answered by both; the answers are compared (same series, values
//! within 1e-9 relative) and timed: ours as an in-process call, alone and with the encoding of
//! the HTTP API's JSON body; Prometheus as an HTTP round trip and as its own reported execution
//! time (`stats=all`). Memory is compared per million samples stored.

pub mod data;
pub mod prometheus;
pub mod queries;
pub mod results;

use std::fmt;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::promql::{Engine, EngineOptions, Storage};

use data::DataShape;
use prometheus::{Prometheus, Rss};
use queries::{Kind, Query};
use results::QueryResult;

/// Flags of `kubesignal bench promql`.
#[derive(Clone, Debug, clap::Args)]
pub struct PromqlBenchArgs {
    /// Days of history to generate, ending 2026-11-01T00:00:00Z (30 makes the 30d windows real).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// About how many series to generate (rounded up to whole workloads of 40 series).
    #[arg(long, default_value_t = 120)]
    pub series: usize,
    /// Scrape interval of the generated data, in seconds.
    #[arg(long, default_value_t = 60)]
    pub interval: u32,
    /// Timed repetitions per query and engine (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Directory for the OpenMetrics file, the TSDB and Prometheus's log. Kept after the run
    /// when given; a temporary directory, removed afterwards, otherwise.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `prometheus` or `promtool` is not installed.
    #[error(
        "`{program}` is not installed: the benchmark compares against the real Prometheus (Debian: `apt-get install -y prometheus`)"
    )]
    MissingProgram {
        /// The program looked for on PATH.
        program: String,
    },
    /// A file or process operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The file or program involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// promtool could not build blocks from the generated data.
    #[error("promtool tsdb create-blocks-from openmetrics failed:\n{output}")]
    Promtool {
        /// promtool's output.
        output: String,
    },
    /// Prometheus did not become ready.
    #[error("prometheus did not start: {message}")]
    PrometheusStart {
        /// Exit status or timeout, with the end of its log.
        message: String,
    },
    /// An HTTP request to Prometheus failed.
    #[error("GET {url}: {message}")]
    Http {
        /// The request.
        url: String,
        /// The cause.
        message: String,
    },
}

/// One query's figures.
#[derive(Clone, Debug)]
pub struct QueryRow {
    /// The query.
    pub query: Query,
    /// Median of our in-process engine call.
    pub ours: Duration,
    /// Median of our engine call plus encoding the HTTP API's JSON body.
    pub ours_json: Duration,
    /// Median HTTP round trip to Prometheus (query, JSON encoding, transfer).
    pub prometheus_http: Duration,
    /// Median of Prometheus's own `execTotalTime`, when it reported one.
    pub prometheus_exec: Option<Duration>,
    /// Series in Prometheus's answer.
    pub series: usize,
    /// Points in Prometheus's answer.
    pub points: usize,
    /// How the answers differ, or why one engine failed; empty when they agree.
    pub mismatch: Vec<String>,
}

impl QueryRow {
    /// Our JSON-inclusive time over Prometheus's HTTP time: below 1 means we are faster.
    pub fn ratio(&self) -> f64 {
        self.ours_json.as_secs_f64() / self.prometheus_http.as_secs_f64()
    }

    /// Our engine time over Prometheus's own execution time.
    pub fn exec_ratio(&self) -> Option<f64> {
        self.prometheus_exec
            .map(|p| self.ours.as_secs_f64() / p.as_secs_f64())
    }
}

/// Memory figures, in bytes.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Samples stored.
    pub samples: usize,
    /// Series stored.
    pub series: usize,
    /// Growth of this process's anonymous resident memory while loading our store.
    pub ours_rss_delta: u64,
    /// What our store reports holding: compressed chunks, uncompressed heads and labels.
    pub ours_estimate: u64,
    /// Size of Prometheus's blocks on disk (chunks, index, metadata).
    pub prometheus_blocks: u64,
    /// Prometheus's resident memory right after it became ready.
    pub prometheus_ready: Rss,
    /// Prometheus's resident memory after all queries ran.
    pub prometheus_after: Rss,
}

/// How the run went: set-up times, per-query rows and memory.
#[derive(Clone, Debug)]
pub struct Report {
    /// The data set's shape.
    pub shape: DataShape,
    /// Timed repetitions per query.
    pub reps: usize,
    /// Time to generate the data.
    pub generate: Duration,
    /// Time to load our store.
    pub load_ours: Duration,
    /// Time to write the OpenMetrics file and build blocks with promtool.
    pub load_prometheus: Duration,
    /// Time until Prometheus was ready on those blocks.
    pub start_prometheus: Duration,
    /// One row per query.
    pub rows: Vec<QueryRow>,
    /// Memory per store.
    pub memory: Memory,
}

impl Report {
    /// Median over queries of our JSON-inclusive time over Prometheus's HTTP time.
    pub fn median_ratio(&self) -> f64 {
        median_f64(self.rows.iter().map(QueryRow::ratio).collect())
    }

    /// Median over queries of our engine time over Prometheus's execution time.
    pub fn median_exec_ratio(&self) -> Option<f64> {
        let r: Vec<f64> = self.rows.iter().filter_map(QueryRow::exec_ratio).collect();
        (!r.is_empty()).then(|| median_f64(r))
    }

    /// The rows whose answers differ.
    pub fn mismatches(&self) -> impl Iterator<Item = &QueryRow> {
        self.rows.iter().filter(|r| !r.mismatch.is_empty())
    }
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    }
}

/// A working directory removed on drop unless the user gave it.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What our engine answered for one query.
enum Ours {
    Answer(QueryResult),
    Failed(String),
}

fn run_ours(engine: &Engine, storage: &Storage, q: &Query) -> Ours {
    match q.kind {
        Kind::Instant { t } => match engine.instant(storage, &q.expr, t) {
            Ok(v) => Ours::Answer(QueryResult::from_value(&v)),
            Err(e) => Ours::Failed(e.to_string()),
        },
        Kind::Range { start, end, step } => {
            match engine.range(storage, &q.expr, start, end, step) {
                Ok(m) => Ours::Answer(QueryResult::from_matrix(&m)),
                Err(e) => Ours::Failed(e.to_string()),
            }
        }
    }
}

/// Times our engine alone and with JSON encoding: `(engine, engine + JSON)`.
fn time_ours(engine: &Engine, storage: &Storage, q: &Query) -> (Duration, Duration) {
    let started = Instant::now();
    let answer = match q.kind {
        Kind::Instant { t } => engine
            .instant(storage, &q.expr, t)
            .map(|v| (started.elapsed(), results::encode_value(&v))),
        Kind::Range { start, end, step } => engine
            .range(storage, &q.expr, start, end, step)
            .map(|m| (started.elapsed(), results::encode_matrix(&m))),
    };
    let total = started.elapsed();
    match answer {
        Ok((eval, body)) => {
            std::hint::black_box(body);
            (eval, total)
        }
        Err(_) => (total, total),
    }
}

type PromAnswer = (Result<results::ApiAnswer, String>, Duration);

fn run_prometheus(prom: &Prometheus, q: &Query) -> Result<PromAnswer, BenchError> {
    match q.kind {
        Kind::Instant { t } => prom.instant(&q.expr, t),
        Kind::Range { start, end, step } => prom.range(&q.expr, start, end, step),
    }
}

/// Runs the benchmark. `progress` receives a line per stage (the CLI prints them; tests may
/// drop them).
pub fn run(args: &PromqlBenchArgs, mut progress: impl FnMut(&str)) -> Result<Report, BenchError> {
    let promtool = prometheus::require_program("promtool")?;
    let prometheus_bin = prometheus::require_program("prometheus")?;
    let shape = DataShape {
        days: args.days.max(1),
        series: args.series.max(1),
        interval_s: args.interval.max(1),
    };
    let reps = args.reps.max(1);

    let work = match &args.dir {
        Some(d) => WorkDir {
            path: d.clone(),
            remove: false,
        },
        None => WorkDir {
            path: std::env::temp_dir().join(format!(
                "kubesignal-bench-promql-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )),
            remove: true,
        },
    };
    let io = |what: &str, path: &std::path::Path| {
        let what = what.to_string();
        let path = path.to_path_buf();
        move |source| BenchError::Io { what, path, source }
    };
    std::fs::create_dir_all(&work.path).map_err(io("creating the work directory", &work.path))?;

    let started = Instant::now();
    let dataset = data::generate(shape);
    let generate = started.elapsed();
    progress(&format!(
        "generated {} series, {} samples over {} days in {:.1?}",
        dataset.series.len(),
        dataset.sample_count(),
        shape.days,
        generate
    ));

    let before = Rss::current().unwrap_or_default();
    let started = Instant::now();
    let mut storage = Storage::new();
    dataset.load_into(&mut storage);
    let load_ours = started.elapsed();
    let after = Rss::current().unwrap_or_default();
    let mut memory = Memory {
        samples: storage.sample_count(),
        series: storage.series_count(),
        ours_rss_delta: after.anon.saturating_sub(before.anon),
        ours_estimate: storage.memory_bytes() as u64,
        ..Memory::default()
    };
    progress(&format!("loaded our store in {load_ours:.1?}"));

    let started = Instant::now();
    let om = work.path.join("data.om");
    {
        let file = std::fs::File::create(&om).map_err(io("creating", &om))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        dataset
            .write_openmetrics(&mut w)
            .and_then(|()| std::io::Write::flush(&mut w))
            .map_err(io("writing", &om))?;
    }
    drop(dataset);
    let tsdb = work.path.join("tsdb");
    std::fs::create_dir_all(&tsdb).map_err(io("creating", &tsdb))?;
    prometheus::create_blocks(&promtool, &om, &tsdb)?;
    let _ = std::fs::remove_file(&om);
    let load_prometheus = started.elapsed();
    memory.prometheus_blocks = prometheus::dir_size(&tsdb);
    progress(&format!(
        "built Prometheus blocks with promtool in {load_prometheus:.1?}"
    ));

    let started = Instant::now();
    let prom = Prometheus::start(&prometheus_bin, &work.path, &tsdb)?;
    let start_prometheus = started.elapsed();
    memory.prometheus_ready = prom.rss().unwrap_or_default();
    progress(&format!(
        "prometheus ready at {} in {start_prometheus:.1?}",
        prom.url
    ));

    let engine = Engine::new(EngineOptions::default());
    let mut rows = Vec::new();
    for q in queries::queries() {
        // Warm-up, and the answers compared.
        let ours = run_ours(&engine, &storage, &q);
        let (theirs, _) = run_prometheus(&prom, &q)?;
        let mut mismatch = Vec::new();
        let (series, points) = match &theirs {
            Ok(a) => (a.result.series.len(), a.result.point_count()),
            Err(_) => (0, 0),
        };
        match (&ours, &theirs) {
            (Ours::Answer(o), Ok(t)) => mismatch = results::differences(o, &t.result, 8),
            (Ours::Failed(e), Ok(_)) => mismatch.push(format!("our engine failed: {e}")),
            (Ours::Answer(_), Err(e)) => mismatch.push(format!("Prometheus failed: {e}")),
            (Ours::Failed(e), Err(p)) => {
                mismatch.push(format!("both failed: ours {e}; Prometheus {p}"))
            }
        }
        let mut ours_t = Vec::with_capacity(reps);
        let mut ours_json_t = Vec::with_capacity(reps);
        let mut http_t = Vec::with_capacity(reps);
        let mut exec_t = Vec::with_capacity(reps);
        for _ in 0..reps {
            let (eval, with_json) = time_ours(&engine, &storage, &q);
            ours_t.push(eval);
            ours_json_t.push(with_json);
            let (answer, took) = run_prometheus(&prom, &q)?;
            http_t.push(took);
            if let Some(s) = answer.ok().and_then(|a| a.exec_seconds) {
                exec_t.push(Duration::from_secs_f64(s));
            }
        }
        let row = QueryRow {
            query: q,
            ours: median(ours_t),
            ours_json: median(ours_json_t),
            prometheus_http: median(http_t),
            prometheus_exec: (!exec_t.is_empty()).then(|| median(exec_t)),
            series,
            points,
            mismatch,
        };
        progress(&format!(
            "{}: ours {:.2?}, Prometheus {:.2?}{}",
            row.query.name,
            row.ours_json,
            row.prometheus_http,
            if row.mismatch.is_empty() {
                ""
            } else {
                " — RESULTS DIFFER"
            }
        ));
        rows.push(row);
    }
    memory.prometheus_after = prom.rss().unwrap_or_default();
    drop(prom);
    Ok(Report {
        shape,
        reps,
        generate,
        load_ours,
        load_prometheus,
        start_prometheus,
        rows,
        memory,
    })
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn per_million(bytes: u64, samples: usize) -> String {
    let per = bytes as f64 / (samples.max(1) as f64 / 1e6);
    format!("{:.1} MiB", per / 1_048_576.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.memory;
        writeln!(
            f,
            "Data: {} series, {} samples, {} days at {}s; {} timed repetitions per query after one warm-up.",
            m.series, m.samples, self.shape.days, self.shape.interval_s, self.reps
        )?;
        writeln!(
            f,
            "Set-up: generate {:.1?}, load ours {:.1?}, promtool blocks {:.1?}, Prometheus start {:.1?}.",
            self.generate, self.load_ours, self.load_prometheus, self.start_prometheus
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| query | series × points | ours (engine) | ours (+JSON) | Prometheus (HTTP) | Prometheus (exec) | ratio (+JSON / HTTP) | ratio (engine / exec) | same result |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} × {} | {} | {} | {} | {} | {:.3} | {} | {} |",
                r.query.name,
                r.series,
                r.points / r.series.max(1),
                ms(r.ours),
                ms(r.ours_json),
                ms(r.prometheus_http),
                r.prometheus_exec.map(ms).unwrap_or_else(|| "-".into()),
                r.ratio(),
                r.exec_ratio()
                    .map(|x| format!("{x:.3}"))
                    .unwrap_or_else(|| "-".into()),
                if r.mismatch.is_empty() {
                    "yes"
                } else {
                    "**NO**"
                }
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Median ratio over queries: {:.3} (ours with JSON / Prometheus HTTP), {} (engine / Prometheus exec).",
            self.median_ratio(),
            self.median_exec_ratio()
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into())
        )?;
        writeln!(f)?;
        writeln!(f, "| memory | total | per million samples |")?;
        writeln!(f, "|---|---|---|")?;
        writeln!(
            f,
            "| ours: RSS growth while loading the store | {} | {} |",
            mib(m.ours_rss_delta),
            per_million(m.ours_rss_delta, m.samples)
        )?;
        writeln!(
            f,
            "| ours: chunks, heads and labels as the store counts them | {} | {} |",
            mib(m.ours_estimate),
            per_million(m.ours_estimate, m.samples)
        )?;
        writeln!(
            f,
            "| Prometheus: blocks on disk | {} | {} |",
            mib(m.prometheus_blocks),
            per_million(m.prometheus_blocks, m.samples)
        )?;
        writeln!(
            f,
            "| Prometheus: RSS anon / file when ready | {} / {} | - |",
            mib(m.prometheus_ready.anon),
            mib(m.prometheus_ready.file)
        )?;
        writeln!(
            f,
            "| Prometheus: RSS anon / file after the queries | {} / {} | - |",
            mib(m.prometheus_after.anon),
            mib(m.prometheus_after.file)
        )?;
        let mut any = false;
        for r in self.mismatches() {
            if !any {
                writeln!(f)?;
                writeln!(f, "RESULT MISMATCHES (engine bugs to fix):")?;
                any = true;
            }
            writeln!(f, "- {}: `{}`", r.query.name, r.query.expr)?;
            for d in &r.mismatch {
                writeln!(f, "    {d}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_f64(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f64(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(
            median(vec![Duration::from_millis(5), Duration::from_millis(1)]),
            Duration::from_millis(3)
        );
    }
}
