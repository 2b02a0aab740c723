//! Helpers for the embedded datasource's tests: the evaluator and agent processes, a
//! misbehaving scrape target, and calls to the Prometheus query API.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;

use super::evaluator::{Proc, free_port, http_get, kubesignal, start_evaluator, wait_http_ok};

/// Starts the real agent on this machine (`local` source, node `laptop`); returns it and its
/// `host:port`.
pub fn start_agent(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let mut cmd: Command = kubesignal();
    cmd.arg("agent")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--interval=500ms")
        .arg("--node-name=laptop")
        .env_remove("K8S_NODE_NAME")
        .env_remove("KUBERNETES_SERVICE_HOST");
    let proc = Proc::spawn("kubesignal agent", cmd, &dir.join("agent.log"));
    let addr = format!("127.0.0.1:{port}");
    wait_http_ok(
        &format!("http://{addr}/readyz"),
        Duration::from_secs(30),
        &proc,
    );
    (proc, addr)
}

/// Starts `kubesignal evaluator --datasource embedded` scraping `targets` (`JOB=URL`) every
/// 500ms with `rules`, keeping state in `state_dir`, plus `extra` flags.
pub fn start_embedded(
    dir: &Path,
    name: &str,
    rules: &Path,
    state_dir: &Path,
    targets: &[String],
    extra: &[&str],
) -> (Proc, String) {
    let mut args = vec![
        "--datasource=embedded".to_string(),
        format!("--rules={}", rules.display()),
        format!("--state-dir={}", state_dir.display()),
        "--scrape-interval=500ms".to_string(),
        "--evaluation-interval=1s".to_string(),
    ];
    args.extend(targets.iter().map(|t| format!("--scrape={t}")));
    args.extend(extra.iter().map(|s| s.to_string()));
    start_evaluator(dir, name, &args)
}

/// Writes a rule file with one group evaluated every second.
pub fn write_rules(dir: &Path, rules_yaml: &str) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    let mut text = String::from("groups:\n  - name: embedded-test\n    interval: 1s\n    rules:\n");
    for line in rules_yaml.lines() {
        text.push_str("      ");
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// GETs `base + path` with query parameters; returns the status and the JSON body.
pub fn api_get(base: &str, path: &str, params: &[(&str, &str)]) -> (u16, Json) {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let url = format!("{base}{path}?{}", query.join("&"));
    let (status, body) = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON ({e}): {body}"));
    (status, json)
}

/// POSTs the parameters as a form; returns the status and the JSON body.
pub fn api_post_form(base: &str, path: &str, params: &[(&str, &str)]) -> (u16, Json) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .form(params)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    })
}

/// An instant query's result array, asserting success.
pub fn query(base: &str, expr: &str) -> Vec<Json> {
    let (status, body) = api_get(base, "/api/v1/query", &[("query", expr)]);
    assert_eq!(status, 200, "query {expr}: {body}");
    assert_eq!(body["status"], "success", "query {expr}: {body}");
    body["data"]["result"].as_array().cloned().unwrap()
}

/// The value of a one-element vector result, if the result has exactly one element.
pub fn single_value(base: &str, expr: &str) -> Option<f64> {
    match query(base, expr).as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// `/api/v1/alerts` as a sorted list of (state, labels) pairs.
pub fn alerts(base: &str) -> Vec<(String, Json)> {
    let (status, body) = http_get(&format!("{base}/api/v1/alerts")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Json = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, Json)> = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap().to_string(),
                a["labels"].clone(),
            )
        })
        .collect();
    out.sort_by_key(|(s, l)| format!("{s}{l}"));
    out
}

/// The alert names in `alerts` with state `state`, sorted.
pub fn names_in_state(alerts: &[(String, Json)], state: &str) -> Vec<String> {
    let mut v: Vec<String> = alerts
        .iter()
        .filter(|(s, _)| s == state)
        .map(|(_, l)| l["alertname"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The value of the sample `name{labels}` in a text exposition, if present.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            (series == name || series.starts_with(&format!("{name}{{")))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Scrape targets that misbehave: `/garbage` answers 200 with text that is not an
/// exposition, `/hang` never answers, `/huge` answers a valid but large body.
pub struct BadTargets {
    /// `host:port`.
    pub addr: String,
    _runtime: tokio::runtime::Runtime,
}

impl BadTargets {
    /// Starts the server on a free port.
    pub fn start() -> BadTargets {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        runtime.spawn(async move {
            let app = axum::Router::new()
                .route(
                    "/garbage",
                    axum::routing::get(|| async { "<html>this { is not metrics\n" }),
                )
                .route(
                    "/hang",
                    axum::routing::get(|| async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        "late 1\n"
                    }),
                )
                .route(
                    "/huge",
                    axum::routing::get(|| async {
                        (0..2000)
                            .map(|i| format!("huge_series{{i=\"{i}\"}} {i}\n"))
                            .collect::<String>()
                    }),
                );
            let _ = axum::serve(listener, app).await;
        });
        BadTargets {
            addr,
            _runtime: runtime,
        }
    }
}
