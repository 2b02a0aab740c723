//! Prometheus's query API over the embedded store, so Grafana (or `promtool query`) can use the
//! evaluator as a Prometheus datasource: `/api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`,
//! `/api/v1/status/buildinfo` and an empty `/api/v1/metadata`.
//!
//! Response shapes, parameter formats, error types and status codes follow Prometheus's HTTP API:
//! `bad_data` is 400, `execution` 422, `timeout` 503.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use serde_json::{Map, Value as Json, json};

use super::embedded::{EmbeddedDatasource, error_type};
use crate::promql::{EvalError, Labels, Series, Storage, Value, matcher_sets};

/// Prometheus's limit on points per series of a range query.
const MAX_POINTS: i64 = 11_000;

/// The routes, over the embedded datasource.
pub fn router(ds: EmbeddedDatasource) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/api/v1/metadata",
            get(|| async { axum::Json(json!({"status": "success", "data": {}})) }),
        )
        .with_state(ds)
}

/// An API error: Prometheus's `errorType`, message and HTTP status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn eval(e: EvalError) -> Self {
        let kind = error_type(&e);
        let status = match kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "timeout" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

/// An engine error; a parse error names the parameter, as Prometheus's message does.
fn query_error(e: EvalError) -> ApiError {
    let mut err = ApiError::eval(e);
    if err.kind == "bad_data" {
        err.message = format!("invalid parameter \"query\": {}", err.message);
    }
    err
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"status": "error", "errorType": self.kind, "error": self.message})),
        )
            .into_response()
    }
}

fn success(data: Json) -> Response {
    axum::Json(success_body(data)).into_response()
}

fn success_body(data: Json) -> Json {
    json!({"status": "success", "data": data})
}

/// The body `/api/v1/query` sends for `v`.
pub fn query_body(v: &Value) -> Json {
    success_body(value_json(v))
}

/// The body `/api/v1/query_range` sends for `m`.
pub fn query_range_body(m: &[Series]) -> Json {
    success_body(json!({"resultType": "matrix", "result": matrix_json(m)}))
}

/// Query-string parameters plus, for a form POST, the body's, in order (`match[]` repeats).
fn params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    out
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A time as Prometheus takes it: Unix seconds (float) or RFC 3339; milliseconds out.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A duration as Prometheus takes it: float seconds or a PromQL duration (`1m30s`); ms out.
pub fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

