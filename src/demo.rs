//! `kubesignal demo`: a small web application that exposes RED metrics the way most services do
//! (Prometheus client conventions), so the docker-compose stack and the tests have a real target
//! for the agent's RED collection and for the SLO rules.
//!
//! HTTP surface:
//! - `GET /` and `GET /api/items/{id}`: simulated work. Each request sleeps for a latency drawn
//!   from an exponential distribution with the configured mean (capped at ten times the mean) and
//!   fails with `500` with the configured probability.
//! - `GET /metrics`: `http_requests_total{code,method,route}` and the histogram
//!   `http_request_duration_seconds{code,method,route}` in the OpenMetrics text format.
//! - `GET /healthz`: `ok`, not counted.
//!
//! With `--self-load RPS` the process also sends itself that many requests per second, so a
//! freshly started stack has traffic without a load generator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, serve};
use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Upper bounds of the latency histogram, in seconds. They are the Prometheus client defaults, so
/// a latency SLO threshold such as 0.1 or 0.25 is one of the bounds.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Flags of `kubesignal demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Address to serve the application and its /metrics on.
    #[arg(long, env = "KUBESIGNAL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Share of requests answered with 500, between 0 and 1.
    #[arg(long, env = "KUBESIGNAL_ERROR_RATE", default_value_t = 0.02, value_parser = parse_ratio)]
    pub error_rate: f64,

    /// Mean simulated latency of a request, in milliseconds (exponentially distributed).
    #[arg(long, env = "KUBESIGNAL_LATENCY_MS", default_value_t = 50.0, value_parser = parse_latency)]
    pub latency_ms: f64,

    /// Requests per second the demo sends to itself; 0 turns the load loop off.
    #[arg(long, env = "KUBESIGNAL_SELF_LOAD", default_value_t = 0.0, value_parser = parse_rps)]
    pub self_load: f64,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is outside 0..=1 (0.02 means 2% of requests fail)"
        ))
    }
}

fn parse_latency(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && (0.0..=60_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} ms is outside 0..=60000"))
    }
}

fn parse_rps(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && (0.0..=10_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} requests/s is outside 0..=10000"))
    }
}

/// Labels of the demo's request series, named as in the Prometheus client libraries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: String,
    method: String,
    route: String,
}

/// A small xorshift generator: the demo needs cheap, seedable randomness, not cryptography.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed (0 is replaced, xorshift cannot leave it).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A uniform value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws one simulated latency: exponential with mean `mean_ms`, capped at ten times the mean so
/// a single draw cannot stall a request for minutes.
pub fn sample_latency(rng: &mut Rng, mean_ms: f64) -> Duration {
    if mean_ms <= 0.0 {
        return Duration::ZERO;
    }
    let u = rng.next_f64();
    let ms = (-(1.0 - u).ln() * mean_ms).min(mean_ms * 10.0);
    Duration::from_secs_f64(ms / 1000.0)
}

/// Shared state of the demo application.
#[derive(Clone)]
struct DemoState {
    error_rate: f64,
    latency_ms: f64,
    rng: Arc<Mutex<Rng>>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
    registry: Arc<Registry>,
}

impl DemoState {
    fn new(error_rate: f64, latency_ms: f64, seed: u64) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        let mut registry = Registry::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "http_requests",
            "HTTP requests served, by status code, method and route",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time spent serving HTTP requests, by status code, method and route",
            durations.clone(),
        );
        DemoState {
            error_rate,
            latency_ms,
            rng: Arc::new(Mutex::new(Rng::new(seed))),
            requests,
            durations: durations.clone(),
            registry: Arc::new(registry),
        }
    }

    /// Latency and outcome of the next request, drawn under one lock.
    fn draw(&self) -> (Duration, bool) {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let latency = sample_latency(&mut rng, self.latency_ms);
        let fail = rng.next_f64() < self.error_rate;
        (latency, fail)
    }
}

/// The demo's router; `seed` makes the simulated errors reproducible in tests.
pub fn router(args: &DemoArgs, seed: u64) -> Router {
    let state = DemoState::new(args.error_rate, args.latency_ms, seed);
    let app = Router::new()
        .route("/", get(work_root))
        .route("/api/items/{id}", get(work_item))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }));
    app.with_state(state)
}

