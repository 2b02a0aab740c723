//! Shared helpers of the bundle tests (dashboards, alerts, manifests, compose, demo).
//!
//! [`ALLOWED_METRICS`] is the one list of series names the dashboards and alert rules may read,
//! each with where it comes from. When a producer renames a series, this list and the bundle
//! change together.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;
use std::process::{Command, Output};

/// Where an allowed series comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// DESIGN.md "Exported series (contract)": node USE series of the agent.
    AgentNode,
    /// DESIGN.md contract: container and pod USE series of the agent.
    AgentContainer,
    /// Agent series agreed with the agent helper beyond the DESIGN.md table
    /// (`kubesignal_container_last_terminated_reason`, pod-level CPU/memory usage and limits).
    AgentExtra,
    /// DESIGN.md contract: RED series of the agent.
    AgentRed,
    /// DESIGN.md contract: the agent's self-metrics (`kubesignal_agent_target_up` agreed in
    /// issue 7's brief). `kubesignal_agent_scrape_duration_seconds` is assumed to be a gauge
    /// (duration of the last collection per source).
    AgentSelf,
    /// The evaluator's self-metrics as named in issue 7's brief (assumed contract; the
    /// evaluator is built in parallel). `ALERTS` follows Prometheus.
    Evaluator,
    /// Recording rules produced by `kubesignal slo generate` (issue 7's brief).
    SloRules,
    /// Prometheus itself: the synthetic per-target `up` series.
    Prometheus,
}

/// Every series name a dashboard query or an alert expression may name.
pub const ALLOWED_METRICS: &[(&str, Source)] = &[
    ("kubesignal_node_cpu_usage_seconds_total", Source::AgentNode),
    ("kubesignal_node_cpu_capacity_cores", Source::AgentNode),
    ("kubesignal_node_cpu_utilization_ratio", Source::AgentNode),
    (
        "kubesignal_node_memory_working_set_bytes",
        Source::AgentNode,
    ),
    ("kubesignal_node_memory_capacity_bytes", Source::AgentNode),
    (
        "kubesignal_node_memory_utilization_ratio",
        Source::AgentNode,
    ),
    (
        "kubesignal_node_cpu_pressure_seconds_total",
        Source::AgentNode,
    ),
    (
        "kubesignal_node_memory_pressure_seconds_total",
        Source::AgentNode,
    ),
    (
        "kubesignal_node_network_receive_errors_total",
        Source::AgentNode,
    ),
    (
        "kubesignal_node_network_transmit_errors_total",
        Source::AgentNode,
    ),
    ("kubesignal_node_filesystem_used_ratio", Source::AgentNode),
    (
        "kubesignal_container_cpu_usage_seconds_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_request_cores",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_limit_cores",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_limit_utilization_ratio",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_request_utilization_ratio",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_cfs_periods_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_cpu_cfs_throttled_periods_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_memory_working_set_bytes",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_memory_request_bytes",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_memory_limit_bytes",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_memory_limit_utilization_ratio",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_oom_events_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_restarts_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_pod_network_receive_bytes_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_pod_network_transmit_bytes_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_pod_network_receive_errors_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_pod_network_transmit_errors_total",
        Source::AgentContainer,
    ),
    (
        "kubesignal_pod_ephemeral_storage_used_bytes",
        Source::AgentContainer,
    ),
    (
        "kubesignal_container_last_terminated_reason",
        Source::AgentExtra,
    ),
    ("kubesignal_pod_cpu_usage_seconds_total", Source::AgentExtra),
    (
        "kubesignal_pod_memory_working_set_bytes",
        Source::AgentExtra,
    ),
    ("kubesignal_pod_cpu_limit_cores", Source::AgentExtra),
    ("kubesignal_pod_memory_limit_bytes", Source::AgentExtra),
    ("kubesignal_red_requests_total", Source::AgentRed),
    ("kubesignal_red_errors_total", Source::AgentRed),
    (
        "kubesignal_red_request_duration_seconds_bucket",
        Source::AgentRed,
    ),
    (
        "kubesignal_red_request_duration_seconds_sum",
        Source::AgentRed,
    ),
    (
        "kubesignal_red_request_duration_seconds_count",
        Source::AgentRed,
    ),
    (
        "kubesignal_agent_scrape_duration_seconds",
        Source::AgentSelf,
    ),
    ("kubesignal_agent_scrape_errors_total", Source::AgentSelf),
    ("kubesignal_agent_series", Source::AgentSelf),
    ("kubesignal_agent_target_up", Source::AgentSelf),
    (
        "kubesignal_evaluator_rule_evaluation_failures_total",
        Source::Evaluator,
    ),
    (
        "kubesignal_evaluator_rule_group_iterations_missed_total",
        Source::Evaluator,
    ),
    (
        "kubesignal_evaluator_rule_group_last_duration_seconds",
        Source::Evaluator,
    ),
    (
        "kubesignal_evaluator_notifications_sent_total",
        Source::Evaluator,
    ),
    (
        "kubesignal_evaluator_notifications_failed_total",
        Source::Evaluator,
    ),
    ("ALERTS", Source::Evaluator),
    ("slo:sli_error:ratio_rate5m", Source::SloRules),
    ("slo:sli_error:ratio_rate30m", Source::SloRules),
    ("slo:sli_error:ratio_rate1h", Source::SloRules),
    ("slo:sli_error:ratio_rate2h", Source::SloRules),
    ("slo:sli_error:ratio_rate6h", Source::SloRules),
    ("slo:sli_error:ratio_rate1d", Source::SloRules),
    ("slo:sli_error:ratio_rate3d", Source::SloRules),
    ("slo:sli_error:ratio_rate30d", Source::SloRules),
    ("slo:objective:ratio", Source::SloRules),
    ("slo:error_budget:remaining_ratio", Source::SloRules),
    ("slo:info", Source::SloRules),
    ("up", Source::Prometheus),
];

