//! Email notifications received by a real SMTP server (aiosmtpd), with context from a real
//! Prometheus holding backfilled SLO, RED and restart series.

#[path = "common/notify.rs"]
mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use kubesignal::notify::{NoQuerier, PrometheusQuerier};
use mailparse::{MailHeaderMap, ParsedMail};

fn routing(smtp_port: u16) -> String {
    format!(
        "\
smtp: {{host: 127.0.0.1, port: {smtp_port}, from: 'kubesignal <alerts@kubesignal.example.com>', tls: none}}
defaults: {{group_wait: 200ms, group_interval: 500ms, repeat_interval: 4h, group_by: [alertname, namespace]}}
owners:
  payments:
    email: [oncall-payments@example.com, lead-payments@example.com]
  search:
    email: [search-team@example.com]
triage:
  email: [sre-triage@example.com]
grafana_url: https://grafana.example.com
"
    )
}

fn rcpt(msg: &ParsedMail) -> BTreeSet<String> {
    msg.headers
        .get_first_value("X-RcptTo")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_their_owners_only_and_an_unowned_alert_reaches_only_triage() {
    let smtp = SmtpServer::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let routing = write_routing(dir.path(), &routing(smtp.port));
    let (n, registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        None,
        Arc::new(NoQuerier),
    )
    .await;
    let now = Utc::now();
    n.submit(vec![
        alert(
            &[
                ("alertname", "PaymentsLatencyHigh"),
                ("namespace", "shop"),
                ("owner", "payments"),
            ],
            now,
        ),
        alert(
            &[
                ("alertname", "SearchIndexLag"),
                ("namespace", "search"),
                ("team", "search"),
            ],
            now,
        ),
        alert(&[("alertname", "NodeDiskFull"), ("node", "worker-3")], now),
    ])
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || smtp.messages().len() >= 3).await,
        "expected 3 emails, got {}",
        smtp.messages().len()
    );
    // Anything else would arrive right after: give it a moment, then check nothing more came.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let raw = smtp.messages();
    assert_eq!(raw.len(), 3);
    let mut by_alert = std::collections::BTreeMap::new();
    for r in &raw {
        let m = mailparse::parse_mail(r).unwrap();
        let subject = m.headers.get_first_value("Subject").unwrap();
        let name = ["PaymentsLatencyHigh", "SearchIndexLag", "NodeDiskFull"]
            .into_iter()
            .find(|a| subject.contains(a))
            .unwrap_or_else(|| panic!("unexpected subject {subject}"));
        by_alert.insert(
            name,
            (rcpt(&m), m.headers.get_first_value("To").unwrap(), subject),
        );
    }
    assert_eq!(
        by_alert["PaymentsLatencyHigh"].0,
        set(&["oncall-payments@example.com", "lead-payments@example.com"])
    );
    assert!(
        by_alert["PaymentsLatencyHigh"]
            .1
            .contains("oncall-payments@example.com")
    );
    assert!(!by_alert["PaymentsLatencyHigh"].1.contains("search"));
    assert_eq!(
        by_alert["SearchIndexLag"].0,
        set(&["search-team@example.com"])
    );
    assert_eq!(by_alert["NodeDiskFull"].0, set(&["sre-triage@example.com"]));
    assert!(
        by_alert["NodeDiskFull"].2.contains("triage"),
        "{}",
        by_alert["NodeDiskFull"].2
    );
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_notifications_unowned_total"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &registry,
            "kubesignal_evaluator_notifications_sent_total{receiver=\"email\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&registry, "kubesignal_evaluator_notification_outbox_depth"),
        Some(0.0)
    );
    n.shutdown().await;
}

const SLO: &str = "checkout-availability";

