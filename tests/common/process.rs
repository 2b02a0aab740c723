//! Real processes for integration tests: the kubesignal binary, Prometheus and promtool, each
//! killed when its guard is dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct ProcessGuard {
    pub child: Child,
    pub name: String,
}

impl ProcessGuard {
    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds an external program or fails the test saying what to install.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: these tests need it (Debian: `apt-get install -y {package}`; `scripts/test` installs it)"
    );
}

/// Waits until `url` answers 200, or panics after `timeout`.
pub async fn wait_for_ok(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not become ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kubesignal binary under test, started with `args`.
pub struct Kubesignal {
    pub guard: ProcessGuard,
    pub addr: SocketAddr,
}

impl Kubesignal {
    /// Starts `kubesignal <args> --listen 127.0.0.1:<free port>` and waits for /healthz.
    pub async fn start(args: &[&str]) -> Kubesignal {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubesignal"))
            .args(args)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--log-format=json")
            .env_remove("K8S_NODE_NAME")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the kubesignal binary");
        let guard = ProcessGuard {
            child,
            name: "kubesignal".into(),
        };
        wait_for_ok(&format!("http://{addr}/healthz"), Duration::from_secs(20)).await;
        Kubesignal { guard, addr }
    }

    /// GETs `/metrics` as plain text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Status code of `path`.
    pub async fn status(&self, path: &str) -> u16 {
        reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

/// A real Prometheus server with its own data directory.
pub struct Prometheus {
    pub guard: ProcessGuard,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) and waits until it is ready.
    pub async fn start(config: &str) -> Prometheus {
        Self::start_on(config, free_port()).await
    }

    /// [`Prometheus::start`] on a given port of 127.0.0.1.
    pub async fn start_on(config: &str, port: u16) -> Prometheus {
        let bin = require_program("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let guard = ProcessGuard {
            child,
            name: "prometheus".into(),
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_for_ok(&format!("{url}/-/ready"), Duration::from_secs(30)).await;
        Prometheus { guard, url, dir }
    }

    /// Runs an instant query; returns the result vector as (labels, value) pairs.
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "query {promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), v)
            })
            .collect()
    }
}

/// Runs `promtool check metrics` on `text`; returns (success, combined output).
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let bin = require_program("promtool", "prometheus");
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), output)
}
