//! The agent facing a kubelet that misbehaves: each failure is bounded, counted and logged, the
//! agent keeps serving, and it recovers by itself when the kubelet does.

#[path = "common/kubelet.rs"]
mod kubelet;
#[path = "common/metrics.rs"]
mod metrics;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use kubelet::{Behaviour, FakeKubelet, fixture_sets};
use metrics::Scrape;
use process::{Kubesignal, eventually};

const NODE: &str = "datagen-1-34";

async fn start() -> (FakeKubelet, Kubesignal) {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.34-psi")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let agent = Kubesignal::start(&[
        "agent",
        "--source=kubelet",
        "--interval=300ms",
        "--collection-timeout=1s",
        "--max-body-bytes=16777216",
        "--kubelet-url",
        &kubelet.url,
        "--kubelet-ca-file",
        kubelet.ca_file.to_str().unwrap(),
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--node-name",
        NODE,
    ])
    .await;
    wait_for_usage(&agent).await;
    (kubelet, agent)
}

async fn scrape(agent: &Kubesignal) -> Scrape {
    Scrape::parse(&agent.metrics().await, false)
}

async fn wait_for_usage(agent: &Kubesignal) {
    eventually(
        "usage series are exported",
        Duration::from_secs(15),
        || async {
            scrape(agent)
                .await
                .has(
                    "kubesignal_node_memory_working_set_bytes",
                    &[("node", NODE)],
                )
                .then_some(())
        },
    )
    .await;
}

fn errors(scrape: &Scrape, source: &str, reason: &str) -> f64 {
    scrape
        .find(
            "kubesignal_agent_scrape_errors_total",
            &[("source", source), ("reason", reason)],
        )
        .first()
        .map_or(0.0, |s| s.value)
}

/// Puts the kubelet in `behaviour`, waits until the error is counted and the usage series are
/// gone while the agent still answers, then restores it and waits for recovery.
async fn fails_and_recovers(behaviour: Behaviour, source: &str, reason: &str) {
    let (kubelet, agent) = start().await;
    kubelet.set_behaviour(behaviour.clone());
    eventually(
        &format!("{behaviour:?} is counted as {source}/{reason}"),
        Duration::from_secs(15),
        || async {
            let got = scrape(&agent).await;
            (errors(&got, source, reason) >= 1.0
                && !got.has("kubesignal_node_memory_working_set_bytes", &[]))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        agent.status("/healthz").await,
        200,
        "still alive during {behaviour:?}"
    );
    assert_eq!(
        agent.status("/readyz").await,
        200,
        "readiness is not lost by a failure"
    );
    let got = scrape(&agent).await;
    assert!(
        got.value(
            "kubesignal_agent_collections_total",
            &[("outcome", "failure")]
        ) >= 1.0
    );

    kubelet.set_behaviour(Behaviour::Serve);
    wait_for_usage(&agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_summary_is_a_counted_decode_error() {
    fails_and_recovers(Behaviour::TruncatedSummary, "kubelet_summary", "decode").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_summary_with_wrong_types_is_a_counted_decode_error() {
    fails_and_recovers(Behaviour::WrongTypedSummary, "kubelet_summary", "decode").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_is_counted_as_unauthorized() {
    fails_and_recovers(Behaviour::Status(401), "kubelet_summary", "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_megabyte_body_is_refused_at_the_size_limit() {
    let started = Instant::now();
    fails_and_recovers(
        Behaviour::HugeSummary(200 * 1024 * 1024),
        "kubelet_summary",
        "too_large",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_kubelet_times_the_collection_out() {
    fails_and_recovers(Behaviour::Hang, "collection", "timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubelet_that_goes_away_and_comes_back_is_followed() {
    let (mut kubelet, agent) = start().await;
    kubelet.stop();
    eventually(
        "connection failures are counted",
        Duration::from_secs(15),
        || async {
            let got = scrape(&agent).await;
            (errors(&got, "kubelet_summary", "connect") >= 1.0
                && !got.has("kubesignal_node_memory_working_set_bytes", &[]))
            .then_some(())
        },
    )
    .await;
    kubelet.restart().await;
    wait_for_usage(&agent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unverifiable_kubelet_certificate_is_refused_unless_asked() {
    let set = fixture_sets()
        .into_iter()
        .find(|s| s.name == "k8s-1.31")
        .unwrap();
    let kubelet = FakeKubelet::start(&set).await;
    let base = [
        "agent",
        "--source=kubelet",
        "--interval=300ms",
        "--kubelet-url",
        &kubelet.url,
        "--kubelet-token-file",
        kubelet.token_file.to_str().unwrap(),
        "--node-name",
        "minikube",
    ];
    // No CA given: the test CA is not trusted, so TLS verification fails.
    let agent = Kubesignal::start(&base).await;
    eventually(
        "the TLS failure is counted",
        Duration::from_secs(15),
        || async {
            (errors(&scrape(&agent).await, "kubelet_summary", "connect") >= 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        agent.status("/readyz").await,
        503,
        "never ready without a collection"
    );
    drop(agent);

    let mut insecure = base.to_vec();
    insecure.push("--kubelet-insecure-skip-verify");
    let agent = Kubesignal::start(&insecure).await;
    eventually(
        "collection works without verification",
        Duration::from_secs(15),
        || async {
            scrape(&agent)
                .await
                .has("kubesignal_node_memory_working_set_bytes", &[])
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_agent_cleanly() {
    let (_kubelet, mut agent) = start().await;
    let status = agent
        .guard
        .terminate(Duration::from_secs(10))
        .expect("exits within 10s");
    assert!(status.success(), "exit status {status:?}");
}
