//! Faults: an SMTP server that is down across a notifier restart, a webhook that fails once, and a
//! malformed routing file on reload.

#[path = "common/notify.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use kubesignal::notify::NoQuerier;
use kubesignal::notify::routing::RoutingError;
use mailparse::MailHeaderMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_for_an_alert_fired_while_smtp_was_down_is_delivered_exactly_once_after_a_restart()
{
    let port = free_port(); // nothing listens here yet: SMTP is down
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let routing = write_routing(
        dir.path(),
        &format!(
            "\
smtp: {{host: 127.0.0.1, port: {port}, from: alerts@kubesignal.example.com, tls: none}}
defaults: {{group_wait: 100ms, group_interval: 300ms}}
owners:
  payments: {{email: [oncall-payments@example.com]}}
triage: {{email: [sre-triage@example.com]}}
"
        ),
    );
    let firing = alert(
        &[
            ("alertname", "CheckoutDown"),
            ("namespace", "shop"),
            ("owner", "payments"),
        ],
        Utc::now() - chrono::Duration::minutes(3),
    );
    let (n, registry) = start_notifier(&routing, &state, None, Arc::new(NoQuerier)).await;
    n.submit(vec![firing.clone()]).await;
    assert!(
        wait_until(Duration::from_secs(15), || {
            metric(
                &registry,
                "kubesignal_evaluator_notifications_failed_total{receiver=\"email\"}",
            )
            .is_some_and(|v| v >= 2.0)
        })
        .await,
        "the email was never attempted"
    );
    assert_eq!(n.outbox_depth(), 1);
    n.shutdown().await;

    // Restart on the same state dir; the evaluator re-sends the still-firing alert.
    let (n, registry) = start_notifier(&routing, &state, None, Arc::new(NoQuerier)).await;
    assert_eq!(
        metric(&registry, "kubesignal_evaluator_notification_outbox_depth"),
        Some(1.0)
    );
    n.submit(vec![firing.clone()]).await;
    let smtp = SmtpServer::start(port);
    assert!(
        wait_until(Duration::from_secs(15), || !smtp.messages().is_empty()).await,
        "the stored email was not delivered once SMTP came back"
    );
    // Several retry periods and group intervals later, still exactly one message.
    n.submit(vec![firing]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(n.outbox_depth(), 0);
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_notifications_sent_total{receiver=\"email\"}"
        ),
        Some(1.0)
    );
    let raw = smtp.messages().remove(0);
    let m = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(
        m.headers.get_first_value("X-RcptTo").unwrap(),
        "oncall-payments@example.com"
    );
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_answers_500_then_200_gets_the_notification_once_after_a_retry() {
    let sink = HttpSink::start(vec![500, 200]).await;
    let dir = tempfile::tempdir().unwrap();
    let routing = write_routing(
        dir.path(),
        &format!(
            "defaults: {{group_wait: 100ms}}\nowners:\n  payments: {{webhook_url: '{}/hook'}}\ntriage: {{webhook_url: '{}/triage'}}\n",
            sink.url, sink.url
        ),
    );
    let (n, registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        None,
        Arc::new(NoQuerier),
    )
    .await;
    n.submit(vec![alert(
        &[("alertname", "CheckoutDown"), ("owner", "payments")],
        Utc::now(),
    )])
    .await;
    assert!(wait_until(Duration::from_secs(15), || sink.requests().len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 2, "one failed attempt and one delivery");
    assert_eq!(
        reqs[0].body, reqs[1].body,
        "the retry sends the same payload"
    );
    assert_eq!(
        reqs[0].headers["idempotency-key"],
        reqs[1].headers["idempotency-key"]
    );
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_notifications_failed_total{receiver=\"webhook\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_notifications_sent_total{receiver=\"webhook\"}"
        ),
        Some(1.0)
    );
    assert_eq!(n.outbox_depth(), 0);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_routing_file_on_reload_keeps_the_old_routing_and_names_file_and_line() {
    let sink = HttpSink::start(vec![200]).await;
    let dir = tempfile::tempdir().unwrap();
    let u = &sink.url;
    let good = format!(
        "defaults: {{group_wait: 100ms}}\nowners:\n  payments:\n    webhook_url: '{u}/old'\ntriage: {{webhook_url: '{u}/triage'}}\n"
    );
    let routing = write_routing(dir.path(), &good);
    let (n, registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        None,
        Arc::new(NoQuerier),
    )
    .await;

    // Line 4 misspells a key (and would move payments to /new).
    let bad = good
        .replace("    webhook_url: '", "    webhook_ulr: '")
        .replace("/old", "/new");
    std::fs::write(&routing, bad).unwrap();
    let err = n.reload().unwrap_err();
    match &err {
        RoutingError::Invalid {
            file,
            line,
            field,
            message,
        } => {
            assert_eq!(file, &routing.display().to_string());
            assert_eq!(*line, 4);
            assert!(field.contains("owners.payments"), "{field}");
            assert!(message.contains("webhook_ulr"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("line 4"), "{err}");
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_routing_reload_failures_total"
        ),
        Some(1.0)
    );

    n.submit(vec![alert(
        &[("alertname", "A"), ("owner", "payments")],
        Utc::now(),
    )])
    .await;
    assert!(wait_until(Duration::from_secs(10), || !sink.to_path("/old").is_empty()).await);

    // A valid file is picked up by the next reload.
    std::fs::write(&routing, good.replace("/old", "/new")).unwrap();
    n.reload().unwrap();
    n.submit(vec![alert(
        &[("alertname", "B"), ("owner", "payments")],
        Utc::now(),
    )])
    .await;
    assert!(wait_until(Duration::from_secs(10), || !sink.to_path("/new").is_empty()).await);
    assert_eq!(sink.to_path("/old").len(), 1);
    n.shutdown().await;
}
