//! The real Prometheus: blocks built by promtool from the generated OpenMetrics file, a server
//! on loopback over them, and queries through its HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;
use super::results::{ApiAnswer, decode_api};

/// Finds `name` on `PATH`, or says which Debian package provides it.
pub fn require_program(name: &str) -> Result<PathBuf, BenchError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BenchError::MissingProgram {
            program: name.to_string(),
        })
}

/// Runs `promtool tsdb create-blocks-from openmetrics` on `input`, writing blocks into `dir`.
/// Blocks span up to 486h (the largest range Prometheus's compactor would build with our
/// retention), so Prometheus finds compacted blocks at start and does not compact during the
/// measurements.
pub fn create_blocks(promtool: &Path, input: &Path, dir: &Path) -> Result<(), BenchError> {
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg("--max-block-duration=486h")
        .arg(input)
        .arg(dir)
        .output()
        .map_err(|source| BenchError::Io {
            what: "running promtool".into(),
            path: promtool.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::Promtool {
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// A Prometheus server, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Prometheus {
    /// Starts `prometheus` on the TSDB in `data`, with no scrape targets, a 400-day retention
    /// and its log in `dir`, and waits until it is ready.
    pub fn start(binary: &Path, dir: &Path, data: &Path) -> Result<Prometheus, BenchError> {
        let io = |what: &str, path: &Path| {
            let what = what.to_string();
            let path = path.to_path_buf();
            move |source| BenchError::Io { what, path, source }
        };
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global: {}\nscrape_configs: []\n")
            .map_err(io("writing the Prometheus config", &config))?;
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).map_err(io("creating the log", &log))?;
        let log_err = log_file.try_clone().map_err(io("creating the log", &log))?;
        let port = free_port().map_err(io("finding a free port", dir))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=400d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(io("starting prometheus", binary))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting an HTTP client runtime", dir))?;
        // No compression: Prometheus would otherwise gzip large answers, a cost a local client
        // does not ask for.
        let client =
            reqwest::Client::builder()
                .no_gzip()
                .build()
                .map_err(|e| BenchError::Http {
                    url: String::new(),
                    message: e.to_string(),
                })?;
        let mut prom = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            client,
            runtime,
        };
        prom.wait_ready(Duration::from_secs(90))?;
        Ok(prom)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/-/ready", self.url);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::PrometheusStart {
                    message: format!("exited with {status}:\n{}", log_tail(&self.log)),
                });
            }
            if let Ok((200, _)) = self.get(&url) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::PrometheusStart {
                    message: format!("not ready after {timeout:?}:\n{}", log_tail(&self.log)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.runtime.block_on(async {
            let resp = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok((status, body.to_vec()))
        })
    }

    fn query_url(&self, path: &str, params: &[(&str, String)]) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        format!("{}{path}?{query}", self.url)
    }

    /// Sends one GET and returns the raw body and how long the round trip took.
    fn timed_get(&self, url: &str) -> Result<(Vec<u8>, Duration), BenchError> {
        let started = Instant::now();
        let (status, body) = self.get(url).map_err(|message| BenchError::Http {
            url: url.to_string(),
            message,
        })?;
        let took = started.elapsed();
        if status != 200 && status != 422 && status != 400 {
            return Err(BenchError::Http {
                url: url.to_string(),
                message: format!("status {status}: {}", String::from_utf8_lossy(&body)),
            });
        }
        Ok((body, took))
    }

    /// `GET /api/v1/query` at `t` (ms) with `stats=all`: the decoded answer (or Prometheus's
    /// error) and the round-trip time.
    pub fn instant(
        &self,
        query: &str,
        t: i64,
    ) -> Result<(Result<ApiAnswer, String>, Duration), BenchError> {
        let url = self.query_url(
            "/api/v1/query",
            &[
                ("query", query.to_string()),
                ("time", seconds(t)),
                ("stats", "all".into()),
            ],
        );
        let (body, took) = self.timed_get(&url)?;
        Ok((decode_api(&body), took))
    }

    /// `GET /api/v1/query_range` with `stats=all`, times in ms.
    pub fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(Result<ApiAnswer, String>, Duration), BenchError> {
        let url = self.query_url(
            "/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", seconds(start)),
                ("end", seconds(end)),
                ("step", seconds(step)),
                ("stats", "all".into()),
            ],
        );
        let (body, took) = self.timed_get(&url)?;
        Ok((decode_api(&body), took))
    }

    /// The server's resident memory from `/proc/PID/status`: anonymous (heap) and file-backed
    /// (mapped block files) parts, in bytes.
    pub fn rss(&self) -> Option<Rss> {
        Rss::of(&format!("/proc/{}/status", self.child.id()))
    }
}

/// Resident memory of a process, split as the kernel reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    /// Anonymous memory (heap, stacks).
    pub anon: u64,
    /// Pages of mapped files.
    pub file: u64,
}

impl Rss {
    /// Reads `RssAnon` and `RssFile` from a `/proc/.../status` file.
    pub fn of(status_path: &str) -> Option<Rss> {
        let text = std::fs::read_to_string(status_path).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            let kib: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib * 1024)
        };
        Some(Rss {
            anon: field("RssAnon:")?,
            file: field("RssFile:")?,
        })
    }

    /// This process's resident memory.
    pub fn current() -> Option<Rss> {
        Rss::of("/proc/self/status")
    }
}

/// Milliseconds as the decimal seconds the HTTP API takes.
fn seconds(ms: i64) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
    }
}

/// Total size of the files under `dir`, in bytes.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_become_api_seconds() {
        assert_eq!(seconds(1_793_491_200_000), "1793491200");
        assert_eq!(seconds(60_500), "60.500");
    }

    #[test]
    fn a_missing_program_is_named_in_the_error() {
        let err = require_program("kubesignal-no-such-program").unwrap_err();
        assert!(
            err.to_string().contains("kubesignal-no-such-program"),
            "{err}"
        );
    }

    #[test]
    fn this_process_reports_its_resident_memory() {
        let rss = Rss::current().unwrap();
        assert!(rss.anon > 0);
    }
}
