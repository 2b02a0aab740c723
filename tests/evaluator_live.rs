//! Live tests: a real Prometheus scraping a target whose value the test changes, the
//! evaluator running as a process, and a real Alertmanager checked through its v2 API. Also
//! the fault cases: datasource outage, evaluator restarts while pending and while firing, a bad
//! rule file on reload. Intervals are 1s so each test takes seconds.

#[path = "common/evaluator.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

fn rules(hold: &str) -> String {
    format!(
        r#"groups:
  - name: live
    interval: 1s
    rules:
      - alert: ValueHigh
        expr: test_value > 5
        for: {hold}
        labels:
          severity: page
        annotations:
          summary: "value is {{{{ $value }}}}"
"#
    )
}

/// Prometheus scraping `target` every second.
fn prometheus_scraping(dir: &Path, target: &Target, port: Option<u16>) -> Prometheus {
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{}']\n",
        target.url
    );
    Prometheus::start(dir, &data, &config, port)
}

fn evaluator_args(dir: &Path, prom: &Prometheus, am: &Alertmanager, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--rules={}", dir.join("rules.yaml").display()),
        format!("--datasource-url={}", prom.url),
        format!("--alertmanager-url={}", am.url),
        format!("--state-dir={}", dir.join("state").display()),
        "--evaluation-interval=1s".into(),
        "--datasource-timeout=500ms".into(),
        "--external-url=http://evaluator.example".into(),
        "--external-label=cluster=test".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn time_of(v: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[field].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn am_active(am: &Alertmanager) -> Option<Value> {
    am.alerts_named("ValueHigh")
        .into_iter()
        .find(|a| a["status"]["state"] == "active")
}

fn evaluator_alerts(url: &str) -> Vec<Value> {
    let (_, body) = http_get(&format!("{url}/api/v1/alerts")).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

fn sent_total(url: &str) -> f64 {
    let (_, body) = http_get(&format!("{url}/metrics")).unwrap();
    body.lines()
        .filter(|l| l.starts_with("kubesignal_evaluator_alerts_sent_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn an_alert_fires_is_resent_with_a_moving_ends_at_and_resolves_at_the_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), rules("2s")).unwrap();
    let target = Target::start(0.0);
    let prom = prometheus_scraping(dir, &target, None);
    let am = Alertmanager::start(dir);
    let (ev, url) = start_evaluator(
        dir,
        "ev",
        &evaluator_args(dir, &prom, &am, &["--resend-delay=2s"]),
    );

    target.set(10.0);
    let first = wait_for("the alert at Alertmanager", Duration::from_secs(30), || {
        am_active(&am)
    });
    assert_eq!(first["labels"]["severity"], "page");
    assert_eq!(first["labels"]["cluster"], "test", "external label added");
    assert_eq!(first["annotations"]["summary"], "value is 10");
    assert!(
        first["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://evaluator.example/graph?g0.expr=test_value"),
        "{first}"
    );
    let alerts = evaluator_alerts(&url);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "firing");
    let starts = time_of(&first, "startsAt");
    let active_at = time_of(&alerts[0], "activeAt");
    assert!(
        starts - active_at >= chrono::Duration::milliseconds(1999),
        "fired before `for`: {starts} vs {active_at}"
    );
    let (_, metrics) = http_get(&format!("{url}/metrics")).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("ALERTS{")
            && l.contains("alertname=\"ValueHigh\"")
            && l.contains("alertstate=\"firing\"")),
        "{metrics}"
    );

    // Re-sent on schedule: endsAt moves forward, startsAt stays.
    let ends1 = time_of(&first, "endsAt");
    let resent = wait_for(
        "a re-send extending endsAt",
        Duration::from_secs(15),
        || am_active(&am).filter(|a| time_of(a, "endsAt") > ends1),
    );
    assert_eq!(time_of(&resent, "startsAt"), starts);

    // The resolution is sent at once: the alert leaves Alertmanager well before its endsAt.
    let ends = time_of(&resent, "endsAt");
    target.set(0.0);
    wait_for(
        "the resolution at Alertmanager",
        Duration::from_secs(15),
        || am_active(&am).is_none().then_some(()),
    );
    assert!(
        Utc::now() < ends - chrono::Duration::seconds(1),
        "alert only went away by expiring (endsAt {ends})"
    );
    drop(ev);
}

#[test]
fn a_datasource_outage_neither_resolves_nor_stops_firing_alerts_and_changes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), rules("0s")).unwrap();
    let target = Target::start(10.0);
    let prom = prometheus_scraping(dir, &target, None);
    let port = prom.port;
    let am = Alertmanager::start(dir);
    let (ev, url) = start_evaluator(
        dir,
        "ev",
        &evaluator_args(
            dir,
            &prom,
            &am,
            &["--resend-delay=1s", "--outage-tolerance=1h"],
        ),
    );
    let before = wait_for("the alert at Alertmanager", Duration::from_secs(30), || {
        am_active(&am)
    });
    let starts = time_of(&before, "startsAt");
    let active_at = time_of(&evaluator_alerts(&url)[0], "activeAt");

    let mut prom = prom;
    prom.proc.kill();
    let outage_start = Instant::now();
    // Longer than 4 × max(interval, resend delay) = 4s: without the hold Alertmanager would
    // have expired the alert by now.
    std::thread::sleep(Duration::from_secs(8));
    let during = am_active(&am).expect("alert expired at Alertmanager during the outage");
    assert!(time_of(&during, "endsAt") > time_of(&before, "endsAt"));
    assert_eq!(time_of(&during, "startsAt"), starts);
    let alerts = evaluator_alerts(&url);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(time_of(&alerts[0], "activeAt"), active_at);
    let (_, body) = http_get(&format!("{url}/api/v1/rules")).unwrap();
    let rules: Value = serde_json::from_str(&body).unwrap();
    let rule = &rules["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["health"], "err", "{rule}");
    assert!(
        rule["lastError"].as_str().unwrap().contains("127.0.0.1"),
        "{rule}"
    );
    assert!(outage_start.elapsed() >= Duration::from_secs(8));

    let prom2 = Prometheus::start(
        dir,
        &dir.join("prom-data"),
        &std::fs::read_to_string(&prom.config).unwrap(),
        Some(port),
    );
    wait_for(
        "the rule to be healthy again",
        Duration::from_secs(30),
        || {
            let (_, body) = http_get(&format!("{url}/api/v1/rules")).ok()?;
            body.contains("\"health\":\"ok\"").then_some(())
        },
    );
    let after = am_active(&am).expect("alert gone after the outage");
    assert_eq!(
        time_of(&after, "startsAt"),
        starts,
        "the alert was re-created, i.e. resolved in between"
    );
    assert_eq!(time_of(&evaluator_alerts(&url)[0], "activeAt"), active_at);
    drop((ev, prom2));
}

