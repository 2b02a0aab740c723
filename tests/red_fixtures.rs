//! RED normalization end to end on real payloads: real application /metrics fixtures served over
//! HTTP from pods of the real kubelet `/pods` fixture, scraped by the collector, and the exported
//! series checked against sums computed here from the fixture text.

#[path = "common/red.rs"]
mod red;

use std::collections::BTreeMap;
use std::time::Duration;

use kubesignal::agent::kubelet::pods::PodList;
use kubesignal::agent::red::RedCollector;
use kubesignal::agent::red::config::RedConfig;
use kubesignal::agent::red::render::encode_text;
use kubesignal::agent::red::targets::pod_targets;
use red::{
    AppServer, FIXTURE_NODE, OPENMETRICS, Reply, TEXT, annotated_pod, fixture, fixture_pods,
    samples,
};

type Key = (String, String, String);

const CONFIG: &str = r#"
red:
  spread: 0s
  rules:
    # Prometheus's own metrics use a prefixed name: mapped here, which proves mapping rules.
    - metric: prometheus_http_requests_total
      kind: requests
      dialect: prometheus-server
      protocol: http
      route: [handler]
      code: [code]
      errors: {codes: [5xx]}
    - metric: prometheus_http_request_duration_seconds
      kind: duration
      dialect: prometheus-server
      protocol: http
      route: [handler]
    # The client_golang example app's RPC summary.
    - metric: rpc_durations_seconds
      kind: duration
      route: [service]
    # The OpenTelemetry exporter golden histogram (bytes, but it shows bounds are kept).
    - metric: histogram_baz_bytes
      kind: duration
      route: [A]
      unit: seconds
"#;

/// Hand-written: what the OpenTelemetry Prometheus exporter prints for the stable
/// `http.server.request.duration` metric (no real capture was available).
const OTEL_SEMCONV: &str = r#"# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.005"} 120
http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.05"} 410
http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.5"} 498
http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="+Inf"} 500
http_server_request_duration_seconds_sum{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0"} 9.75
http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/api/cart",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0"} 500
http_server_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.005"} 0
http_server_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.05"} 2
http_server_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="0.5"} 5
http_server_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0",le="+Inf"} 7
http_server_request_duration_seconds_sum{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0"} 6.5
http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="503",http_route="/api/checkout",network_protocol_version="1.1",otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",otel_scope_version="0.60.0"} 7
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="cart",telemetry_sdk_language="go"} 1
"#;

/// Hand-written: Spring Boot Actuator's `/actuator/prometheus` for `http.server.requests`
/// without a histogram (a summary plus a `_max` gauge; older Micrometer puts a comma before `}`).
const MICROMETER: &str = r#"# HELP http_server_requests_seconds
# TYPE http_server_requests_seconds summary
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/owners/{ownerId}",} 412
http_server_requests_seconds_sum{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/owners/{ownerId}",} 12.5
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="CLIENT_ERROR",status="404",uri="/owners/{ownerId}",} 9
http_server_requests_seconds_sum{error="none",exception="none",method="GET",outcome="CLIENT_ERROR",status="404",uri="/owners/{ownerId}",} 0.25
http_server_requests_seconds_count{error="DataAccessException",exception="DataAccessException",method="POST",outcome="SERVER_ERROR",status="500",uri="/owners/new",} 3
http_server_requests_seconds_sum{error="DataAccessException",exception="DataAccessException",method="POST",outcome="SERVER_ERROR",status="500",uri="/owners/new",} 1.5
# HELP http_server_requests_seconds_max
# TYPE http_server_requests_seconds_max gauge
http_server_requests_seconds_max{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/owners/{ownerId}",} 0.12
"#;

/// Hand-written: Prometheus client conventions with a millisecond histogram.
const MILLIS: &str = r#"# TYPE http_requests_total counter
http_requests_total{code="200",handler="/search",method="get"} 900
http_requests_total{code="503",handler="/search",method="get"} 12
# TYPE http_request_duration_milliseconds histogram
http_request_duration_milliseconds_bucket{handler="/search",method="get",le="5"} 300
http_request_duration_milliseconds_bucket{handler="/search",method="get",le="25"} 700
http_request_duration_milliseconds_bucket{handler="/search",method="get",le="100"} 880
http_request_duration_milliseconds_bucket{handler="/search",method="get",le="500"} 910
http_request_duration_milliseconds_bucket{handler="/search",method="get",le="+Inf"} 912
http_request_duration_milliseconds_sum{handler="/search",method="get"} 45000
http_request_duration_milliseconds_count{handler="/search",method="get"} 912
"#;

fn lbl<'a>(s: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    s.get(name).map(String::as_str).unwrap_or("")
}

