//! Slack, generic webhook (Alertmanager v4) and Alertmanager v2 payloads, received by a real local
//! HTTP server and checked field by field.

#[path = "common/notify.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::*;
use kubesignal::notify::NoQuerier;
use serde_json::json;

const SLACK_PATH: &str = "/services/T0001/B0001/xoxb-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_webhook_and_alertmanager_receive_complete_payloads() {
    let sink = HttpSink::start(vec![200]).await;
    let dir = tempfile::tempdir().unwrap();
    let slack_file = dir.path().join("slack-url");
    std::fs::write(&slack_file, format!("{}{SLACK_PATH}\n", sink.url)).unwrap();
    let routing = write_routing(
        dir.path(),
        &format!(
            "\
owners:
  payments:
    slack_webhook_url_file: {}
    webhook_url: '{u}/hook'
    alertmanager_url: '{u}/am'
    group_by: [alertname, namespace]
    group_wait: 200ms
    group_interval: 400ms
triage: {{webhook_url: '{u}/triage'}}
grafana_url: https://grafana.example.com/
",
            slack_file.display(),
            u = sink.url
        ),
    );
    let (n, registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        None,
        Arc::new(NoQuerier),
    )
    .await;
    let starts_at = Utc::now() - chrono::Duration::minutes(7);
    let mk = |pod: &str, desc: &str| {
        let mut a = alert(
            &[
                ("alertname", "HighErrorRate"),
                ("namespace", "shop"),
                ("workload", "checkout"),
                ("pod", pod),
                ("owner", "payments"),
                ("severity", "page"),
            ],
            starts_at,
        );
        a.annotations = [
            ("summary", "checkout answers 5xx"),
            ("description", desc),
            (
                "runbook_url",
                "https://runbooks.example.com/high-error-rate",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        a.value = Some(0.0731);
        a
    };
    let alerts = vec![
        mk("checkout-1", "7.3% errors"),
        mk("checkout-2", "6.1% errors"),
    ];
    n.submit(alerts.clone()).await;
    assert!(wait_until(Duration::from_secs(15), || sink.requests().len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.requests().len(), 3, "{:#?}", sink.requests());

    // Generic webhook: the Alertmanager v4 payload.
    let hook = sink.to_path("/hook");
    assert_eq!(hook.len(), 1);
    let h = &hook[0];
    assert_eq!(h.headers["content-type"], "application/json");
    assert_eq!(h.headers["idempotency-key"].to_str().unwrap().len(), 16);
    let b = &h.body;
    assert_eq!(b["version"], "4");
    assert_eq!(
        b["groupKey"],
        r#"{route="payments"}:{alertname="HighErrorRate",namespace="shop"}"#
    );
    assert_eq!(b["truncatedAlerts"], 0);
    assert_eq!(b["status"], "firing");
    assert_eq!(b["receiver"], "payments");
    assert_eq!(
        b["groupLabels"],
        json!({"alertname": "HighErrorRate", "namespace": "shop"})
    );
    assert_eq!(
        b["commonLabels"],
        json!({"alertname": "HighErrorRate", "namespace": "shop", "owner": "payments",
               "severity": "page", "workload": "checkout"})
    );
    assert_eq!(
        b["commonAnnotations"],
        json!({"summary": "checkout answers 5xx", "runbook_url": "https://runbooks.example.com/high-error-rate"})
    );
    assert_eq!(b["externalURL"], "http://kubesignal.example.com:9095");
    let hook_alerts = b["alerts"].as_array().unwrap();
    assert_eq!(hook_alerts.len(), 2);
    for (got, sent) in hook_alerts.iter().zip(&alerts) {
        assert_eq!(got["status"], "firing");
        assert_eq!(got["labels"], serde_json::to_value(&sent.labels).unwrap());
        assert_eq!(
            got["annotations"],
            serde_json::to_value(&sent.annotations).unwrap()
        );
        assert_eq!(
            got["startsAt"],
            starts_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        assert_eq!(got["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(got["generatorURL"], sent.generator_url);
        assert_eq!(got["fingerprint"], format!("{:016x}", sent.fingerprint()));
    }

    // Alertmanager v2: the alerts as a postable array.
    let am = sink.to_path("/am/api/v2/alerts");
    assert_eq!(am.len(), 1);
    let am_alerts = am[0].body.as_array().unwrap();
    assert_eq!(am_alerts.len(), 2);
    assert_eq!(am_alerts[0]["labels"]["pod"], "checkout-1");
    assert_eq!(am_alerts[1]["labels"]["pod"], "checkout-2");
    assert_eq!(
        am_alerts[0]["startsAt"],
        starts_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    assert_eq!(am_alerts[0]["generatorURL"], alerts[0].generator_url);
    assert!(am_alerts[0].get("endsAt").is_none());

    // Slack: Block Kit.
    let slack = sink.to_path(SLACK_PATH);
    assert_eq!(slack.len(), 1);
    let s = &slack[0].body;
    assert_eq!(s["text"], "[FIRING:2] HighErrorRate · payments · shop");
    assert!(s.get("channel").is_none());
    let blocks = s["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["header", "section", "section", "actions", "context"]
    );
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":rotating_light: [FIRING:2] HighErrorRate · payments · shop"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(fields[0], "*Service*\ncheckout");
    assert_eq!(fields[1], "*Namespace*\nshop");
    assert_eq!(fields[2], "*Owner*\npayments");
    assert_eq!(fields[3], "*Severity*\npage");
    assert!(fields[4].starts_with(&format!(
        "*Firing since*\n{} (7m",
        starts_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )));
    assert_eq!(fields[5], "*Value*\n0.0731");
    let details = blocks[2]["text"]["text"].as_str().unwrap();
    assert_eq!(blocks[2]["text"]["type"], "mrkdwn");
    assert!(
        details.contains("*HighErrorRate* :red_circle: firing for 7m"),
        "{details}"
    );
    assert!(details.contains("`pod=checkout-1`"), "{details}");
    assert!(details.contains("`pod=checkout-2`"), "{details}");
    let buttons = blocks[3]["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["text"]["text"], "Runbook");
    assert_eq!(
        buttons[0]["url"],
        "https://runbooks.example.com/high-error-rate"
    );
    assert_eq!(buttons[1]["text"]["text"], "Dashboard");
    let dash = buttons[1]["url"].as_str().unwrap();
    assert!(
        dash.starts_with("https://grafana.example.com/d/kubesignal-use-workload?orgId=1&from=")
            && dash
                .ends_with("&to=now&var-namespace=shop&var-workload=checkout&var-pod=checkout-1"),
        "{dash}"
    );
    assert_eq!(buttons[2]["text"]["text"], "Source");
    // The secret URL never shows up in metrics.
    assert!(!metrics_text(&registry).contains("xoxb-secret"));

    // Both resolve: the webhook gets the resolved notice with the end time.
    let ended = Utc::now() - chrono::Duration::seconds(5);
    let resolved: Vec<_> = alerts
        .into_iter()
        .map(|mut a| {
            a.ends_at = Some(ended);
            a
        })
        .collect();
    n.submit(resolved).await;
    assert!(wait_until(Duration::from_secs(10), || sink.to_path("/hook").len() == 2).await);
    let r = &sink.to_path("/hook")[1].body;
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["alerts"][0]["status"], "resolved");
    assert_eq!(
        r["alerts"][0]["endsAt"],
        ended.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    assert_ne!(
        sink.to_path("/hook")[0].headers["idempotency-key"],
        sink.to_path("/hook")[1].headers["idempotency-key"]
    );
    n.shutdown().await;
}
