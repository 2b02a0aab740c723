//! The datasource client against real HTTP(S) servers: what it sends (time, query, auth,
//! headers), how it retries, and TLS with a custom CA.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::DateTime;
use kubesignal::evaluator::datasource::{Datasource, DatasourceError, HttpConfig, HttpDatasource};
use tokio::time::Instant;

const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1700000000,"1"]}]}}"#;

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(HeaderMap, String)>>,
    /// Status codes to answer with before answering 200.
    failures: Mutex<VecDeque<(u16, String)>>,
}

async fn handle(
    State(rec): State<Arc<Recorder>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    rec.requests.lock().unwrap().push((headers, body));
    if let Some((status, body)) = rec.failures.lock().unwrap().pop_front() {
        return (StatusCode::from_u16(status).unwrap(), body);
    }
    (StatusCode::OK, VECTOR.to_string())
}

async fn server(rec: Arc<Recorder>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/prefix/api/v1/query", axum::routing::post(handle))
        .with_state(rec);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/prefix")
}

fn config(url: String) -> HttpConfig {
    HttpConfig {
        url,
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[tokio::test]
async fn queries_carry_the_evaluation_time_headers_and_a_token_reread_from_its_file() {
    let rec = Arc::new(Recorder::default());
    let url = server(rec.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let ds = HttpDatasource::new(HttpConfig {
        bearer_token_file: Some(token.clone()),
        headers: vec![("X-Scope-OrgID".into(), "tenant-1".into())],
        ..config(url)
    })
    .unwrap();
    let ts = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
    let samples = ds.query("up == 0", ts, soon(5)).await.unwrap();
    assert_eq!(samples[0].labels["job"], "a");
    std::fs::write(&token, "second").unwrap();
    ds.query("up", ts, soon(5)).await.unwrap();

    let reqs = rec.requests.lock().unwrap();
    assert_eq!(reqs[0].0["authorization"], "Bearer first");
    assert_eq!(reqs[1].0["authorization"], "Bearer second");
    assert_eq!(reqs[0].0["x-scope-orgid"], "tenant-1");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(reqs[0].1.as_bytes())
        .into_owned()
        .collect();
    assert!(
        form.contains(&("query".into(), "up == 0".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("time".into(), "1700000000.500".into())),
        "{form:?}"
    );
}

#[tokio::test]
async fn basic_auth_takes_its_password_from_a_file() {
    let rec = Arc::new(Recorder::default());
    let url = server(rec.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let ds = HttpDatasource::new(HttpConfig {
        basic_auth_username: Some("alice".into()),
        basic_auth_password_file: Some(pw),
        ..config(url)
    })
    .unwrap();
    ds.query("up", chrono::Utc::now(), soon(5)).await.unwrap();
    let reqs = rec.requests.lock().unwrap();
    // base64("alice:s3cret")
    assert_eq!(reqs[0].0["authorization"], "Basic YWxpY2U6czNjcmV0");
}

#[tokio::test]
async fn transient_failures_are_retried_until_an_answer_comes() {
    let rec = Arc::new(Recorder::default());
    rec.failures.lock().unwrap().extend([
        (503, "overloaded".to_string()),
        (502, "<html>bad gateway</html>".to_string()),
    ]);
    let url = server(rec.clone()).await;
    let ds = HttpDatasource::new(config(url)).unwrap();
    let samples = ds.query("up", chrono::Utc::now(), soon(5)).await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(rec.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retries_give_up_at_the_evaluation_deadline() {
    let rec = Arc::new(Recorder::default());
    rec.failures
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((503, String::new()), 100));
    let url = server(rec.clone()).await;
    let ds = HttpDatasource::new(config(url)).unwrap();
    let started = Instant::now();
    let err = ds
        .query(
            "up",
            chrono::Utc::now(),
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DatasourceError::Deadline { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let n = rec.requests.lock().unwrap().len();
    assert!(
        (2..=6).contains(&n),
        "{n} attempts in 1s: backoff should space them"
    );
}

#[tokio::test]
async fn a_bad_query_is_reported_with_the_servers_message_and_not_retried() {
    let rec = Arc::new(Recorder::default());
    rec.failures.lock().unwrap().push_back((
        400,
        r#"{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}"#.into(),
    ));
    let url = server(rec.clone()).await;
    let ds = HttpDatasource::new(config(url)).unwrap();
    let err = ds
        .query("up{", chrono::Utc::now(), soon(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unexpected end of input"), "{err}");
    assert_eq!(rec.requests.lock().unwrap().len(), 1);
}

/// An HTTPS server whose certificate is signed by a fresh CA; returns its URL and the CA PEM.
async fn tls_server() -> (String, String) {
    use hyper::service::service_fn;
    use tokio_rustls::rustls;

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes_of(VECTOR)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), ca.pem())
}

fn bytes_of(s: &'static str) -> axum::body::Bytes {
    axum::body::Bytes::from_static(s.as_bytes())
}

#[tokio::test]
async fn a_datasource_signed_by_a_private_ca_is_trusted_only_with_that_ca_file() {
    let (url, ca_pem) = tls_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();

    let untrusted = HttpDatasource::new(config(url.clone())).unwrap();
    let err = untrusted
        .query(
            "up",
            chrono::Utc::now(),
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let trusted = HttpDatasource::new(HttpConfig {
        ca_file: Some(ca),
        ..config(url)
    })
    .unwrap();
    let samples = trusted
        .query("up", chrono::Utc::now(), soon(5))
        .await
        .unwrap();
    assert_eq!(samples[0].labels["job"], "a");
}

#[test]
fn an_unreadable_ca_file_is_an_error_naming_the_file() {
    let err = HttpDatasource::new(HttpConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..config("https://x".into())
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
