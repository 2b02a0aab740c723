//! Helpers for the evaluator's integration tests: real Prometheus, promtool and Alertmanager
//! processes (killed on drop), the kubesignal binary, and a tiny scrape target.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fails with what to install when a program is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .expect("running sh");
    if !out.status.success() {
        panic!("`{program}` is not installed; install it with `apt-get install -y {package}`");
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs an instant query against Prometheus and returns the result vector.
pub fn prom_query(url: &str, expr: &str) -> Vec<serde_json::Value> {
    let encoded: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let (status, body) = http_get(&format!("{url}/api/v1/query?query={encoded}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A free loopback port (bound then released; the OS hands out fresh ports first).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, sending its output to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child: Some(child),
            name: name.into(),
            log: log.to_path_buf(),
        }
    }

    /// Its log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait up to `timeout` for a clean exit; returns whether it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        if let Some(c) = &mut self.child {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `url` until it answers 2xx or `timeout` passes.
pub fn wait_http_ok(url: &str, timeout: Duration, proc: &Proc) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(resp) = http_get(url)
            && resp.0 < 300
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} did not become ready at {url}; log:\n{}",
        proc.name,
        proc.log_text()
    );
}

/// A blocking GET: status and body.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    })
}

/// A blocking POST without body: status and body.
pub fn http_post(url: &str) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    })
}

/// A real Prometheus server.
pub struct Prometheus {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `data_dir` with `config_yaml`, waiting for /-/ready.
    pub fn start(dir: &Path, data_dir: &Path, config_yaml: &str, port: Option<u16>) -> Prometheus {
        Prometheus::start_with(dir, data_dir, config_yaml, port, &[])
    }

    /// [`Prometheus::start`] with extra flags.
    pub fn start_with(
        dir: &Path,
        data_dir: &Path,
        config_yaml: &str,
        port: Option<u16>,
        extra: &[&str],
    ) -> Prometheus {
        let bin = require("prometheus", "prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let port = port.unwrap_or_else(free_port);
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=30d")
            .args(extra);
        let proc = Proc::spawn(
            "prometheus",
            cmd,
            &dir.join(format!("prometheus-{port}.log")),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(60), &proc);
        Prometheus {
            proc,
            url,
            port,
            dir: dir.to_path_buf(),
            config,
        }
    }

    /// Loads OpenMetrics text into blocks with promtool, then starts Prometheus on them.
    pub fn with_openmetrics(dir: &Path, openmetrics: &str) -> Prometheus {
        Prometheus::with_openmetrics_config(
            dir,
            openmetrics,
            "global: {}\nscrape_configs: []\n",
            &[],
        )
    }

    /// [`Prometheus::with_openmetrics`] with a config file and extra flags.
    pub fn with_openmetrics_config(
        dir: &Path,
        openmetrics: &str,
        config: &str,
        extra: &[&str],
    ) -> Prometheus {
        let promtool = require("promtool", "prometheus");
        let input = dir.join("data.om");
        std::fs::write(&input, openmetrics).unwrap();
        let data = dir.join("tsdb");
        std::fs::create_dir_all(&data).unwrap();
        let out = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool create-blocks-from failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Prometheus::start_with(dir, &data, config, None, extra)
    }
}

/// A real Alertmanager.
pub struct Alertmanager {
    pub proc: Proc,
    pub url: String,
}

impl Alertmanager {
    /// Starts Alertmanager with one no-op receiver, waiting for /-/ready.
    pub fn start(dir: &Path) -> Alertmanager {
        let bin = require("prometheus-alertmanager", "prometheus-alertmanager");
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n- name: blackhole\n",
        )
        .unwrap();
        let storage = dir.join("am-data");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let proc = Proc::spawn("alertmanager", cmd, &dir.join("alertmanager.log"));
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(&format!("{url}/-/ready"), Duration::from_secs(30), &proc);
        Alertmanager { proc, url }
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`, active and resolved-but-held).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(&format!("{}/api/v2/alerts", self.url)).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Alerts named `name` with their `status.state` and `endsAt`.
    pub fn alerts_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }
}

/// The kubesignal binary built for these tests.
pub fn kubesignal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubesignal"));
    cmd.env_remove("KUBESIGNAL_CONFIG").arg("--log-format=json");
    cmd
}

/// Starts `kubesignal evaluator` with `args`, waiting for /readyz. Returns the process and
/// its base URL.
pub fn start_evaluator(dir: &Path, name: &str, args: &[String]) -> (Proc, String) {
    let port = free_port();
    let mut cmd = kubesignal();
    cmd.arg("--log=info,kubesignal=debug")
        .arg("evaluator")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .args(args);
    let proc = Proc::spawn(
        "kubesignal evaluator",
        cmd,
        &dir.join(format!("{name}.log")),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/readyz"), Duration::from_secs(30), &proc);
    (proc, url)
}

/// A scrape target serving `test_value <v>` whose value the test sets.
pub struct Target {
    pub url: String,
    pub value: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Target {
    /// Starts the target on a free port.
    pub fn start(initial: f64) -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let value = Arc::new(AtomicU64::new(initial.to_bits()));
        let v = value.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let v = f64::from_bits(v.load(Ordering::Relaxed));
                    async move { format!("# TYPE test_value gauge\ntest_value {v}\n") }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
        Target {
            url: format!("{addr}"),
            value,
            _runtime: runtime,
        }
    }

    /// Sets the served value.
    pub fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Waits until `check` returns `Some`, polling every 200ms; panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