/// An exported RED family of one workload, by (route, method, code), optionally `le` too.
fn exported(text: &str, name: &str, workload: &str) -> BTreeMap<Key, f64> {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| lbl(l, "workload") == workload)
        .map(|(l, v)| {
            let mut code = lbl(&l, "code").to_string();
            if let Some(le) = l.get("le") {
                code = format!("{code}|le={}", le.parse::<f64>().unwrap_or(f64::INFINITY));
            }
            ((lbl(&l, "route").into(), lbl(&l, "method").into(), code), v)
        })
        .collect()
}

fn key(route: &str, method: &str, code: &str) -> Key {
    (route.into(), method.into(), code.into())
}

fn le_key(route: &str, method: &str, code: &str, le: &str) -> Key {
    let le: f64 = if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().unwrap()
    };
    (route.into(), method.into(), format!("{code}|le={le}"))
}

fn add(map: &mut BTreeMap<Key, f64>, k: Key, v: f64) {
    *map.entry(k).or_default() += v;
}

fn assert_close(actual: &BTreeMap<Key, f64>, expected: &BTreeMap<Key, f64>, what: &str) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: series differ"
    );
    for (k, e) in expected {
        let a = actual[k];
        assert!(
            (a - e).abs() <= 1e-9 * e.abs().max(1.0),
            "{what} {k:?}: got {a}, want {e}"
        );
    }
}

struct Scene {
    _server: AppServer,
    text: String,
    targets: usize,
}

async fn collect_scene() -> Scene {
    let server = AppServer::start().await;
    let port = server.addr.port();
    let prom = fixture("app-metrics/prometheus-server-237mfs.prom");
    server.set("/prom-a", Reply::text(prom.clone(), TEXT));
    server.set("/prom-b", Reply::gzipped(&prom, TEXT));
    server.set(
        "/etcd",
        Reply::text(fixture("app-metrics/nri-k8s-1_34-etcd.prom"), TEXT),
    );
    server.set(
        "/golang",
        Reply::text(
            fixture("app-metrics/client-golang-random-example-5mfs.om.txt"),
            OPENMETRICS,
        ),
    );
    server.set(
        "/otel-golden",
        Reply::text(
            fixture("app-metrics/otel-go-exporter-histogram-golden.prom"),
            TEXT,
        ),
    );
    server.set("/otel", Reply::text(OTEL_SEMCONV, TEXT));
    server.set("/micrometer", Reply::text(MICROMETER, TEXT));
    server.set("/millis", Reply::text(MILLIS, TEXT));

    let all = fixture_pods();
    let mut pods = PodList::default();
    for (name, path) in [
        ("e2e-deployment-6fb786454b-mrr5s", "/prom-a"),
        ("e2e-deployment-6fb786454b-7fsxc", "/prom-b"),
        ("etcd-datagen-1-34", "/etcd"),
        ("e2e-statefulset-0", "/golang"),
        ("e2e-daemonset-79ft8", "/otel-golden"),
        ("e2e-hpa-5b9fd8d67d-sjdmn", "/otel"),
        ("e2e-kube-state-metrics-64d545d47-nvr8f", "/micrometer"),
        ("coredns-66bc5c9577-d98t2", "/millis"),
        // A Failed pod: annotated, but never scraped.
        ("e2e-failjob-nkct8", "/prom-a"),
    ] {
        pods.items.push(annotated_pod(&all, name, port, path));
    }
    // Not annotated: never scraped.
    pods.items.extend(
        all.items
            .iter()
            .filter(|p| p.metadata.name.starts_with("metrics-server"))
            .cloned(),
    );

    let config = RedConfig::from_yaml(CONFIG).unwrap();
    let mut collector = RedCollector::new(config, FIXTURE_NODE, Duration::from_secs(15)).unwrap();
    let targets = pod_targets(&pods, FIXTURE_NODE);
    let count = targets.len();
    let snapshot = collector.collect(targets).await;
    let text = encode_text(&snapshot);
    let accept = server.accept_headers();
    assert!(
        accept
            .iter()
            .all(|a| a.starts_with("application/openmetrics-text")),
        "OpenMetrics must be asked for first: {accept:?}"
    );
    Scene {
        _server: server,
        text,
        targets: count,
    }
}

