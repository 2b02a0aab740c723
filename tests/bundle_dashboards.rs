//! Lints every Grafana dashboard in `dashboards/` against the conventions of current Grafana and
//! the series contract: schema version, stable uid, the `datasource` variable on every panel and
//! target, label_values() variables, allowed panel types, units, `$__rate_interval`, links that
//! carry variables and time range, and every query parsing with promql-parser and naming only
//! allowed series.

#[path = "common/bundle.rs"]
mod bundle;

use std::collections::{BTreeMap, BTreeSet};

use bundle::{
    files_with_ext, is_allowed_metric, metric_names, raw_counter_reads, recorded_series, repo_root,
};
use regex::Regex;
use serde_json::{Value, json};

/// Series recorded by alerts/ (read once).
static RECORDED: std::sync::LazyLock<BTreeSet<String>> = std::sync::LazyLock::new(recorded_series);

const PANEL_TYPES: &[&str] = &["timeseries", "stat", "table"];
const DS_UID: &str = "${datasource}";

/// A dashboard variable as far as the lint cares.
struct Var {
    multi: bool,
}

fn variables(dash: &Value) -> BTreeMap<String, Var> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v["name"].as_str()?.to_string();
            let multi =
                v["multi"].as_bool().unwrap_or(false) || v["includeAll"].as_bool().unwrap_or(false);
            Some((name, Var { multi }))
        })
        .collect()
}

fn var_ref_regex() -> Regex {
    Regex::new(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]").unwrap()
}

/// Replaces Grafana globals and the dashboard's variables by sample values: multi-value and
/// "All" variables by `.*`, single-value ones by a plausible value. Unknown `${1}` (regex
/// back-references in label_replace) stay as they are.
fn substitute(expr: &str, vars: &BTreeMap<String, Var>) -> String {
    var_ref_regex()
        .replace_all(expr, |c: &regex::Captures| {
            let name = c
                .get(1)
                .or_else(|| c.get(2))
                .or_else(|| c.get(3))
                .unwrap()
                .as_str();
            match name {
                "__rate_interval" | "__interval" => "1m".to_string(),
                "__range" => "1h".to_string(),
                "__range_s" => "3600".to_string(),
                _ => match vars.get(name) {
                    Some(v) if v.multi => ".*".to_string(),
                    Some(_) => format!("sample-{name}"),
                    None => c[0].to_string(),
                },
            }
        })
        .into_owned()
}