/// Simulates one request and records it under its route template (never the raw path, so item
/// ids do not become label values). Templates use the `:id` style: braces inside label values
/// trip up some exposition parsers.
async fn simulated_work(state: &DemoState, route: &'static str) -> Response {
    let start = Instant::now();
    let (latency, fail) = state.draw();
    tokio::time::sleep(latency).await;
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let labels = RequestLabels {
        code: status.as_u16().to_string(),
        method: "GET".to_string(),
        route: route.to_string(),
    };
    state.requests.get_or_create(&labels).inc();
    state
        .durations
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    let body = if fail { "simulated failure\n" } else { "ok\n" };
    (status, body).into_response()
}

async fn work_root(State(state): State<DemoState>) -> Response {
    simulated_work(&state, "/").await
}

async fn work_item(State(state): State<DemoState>, Path(id): Path<u32>) -> Response {
    let mut resp = simulated_work(&state, "/api/items/:id").await;
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert("x-item-id", v);
    }
    resp
}

async fn metrics(State(state): State<DemoState>) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Sends `rps` requests per second to `base` until the process ends, alternating between the
/// routes. Failures are expected (that is the point of the demo) and only counted.
async fn self_load(base: String, rps: f64) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the self-load HTTP client; no self-load");
            return;
        }
    };
    let sent = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let n = sent.fetch_add(1, Ordering::Relaxed);
        let url = if n.is_multiple_of(3) {
            format!("{base}/")
        } else {
            format!("{base}/api/items/{}", n % 50)
        };
        let client = client.clone();
        // Each request runs on its own task so slow responses do not lower the rate.
        tokio::spawn(async move {
            if let Err(e) = client.get(&url).send().await {
                tracing::debug!(error = %e, url, "self-load request failed");
            }
        });
    }
}

/// Serves the demo on an already bound listener until `shutdown` completes; starts the self-load
/// loop when asked. Tests bind `127.0.0.1:0` and pass the listener in.
pub async fn serve_on(
    listener: TcpListener,
    args: &DemoArgs,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, error_rate = args.error_rate, latency_ms = args.latency_ms, self_load = args.self_load, "Demo application listening.");
    let load = if args.self_load > 0.0 {
        let host = if local.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local.port()))
        } else {
            local
        };
        Some(tokio::spawn(self_load(
            format!("http://{host}"),
            args.self_load,
        )))
    } else {
        None
    };
    let result = serve(listener, router(args, seed))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(task) = load {
        task.abort();
    }
    result
}

/// Runs `kubesignal demo` until SIGTERM or Ctrl-C.
pub async fn run(args: DemoArgs) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    serve_on(listener, &args, seed, crate::http::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_samples_average_to_the_configured_mean() {
        let mut rng = Rng::new(42);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| sample_latency(&mut rng, 50.0).as_secs_f64() * 1000.0)
            .sum();
        let mean = total / n as f64;
        // The cap at 10x the mean removes e^-10 of the mass: the mean stays within a few percent.
        assert!((mean - 50.0).abs() < 2.5, "mean latency {mean} ms");
    }

    #[test]
    fn no_latency_sample_exceeds_ten_times_the_mean() {
        let mut rng = Rng::new(7);
        let max = (0..50_000)
            .map(|_| sample_latency(&mut rng, 10.0))
            .max()
            .unwrap();
        assert!(max <= Duration::from_millis(100), "{max:?}");
    }

    #[test]
    fn an_error_rate_outside_zero_to_one_is_rejected_with_the_value() {
        let err = parse_ratio("1.5").unwrap_err();
        assert!(err.contains("1.5"), "{err}");
        assert!(parse_ratio("abc").is_err());
        assert_eq!(parse_ratio("0.02"), Ok(0.02));
    }

    #[test]
    fn uniform_draws_stay_in_the_unit_interval() {
        let mut rng = Rng::new(0);
        assert!(
            (0..10_000)
                .map(|_| rng.next_f64())
                .all(|v| (0.0..1.0).contains(&v))
        );
    }
}