#[test]
fn a_restart_while_firing_neither_pages_again_early_nor_forgets_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), rules("0s")).unwrap();
    let target = Target::start(10.0);
    let prom = prometheus_scraping(dir, &target, None);
    let am = Alertmanager::start(dir);
    let args = evaluator_args(dir, &prom, &am, &["--resend-delay=1m"]);
    let (mut ev, url) = start_evaluator(dir, "ev1", &args);
    let first = wait_for("the alert at Alertmanager", Duration::from_secs(30), || {
        am_active(&am)
    });
    let active_at = time_of(&evaluator_alerts(&url)[0], "activeAt");
    ev.kill();

    let (ev2, url2) = start_evaluator(dir, "ev2", &args);
    wait_for(
        "an evaluation after the restart",
        Duration::from_secs(20),
        || {
            let (_, body) = http_get(&format!("{url2}/api/v1/rules")).ok()?;
            body.contains("\"health\":\"ok\"").then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let alerts = evaluator_alerts(&url2);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(
        time_of(&alerts[0], "activeAt"),
        active_at,
        "for timer reset"
    );
    assert_eq!(
        sent_total(&url2),
        0.0,
        "re-sent within the resend delay after a restart"
    );
    let still = am_active(&am).unwrap();
    assert_eq!(time_of(&still, "startsAt"), time_of(&first, "startsAt"));
    drop(ev2);
}

#[test]
fn a_restart_while_pending_keeps_the_for_progress_without_counting_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), rules("10s")).unwrap();
    let target = Target::start(10.0);
    let prom = prometheus_scraping(dir, &target, None);
    let am = Alertmanager::start(dir);
    let args = evaluator_args(
        dir,
        &prom,
        &am,
        &["--for-grace-period=1s", "--resend-delay=1m"],
    );
    let (mut ev, url) = start_evaluator(dir, "ev1", &args);
    let pending = wait_for("a pending alert", Duration::from_secs(30), || {
        evaluator_alerts(&url)
            .into_iter()
            .find(|a| a["state"] == "pending")
    });
    let active_at = time_of(&pending, "activeAt");
    // Let the alert spend ~4s of its 10s pending, then stop for ~3s.
    while Utc::now() < active_at + chrono::Duration::seconds(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ev.kill();
    let down_at = Utc::now();
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = Utc::now();
    let (ev2, _url2) = start_evaluator(dir, "ev2", &args);
    let fired = wait_for("the alert at Alertmanager", Duration::from_secs(40), || {
        am_active(&am)
    });
    let fired_at = time_of(&fired, "startsAt");
    let downtime = restarted_at - down_at;
    assert!(
        fired_at
            >= active_at + chrono::Duration::seconds(10) + downtime - chrono::Duration::seconds(1),
        "fired early: active {active_at}, fired {fired_at}, down {downtime}"
    );
    assert!(
        fired_at < restarted_at + chrono::Duration::seconds(9),
        "for timer was reset: restarted {restarted_at}, fired {fired_at}"
    );
    drop(ev2);
}

