//! `kubesignal evaluator --datasource embedded`: the evaluator scrapes its targets itself (the
//! real agent among them), answers Prometheus's query API, keeps its store across restarts, and
//! fires and resolves the same alerts as the same rules evaluated through a real Prometheus.

#[path = "common/embedded.rs"]
mod embedded;
#[path = "common/evaluator.rs"]
mod evaluator;

use std::time::Duration;

use embedded::{
    BadTargets, alerts, api_get, api_post_form, metric_value, names_in_state, query, single_value,
    start_agent, start_embedded, write_rules,
};
use evaluator::{Prometheus, Target, free_port, http_get, start_evaluator, wait_for};
use serde_json::json;

fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024.0
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_agents_series_are_answered_in_prometheus_api_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, agent_addr) = start_agent(dir.path());
    let rules = write_rules(
        dir.path(),
        "- record: job:up:sum\n  expr: sum by (job) (up)",
    );
    let (_ev, url) = start_embedded(
        dir.path(),
        "embedded",
        &rules,
        &dir.path().join("state"),
        &[format!("kubesignal-agent=http://{agent_addr}/metrics")],
        &[],
    );

    let capacity = wait_for(
        "the agent's memory capacity",
        Duration::from_secs(20),
        || single_value(&url, "kubesignal_node_memory_capacity_bytes"),
    );
    assert_eq!(capacity, mem_total_bytes(), "MemTotal in bytes");
    let series = query(&url, "kubesignal_node_memory_capacity_bytes");
    assert_eq!(
        series[0]["metric"],
        json!({
            "__name__": "kubesignal_node_memory_capacity_bytes",
            "node": "laptop",
            "job": "kubesignal-agent",
            "instance": agent_addr,
        })
    );
    let value = &series[0]["value"];
    assert!(value[0].is_number() && value[1].is_string(), "{value}");
    assert!((value[0].as_f64().unwrap() - now_secs()).abs() < 5.0);
    assert_eq!(
        single_value(&url, "up{job=\"kubesignal-agent\"}"),
        Some(1.0)
    );
    let scraped = single_value(&url, "scrape_samples_scraped").unwrap();
    assert!(scraped > 10.0, "{scraped}");
    // A recording rule's result is written back and queryable like a scraped series.
    wait_for("the recorded series", Duration::from_secs(10), || {
        single_value(&url, "job:up:sum{job=\"kubesignal-agent\"}").filter(|v| *v == 1.0)
    });
    // Counters grow between scrapes, so rate() over them is positive.
    wait_for("a positive CPU rate", Duration::from_secs(15), || {
        single_value(&url, "rate(kubesignal_node_cpu_usage_seconds_total[5s])").filter(|v| *v > 0.0)
    });

    wait_for("three seconds of scrapes", Duration::from_secs(15), || {
        single_value(&url, "count_over_time(up[3s])").filter(|n| *n >= 6.0)
    });
    let end = now_secs();
    let (status, body) = api_get(
        &url,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", &format!("{:.3}", end - 2.0)),
            ("end", &format!("{end:.3}")),
            ("step", "1s"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let values = body["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{body}");
    assert!(values.iter().all(|p| p[1] == "1"), "{body}");

    let (status, body) = api_post_form(
        &url,
        "/api/v1/query",
        &[("query", "count(up)"), ("time", &format!("{end:.3}"))],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "1", "{body}");
    let (_, body) = api_get(&url, "/api/v1/query", &[("query", "1 + 1")]);
    assert_eq!(body["data"]["resultType"], "scalar");
    assert_eq!(body["data"]["result"][1], "2");

    let (status, body) = api_get(&url, "/api/v1/series", &[("match[]", "up")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!([{"__name__": "up", "job": "kubesignal-agent", "instance": agent_addr}])
    );
    let (_, body) = api_get(&url, "/api/v1/labels", &[]);
    let names = body["data"].as_array().unwrap();
    for want in ["__name__", "instance", "job", "node"] {
        assert!(names.contains(&json!(want)), "{want} in {body}");
    }
    let (_, body) = api_get(&url, "/api/v1/label/job/values", &[]);
    assert_eq!(body["data"], json!(["kubesignal-agent"]));
    let (status, body) = api_get(&url, "/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    assert!(body["data"]["version"].is_string());

    // Errors as Prometheus reports them.
    let (status, body) = api_get(&url, "/api/v1/query", &[("query", "sum(")]);
    assert_eq!((status, &body["errorType"]), (400, &json!("bad_data")));
    assert_eq!(body["status"], "error");
    let (status, body) = api_get(&url, "/api/v1/query", &[]);
    assert_eq!((status, &body["errorType"]), (400, &json!("bad_data")));
    let (status, body) = api_get(
        &url,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "10"),
            ("end", "20"),
            ("step", "0"),
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("step"), "{body}");
    let (status, _) = api_get(&url, "/api/v1/series", &[]);
    assert_eq!(status, 400);
    let (status, body) = api_get(
        &url,
        "/api/v1/query",
        &[(
            "query",
            r#"label_replace({__name__=~"up|scrape_samples_scraped"}, "__name__", "same", "", "")"#,
        )],
    );
    assert_eq!(
        (status, &body["errorType"]),
        (422, &json!("execution")),
        "{body}"
    );
}

#[test]
fn a_restart_keeps_the_stored_samples() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = Target::start(7.0);
    let rules = write_rules(dir.path(), "- alert: Never\n  expr: test_value < 0");
    let targets = [format!("app=http://{}/metrics", target.url)];
    let (mut ev, url) = start_embedded(dir.path(), "first", &rules, &state, &targets, &[]);
    wait_for("three samples of 7", Duration::from_secs(20), || {
        single_value(&url, "count_over_time(test_value[1m])").filter(|n| *n >= 3.0)
    });
    let before = now_secs();
    let count_before = format!("count_over_time(test_value[1m] @ {before:.3})");
    let seen_before = single_value(&url, &count_before).unwrap();
    assert!(ev.terminate(Duration::from_secs(15)), "clean shutdown");
    assert!(state.join("embedded-store.snapshot").is_file());

    target.set(9.0);
    let (_ev, url) = start_embedded(dir.path(), "second", &rules, &state, &targets, &[]);
    let (status, body) = api_get(
        &url,
        "/api/v1/query",
        &[("query", "test_value"), ("time", &format!("{before:.3}"))],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "7", "{body}");
    let restored = single_value(&url, &count_before);
    assert!(
        restored == Some(seen_before),
        "{restored:?} samples restored, {seen_before} before"
    );
    wait_for("the new value", Duration::from_secs(10), || {
        single_value(&url, "test_value").filter(|v| *v == 9.0)
    });
}

#[test]
fn a_damaged_snapshot_is_logged_and_the_evaluator_starts_empty_with_targets_from_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("embedded-store.snapshot"),
        b"KSEMBSN1 not really",
    )
    .unwrap();
    let target = Target::start(3.0);
    let rules = write_rules(dir.path(), "- alert: Never\n  expr: test_value < 0");
    // The target comes from the config file this time, like any other flag can.
    let config = dir.path().join("evaluator.yaml");
    std::fs::write(
        &config,
        format!("scrape:\n  - app=http://{}/metrics\n", target.url),
    )
    .unwrap();
    let (ev, url) = start_embedded(
        dir.path(),
        "damaged",
        &rules,
        &state,
        &[],
        &[&format!("--config={}", config.display())],
    );
    wait_for("scraping to start", Duration::from_secs(10), || {
        single_value(&url, "test_value").filter(|v| *v == 3.0)
    });
    let log = ev.log_text();
    assert!(
        log.contains("ignoring the embedded store snapshot") && log.contains("damaged"),
        "{log}"
    );
}