fn time_param(p: &[(String, String)], name: &str, default: i64) -> Result<i64, ApiError> {
    match param(p, name) {
        None => Ok(default),
        Some(v) => parse_time(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

/// A timestamp in the API's JSON: float seconds, whole seconds written without a fraction.
fn ts_json(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

/// A value as Prometheus writes it (Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn metric_json(l: &Labels) -> Json {
    let mut m = Map::new();
    for (k, v) in l.iter() {
        m.insert(k.to_string(), Json::String(v.to_string()));
    }
    Json::Object(m)
}

fn point_json(t: i64, v: f64) -> Json {
    json!([ts_json(t), format_sample_value(v)])
}

fn matrix_json(series: &[Series]) -> Json {
    Json::Array(
        series
            .iter()
            .map(|s| {
                json!({
                    "metric": metric_json(&s.labels),
                    "values": s.points.iter().map(|p| point_json(p.t, p.v)).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The `data` object of an instant query result.
pub fn value_json(v: &Value) -> Json {
    let result = match v {
        Value::Scalar(p) => point_json(p.t, p.v),
        Value::String(t, s) => json!([ts_json(*t), s]),
        Value::Vector(samples) => Json::Array(
            samples
                .iter()
                .map(|s| json!({"metric": metric_json(&s.labels), "value": point_json(s.t, s.v)}))
                .collect(),
        ),
        Value::Matrix(m) => matrix_json(m),
    };
    json!({"resultType": v.type_name(), "result": result})
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs `f` on the store on a blocking thread: queries can take a while and must not hold up
/// the async workers (scrapes, rule groups).
async fn with_storage<T: Send + 'static>(
    ds: &EmbeddedDatasource,
    f: impl FnOnce(&EmbeddedDatasource, &Storage) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let ds = ds.clone();
    tokio::task::spawn_blocking(move || {
        let storage = ds.storage().read().unwrap_or_else(|p| p.into_inner());
        f(&ds, &storage)
    })
    .await
    .map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal",
        message: format!("query task failed: {e}"),
    })
}

async fn query(
    State(ds): State<EmbeddedDatasource>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(&uri, &headers, &body);
    let q = param(&p, "query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))?
        .to_string();
    let t = time_param(&p, "time", now_ms())?;
    let v = with_storage(&ds, move |ds, s| ds.engine().instant(s, &q, t))
        .await?
        .map_err(query_error)?;
    Ok(axum::Json(query_body(&v)).into_response())
}

async fn query_range(
    State(ds): State<EmbeddedDatasource>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(&uri, &headers, &body);
    let q = param(&p, "query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))?
        .to_string();
    let required = |name: &str| {
        param(&p, name)
            .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"{name}\": missing")))
    };
    let start = parse_time(required("start")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?;
    let end = parse_time(required("end")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = parse_step(required("step")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let m = with_storage(&ds, move |ds, s| ds.engine().range(s, &q, start, end, step))
        .await?
        .map_err(query_error)?;
    Ok(axum::Json(query_range_body(&m)).into_response())
}

/// The matcher sets of one `match[]` selector (more than one for `{a="1" or b="2"}`).
pub fn selector_matchers(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{s:?} is not a series selector"));
    };
    Ok(matcher_sets(&vs))
}

/// The series matching any of `selectors` with a sample in `[start, end]`; all series when
/// `selectors` is empty.
fn matching_series(
    storage: &Storage,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> BTreeSet<Labels> {
    let in_range = |s: &crate::promql::SeriesView<'_>| s.last_in(start, end, false).is_some();
    let mut out = BTreeSet::new();
    if selectors.is_empty() {
        out.extend(
            storage
                .iter()
                .filter(|s| in_range(s))
                .map(|s| s.labels.clone()),
        );
    }
    for m in selectors {
        out.extend(
            storage
                .select(m)
                .into_iter()
                .filter(|s| in_range(s))
                .map(|s| s.labels.clone()),
        );
    }
    out
}

struct SeriesQuery {
    selectors: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
}

fn series_query(p: &[(String, String)], need_match: bool) -> Result<SeriesQuery, ApiError> {
    let mut selectors = Vec::new();
    for (k, v) in p {
        if k == "match[]" {
            selectors.extend(
                selector_matchers(v).map_err(|e| {
                    ApiError::bad_data(format!("invalid parameter \"match[]\": {e}"))
                })?,
            );
        }
    }
    if need_match && selectors.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    Ok(SeriesQuery {
        selectors,
        start: time_param(p, "start", i64::MIN)?,
        end: time_param(p, "end", i64::MAX)?,
    })
}

async fn series(
    State(ds): State<EmbeddedDatasource>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = series_query(&params(&uri, &headers, &body), true)?;
    let found = with_storage(&ds, move |_, s| {
        matching_series(s, &q.selectors, q.start, q.end)
            .iter()
            .map(metric_json)
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(success(Json::Array(found)))
}

async fn labels(
    State(ds): State<EmbeddedDatasource>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let q = series_query(&params(&uri, &headers, &body), false)?;
    let names = with_storage(&ds, move |_, s| {
        let mut names = BTreeSet::new();
        for l in matching_series(s, &q.selectors, q.start, q.end) {
            names.extend(l.iter().map(|(k, _)| k.to_string()));
        }
        names
    })
    .await?;
    Ok(success(json!(names)))
}

async fn label_values(
    State(ds): State<EmbeddedDatasource>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = series_query(&params(&uri, &headers, &Bytes::new()), false)?;
    let values = with_storage(&ds, move |_, s| {
        let mut values = BTreeSet::new();
        for l in matching_series(s, &q.selectors, q.start, q.end) {
            if let Some(v) = l.get(&name) {
                values.insert(v.to_string());
            }
        }
        values
    })
    .await?;
    Ok(success(json!(values)))
}

/// Grafana probes this to pick its query features; we answer as the Prometheus version whose
/// semantics the engine follows.
async fn buildinfo() -> Response {
    success(json!({
        "version": "2.42.0",
        "revision": concat!("kubesignal-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Point, Sample};

    #[test]
    fn times_are_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time("1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(
            parse_time("2023-11-14T22:13:20.25Z").unwrap(),
            1_700_000_000_250
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn steps_are_float_seconds_or_durations() {
        assert_eq!(parse_step("15").unwrap(), 15_000);
        assert_eq!(parse_step("0.5").unwrap(), 500);
        assert_eq!(parse_step("1m30s").unwrap(), 90_000);
        assert!(parse_step("often").is_err());
    }

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        assert_eq!(format_sample_value(1.0), "1");
        assert_eq!(format_sample_value(0.1), "0.1");
        assert_eq!(format_sample_value(1e21), "1000000000000000000000");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
    }

    #[test]
    fn results_have_the_api_shapes() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let v = Value::Vector(vec![Sample {
            labels: l.clone(),
            t: 1_700_000_000_500,
            v: 1.0,
        }]);
        assert_eq!(
            value_json(&v),
            json!({"resultType": "vector", "result": [
                {"metric": {"__name__": "up", "job": "a"}, "value": [1700000000.5, "1"]}]})
        );
        let s = Value::Scalar(Point {
            t: 1_700_000_000_000,
            v: 2.5,
        });
        assert_eq!(
            value_json(&s),
            json!({"resultType": "scalar", "result": [1700000000, "2.5"]})
        );
        let m = [Series {
            labels: l,
            points: vec![Point { t: 1000, v: 1.0 }, Point { t: 2000, v: 2.0 }],
        }];
        assert_eq!(
            matrix_json(&m),
            json!([{"metric": {"__name__": "up", "job": "a"}, "values": [[1, "1"], [2, "2"]]}])
        );
    }

    #[test]
    fn a_selector_with_or_gives_one_matcher_set_per_alternative() {
        let sets = selector_matchers(r#"up{job="a" or job="b"}"#).unwrap();
        assert_eq!(sets.len(), 2);
        assert!(sets.iter().all(|s| s.iter().any(|m| m.name == "__name__")));
        assert!(
            selector_matchers("sum(up)")
                .unwrap_err()
                .contains("not a series selector")
        );
    }

    #[test]
    fn series_outside_the_time_range_are_not_listed() {
        let mut st = Storage::new();
        st.append(&Labels::from_pairs([("__name__", "a")]), 1000, 1.0);
        st.append(&Labels::from_pairs([("__name__", "b")]), 5000, 1.0);
        let all = matching_series(&st, &[], 0, 10_000);
        assert_eq!(all.len(), 2);
        let late = matching_series(&st, &[], 2000, 10_000);
        assert_eq!(late.iter().next().unwrap().name(), Some("b"));
        let none = matching_series(&st, &selector_matchers("a").unwrap(), 2000, 3000);
        assert!(none.is_empty());
    }
}