/// Whether `name` is in [`ALLOWED_METRICS`].
pub fn is_allowed_metric(name: &str) -> bool {
    ALLOWED_METRICS.iter().any(|(n, _)| *n == name)
}

/// Series recorded by the rule files in `alerts/` (e.g. the generated SLO rules'
/// `slo:sli_errors:rate5m`): dashboards and rules may read them too.
pub fn recorded_series() -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for f in files_with_ext("alerts", &[".yaml", ".yml"]) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
            continue;
        };
        for g in doc["groups"].as_sequence().into_iter().flatten() {
            for r in g["rules"].as_sequence().into_iter().flatten() {
                if let Some(name) = r["record"].as_str() {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files in `dir` (relative to the repository root) whose names end with one of `exts`, sorted.
pub fn files_with_ext(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| exts.iter().any(|x| n.ends_with(x)))
        })
        .collect();
    out.sort();
    out
}

/// Finds `program` on PATH or at one of `extra` paths; panics with what to install when absent.
pub fn require_program(program: &str, extra: &[&str], install_hint: &str) -> PathBuf {
    for p in extra {
        let p = Path::new(p);
        if p.is_file() {
            return p.to_path_buf();
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("`{program}` is required by this test but was not found: {install_hint}");
}

/// The virtualenv `scripts/install-test-deps` creates for the Python validators.
pub const VENV: &str = "/opt/kubesignal-venv";

/// Path of a Python tool installed by `scripts/install-test-deps`.
pub fn venv_tool(tool: &str) -> PathBuf {
    let in_venv = format!("{VENV}/bin/{tool}");
    require_program(
        tool,
        &[&in_venv],
        "run `scripts/install-test-deps` (pip installs kubernetes-validate, jsonschema, pyyaml into /opt/kubesignal-venv)",
    )
}

/// Runs a command, panicking with its output if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Stdout and stderr of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Metric names a PromQL expression selects, in order of appearance.
pub fn metric_names(expr: &promql_parser::parser::Expr) -> Vec<String> {
    use promql_parser::parser::Expr;
    use promql_parser::util::{ExprVisitor, walk_expr};

    struct Names(Vec<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            let vs = match e {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = vs {
                let name = vs.name.clone().or_else(|| {
                    vs.matchers
                        .matchers
                        .iter()
                        .find(|m| m.name == "__name__")
                        .map(|m| m.value.clone())
                });
                if let Some(n) = name {
                    self.0.push(n);
                }
            }
            Ok(true)
        }
    }
    let mut v = Names(Vec::new());
    let _ = walk_expr(&mut v, expr);
    v.0
}

/// Selectors of counters (`_total`, `_bucket`, `_sum`, `_count`) that are not the direct
/// argument of `rate`, `irate` or `increase`: reading a raw counter is almost always a mistake.
pub fn raw_counter_reads(expr: &promql_parser::parser::Expr) -> Vec<String> {
    use promql_parser::parser::Expr;
    let mut out = Vec::new();
    fn is_counter(name: &str) -> bool {
        ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.ends_with(s))
    }
    fn walk(e: &Expr, under_rate: bool, out: &mut Vec<String>) {
        match e {
            Expr::Aggregate(a) => {
                walk(&a.expr, false, out);
                if let Some(p) = &a.param {
                    walk(p, false, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, false, out),
            Expr::Binary(b) => {
                walk(&b.lhs, false, out);
                walk(&b.rhs, false, out);
            }
            Expr::Paren(p) => walk(&p.expr, under_rate, out),
            Expr::Subquery(s) => walk(&s.expr, false, out),
            Expr::VectorSelector(vs) => {
                if let Some(n) = &vs.name
                    && is_counter(n)
                {
                    out.push(n.clone());
                }
            }
            Expr::MatrixSelector(ms) => {
                if !under_rate
                    && let Some(n) = &ms.vs.name
                    && is_counter(n)
                {
                    out.push(n.clone());
                }
            }
            Expr::Call(c) => {
                let rate_like = matches!(c.func.name, "rate" | "irate" | "increase");
                for a in &c.args.args {
                    walk(a, rate_like, out);
                }
            }
            _ => {}
        }
    }
    walk(expr, false, &mut out);
    out
}

/// Queries every target of every dashboard at `end`, filling variables as Grafana does: each
/// `label_values()` query is asked of Prometheus, in order, and its first value is used.
/// Returns how many queries ran and which returned no data.
/// A variable whose name is in `prefer` takes that value instead when Prometheus offers it (a
/// user picks a workload that has limits to look at its limit panels).
pub async fn query_every_panel(
    client: &reqwest::Client,
    base: &str,
    start: i64,
    end: i64,
    rate_interval: &str,
    prefer: &[(&str, &str)],
) -> (usize, Vec<String>) {
    let label_values = Regex::new(r"^label_values\((.*),\s*(\w+)\)$").unwrap();
    let at = end.to_string();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files_with_ext("dashboards", &[".json"]) {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let fname = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut values = BTreeMap::new();
        values.insert("datasource".to_string(), "prometheus".to_string());
        for v in dash["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let name = v["name"].as_str().unwrap().to_string();
            let def = v["definition"].as_str().unwrap();
            let c = label_values.captures(def).unwrap();
            let selector = substitute(&c[1], &values, rate_interval);
            let r = api(
                client,
                &format!("{}/api/v1/label/{}/values", base, &c[2]),
                &[
                    ("match[]", selector.clone()),
                    ("start", start.to_string()),
                    ("end", at.clone()),
                ],
            )
            .await;
            let offered: Vec<&str> = r["data"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let preferred = prefer
                .iter()
                .find(|(var, value)| *var == name && offered.contains(value))
                .map(|(_, value)| *value);
            let first = preferred.or(offered.first().copied()).map(String::from);
            match first {
                Some(val) => {
                    values.insert(name, val);
                }
                None if v["includeAll"] == true => {
                    values.insert(name, ".*".to_string());
                }
                None => failures.push(format!(
                    "{fname}: variable {name} has no values for {selector}"
                )),
            }
        }
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = substitute(t["expr"].as_str().unwrap(), &values, rate_interval);
                let r = api(
                    client,
                    &format!("{}/api/v1/query", base),
                    &[("query", expr.clone()), ("time", at.clone())],
                )
                .await;
                checked += 1;
                let ok = r["status"] == "success"
                    && match &r["data"]["result"] {
                        Value::Array(a) => !a.is_empty(),
                        Value::Null => false,
                        _ => true,
                    };
                if !ok {
                    failures.push(format!(
                        "{fname}: panel {:?} target {}: no data from {expr}\n  {r}",
                        p["title"], t["refId"]
                    ));
                }
            }
        }
    }
    (checked, failures)
}

/// GETs a Prometheus API endpoint, returning its JSON.
pub async fn api(client: &reqwest::Client, url: &str, params: &[(&str, String)]) -> Value {
    let resp = client.get(url).query(params).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    body
}

/// Replaces Grafana variables the way Grafana would: `$__rate_interval` by `rate_interval`,
/// dashboard variables by `values`.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>, rate_interval: &str) -> String {
    let re = Regex::new(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)").unwrap();
    re.replace_all(expr, |c: &regex::Captures| {
        let name = c.get(1).or_else(|| c.get(2)).unwrap().as_str();
        match name {
            "__rate_interval" => rate_interval.to_string(),
            "__interval" => "15s".to_string(),
            "__range" => "1h".to_string(),
            _ => values
                .get(name)
                .cloned()
                .unwrap_or_else(|| c[0].to_string()),
        }
    })
    .into_owned()
}
