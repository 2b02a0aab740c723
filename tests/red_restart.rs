//! RED counters across pod restarts and deletion: they never decrease, they count every request
//! served, and the real Prometheus computes the right rate from them.

#[path = "common/red.rs"]
mod red;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubesignal::agent::kubelet::pods::PodList;
use kubesignal::agent::red::RedCollector;
use kubesignal::agent::red::config::RedConfig;
use kubesignal::agent::red::render::encode_text;
use kubesignal::agent::red::targets::pod_targets;
use red::{
    AppServer, FIXTURE_NODE, MetricsServer, PrometheusProcess, Reply, TEXT, annotated_pod,
    fixture_pods, samples,
};

const POD_A: &str = "e2e-deployment-6fb786454b-mrr5s";
const POD_B: &str = "e2e-deployment-6fb786454b-7fsxc";

/// One application process: its counters count from its own start, which it exposes as
/// `process_start_time_seconds` like the Prometheus client libraries do.
#[derive(Default)]
struct App {
    started: u64,
    ok: u64,
    failed: u64,
}

impl App {
    fn new(started: u64) -> Self {
        Self {
            started,
            ..Self::default()
        }
    }

    fn serve(&mut self, ok: u64, failed: u64) {
        self.ok += ok;
        self.failed += failed;
    }

    fn restart(&mut self) {
        *self = App::new(self.started + 60);
    }

    fn exposition(&self) -> String {
        format!(
            "# TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds {started}\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{{code=\"200\",handler=\"/checkout\",method=\"post\"}} {ok}\n\
             http_requests_total{{code=\"500\",handler=\"/checkout\",method=\"post\"}} {failed}\n\
             # TYPE http_request_duration_seconds histogram\n\
             http_request_duration_seconds_bucket{{handler=\"/checkout\",method=\"post\",le=\"0.1\"}} {ok}\n\
             http_request_duration_seconds_bucket{{handler=\"/checkout\",method=\"post\",le=\"+Inf\"}} {all}\n\
             http_request_duration_seconds_sum{{handler=\"/checkout\",method=\"post\"}} {sum}\n\
             http_request_duration_seconds_count{{handler=\"/checkout\",method=\"post\"}} {all}\n",
            ok = self.ok,
            failed = self.failed,
            all = self.ok + self.failed,
            sum = (self.ok + self.failed) as f64 * 0.05,
            started = self.started,
        )
    }
}

/// Requests served by A (ok, failed) since the previous step, whether A restarted before
/// serving them, and B's (ok, failed) while B exists.
type Step = (u64, u64, bool, Option<(u64, u64)>);

fn exported(text: &str, name: &str, code: &str) -> f64 {
    let found: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|(l, _)| l.get("code").map(String::as_str) == Some(code))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "{name}{{code={code:?}}} in\n{text}");
    found[0]
}

fn pods_for(all: &PodList, port: u16, names: &[(&str, &str)]) -> PodList {
    let mut pods = PodList::default();
    for (name, path) in names {
        pods.items.push(annotated_pod(all, name, port, path));
    }
    pods
}