/// SLO recording-rule series, RED error counters per route and a container that restarted three
/// times (once OOM-killed) in the last hour: from two hours before `now` to 15 minutes after it, so
/// that queries at notification time see samples on both sides and `rate`/`increase` are exact.
fn backfill(now: DateTime<Utc>) -> String {
    let step = 15;
    let before = 2 * 3600 / step;
    let points = before + 900 / step;
    let t = |i: i64| now.timestamp() - (before - i) * step;
    let mut om = String::new();
    let ratios = [
        ("5m", 0.0216),
        ("30m", 0.018),
        ("1h", 0.0152),
        ("2h", 0.009),
        ("6h", 0.007),
        ("1d", 0.003),
        ("3d", 0.0012),
        ("30d", 0.0005),
    ];
    for (w, v) in ratios {
        writeln!(om, "# TYPE slo:sli_error:ratio_rate{w} gauge").unwrap();
        for i in 0..=points {
            writeln!(
                om,
                "slo:sli_error:ratio_rate{w}{{slo=\"{SLO}\"}} {v} {}",
                t(i)
            )
            .unwrap();
        }
    }
    for (name, v) in [
        ("slo:error_budget:ratio", 0.001),
        ("slo:error_budget:remaining_ratio", 0.42),
    ] {
        writeln!(om, "# TYPE {name} gauge").unwrap();
        for i in 0..=points {
            writeln!(om, "{name}{{slo=\"{SLO}\"}} {v} {}", t(i)).unwrap();
        }
    }
    writeln!(om, "# TYPE kubesignal_red_errors counter").unwrap();
    for (route, per_sec) in [
        ("/pay", 3.0),
        ("/cart", 1.0),
        ("/login", 0.5),
        ("/health", 0.1),
    ] {
        for i in 0..=points {
            writeln!(
                om,
                "kubesignal_red_errors_total{{namespace=\"shop\",workload=\"checkout\",workload_kind=\"Deployment\",node=\"worker-1\",route=\"{route}\",method=\"POST\",code=\"503\"}} {} {}",
                per_sec * (i * step) as f64,
                t(i)
            )
            .unwrap();
        }
    }
    let restart_at = [before - 200, before - 120, before - 40]; // 50, 30 and 10 minutes ago
    for (family, bumps) in [
        ("kubesignal_container_restarts", &restart_at[..]),
        ("kubesignal_container_oom_events", &restart_at[1..2]),
    ] {
        writeln!(om, "# TYPE {family} counter").unwrap();
        for i in 0..=points {
            let v = 5 + bumps.iter().filter(|b| i >= **b).count();
            writeln!(
                om,
                "{family}_total{{namespace=\"shop\",workload=\"checkout\",workload_kind=\"Deployment\",node=\"worker-1\",pod=\"checkout-7d9f8c6b5-x2x9q\",container=\"app\"}} {v} {}",
                t(i)
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    om
}

fn find<'a>(m: &'a ParsedMail<'a>, mime: &str) -> Option<&'a ParsedMail<'a>> {
    if m.ctype.mimetype == mime {
        return Some(m);
    }
    m.subparts.iter().find_map(|p| find(p, mime))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_slo_email_has_text_html_an_inline_chart_and_the_context_with_correct_values() {
    let prom = PrometheusServer::with_data(&backfill(Utc::now()));
    let smtp = SmtpServer::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let routing = write_routing(dir.path(), &routing(smtp.port));
    let querier = Arc::new(PrometheusQuerier::new(&prom.url, reqwest::Client::new()));
    let (n, _registry) = start_notifier(&routing, &dir.path().join("state"), None, querier).await;
    let starts_at = Utc::now() - chrono::Duration::minutes(25);
    let mut a = alert(
        &[
            ("alertname", "CheckoutAvailabilityBurnRate"),
            ("slo", SLO),
            ("service", "checkout"),
            ("namespace", "shop"),
            ("owner", "payments"),
            ("severity", "page"),
            ("long_window", "1h"),
            ("short_window", "5m"),
            ("burn_rate_threshold", "14.4"),
        ],
        starts_at,
    );
    a.value = Some(15.2);
    a.annotations = [
        (
            "summary",
            "checkout is burning its error budget 15x too fast",
        ),
        ("description", "1h error ratio 1.52% against a 0.1% budget"),
        (
            "runbook_url",
            "https://runbooks.example.com/slo/checkout-availability",
        ),
        (
            "suggested_action",
            "Check the /pay route & recent deploys; roll back if the burn began with one.",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    n.submit(vec![a]).await;
    assert!(
        wait_until(Duration::from_secs(30), || !smtp.messages().is_empty()).await,
        "no email"
    );
    let raw = smtp.messages().remove(0);
    let m = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(m.ctype.mimetype, "multipart/alternative");
    let subject = m.headers.get_first_value("Subject").unwrap();
    assert_eq!(
        subject,
        "[FIRING:1] CheckoutAvailabilityBurnRate · payments · shop"
    );
    assert!(
        m.headers
            .get_first_value("Message-ID")
            .unwrap()
            .ends_with("@kubesignal>")
    );

    // Mail bodies travel with CRLF line ends.
    let text = find(&m, "text/plain")
        .expect("text part")
        .get_body()
        .unwrap()
        .replace("\r\n", "\n");
    let html_part = find(&m, "text/html").expect("html part");
    let html = html_part.get_body().unwrap();
    let related = find(&m, "multipart/related").expect("multipart/related");
    let png = find(related, "image/png").expect("inline png");
    let cid = png.headers.get_first_value("Content-ID").unwrap();
    let cid = cid.trim_matches(['<', '>']);
    assert!(
        html.contains(&format!("src=\"cid:{cid}\"")),
        "html does not reference {cid}"
    );
    let png_bytes = png.get_body_raw().unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png_bytes.len() > 2000, "chart is {} bytes", png_bytes.len());

    for expected in [
        "Service:       checkout",
        "Namespace:     shop",
        "Owner:         payments",
        "Severity:      page",
        "Current value: 15.2",
        &format!(
            "Firing since:  {} (for 25m",
            starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        "SLO:           checkout-availability (alert threshold 14.4x over 1h)",
        "Burn rate:     5m 21.6x, 30m 18x, 1h 15.2x, 2h 9x, 6h 7x, 1d 3x, 3d 1.2x",
        "Budget left:   42.0%",
        "Suggested action: Check the /pay route & recent deploys; roll back if the burn began with one.",
        "Runbook:       https://runbooks.example.com/slo/checkout-availability",
        "Top routes:\n  - /pay: 3\n  - /cart: 1\n  - /login: 0.5\n",
        "checkout-7d9f8c6b5-x2x9q/app: 3 restart(s), 1 OOM kill(s)",
        "checkout is burning its error budget 15x too fast",
    ] {
        assert!(
            text.contains(expected),
            "text part lacks {expected:?}:\n{text}"
        );
    }
    let grafana = text
        .lines()
        .find_map(|l| l.strip_prefix("Dashboard:     "))
        .expect("dashboard link");
    let from = (starts_at - chrono::Duration::hours(1)).timestamp_millis();
    assert_eq!(
        grafana,
        format!(
            "https://grafana.example.com/d/kubesignal-slo?orgId=1&from={from}&to=now&var-slo=checkout-availability&var-namespace=shop&var-service=checkout"
        )
    );
    // HTML carries the same facts, escaped.
    assert!(html.contains("<td class=\"service\">checkout</td>"));
    assert!(html.contains("<td class=\"owner\">payments</td>"));
    assert!(html.contains("<td class=\"value\">15.2</td>"));
    assert!(
        html.contains("Check the &#x2f;pay route &amp; recent deploys"),
        "{html}"
    );
    assert!(html.contains("1h&nbsp;<b>15.2x</b>"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_notice_says_how_long_the_alert_lasted() {
    let smtp = SmtpServer::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let routing = write_routing(dir.path(), &routing(smtp.port));
    let (n, _registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        None,
        Arc::new(NoQuerier),
    )
    .await;
    let starts_at = Utc::now() - chrono::Duration::minutes(50);
    let labels = [
        ("alertname", "CheckoutPodsCrashLooping"),
        ("namespace", "shop"),
        ("owner", "payments"),
    ];
    n.submit(vec![alert(&labels, starts_at)]).await;
    assert!(wait_until(Duration::from_secs(20), || smtp.messages().len() == 1).await);
    let mut resolved = alert(&labels, starts_at);
    resolved.ends_at = Some(starts_at + chrono::Duration::minutes(42));
    n.submit(vec![resolved]).await;
    assert!(wait_until(Duration::from_secs(20), || smtp.messages().len() == 2).await);
    let raw = smtp.messages();
    let subjects: Vec<String> = raw
        .iter()
        .map(|r| {
            mailparse::parse_mail(r)
                .unwrap()
                .headers
                .get_first_value("Subject")
                .unwrap()
        })
        .collect();
    let resolved_raw = raw
        .iter()
        .zip(&subjects)
        .find(|(_, s)| s.starts_with("[RESOLVED]"))
        .unwrap_or_else(|| panic!("no resolved notice among {subjects:?}"))
        .0;
    let m = mailparse::parse_mail(resolved_raw).unwrap();
    let text = find(&m, "text/plain").unwrap().get_body().unwrap();
    assert!(text.contains("(lasted 42m)"), "{text}");
    assert!(text.starts_with("Resolved for payments"), "{text}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_and_implicit_tls_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_file = dir.path().join("smtp.crt");
    let key_file = dir.path().join("smtp.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    for (mode, cert_flag, key_flag) in [
        ("starttls", "--tlscert", "--tlskey"),
        ("tls", "--smtpscert", "--smtpskey"),
    ] {
        let smtp = SmtpServer::start_with(
            free_port(),
            &[
                cert_flag.as_ref(),
                cert_file.as_os_str(),
                key_flag.as_ref(),
                key_file.as_os_str(),
            ],
        );
        for trusted in [false, true] {
            let ca = if trusted {
                format!(", ca_file: {}", cert_file.display())
            } else {
                String::new()
            };
            let sub = dir.path().join(format!("{mode}-{trusted}"));
            std::fs::create_dir_all(&sub).unwrap();
            let routing = write_routing(
                &sub,
                &format!(
                    "smtp: {{host: 127.0.0.1, port: {}, from: alerts@example.com, tls: {mode}{ca}}}\n\
                     defaults: {{group_wait: 100ms}}\n\
                     triage: {{email: [sre@example.com]}}\n",
                    smtp.port
                ),
            );
            let (n, registry) =
                start_notifier(&routing, &sub.join("state"), None, Arc::new(NoQuerier)).await;
            let before = smtp.messages().len();
            n.submit(vec![alert(&[("alertname", "TlsCheck")], Utc::now())])
                .await;
            if trusted {
                assert!(
                    wait_until(Duration::from_secs(15), || smtp.messages().len()
                        == before + 1)
                    .await,
                    "{mode}: no mail with the CA configured"
                );
            } else {
                // An unknown certificate is refused: attempts fail, nothing is delivered.
                assert!(
                    wait_until(Duration::from_secs(15), || {
                        metric(
                            &registry,
                            "kubesignal_evaluator_notifications_failed_total{receiver=\"email\"}",
                        )
                        .is_some_and(|v| v >= 1.0)
                    })
                    .await,
                    "{mode}: an untrusted certificate was not refused"
                );
                assert_eq!(smtp.messages().len(), before);
            }
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_uses_the_password_from_the_file_and_a_wrong_one_delivers_nothing() {
    let smtp = SmtpServer::start_with_auth(free_port(), "kubesignal", "s3cret-from-file");
    let dir = tempfile::tempdir().unwrap();
    for (password, delivered) in [("wrong-password", false), ("s3cret-from-file", true)] {
        let sub = dir.path().join(password);
        std::fs::create_dir_all(&sub).unwrap();
        let password_file = sub.join("smtp-password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        let routing = write_routing(
            &sub,
            &format!(
                "smtp: {{host: 127.0.0.1, port: {}, from: alerts@example.com, tls: none, \
                 username: kubesignal, password_file: {}}}\n\
                 defaults: {{group_wait: 100ms}}\n\
                 triage: {{email: [sre@example.com]}}\n",
                smtp.port,
                password_file.display()
            ),
        );
        let (n, registry) =
            start_notifier(&routing, &sub.join("state"), None, Arc::new(NoQuerier)).await;
        n.submit(vec![alert(&[("alertname", "AuthCheck")], Utc::now())])
            .await;
        if delivered {
            assert!(
                wait_until(Duration::from_secs(15), || smtp.messages().len() == 1).await,
                "no mail with the right password"
            );
        } else {
            assert!(
                wait_until(Duration::from_secs(15), || {
                    metric(
                        &registry,
                        "kubesignal_evaluator_notifications_failed_total{receiver=\"email\"}",
                    )
                    .is_some_and(|v| v >= 1.0)
                })
                .await,
                "a wrong password was not refused"
            );
            assert!(smtp.messages().is_empty());
            // The password never reaches the metrics.
            assert!(!metrics_text(&registry).contains(password));
        }
        n.shutdown().await;
    }
}