#[test]
fn failing_targets_are_counted_and_down_while_a_healthy_one_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let good = Target::start(1.0);
    let bad = BadTargets::start();
    let rules = write_rules(dir.path(), "- alert: Never\n  expr: test_value < 0");
    let dead = format!("http://127.0.0.1:{}/metrics", free_port());
    let targets = [
        format!("good=http://{}/metrics", good.url),
        format!("dead={dead}"),
        format!("garbage=http://{}/garbage", bad.addr),
        format!("hang=http://{}/hang", bad.addr),
        format!("huge=http://{}/huge", bad.addr),
    ];
    let (_ev, url) = start_embedded(
        dir.path(),
        "faults",
        &rules,
        &dir.path().join("state"),
        &targets,
        &["--scrape-timeout=300ms", "--scrape-max-body-bytes=10000"],
    );
    let reasons = [
        (dead.clone(), "connect"),
        (format!("http://{}/garbage", bad.addr), "parse"),
        (format!("http://{}/hang", bad.addr), "timeout"),
        (format!("http://{}/huge", bad.addr), "too_large"),
    ];
    let metrics = wait_for(
        "every failure counted twice",
        Duration::from_secs(20),
        || {
            let (_, text) = http_get(&format!("{url}/metrics")).ok()?;
            reasons
                .iter()
                .all(|(target, reason)| {
                    metric_value(
                        &text,
                        "kubesignal_evaluator_scrape_errors_total",
                        &[("target", target), ("reason", reason)],
                    )
                    .is_some_and(|n| n >= 2.0)
                })
                .then_some(text)
        },
    );
    assert_eq!(
        metric_value(
            &metrics,
            "kubesignal_evaluator_scrape_errors_total",
            &[("target", &format!("http://{}/metrics", good.url))]
        ),
        None,
        "the healthy target has no errors"
    );
    for job in ["dead", "garbage", "hang", "huge"] {
        assert_eq!(
            single_value(&url, &format!("up{{job=\"{job}\"}}")),
            Some(0.0),
            "{job}"
        );
        assert_eq!(
            single_value(&url, &format!("scrape_samples_scraped{{job=\"{job}\"}}")),
            Some(0.0)
        );
    }
    assert_eq!(single_value(&url, "up{job=\"good\"}"), Some(1.0));
    assert_eq!(single_value(&url, "test_value"), Some(1.0));
    // A hanging target is cut off at the scrape timeout, not left to block.
    let hang = single_value(&url, "scrape_duration_seconds{job=\"hang\"}").unwrap();
    assert!((0.25..2.0).contains(&hang), "{hang}");
    assert!(query(&url, "huge_series").is_empty());
}