/// Checks one PromQL expression of a dashboard; `what` says where it is for the messages.
/// `counters_need_rate` is false for variable queries, whose selectors only feed label_values().
fn lint_expr(
    expr: &str,
    vars: &BTreeMap<String, Var>,
    what: &str,
    counters_need_rate: bool,
    errors: &mut Vec<String>,
) {
    // Ranges are looked for outside string literals (label_replace regexes contain brackets).
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let code = strings.replace_all(expr, "\"\"");
    let ranges = Regex::new(r"\[([^\]]*)\]").unwrap();
    for c in ranges.captures_iter(&code) {
        if &c[1] != "$__rate_interval" {
            errors.push(format!(
                "{what}: range [{}] must be [$__rate_interval]: {expr}",
                &c[1]
            ));
        }
    }
    for c in var_ref_regex().captures_iter(expr) {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .unwrap()
            .as_str();
        if name.starts_with("__") || name.chars().all(|ch| ch.is_ascii_digit()) {
            continue;
        }
        match vars.get(name) {
            None => errors.push(format!("{what}: uses undefined variable ${name}: {expr}")),
            Some(v) if v.multi => {
                let eq = Regex::new(&format!(r#"[^=~!]=\s*"\$\{{?{name}\b"#)).unwrap();
                if eq.is_match(expr) {
                    errors.push(format!(
                        "{what}: multi-value variable ${name} must be matched with =~: {expr}"
                    ));
                }
            }
            Some(_) => {}
        }
    }
    let expanded = substitute(expr, vars);
    match promql_parser::parser::parse(&expanded) {
        Err(e) => errors.push(format!("{what}: does not parse ({e}): {expanded}")),
        Ok(ast) => {
            for name in metric_names(&ast) {
                if !is_allowed_metric(&name) && !RECORDED.contains(&name) {
                    errors.push(format!(
                        "{what}: series {name} is not in ALLOWED_METRICS (tests/common/bundle.rs) nor recorded in alerts/"
                    ));
                }
            }
            for name in raw_counter_reads(&ast)
                .into_iter()
                .filter(|_| counters_need_rate)
            {
                errors.push(format!(
                    "{what}: counter {name} is read without rate()/increase(): {expr}"
                ));
            }
        }
    }
}

fn is_ds_var(v: &Value) -> bool {
    v["uid"].as_str() == Some(DS_UID) && v["type"].as_str() == Some("prometheus")
}

/// All lint findings for one dashboard; `uids` are the uids of every bundled dashboard.
fn lint_dashboard(file: &str, dash: &Value, uids: &BTreeSet<String>) -> Vec<String> {
    let mut errors: Vec<String> = Vec::new();

    if dash["schemaVersion"].as_u64().unwrap_or(0) < 39 {
        errors.push(format!(
            "schemaVersion must be >= 39, is {}",
            dash["schemaVersion"]
        ));
    }
    if dash.get("id").is_some_and(|v| !v.is_null()) {
        errors.push("must not carry a numeric `id` (provisioning assigns it)".into());
    }
    let uid = dash["uid"].as_str().unwrap_or("");
    if uid.is_empty() || uid.len() > 40 {
        errors.push(format!(
            "uid must be set and at most 40 characters: {uid:?}"
        ));
    }
    if dash["editable"].as_bool() != Some(false) {
        errors.push("provisioned dashboards must have editable: false".into());
    }
    if dash["title"].as_str().unwrap_or("").is_empty() {
        errors.push("has no title".into());
    }

    // Variables.
    let vars = variables(dash);
    let list = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match list.iter().find(|v| v["name"] == "datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => {
            errors.push("needs a `datasource` variable of type datasource, query prometheus".into())
        }
    }
    if !vars.contains_key("cluster") {
        errors.push("needs a `cluster` variable".into());
    }
    let label_values = Regex::new(r"^label_values\((.*),\s*(\w+)\)$").unwrap();
    for v in list.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or("?");
        if !is_ds_var(&v["datasource"]) {
            errors.push(format!(
                "variable {name}: datasource must be ${{datasource}}"
            ));
        }
        if v["refresh"].as_u64() != Some(2) {
            errors.push(format!(
                "variable {name}: refresh must be 2 (on time range change)"
            ));
        }
        let q = v["definition"].as_str().unwrap_or("");
        if q != v["query"]["query"].as_str().unwrap_or("") {
            errors.push(format!("variable {name}: definition and query differ"));
        }
        match label_values.captures(q) {
            None => errors.push(format!(
                "variable {name}: query must be label_values(selector, label): {q}"
            )),
            Some(c) => {
                if ["cluster", "namespace", "workload", "node"].contains(&name) && &c[2] != name {
                    errors.push(format!(
                        "variable {name}: must take values of label {name}, takes {}",
                        &c[2]
                    ));
                }
                lint_expr(
                    &c[1],
                    &vars,
                    &format!("variable {name}"),
                    false,
                    &mut errors,
                );
            }
        }
    }

    // Dashboard links.
    let links = dash["links"].as_array().cloned().unwrap_or_default();
    if !links.iter().any(|l| {
        l["type"] == "dashboards"
            && l["includeVars"] == true
            && l["keepTime"] == true
            && l["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("kubesignal")))
    }) {
        errors.push(
            "needs a `dashboards` link by tag kubesignal with includeVars and keepTime".into(),
        );
    }

    // Panels.
    let panels = dash["panels"].as_array().cloned().unwrap_or_default();
    if panels.is_empty() {
        errors.push("has no panels".into());
    }
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("");
        let what = format!("panel {title:?}");
        let ty = p["type"].as_str().unwrap_or("");
        if !PANEL_TYPES.contains(&ty) {
            errors.push(format!("{what}: type {ty:?} is not one of {PANEL_TYPES:?}"));
            continue;
        }
        if title.is_empty() || p["description"].as_str().unwrap_or("").is_empty() {
            errors.push(format!("{what}: needs a title and a description"));
        }
        if !is_ds_var(&p["datasource"]) {
            errors.push(format!(
                "{what}: datasource must be {{type: prometheus, uid: ${{datasource}}}}"
            ));
        }
        if p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            errors.push(format!("{what}: has no unit in fieldConfig.defaults.unit"));
        }
        if let Some(steps) = p["fieldConfig"]["defaults"]["thresholds"]["steps"].as_array()
            && steps.first().is_some_and(|s| !s["value"].is_null())
        {
            errors.push(format!(
                "{what}: the first threshold step must have value null"
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            errors.push(format!("{what}: has no targets"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("");
            if !ref_ids.insert(r.to_string()) {
                errors.push(format!("{what}: duplicate refId {r:?}"));
            }
            if !is_ds_var(&t["datasource"]) {
                errors.push(format!(
                    "{what} target {r}: datasource must be ${{datasource}}"
                ));
            }
            match t["expr"].as_str() {
                Some(e) if !e.trim().is_empty() => {
                    lint_expr(e, &vars, &format!("{what} target {r}"), true, &mut errors)
                }
                _ => errors.push(format!("{what} target {r}: has no expr")),
            }
        }
        // Data links: every /d/<uid> must exist and carry the datasource and the time range.
        let mut urls = Vec::new();
        collect_urls(&p["fieldConfig"], &mut urls);
        for url in urls {
            let Some(rest) = url.strip_prefix("/d/") else {
                errors.push(format!(
                    "{what}: link {url} is not a dashboard link (/d/<uid>)"
                ));
                continue;
            };
            let target_uid = rest.split(['?', '/']).next().unwrap_or("");
            if !uids.contains(target_uid) {
                errors.push(format!(
                    "{what}: link to unknown dashboard uid {target_uid:?}"
                ));
            }
            for needed in ["${__url_time_range}", "${datasource:queryparam}"] {
                if !url.contains(needed) {
                    errors.push(format!("{what}: link {url} must carry {needed}"));
                }
            }
        }
    }
    errors.into_iter().map(|e| format!("{file}: {e}")).collect()
}

fn collect_urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                if k == "url"
                    && let Some(s) = val.as_str()
                {
                    out.push(s.to_string());
                } else {
                    collect_urls(val, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_urls(x, out)),
        _ => {}
    }
}

fn load_dashboards() -> Vec<(String, Value)> {
    let files = files_with_ext("dashboards", &[".json"]);
    assert!(!files.is_empty(), "no dashboards in dashboards/");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

fn all_uids(dashes: &[(String, Value)]) -> BTreeSet<String> {
    dashes
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn every_dashboard_follows_the_conventions_and_the_series_contract() {
    let dashes = load_dashboards();
    let uids = all_uids(&dashes);
    let errors: Vec<String> = dashes
        .iter()
        .flat_map(|(f, d)| lint_dashboard(f, d, &uids))
        .collect();
    assert!(
        errors.is_empty(),
        "dashboard lint failed:\n{}",
        errors.join("\n")
    );
}

#[test]
fn dashboard_uids_are_unique_and_match_their_file_names() {
    let dashes = load_dashboards();
    let mut seen = BTreeSet::new();
    for (file, d) in &dashes {
        let uid = d["uid"].as_str().unwrap();
        assert!(seen.insert(uid.to_string()), "uid {uid} used twice");
        assert_eq!(format!("{uid}.json"), *file, "uid and file name differ");
    }
}

#[test]
fn the_bundle_has_every_dashboard_the_design_asks_for() {
    let uids = all_uids(&load_dashboards());
    for uid in [
        "kubesignal-use-node",
        "kubesignal-use-cluster",
        "kubesignal-use-workload",
        "kubesignal-red-service",
        "kubesignal-slo-overview",
        "kubesignal-slo",
        "kubesignal-self-health",
    ] {
        assert!(uids.contains(uid), "missing dashboard {uid}; have {uids:?}");
    }
}

#[test]
fn node_namespace_and_workload_dashboards_filter_by_their_variables() {
    let dashes: BTreeMap<String, Value> = load_dashboards()
        .into_iter()
        .map(|(_, d)| (d["uid"].as_str().unwrap().to_string(), d))
        .collect();
    for (uid, wanted) in [
        ("kubesignal-use-node", vec!["node"]),
        ("kubesignal-use-workload", vec!["namespace", "workload"]),
        ("kubesignal-red-service", vec!["namespace", "workload"]),
        ("kubesignal-slo", vec!["slo"]),
    ] {
        let d = &dashes[uid];
        let vars = variables(d);
        for w in wanted {
            assert!(vars.contains_key(w), "{uid} lacks variable {w}");
            let uses = d["panels"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["targets"].as_array().unwrap())
                .filter(|t| t["expr"].as_str().unwrap().contains(&format!("${w}")))
                .count();
            assert!(uses > 0, "{uid}: no panel query uses ${w}");
        }
    }
}

#[test]
fn the_cluster_dashboard_stacks_per_node_shares_of_cluster_capacity() {
    let d = load_dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "kubesignal-use-cluster")
        .unwrap()
        .1;
    let cpu = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "CPU utilization by node")
        .expect("CPU utilization by node panel");
    assert_eq!(
        cpu["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"],
        "normal"
    );
    let expr = cpu["targets"][0]["expr"].as_str().unwrap();
    assert!(
        expr.contains("sum by (node)")
            && expr.contains("scalar(sum(kubesignal_node_cpu_capacity_cores"),
        "{expr}"
    );
}

#[test]
fn the_linter_reports_each_kind_of_violation() {
    let uids: BTreeSet<String> = ["a".to_string()].into();
    let bad = json!({
        "uid": "a", "id": 3, "title": "bad", "schemaVersion": 36, "editable": true,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "cluster", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "refresh": 1, "definition": "label_values(up, cluster)", "query": {"query": "label_values(up, cluster)"}},
            {"name": "node", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "multi": true,
             "refresh": 2, "definition": "label_values(up, instance)", "query": {"query": "label_values(up, instance)"}}
        ]},
        "links": [],
        "panels": [
            {"type": "graph", "title": "old"},
            {"type": "timeseries", "title": "t", "description": "d", "datasource": "Prometheus",
             "targets": [
                {"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "expr": "rate(kubesignal_red_requests_total{node=\"$node\"}[5m])"},
                {"refId": "B", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "expr": "kubesignal_node_cpu_capacity_cores + $nosuchvar"},
                {"refId": "D", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "expr": "node_cpu_seconds_total"},
                {"refId": "C", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                 "expr": "sum(rate(kubesignal_red_requests_total[$__rate_interval])"}
             ],
             "fieldConfig": {"defaults": {}, "overrides": [{"properties": [{"id": "links", "value": [{"url": "/d/zzz?var-x=1"}]}]}]}}
        ]
    });
    let errors = lint_dashboard("bad.json", &bad, &uids).join("\n");
    for expected in [
        "schemaVersion must be >= 39",
        "numeric `id`",
        "editable: false",
        "variable cluster: refresh must be 2",
        "variable node: must take values of label node",
        "`dashboards` link",
        "type \"graph\"",
        "datasource must be {type: prometheus",
        "has no unit",
        "range [5m] must be [$__rate_interval]",
        "multi-value variable $node must be matched with =~",
        "series node_cpu_seconds_total is not in ALLOWED_METRICS",
        "counter node_cpu_seconds_total is read without rate()",
        "undefined variable $nosuchvar",
        "does not parse",
        "unknown dashboard uid \"zzz\"",
        "must carry ${__url_time_range}",
    ] {
        assert!(
            errors.contains(expected),
            "expected {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn provisioning_points_grafana_at_the_dashboards_and_a_default_prometheus() {
    let root = repo_root().join("dashboards/provisioning");
    let prov: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root.join("dashboards.yaml")).unwrap())
            .unwrap();
    let provider = &prov["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    let ds: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root.join("datasource.yaml")).unwrap())
            .unwrap();
    let d = &ds["datasources"][0];
    assert_eq!(d["type"].as_str(), Some("prometheus"));
    assert_eq!(d["isDefault"].as_bool(), Some(true));
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
}

#[test]
fn the_allowed_series_list_has_no_duplicates_and_every_dashboard_series_comes_from_it() {
    let mut seen = BTreeSet::new();
    for (name, _) in bundle::ALLOWED_METRICS {
        assert!(seen.insert(*name), "{name} listed twice");
    }
    // The dashboards read most of the contract: a list far larger than what they use would hide
    // renamed series that no dashboard shows any more.
    let mut used = BTreeSet::new();
    for (_, d) in load_dashboards() {
        let vars = variables(&d);
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let e = substitute(t["expr"].as_str().unwrap(), &vars);
                used.extend(metric_names(&promql_parser::parser::parse(&e).unwrap()));
            }
        }
    }
    assert!(
        used.len() * 2 > seen.len(),
        "dashboards use {} of {} allowed series",
        used.len(),
        seen.len()
    );
}

#[test]
fn the_committed_dashboards_are_what_the_generator_writes() {
    let python = bundle::require_program("python3", &[], "install python3");
    let out = tempfile::tempdir().unwrap();
    let result = bundle::run(
        std::process::Command::new(python)
            .arg(repo_root().join("dashboards/generate.py"))
            .arg("--out")
            .arg(out.path()),
    );
    assert!(result.status.success(), "{}", bundle::describe(&result));
    let generated = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(
        generated,
        files_with_ext("dashboards", &[".json"]).len(),
        "generator and dashboards/ disagree on the set of dashboards"
    );
    for f in files_with_ext("dashboards", &[".json"]) {
        let fresh = out.path().join(f.file_name().unwrap());
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap_or_default(),
            std::fs::read_to_string(&f).unwrap(),
            "{} was edited by hand or generate.py changed: run python3 dashboards/generate.py",
            f.display()
        );
    }
}
