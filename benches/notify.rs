//! Notification pipeline throughput: a burst of 10,000 alerts across 200 owners.
//!
//! - `dispatch`: owner routing and grouping only (routing lookup, aggregation groups, dedupe),
//!   in memory.
//! - `end_to_end`: the running notifier (routing, grouping, rendering, redb outbox, delivery)
//!   into a local HTTP webhook receiver; the time is from `submit` until the receiver has every
//!   notification.
//!
//! Peak memory (VmHWM of the benchmark process) is printed at the end.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kubesignal::notify::group::Dispatcher;
use kubesignal::notify::outbox::OutboxOptions;
use kubesignal::notify::owners::OwnerResolver;
use kubesignal::notify::routing::Routing;
use kubesignal::notify::{Alert, NoQuerier, Notifier, NotifierConfig};

const OWNERS: usize = 200;
const ALERTS: usize = 10_000;
const ALERTNAMES: usize = 5;
/// Groups per owner: alertname x namespace (one namespace per owner).
const NOTIFICATIONS: usize = OWNERS * ALERTNAMES;

fn alerts() -> Vec<Alert> {
    let now = Utc::now();
    (0..ALERTS)
        .map(|i| {
            let owner = i % OWNERS;
            let labels: BTreeMap<String, String> = [
                ("alertname", format!("Alert{}", (i / OWNERS) % ALERTNAMES)),
                ("owner", format!("team-{owner}")),
                ("namespace", format!("ns-{owner}")),
                ("pod", format!("pod-{i}")),
                ("severity", "page".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            Alert {
                labels,
                annotations: [("summary".to_string(), format!("pod-{i} is unhappy"))].into(),
                starts_at: now,
                ends_at: None,
                generator_url: "http://kubesignal:9095/graph?g0.expr=up".into(),
                value: Some(i as f64),
                expr: None,
            }
        })
        .collect()
}

fn routing_text(base: &str) -> String {
    let mut s = String::from(
        "defaults: {group_wait: 0s, group_interval: 5m, group_by: [alertname, namespace]}\nowners:\n",
    );
    for o in 0..OWNERS {
        s.push_str(&format!("  team-{o}: {{webhook_url: '{base}/team-{o}'}}\n"));
    }
    s.push_str(&format!("triage: {{webhook_url: '{base}/triage'}}\n"));
    s
}

fn vm_hwm_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn dispatch(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routing.yaml");
    std::fs::write(&path, routing_text("http://127.0.0.1:9")).unwrap();
    let routing = Routing::load(&path).unwrap();
    let input = alerts();
    // Labels only (no Kubernetes watchers): the owner label decides, as in most SLO alerts.
    let resolver = OwnerResolver::new();
    c.bench_function("notify/dispatch_10k_alerts_200_owners", |b| {
        b.iter(|| {
            let mut d = Dispatcher::default();
            let now = Utc::now();
            d.insert_all(&routing, |l| resolver.resolve(l), input.clone(), now);
            let n = d.flush_due(now);
            assert_eq!(n.len(), NOTIFICATIONS);
            black_box(n)
        })
    });
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let alerts_seen = Arc::new(AtomicUsize::new(0));
    let base = rt.block_on({
        let received = Arc::clone(&received);
        let alerts_seen = Arc::clone(&alerts_seen);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
                let received = Arc::clone(&received);
                let alerts_seen = Arc::clone(&alerts_seen);
                async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let n = v["alerts"].as_array().map_or(0, Vec::len);
                    alerts_seen.fetch_add(n, Ordering::SeqCst);
                    received.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            });
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            base
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let routing = dir.path().join("routing.yaml");
    std::fs::write(&routing, routing_text(&base)).unwrap();
    let input = alerts();
    let mut group = c.benchmark_group("notify");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("end_to_end_10k_alerts_200_owners_webhook", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let state = tempfile::tempdir().unwrap();
                received.store(0, Ordering::SeqCst);
                alerts_seen.store(0, Ordering::SeqCst);
                total += rt.block_on(async {
                    let mut registry = prometheus_client::registry::Registry::default();
                    let mut config = NotifierConfig::new(&routing, "http://kubesignal:9095");
                    config.kubernetes = None;
                    config.outbox = OutboxOptions::default();
                    let n =
                        Notifier::start(config, state.path(), Arc::new(NoQuerier), &mut registry)
                            .await
                            .unwrap();
                    let start = Instant::now();
                    n.submit(input.clone()).await;
                    while received.load(Ordering::SeqCst) < NOTIFICATIONS {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let elapsed = start.elapsed();
                    assert_eq!(alerts_seen.load(Ordering::SeqCst), ALERTS);
                    n.shutdown().await;
                    elapsed
                });
            }
            total
        })
    });
    group.finish();
    if let Some(kib) = vm_hwm_kib() {
        eprintln!(
            "notify bench: peak resident memory (VmHWM) {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}

criterion_group!(benches, dispatch, end_to_end);
criterion_main!(benches);