#[test]
fn a_bad_rule_file_on_reload_is_rejected_and_the_old_rules_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("rules.yaml"), rules("0s")).unwrap();
    let target = Target::start(10.0);
    let prom = prometheus_scraping(dir, &target, None);
    let am = Alertmanager::start(dir);
    let (ev, url) = start_evaluator(dir, "ev", &evaluator_args(dir, &prom, &am, &[]));
    wait_for("the alert firing", Duration::from_secs(30), || {
        evaluator_alerts(&url)
            .into_iter()
            .find(|a| a["state"] == "firing")
    });

    std::fs::write(
        dir.join("rules.yaml"),
        "groups:\n  - name: live\n    rules:\n      - alert: Broken\n        record: both\n        expr: up\n",
    )
    .unwrap();
    let (status, body) = http_post(&format!("{url}/-/reload")).unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("rules.yaml") && body.contains("only one of"),
        "{body}"
    );
    let last_eval = |url: &str| -> String {
        let (_, body) = http_get(&format!("{url}/api/v1/rules")).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["data"]["groups"][0]["rules"][0]["name"], "ValueHigh",
            "{v}"
        );
        v["data"]["groups"][0]["lastEvaluation"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t1 = last_eval(&url);
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(last_eval(&url), t1, "the old rules stopped being evaluated");
    assert_eq!(evaluator_alerts(&url)[0]["state"], "firing");
    let (_, page) = http_get(&format!("{url}/")).unwrap();
    assert!(page.contains("Last reload failed"), "{page}");
    let (_, metrics) = http_get(&format!("{url}/metrics")).unwrap();
    assert!(
        metrics.contains("kubesignal_evaluator_config_last_reload_successful 0"),
        "{metrics}"
    );

    // A good file through SIGHUP replaces the rules and keeps the state of the same rule.
    std::fs::write(
        dir.join("rules.yaml"),
        rules("0s") + "      - alert: Extra\n        expr: vector(1)\n",
    )
    .unwrap();
    ev.signal("HUP");
    wait_for("the new rule set", Duration::from_secs(10), || {
        let (_, body) = http_get(&format!("{url}/api/v1/rules")).ok()?;
        body.contains("\"Extra\"").then_some(())
    });
    let alerts = evaluator_alerts(&url);
    assert!(
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "ValueHigh" && a["state"] == "firing"),
        "{alerts:?}"
    );
    let mut ev = ev;
    assert!(
        ev.terminate(Duration::from_secs(15)),
        "the evaluator did not stop on SIGTERM:\n{}",
        ev.log_text()
    );
    assert!(ev.log_text().contains("shutting down"));
}

#[test]
fn recording_results_and_alerts_are_remote_written_and_marked_stale_when_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("rules.yaml"),
        rules("0s")
            + "      - record: job:test_value:max\n        expr: max by (job) (test_value)\n"
            + "      - alert: RecordedHigh\n        expr: job:test_value:max > 5\n",
    )
    .unwrap();
    let target = Target::start(10.0);
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{}']\n",
        target.url
    );
    let prom = Prometheus::start_with(
        dir,
        &data,
        &config,
        None,
        &["--web.enable-remote-write-receiver"],
    );
    let am = Alertmanager::start(dir);
    let write_url = format!("--remote-write-url={}/api/v1/write", prom.url);
    let (ev, url) = start_evaluator(
        dir,
        "ev",
        &evaluator_args(dir, &prom, &am, &[write_url.as_str()]),
    );

    let firing = wait_for("ALERTS in Prometheus", Duration::from_secs(30), || {
        prom_query(
            &prom.url,
            r#"ALERTS{alertname="ValueHigh",alertstate="firing"}"#,
        )
        .into_iter()
        .next()
    });
    assert_eq!(firing["metric"]["severity"], "page");
    let active_at = time_of(&evaluator_alerts(&url)[0], "activeAt").timestamp();
    let for_state = prom_query(&prom.url, r#"ALERTS_FOR_STATE{alertname="ValueHigh"}"#);
    assert_eq!(
        for_state[0]["value"][1],
        active_at.to_string(),
        "{for_state:?}"
    );
    let recorded = wait_for("the recorded series", Duration::from_secs(10), || {
        prom_query(&prom.url, r#"job:test_value:max{job="target"}"#)
            .into_iter()
            .next()
    });
    assert_eq!(recorded["value"][1], "10");
    // A rule reading the recorded series sees it (written back inline, as each rule runs).
    wait_for("the chained alert", Duration::from_secs(10), || {
        evaluator_alerts(&url)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "RecordedHigh" && a["state"] == "firing")
    });

    // Resolution: ALERTS ends with a stale marker, so it vanishes at once rather than after
    // the 5m lookback.
    target.set(0.0);
    wait_for("ALERTS to go stale", Duration::from_secs(15), || {
        prom_query(&prom.url, r#"ALERTS{alertname="ValueHigh"}"#)
            .is_empty()
            .then_some(())
    });
    drop(ev);
}