#[tokio::test]
async fn prometheus_server_requests_errors_and_buckets_sum_over_both_pods_of_the_deployment() {
    let scene = collect_scene().await;
    assert_eq!(
        scene.targets, 8,
        "the Failed pod and the unannotated pod are not targets"
    );
    let prom = fixture("app-metrics/prometheus-server-237mfs.prom");

    let (mut requests, mut errors) = (BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(&prom, "prometheus_http_requests_total") {
        let k = key(lbl(&l, "handler"), "", lbl(&l, "code"));
        add(&mut requests, k.clone(), 2.0 * v);
        add(
            &mut errors,
            k,
            if lbl(&l, "code").starts_with('5') {
                2.0 * v
            } else {
                0.0
            },
        );
    }
    let (mut buckets, mut sums, mut counts) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(&prom, "prometheus_http_request_duration_seconds_bucket") {
        add(
            &mut buckets,
            le_key(lbl(&l, "handler"), "", "", lbl(&l, "le")),
            2.0 * v,
        );
    }
    for (l, v) in samples(&prom, "prometheus_http_request_duration_seconds_sum") {
        add(&mut sums, key(lbl(&l, "handler"), "", ""), 2.0 * v);
    }
    for (l, v) in samples(&prom, "prometheus_http_request_duration_seconds_count") {
        add(&mut counts, key(lbl(&l, "handler"), "", ""), 2.0 * v);
    }
    assert!(
        requests.len() > 50 && buckets.len() > 400,
        "the fixture is the real one"
    );
    let t = &scene.text;
    let wl = "e2e-deployment";
    assert_close(
        &exported(t, "kubesignal_red_requests_total", wl),
        &requests,
        "requests",
    );
    assert_close(
        &exported(t, "kubesignal_red_errors_total", wl),
        &errors,
        "errors",
    );
    assert_close(
        &exported(t, "kubesignal_red_request_duration_seconds_bucket", wl),
        &buckets,
        "buckets",
    );
    assert_close(
        &exported(t, "kubesignal_red_request_duration_seconds_sum", wl),
        &sums,
        "sums",
    );
    assert_close(
        &exported(t, "kubesignal_red_request_duration_seconds_count", wl),
        &counts,
        "counts",
    );
    let one = samples(t, "kubesignal_red_requests_total")
        .into_iter()
        .find(|(l, _)| lbl(l, "workload") == wl)
        .unwrap()
        .0;
    assert_eq!(lbl(&one, "node"), FIXTURE_NODE);
    assert_eq!(lbl(&one, "namespace"), "scraper");
    assert_eq!(lbl(&one, "workload_kind"), "Deployment");
}

#[tokio::test]
async fn etcd_grpc_calls_become_service_method_routes_with_server_error_codes_as_errors() {
    let scene = collect_scene().await;
    let etcd = fixture("app-metrics/nri-k8s-1_34-etcd.prom");
    let server_errors = [
        "Unknown",
        "DeadlineExceeded",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
    ];
    let (mut requests, mut errors) = (BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(&etcd, "grpc_server_handled_total") {
        let route = format!("/{}/{}", lbl(&l, "grpc_service"), lbl(&l, "grpc_method"));
        let code = lbl(&l, "grpc_code");
        let k = key(&route, lbl(&l, "grpc_type"), code);
        add(&mut requests, k.clone(), v);
        add(
            &mut errors,
            k,
            if server_errors.contains(&code) {
                v
            } else {
                0.0
            },
        );
    }
    assert_eq!(
        requests.len(),
        731,
        "every handled_total series of the fixture"
    );
    let wl = "etcd-datagen-1-34";
    assert_close(
        &exported(&scene.text, "kubesignal_red_requests_total", wl),
        &requests,
        "requests",
    );
    assert_close(
        &exported(&scene.text, "kubesignal_red_errors_total", wl),
        &errors,
        "errors",
    );
    assert!(
        exported(
            &scene.text,
            "kubesignal_red_request_duration_seconds_count",
            wl
        )
        .is_empty()
    );
    let kind = samples(&scene.text, "kubesignal_red_requests_total")
        .into_iter()
        .find(|(l, _)| lbl(l, "workload") == wl)
        .map(|(l, _)| lbl(&l, "workload_kind").to_string());
    assert_eq!(
        kind.as_deref(),
        Some("Pod"),
        "a static pod without owner is its own workload"
    );
}

#[tokio::test]
async fn an_openmetrics_summary_gives_requests_count_and_sum_but_only_the_inf_bucket() {
    let scene = collect_scene().await;
    let om = fixture("app-metrics/client-golang-random-example-5mfs.om.txt");
    let (mut requests, mut infs, mut sums) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(&om, "rpc_durations_seconds_count") {
        add(&mut requests, key(lbl(&l, "service"), "", ""), v);
        add(&mut infs, le_key(lbl(&l, "service"), "", "", "+Inf"), v);
    }
    for (l, v) in samples(&om, "rpc_durations_seconds_sum") {
        add(&mut sums, key(lbl(&l, "service"), "", ""), v);
    }
    assert_eq!(requests.len(), 3);
    let wl = "e2e-statefulset";
    let t = &scene.text;
    assert_close(
        &exported(t, "kubesignal_red_requests_total", wl),
        &requests,
        "requests",
    );
    assert_close(
        &exported(t, "kubesignal_red_request_duration_seconds_bucket", wl),
        &infs,
        "buckets",
    );
    assert_close(
        &exported(t, "kubesignal_red_request_duration_seconds_sum", wl),
        &sums,
        "sums",
    );
}

#[tokio::test]
async fn the_otel_golden_histogram_keeps_its_bucket_bounds_exactly() {
    let scene = collect_scene().await;
    let golden = fixture("app-metrics/otel-go-exporter-histogram-golden.prom");
    let mut buckets = BTreeMap::new();
    for (l, v) in samples(&golden, "histogram_baz_bytes_bucket") {
        add(&mut buckets, le_key(lbl(&l, "A"), "", "", lbl(&l, "le")), v);
    }
    assert_eq!(buckets.len(), 11);
    let t = &scene.text;
    assert_close(
        &exported(
            t,
            "kubesignal_red_request_duration_seconds_bucket",
            "e2e-daemonset",
        ),
        &buckets,
        "buckets",
    );
    let requests = exported(t, "kubesignal_red_requests_total", "e2e-daemonset");
    assert_eq!(
        requests.values().sum::<f64>(),
        4.0,
        "the count feeds requests"
    );
}

#[tokio::test]
async fn otel_semconv_and_micrometer_histograms_give_requests_and_errors_from_their_counts() {
    let scene = collect_scene().await;
    let t = &scene.text;
    // OpenTelemetry: computed from the payload text.
    let (mut requests, mut errors, mut buckets) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(OTEL_SEMCONV, "http_server_request_duration_seconds_count") {
        let code = lbl(&l, "http_response_status_code");
        let k = key(lbl(&l, "http_route"), lbl(&l, "http_request_method"), code);
        add(&mut requests, k.clone(), v);
        add(&mut errors, k, if code.starts_with('5') { v } else { 0.0 });
    }
    for (l, v) in samples(OTEL_SEMCONV, "http_server_request_duration_seconds_bucket") {
        let k = le_key(
            lbl(&l, "http_route"),
            lbl(&l, "http_request_method"),
            lbl(&l, "http_response_status_code"),
            lbl(&l, "le"),
        );
        add(&mut buckets, k, v);
    }
    assert_close(
        &exported(t, "kubesignal_red_requests_total", "e2e-hpa"),
        &requests,
        "otel requests",
    );
    assert_close(
        &exported(t, "kubesignal_red_errors_total", "e2e-hpa"),
        &errors,
        "otel errors",
    );
    assert_close(
        &exported(
            t,
            "kubesignal_red_request_duration_seconds_bucket",
            "e2e-hpa",
        ),
        &buckets,
        "otel buckets",
    );
    // Micrometer: a 500 with outcome SERVER_ERROR is an error, a 404 is not.
    let (mut requests, mut errors) = (BTreeMap::new(), BTreeMap::new());
    for (l, v) in samples(MICROMETER, "http_server_requests_seconds_count") {
        let k = key(lbl(&l, "uri"), lbl(&l, "method"), lbl(&l, "status"));
        add(&mut requests, k.clone(), v);
        add(
            &mut errors,
            k,
            if lbl(&l, "outcome") == "SERVER_ERROR" {
                v
            } else {
                0.0
            },
        );
    }
    let wl = "e2e-kube-state-metrics";
    assert_close(
        &exported(t, "kubesignal_red_requests_total", wl),
        &requests,
        "micrometer requests",
    );
    assert_close(
        &exported(t, "kubesignal_red_errors_total", wl),
        &errors,
        "micrometer errors",
    );
    assert_eq!(errors.values().sum::<f64>(), 3.0);
}

#[tokio::test]
async fn a_millisecond_histogram_is_exported_in_seconds_bounds_included() {
    let scene = collect_scene().await;
    let t = &scene.text;
    let mut buckets = BTreeMap::new();
    for (l, v) in samples(MILLIS, "http_request_duration_milliseconds_bucket") {
        let le = match lbl(&l, "le") {
            "+Inf" => "+Inf".to_string(),
            ms => (ms.parse::<f64>().unwrap() / 1000.0).to_string(),
        };
        add(&mut buckets, le_key("/search", "get", "", &le), v);
    }
    assert_close(
        &exported(
            t,
            "kubesignal_red_request_duration_seconds_bucket",
            "coredns",
        ),
        &buckets,
        "buckets",
    );
    let sums = exported(t, "kubesignal_red_request_duration_seconds_sum", "coredns");
    assert_eq!(sums.values().copied().collect::<Vec<_>>(), [45.0]);
    // Requests come from the counter, not from the histogram's count.
    let requests = exported(t, "kubesignal_red_requests_total", "coredns");
    assert_eq!(requests[&key("/search", "get", "200")], 900.0);
    assert_eq!(requests[&key("/search", "get", "503")], 12.0);
    let errors = exported(t, "kubesignal_red_errors_total", "coredns");
    assert_eq!(errors.values().sum::<f64>(), 12.0);
}

#[tokio::test]
async fn routes_past_the_cap_fold_into_other_without_losing_requests_and_bucket_mismatches_are_counted()
 {
    let server = AppServer::start().await;
    let port = server.addr.port();
    let prom = fixture("app-metrics/prometheus-server-237mfs.prom");
    server.set("/prom", Reply::text(prom.clone(), TEXT));
    // The same application with different bucket bounds on the second pod.
    let other_bounds = prom.replace("le=\"0.1\"", "le=\"0.15\"");
    server.set("/prom-rebucketed", Reply::text(other_bounds, TEXT));
    let all = fixture_pods();
    let mut pods = PodList::default();
    pods.items.push(annotated_pod(
        &all,
        "e2e-deployment-6fb786454b-mrr5s",
        port,
        "/prom",
    ));
    pods.items.push(annotated_pod(
        &all,
        "e2e-deployment-6fb786454b-7fsxc",
        port,
        "/prom-rebucketed",
    ));
    let yaml = CONFIG.replace(
        "  spread: 0s\n",
        "  spread: 0s\n  max_routes_per_workload: 10\n",
    );
    let config = RedConfig::from_yaml(&yaml).unwrap();
    let mut collector = RedCollector::new(config, FIXTURE_NODE, Duration::from_secs(15)).unwrap();
    let snapshot = collector.collect(pod_targets(&pods, FIXTURE_NODE)).await;
    let text = encode_text(&snapshot);

    let requests = exported(&text, "kubesignal_red_requests_total", "e2e-deployment");
    let routes: std::collections::BTreeSet<&str> = requests
        .keys()
        .map(|(route, _, _)| route.as_str())
        .collect();
    assert_eq!(routes.len(), 11, "10 routes plus other: {routes:?}");
    assert!(routes.contains("other"));
    let served: f64 = samples(&prom, "prometheus_http_requests_total")
        .iter()
        .map(|(_, v)| 2.0 * v)
        .sum();
    assert_eq!(
        requests.values().sum::<f64>(),
        served,
        "no request lost to the cap"
    );
    let collapsed = samples(&text, "kubesignal_agent_red_routes_collapsed_total");
    assert_eq!(collapsed.len(), 1);
    assert!(collapsed[0].1 > 0.0);
    // Every histogram series of the second pod differs in one bound: all are left out, and
    // the exported buckets are exactly the first pod's.
    let histograms = samples(&prom, "prometheus_http_request_duration_seconds_count").len();
    let mismatches = samples(&text, "kubesignal_agent_red_bucket_mismatches_total");
    assert_eq!(mismatches[0].1, histograms as f64);
    let inf: f64 = exported(
        &text,
        "kubesignal_red_request_duration_seconds_bucket",
        "e2e-deployment",
    )
    .iter()
    .filter(|((_, _, code), _)| code.ends_with("le=inf"))
    .map(|(_, v)| v)
    .sum();
    let first_pod: f64 = samples(&prom, "prometheus_http_request_duration_seconds_count")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(inf, first_pod);
}