/// The proof of the embedded datasource: the same rules, fed by the same targets (the real
/// agent and a target whose value the test flips), give the same alerts whether evaluated in
/// process or through a real Prometheus.
#[test]
fn the_embedded_evaluator_fires_and_resolves_the_same_alerts_as_through_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, agent_addr) = start_agent(dir.path());
    let target = Target::start(0.0);
    let rules = write_rules(
        dir.path(),
        r#"- alert: ValueHigh
  expr: test_value > 10
  labels:
    severity: page
- alert: ValueHighFor
  expr: max_over_time(test_value[2s]) > 10
  for: 3s
- alert: AgentScraped
  expr: sum by (job, node) (kubesignal_node_memory_capacity_bytes) > 0
- record: node:cpu:rate5s
  expr: rate(kubesignal_node_cpu_usage_seconds_total[5s])
- alert: AgentCpuMeasured
  expr: node:cpu:rate5s >= 0
- alert: TargetsUp
  expr: count by (job) (up == 1) > 0"#,
    );
    let prom_config = [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: app",
        "    static_configs:",
        &format!("      - targets: ['{}']", target.url),
        "  - job_name: agent",
        "    static_configs:",
        &format!("      - targets: ['{agent_addr}']"),
    ]
    .join("\n");
    // Recorded series reach Prometheus by remote write, as they reach the embedded store inline.
    let prom = Prometheus::start_with(
        dir.path(),
        &dir.path().join("prom-data"),
        &prom_config,
        None,
        &["--web.enable-remote-write-receiver"],
    );
    let (_remote, remote_url) = start_evaluator(
        dir.path(),
        "through-prometheus",
        &[
            format!("--rules={}", rules.display()),
            format!("--datasource-url={}", prom.url),
            format!("--remote-write-url={}/api/v1/write", prom.url),
            "--evaluation-interval=1s".into(),
        ],
    );
    let (_embedded, embedded_url) = start_embedded(
        dir.path(),
        "embedded",
        &rules,
        &dir.path().join("state"),
        &[
            format!("app=http://{}/metrics", target.url),
            format!("agent=http://{agent_addr}/metrics"),
        ],
        &["--scrape-interval=1s"],
    );

    let steady = ["AgentCpuMeasured", "AgentScraped", "TargetsUp", "TargetsUp"];
    let same_alerts = |what: &str, firing: &[&str]| {
        let want: Vec<String> = firing.iter().map(|s| s.to_string()).collect();
        wait_for(what, Duration::from_secs(40), || {
            let a = alerts(&embedded_url);
            let b = alerts(&remote_url);
            let done = a == b
                && names_in_state(&a, "firing") == want
                && names_in_state(&a, "pending").is_empty();
            done.then_some(a)
        })
    };

    let before = same_alerts("the steady alerts firing in both", &steady);
    let agent_alert = before
        .iter()
        .find(|(_, l)| l["alertname"] == "AgentScraped")
        .unwrap();
    assert_eq!(
        agent_alert.1,
        json!({"alertname": "AgentScraped", "job": "agent", "node": "laptop"})
    );

    target.set(20.0);
    let mut with_value = steady.to_vec();
    with_value.extend(["ValueHigh", "ValueHighFor"]);
    with_value.sort();
    let firing = same_alerts("ValueHigh and ValueHighFor firing in both", &with_value);
    let high = firing
        .iter()
        .find(|(_, l)| l["alertname"] == "ValueHigh")
        .unwrap();
    assert_eq!(high.1["instance"], json!(target.url));
    assert_eq!(high.1["job"], "app");
    assert_eq!(high.1["severity"], "page");

    target.set(0.0);
    same_alerts("both resolved in both", &steady);
}