#[tokio::test]
async fn requests_never_decrease_and_equal_the_requests_served_across_a_restart_and_a_deletion() {
    let server = AppServer::start().await;
    let port = server.addr.port();
    let all = fixture_pods();
    let config = RedConfig::from_yaml("red:\n  spread: 0s\n").unwrap();
    let mut collector = RedCollector::new(config, FIXTURE_NODE, Duration::from_secs(15)).unwrap();
    let (mut a, mut b) = (App::new(1_700_000_000), App::new(1_700_000_005));
    let (mut served_ok, mut served_failed) = (0u64, 0u64);
    let mut last_exported = (0.0, 0.0, 0.0);

    // Each step: requests served by A and B since the previous step, whether A restarted
    // before serving them, and whether B still exists. A's last restart leaves its error
    // counter above its old value: only the new start time shows the reset.
    let steps: [Step; 6] = [
        (100, 3, false, Some((50, 1))),
        (50, 2, false, Some((30, 0))),
        (20, 1, true, Some((15, 4))),
        (40, 0, false, None),
        (1, 0, false, None),
        (5, 2, true, None),
    ];
    for (i, (a_ok, a_failed, a_restarts, b_step)) in steps.into_iter().enumerate() {
        if a_restarts {
            a.restart();
        }
        a.serve(a_ok, a_failed);
        served_ok += a_ok;
        served_failed += a_failed;
        server.set("/a", Reply::text(a.exposition(), TEXT));
        let mut names = vec![(POD_A, "/a")];
        match b_step {
            Some((ok, failed)) => {
                b.serve(ok, failed);
                served_ok += ok;
                served_failed += failed;
                server.set("/b", Reply::text(b.exposition(), TEXT));
                names.push((POD_B, "/b"));
            }
            None => server.remove("/b"),
        }
        let targets = pod_targets(&pods_for(&all, port, &names), FIXTURE_NODE);
        let snapshot = collector.collect(targets).await;
        let text = encode_text(&snapshot);

        let ok = exported(&text, "kubesignal_red_requests_total", "200");
        let failed = exported(&text, "kubesignal_red_requests_total", "500");
        let errors = exported(&text, "kubesignal_red_errors_total", "500");
        let count = exported(&text, "kubesignal_red_request_duration_seconds_count", "");
        assert_eq!(ok, served_ok as f64, "step {i}: requests with code 200");
        assert_eq!(
            failed, served_failed as f64,
            "step {i}: requests with code 500"
        );
        assert_eq!(errors, served_failed as f64, "step {i}: errors");
        assert_eq!(
            count,
            (served_ok + served_failed) as f64,
            "step {i}: histogram count"
        );
        assert!(
            ok >= last_exported.0 && failed >= last_exported.1 && count >= last_exported.2,
            "step {i}: a RED counter decreased"
        );
        last_exported = (ok, failed, count);
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_computes_the_request_rate_and_sees_no_reset_across_an_application_restart() {
    const RATE: f64 = 10.0;
    let server = AppServer::start().await;
    let port = server.addr.port();
    let all = fixture_pods();
    let config = RedConfig::from_yaml("red:\n  spread: 0s\n").unwrap();
    let mut collector =
        RedCollector::new(config, FIXTURE_NODE, Duration::from_millis(500)).unwrap();
    let metrics = MetricsServer::start(collector.metrics()).await;
    let prometheus = PrometheusProcess::start(metrics.addr).await;

    // The app serves RATE requests per second of wall-clock time; pod B restarts half-way.
    // Pod A keeps serving, so a naive sum of the two would drop but not to zero, which
    // Prometheus would misread.
    // Requests served between the last scrape and a crash are seen by nobody, so B restarts
    // right after a collection: everything it served was scraped.
    let start = Instant::now();
    let mut b_started = start;
    let mut b_served_before_restart = 0u64;
    let mut b_last_exposed = 0u64;
    let mut restarted = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut served_total = 0u64;
    while start.elapsed() < Duration::from_secs(12) {
        ticker.tick().await;
        let now = Instant::now();
        if !restarted && now - start > Duration::from_secs(6) {
            b_served_before_restart = b_last_exposed;
            b_started = now;
            restarted = true;
        }
        let a_served = (RATE / 2.0 * (now - start).as_secs_f64()) as u64;
        let b_counter = (RATE / 2.0 * (now - b_started).as_secs_f64()) as u64;
        let mut a = App::new(1_700_000_000);
        let mut b = App::new(if restarted {
            1_700_000_100
        } else {
            1_700_000_005
        });
        a.serve(a_served, 0);
        b.serve(b_counter, 0);
        b_last_exposed = b_counter;
        served_total = a_served + b_served_before_restart + b_counter;
        server.set("/a", Reply::text(a.exposition(), TEXT));
        server.set("/b", Reply::text(b.exposition(), TEXT));
        let pods = pods_for(&all, port, &[(POD_A, "/a"), (POD_B, "/b")]);
        collector.collect(pod_targets(&pods, FIXTURE_NODE)).await;
    }
    let end = unix_now();
    assert!(restarted);
    // Let Prometheus scrape the final state.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let series = "kubesignal_red_requests_total{workload=\"e2e-deployment\",code=\"200\"}";
    let last = prometheus.query(series).await;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(
        last[0].1, served_total as f64,
        "Prometheus holds the true total"
    );
    assert_eq!(last[0].0["node"], FIXTURE_NODE);
    let resets = prometheus.query(&format!("resets({series}[1m])")).await;
    assert_eq!(resets[0].1, 0.0, "the exported counter never reset");
    let rate = prometheus
        .query_at(&format!("rate({series}[10s])"), Some(end))
        .await;
    assert_eq!(rate.len(), 1, "{rate:?}");
    assert!(
        (RATE * 0.6..=RATE * 1.4).contains(&rate[0].1),
        "rate() over a window holding the restart is {} req/s, served {RATE} req/s",
        rate[0].1
    );
}
