//! Hostile or broken targets: garbage bodies, a 1 GB stream, ten million label values, too many
//! samples and a target that never answers. Each is bounded and counted, and the good targets'
//! RED series keep updating in the same collections.

#[path = "common/red.rs"]
mod red;

use std::sync::Arc;
use std::time::Duration;

use kubesignal::agent::red::RedCollector;
use kubesignal::agent::red::config::RedConfig;
use kubesignal::agent::red::render::encode_text;
use red::{AppServer, Reply, TEXT, samples};

const MIB: u64 = 1024 * 1024;

fn good_body(ok: u64) -> String {
    format!(
        "# TYPE http_requests_total counter\n\
         http_requests_total{{code=\"200\",handler=\"/\",method=\"get\"}} {ok}\n"
    )
}

fn value(text: &str, name: &str, workload: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| l.get("workload").map(String::as_str) == Some(workload))
        .map(|(_, v)| v)
}

fn failures(text: &str, workload: &str, reason: &str) -> f64 {
    samples(text, "kubesignal_agent_target_scrape_failures_total")
        .into_iter()
        .find(|(l, _)| l["workload"] == workload && l["reason"] == reason)
        .map(|(_, v)| v)
        .unwrap_or(0.0)
}

/// Peak resident memory of this test process, from the kernel.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_cut_off_and_counted_while_good_targets_keep_updating() {
    let server = AppServer::start().await;
    server.set("/good", Reply::text(good_body(100), TEXT));
    server.set("/gzip", Reply::gzipped(&good_body(7), TEXT));
    server.set(
        "/garbage",
        Reply::text("this is { not an exposition\n<html>oops</html>\n", TEXT),
    );
    server.set(
        "/binary",
        Reply::Body {
            bytes: Arc::new(vec![0xff, 0xfe, 0x00, 0x12, 0x80, 0x81]),
            content_type: TEXT,
            gzip: false,
        },
    );
    server.set("/endless", Reply::Endless { bytes: 1024 * MIB });
    server.set("/labels", Reply::ManyLabels { count: 10_000_000 });
    let too_many: String = (0..12_000)
        .map(|i| format!("app_items{{id=\"{i}\"}} 1\n"))
        .collect();
    server.set("/too-many", Reply::text(too_many, TEXT));
    server.set("/hang", Reply::Hang);

    let names = [
        "good", "gzip", "garbage", "binary", "endless", "labels", "too-many", "hang",
    ];
    let mut yaml = String::from(
        "red:\n  spread: 0s\n  scrape_timeout: 2s\n  max_body_bytes: 4194304\n  \
         sample_limit: 10000\n  static_targets:\n",
    );
    for n in names {
        yaml.push_str(&format!(
            "    - {{url: '{}', namespace: apps, workload: {n}}}\n",
            server.url(&format!("/{n}"))
        ));
    }
    let config = RedConfig::from_yaml(&yaml).unwrap();
    let mut collector = RedCollector::new(config, "node-1", Duration::from_secs(15)).unwrap();
    let targets = collector.static_targets(&[]).unwrap();
    assert_eq!(targets.len(), names.len());

    let bounded = Duration::from_secs(30);
    let first = tokio::time::timeout(bounded, collector.collect(targets.clone()))
        .await
        .expect("a collection with a hanging target still ends");
    let first = encode_text(&first);
    assert_eq!(
        value(&first, "kubesignal_red_requests_total", "good"),
        Some(100.0)
    );
    assert_eq!(
        value(&first, "kubesignal_red_requests_total", "gzip"),
        Some(7.0)
    );

    server.set("/good", Reply::text(good_body(105), TEXT));
    let second = tokio::time::timeout(bounded, collector.collect(targets))
        .await
        .expect("a collection with a hanging target still ends");
    let text = encode_text(&second);

    assert_eq!(
        value(&text, "kubesignal_red_requests_total", "good"),
        Some(105.0),
        "the good target's series updated next to the bad ones"
    );
    for good in ["good", "gzip"] {
        assert_eq!(
            value(&text, "kubesignal_agent_target_up", good),
            Some(1.0),
            "{good}"
        );
    }
    for (bad, reason) in [
        ("garbage", "parse"),
        ("binary", "parse"),
        ("endless", "body_limit"),
        ("labels", "body_limit"),
        ("too-many", "sample_limit"),
        ("hang", "timeout"),
    ] {
        assert_eq!(
            value(&text, "kubesignal_agent_target_up", bad),
            Some(0.0),
            "{bad} is down"
        );
        assert_eq!(
            failures(&text, bad, reason),
            2.0,
            "{bad}: two {reason} failures"
        );
        assert_eq!(
            value(&text, "kubesignal_red_requests_total", bad),
            None,
            "{bad} has no RED series"
        );
    }
    // The two huge streams were cut off near the 4 MiB limit, not read to their 1 GB and
    // ~500 MB ends (twice each).
    let streamed = server.streamed_bytes();
    eprintln!(
        "bad input: {:.1} MiB generated by the two huge streams over two collections; peak RSS {} MiB",
        streamed as f64 / MIB as f64,
        peak_rss_bytes() / MIB
    );
    assert!(streamed < 64 * MIB, "{} MiB were generated", streamed / MIB);
    assert!(
        peak_rss_bytes() < 256 * MIB,
        "peak RSS {} MiB",
        peak_rss_bytes() / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_in_flight_never_exceed_the_concurrency_limit_and_all_complete() {
    let server = AppServer::start().await;
    let mut urls = Vec::new();
    for i in 0..6 {
        let path = format!("/slow-{i}");
        server.set(
            &path,
            Reply::Slow {
                body: Arc::new(good_body(10 + i)),
                delay: Duration::from_millis(300),
            },
        );
        urls.push(server.url(&path));
    }
    let yaml = "red:\n  spread: 0s\n  max_concurrent_scrapes: 2\n";
    let config = RedConfig::from_yaml(yaml).unwrap();
    let mut collector = RedCollector::new(config, "node-1", Duration::from_secs(15)).unwrap();
    let targets = collector.static_targets(&urls).unwrap();
    let snapshot = collector.collect(targets).await;
    assert_eq!(
        server.max_in_flight(),
        2,
        "two scrapes at a time, and both slots used"
    );
    assert!(snapshot.targets.iter().all(|t| t.up));
    // Static targets of one host share the workload `127.0.0.1` in namespace `static`.
    let text = encode_text(&snapshot);
    let total: f64 = samples(&text, "kubesignal_red_requests_total")
        .iter()
        .filter(|(l, _)| l["namespace"] == "static" && l["workload"] == "127.0.0.1")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, (10..16).sum::<u64>() as f64);
}
