//! Owner resolution against an HTTP server speaking the Kubernetes API's list and watch, with
//! objects shaped like the API server's, including annotations changed while running.

#[path = "common/notify.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use kubesignal::notify::NoQuerier;
use kubesignal::notify::owners::OwnerSource;

fn cluster() -> HashMap<&'static str, Vec<serde_json::Value>> {
    HashMap::from([
        (
            NAMESPACES,
            vec![
                namespace("shop", &[("kubesignal.io/owner", "shop-team")]),
                namespace("search", &[]),
                namespace("kube-system", &[]),
            ],
        ),
        (
            DEPLOYMENTS,
            vec![
                workload(
                    "Deployment",
                    "shop",
                    "checkout",
                    &[
                        ("kubesignal.io/owner", "payments"),
                        ("kubesignal.io/slack-channel", "#payments-alerts"),
                    ],
                ),
                workload("Deployment", "shop", "cart", &[]),
            ],
        ),
        (
            STATEFULSETS,
            vec![workload(
                "StatefulSet",
                "search",
                "elasticsearch",
                &[("kubesignal.io/owner", "search-team")],
            )],
        ),
        (
            DAEMONSETS,
            vec![workload("DaemonSet", "kube-system", "node-agent", &[])],
        ),
    ])
}

fn routing(sink: &HttpSink, slack_file: &std::path::Path) -> String {
    let u = &sink.url;
    format!(
        "\
defaults: {{group_wait: 100ms, group_interval: 300ms, group_by: [alertname, namespace]}}
owners:
  payments: {{webhook_url: '{u}/payments'}}
  shop-team: {{webhook_url: '{u}/shop-team'}}
  search-team: {{webhook_url: '{u}/search-team'}}
triage: {{webhook_url: '{u}/triage'}}
slack_webhook_url_file: {}
",
        slack_file.display()
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn alertnames(reqs: &[Received]) -> Vec<String> {
    let mut names: Vec<String> = reqs
        .iter()
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

struct Setup {
    kube: FakeKube,
    sink: HttpSink,
    notifier: kubesignal::notify::NotifierHandle,
    registry: prometheus_client::registry::Registry,
    _dir: tempfile::TempDir,
}

/// Starts the fake API server and a notifier watching it; `echoed_token` gives the notifier a
/// token file ending in a newline instead of a kubelet-style one.
async fn setup(echoed_token: bool) -> Setup {
    let kube = FakeKube::start(cluster()).await;
    let sink = HttpSink::start(vec![200]).await;
    let dir = tempfile::tempdir().unwrap();
    let slack_file = dir.path().join("slack-url");
    std::fs::write(
        &slack_file,
        format!("{}/slack/T0001/B0001/secret\n", sink.url),
    )
    .unwrap();
    let routing = write_routing(dir.path(), &routing(&sink, &slack_file));
    let (notifier, registry) = start_notifier(
        &routing,
        &dir.path().join("state"),
        Some(if echoed_token {
            kube.config_with_echoed_token()
        } else {
            kube.config()
        }),
        Arc::new(NoQuerier),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), notifier.owners_synced())
        .await
        .expect("owner watchers never listed every kind");
    Setup {
        kube,
        sink,
        notifier,
        registry,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_come_from_the_workload_then_the_namespace_annotation_and_annotations_add_receivers()
{
    let s = setup(false).await;
    let now = Utc::now();
    s.notifier
        .submit(vec![
            alert(
                &[
                    ("alertname", "CheckoutErrors"),
                    ("namespace", "shop"),
                    ("workload", "checkout"),
                    ("workload_kind", "Deployment"),
                ],
                now,
            ),
            alert(
                &[
                    ("alertname", "CartLatency"),
                    ("namespace", "shop"),
                    ("workload", "cart"),
                    ("workload_kind", "Deployment"),
                ],
                now,
            ),
            alert(
                &[
                    ("alertname", "EsHeapHigh"),
                    ("namespace", "search"),
                    ("workload", "elasticsearch"),
                    ("workload_kind", "StatefulSet"),
                ],
                now,
            ),
            alert(
                &[
                    ("alertname", "NodeAgentDown"),
                    ("namespace", "kube-system"),
                    ("workload", "node-agent"),
                    ("workload_kind", "DaemonSet"),
                ],
                now,
            ),
        ])
        .await;
    assert!(
        wait_until(Duration::from_secs(15), || s.sink.requests().len() >= 5).await,
        "{:?}",
        s.sink.requests()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.sink.requests().len(), 5);
    assert_eq!(alertnames(&s.sink.to_path("/payments")), ["CheckoutErrors"]);
    assert_eq!(alertnames(&s.sink.to_path("/shop-team")), ["CartLatency"]);
    assert_eq!(alertnames(&s.sink.to_path("/search-team")), ["EsHeapHigh"]);
    assert_eq!(alertnames(&s.sink.to_path("/triage")), ["NodeAgentDown"]);
    // The workload's slack-channel annotation added a Slack receiver for its alert only.
    let slack = s.sink.to_path("/slack/T0001/B0001/secret");
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].body["channel"], "#payments-alerts");
    assert!(
        slack[0].body["text"]
            .as_str()
            .unwrap()
            .contains("CheckoutErrors")
    );
    assert_eq!(
        metric(
            &s.registry,
            "kubesignal_evaluator_notifications_unowned_total"
        ),
        Some(1.0)
    );
    let res = s
        .notifier
        .resolve_owner(&labels(&[("namespace", "shop"), ("workload", "cart")]));
    assert_eq!(
        (res.owner.as_deref(), res.source),
        (Some("shop-team"), OwnerSource::Namespace)
    );
    s.notifier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_changed_while_running_changes_the_routing_of_the_next_alert() {
    // A token file ending in a newline still authenticates (the fake answers 401 otherwise).
    let s = setup(true).await;
    assert!(
        wait_until(Duration::from_secs(10), || s.kube.watches() >= 4).await,
        "watches not opened"
    );
    let checkout = labels(&[
        ("namespace", "shop"),
        ("workload", "checkout"),
        ("workload_kind", "Deployment"),
    ]);
    assert_eq!(
        s.notifier.resolve_owner(&checkout).owner.as_deref(),
        Some("payments")
    );

    // kubectl annotate --overwrite deployment/checkout kubesignal.io/owner=search-team
    s.kube.modify(
        DEPLOYMENTS,
        workload(
            "Deployment",
            "shop",
            "checkout",
            &[("kubesignal.io/owner", "search-team")],
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            s.notifier.resolve_owner(&checkout).owner.as_deref() == Some("search-team")
        })
        .await,
        "the MODIFIED event was not applied"
    );
    let now = Utc::now();
    let mut l: Vec<(&str, &str)> = checkout
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    l.push(("alertname", "CheckoutErrors"));
    s.notifier.submit(vec![alert(&l, now)]).await;
    assert!(
        wait_until(Duration::from_secs(10), || !s
            .sink
            .to_path("/search-team")
            .is_empty())
        .await
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        alertnames(&s.sink.to_path("/search-team")),
        ["CheckoutErrors"]
    );
    assert!(s.sink.to_path("/payments").is_empty());
    assert!(
        s.sink.to_path("/slack/T0001/B0001/secret").is_empty(),
        "the slack annotation was removed"
    );

    // A watch that expires (410 Gone) makes the client list again and pick up what it missed.
    let lists = s.kube.lists();
    s.kube.replace_silently(
        NAMESPACES,
        namespace("shop", &[("kubesignal.io/owner", "payments")]),
    );
    s.kube.expire_watch(NAMESPACES);
    let cart = labels(&[("namespace", "shop"), ("workload", "cart")]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            s.notifier.resolve_owner(&cart).owner.as_deref() == Some("payments")
        })
        .await,
        "no re-list after 410 Gone"
    );
    assert!(s.kube.lists() > lists);
    // Only metadata crossed the wire: every list and watch asked for PartialObjectMetadata.
    assert_eq!(s.kube.full_object_requests(), 0);
    s.notifier.shutdown().await;
}
