//! The evaluator with owner routing: a firing alert reaches its owner's mailbox on a real SMTP
//! server, and nobody else's.

#[path = "common/evaluator.rs"]
mod evaluator;
#[path = "common/notify.rs"]
mod notify;

use std::time::Duration;

use evaluator::{Prometheus, Target, http_get, start_evaluator, wait_for};

const RULES: &str = r#"groups:
  - name: owned
    interval: 1s
    rules:
      - alert: CheckoutErrors
        expr: test_value > 5
        labels:
          severity: page
          owner: team-a
        annotations:
          summary: "checkout error rate is {{ $value }}"
          runbook_url: https://runbooks.example.org/checkout
      - alert: SearchErrors
        expr: test_value > 100
        labels:
          severity: page
          owner: team-b
        annotations:
          summary: "search error rate is {{ $value }}"
"#;

fn recipients(message: &[u8]) -> String {
    let parsed = mailparse::parse_mail(message).unwrap();
    parsed
        .headers
        .iter()
        .filter(|h| h.get_key_ref().eq_ignore_ascii_case("X-RcptTo"))
        .map(|h| h.get_value())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_firing_alert_is_mailed_to_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let smtp = notify::SmtpServer::start(notify::free_port());
    let target = Target::start(9.0);
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).unwrap();
    let prometheus = Prometheus::start(
        dir,
        &data,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['{}']\n",
            target.url
        ),
        None,
    );
    std::fs::write(dir.join("rules.yaml"), RULES).unwrap();
    std::fs::write(
        dir.join("routing.yaml"),
        format!(
            "smtp: {{host: 127.0.0.1, port: {}, from: kubesignal@example.org, tls: none}}\n\
             defaults: {{group_wait: 1s, group_interval: 2s}}\n\
             owners:\n  team-a: {{email: [a@example.org]}}\n  team-b: {{email: [b@example.org]}}\n\
             triage: {{email: [triage@example.org]}}\n",
            smtp.port
        ),
    )
    .unwrap();
    let (_evaluator, url) = start_evaluator(
        dir,
        "evaluator",
        &[
            format!("--rules={}", dir.join("rules.yaml").display()),
            format!("--datasource-url={}", prometheus.url),
            format!("--routing-file={}", dir.join("routing.yaml").display()),
            format!("--state-dir={}", dir.join("state").display()),
            "--evaluation-interval=1s".into(),
        ],
    );

    let mail = wait_for("the owner's mail", Duration::from_secs(40), || {
        smtp.messages().into_iter().next()
    });
    let to = recipients(&mail);
    assert!(to.contains("a@example.org"), "recipients: {to}");
    assert!(
        !to.contains("b@example.org") && !to.contains("triage@"),
        "recipients: {to}"
    );
    let text = String::from_utf8_lossy(&mail);
    assert!(text.contains("CheckoutErrors"), "{text}");
    assert!(
        text.contains("https://runbooks.example.org/checkout"),
        "{text}"
    );

    // Give a second group a chance to go out wrongly, then check nobody else got mail.
    std::thread::sleep(Duration::from_secs(3));
    for m in smtp.messages() {
        let to = recipients(&m);
        assert!(
            !to.contains("b@example.org") && !to.contains("triage@"),
            "recipients: {to}"
        );
    }
    let (_, metrics) = http_get(&format!("{url}/metrics")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("kubesignal_evaluator_notifications_sent_total{receiver=\"email\"}")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            .starts_with("kubesignal_evaluator_alerts_sent_total{destination=\"owner-routing\"}")),
        "{metrics}"
    );
}
