//! The demo application over real HTTP on loopback: its error rate, its RED metrics in the
//! Prometheus client conventions the agent recognises, and its self-load loop.

use std::time::Duration;

use kubesignal::demo::{DemoArgs, LATENCY_BUCKETS, serve_on};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A demo server on 127.0.0.1:0, stopped when dropped.
struct Demo {
    base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(error_rate: f64, latency_ms: f64, self_load: f64, seed: u64) -> Demo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let args = DemoArgs {
        listen: addr,
        error_rate,
        latency_ms,
        self_load,
    };
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve_on(listener, &args, seed, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Demo {
        base: format!("http://{addr}"),
        stop: Some(tx),
    }
}

async fn metrics(base: &str) -> Vec<prometheus_parse::Sample> {
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
        .samples
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

fn sum(samples: &[prometheus_parse::Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(value)
        .sum()
}

#[tokio::test]
async fn the_share_of_failed_requests_follows_the_configured_error_rate() {
    let demo = start(0.3, 0.0, 0.0, 12345).await;
    let client = reqwest::Client::new();
    let mut failures = 0;
    let n = 400;
    for i in 0..n {
        let url = if i % 2 == 0 {
            format!("{}/", demo.base)
        } else {
            format!("{}/api/items/{i}", demo.base)
        };
        let status = client.get(url).send().await.unwrap().status().as_u16();
        assert!(status == 200 || status == 500, "unexpected status {status}");
        if status == 500 {
            failures += 1;
        }
    }
    // Binomial(400, 0.3): mean 120, sd 9.2; 80..160 is more than 4 sd either side.
    assert!(
        (80..=160).contains(&failures),
        "{failures} failures out of {n}"
    );

    let samples = metrics(&demo.base).await;
    assert_eq!(sum(&samples, "http_requests_total", None), n as f64);
    assert_eq!(
        sum(&samples, "http_requests_total", Some(("code", "500"))),
        failures as f64
    );
    // Route templates, never raw paths: item ids must not become label values.
    let routes: std::collections::BTreeSet<String> = samples
        .iter()
        .filter(|s| s.metric == "http_requests_total")
        .map(|s| s.labels.get("route").unwrap().to_string())
        .collect();
    assert_eq!(
        routes,
        ["/", "/api/items/:id"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert!(
        samples
            .iter()
            .all(|s| s.metric != "http_requests_total" || s.labels.get("method") == Some("GET"))
    );
}

#[tokio::test]
async fn zero_error_rate_serves_only_successes() {
    let demo = start(0.0, 0.0, 0.0, 1).await;
    for _ in 0..50 {
        let r = reqwest::get(format!("{}/", demo.base)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let samples = metrics(&demo.base).await;
    assert_eq!(
        sum(&samples, "http_requests_total", Some(("code", "500"))),
        0.0
    );
    assert_eq!(
        sum(&samples, "http_requests_total", Some(("code", "200"))),
        50.0
    );
}

#[tokio::test]
async fn the_latency_histogram_has_the_standard_buckets_and_counts_every_request() {
    let demo = start(0.0, 1.0, 0.0, 9).await;
    for _ in 0..20 {
        reqwest::get(format!("{}/", demo.base)).await.unwrap();
    }
    let samples = metrics(&demo.base).await;
    let hist = samples
        .iter()
        .find(|s| s.metric == "http_request_duration_seconds")
        .expect("histogram http_request_duration_seconds");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {:?}", hist.value);
    };
    let bounds: Vec<f64> = buckets
        .iter()
        .map(|b| b.less_than)
        .filter(|b| b.is_finite())
        .collect();
    assert_eq!(bounds, LATENCY_BUCKETS.to_vec());
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, 20.0);
    for label in ["code", "method", "route"] {
        assert!(hist.labels.get(label).is_some(), "histogram lacks {label}");
    }
}

#[tokio::test]
async fn the_self_load_loop_sends_traffic_without_any_client() {
    let demo = start(0.0, 0.0, 200.0, 3).await;
    // Bounded wait: up to 10 s for 50 self-sent requests (at 200/s they take a quarter second).
    let mut seen = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = sum(&metrics(&demo.base).await, "http_requests_total", None);
        if seen >= 50.0 {
            break;
        }
    }
    assert!(seen >= 50.0, "only {seen} self-load requests recorded");
}

#[tokio::test]
async fn metrics_and_health_are_not_counted_as_traffic() {
    let demo = start(0.0, 0.0, 0.0, 5).await;
    for _ in 0..3 {
        assert_eq!(
            reqwest::get(format!("{}/healthz", demo.base))
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        metrics(&demo.base).await;
    }
    assert_eq!(
        sum(&metrics(&demo.base).await, "http_requests_total", None),
        0.0
    );
}
