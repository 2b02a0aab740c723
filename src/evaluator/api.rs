//! The evaluator's HTTP endpoints: `/api/v1/rules` and `/api/v1/alerts` in Prometheus's
//! response shapes, an HTML overview at `/`, `/metrics`, `/healthz`, `/readyz` and `/-/reload`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::Shared;
use super::alert::{Alert, AlertState, Labels, format_labels};
use super::group::{Group, RuleEntry, RuleKind};

/// The router, over the engine's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .with_state(shared)
}

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    // Prometheus reports the zero time for "never".
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// A value as Go's `strconv.FormatFloat(v, 'e', -1, 64)` writes it, as the alerts API does.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiAlert<'a> {
    labels: &'a Labels,
    annotations: &'a Labels,
    state: AlertState,
    active_at: String,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<String>,
}

fn api_alert(a: &Alert) -> ApiAlert<'_> {
    ApiAlert {
        labels: &a.labels,
        annotations: &a.annotations,
        state: a.state,
        active_at: rfc3339(Some(a.active_at)),
        value: format_value(a.value),
        keep_firing_since: a.keep_firing_since.map(|t| rfc3339(Some(t))),
    }
}

fn api_rule(entry: &RuleEntry) -> Value {
    let s = &entry.status;
    let common = json!({
        "name": entry.name(),
        "query": entry.expr(),
        "health": s.health,
        "lastError": s.last_error.clone().unwrap_or_default(),
        "evaluationTime": s.evaluation_time.as_secs_f64(),
        "lastEvaluation": rfc3339(s.last_evaluation),
    });
    let Value::Object(mut obj) = common else {
        unreachable!("json! of an object literal")
    };
    match &entry.kind {
        RuleKind::Alerting(r) => {
            let alerts: Vec<ApiAlert<'_>> = r.active_alerts().map(api_alert).collect();
            obj.insert("type".into(), "alerting".into());
            obj.insert("state".into(), r.state().as_str().into());
            obj.insert("duration".into(), r.hold.as_secs_f64().into());
            obj.insert(
                "keepFiringFor".into(),
                r.keep_firing_for.as_secs_f64().into(),
            );
            obj.insert("labels".into(), json!(r.labels));
            obj.insert("annotations".into(), json!(r.annotations));
            obj.insert("alerts".into(), json!(alerts));
        }
        RuleKind::Recording(r) => {
            obj.insert("type".into(), "recording".into());
            obj.insert("labels".into(), json!(r.labels));
        }
    }
    Value::Object(obj)
}

async fn rules(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let groups = shared.snapshot();
    let data: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "file": g.file,
                "interval": g.interval.as_secs_f64(),
                "limit": g.limit,
                "rules": g.rules.iter().map(api_rule).collect::<Vec<_>>(),
                "evaluationTime": g.evaluation_time.as_secs_f64(),
                "lastEvaluation": rfc3339(g.last_evaluation),
            })
        })
        .collect();
    axum::Json(json!({"status": "success", "data": {"groups": data}}))
}

async fn alerts(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let groups = shared.snapshot();
    let mut list = Vec::new();
    for g in &groups {
        for entry in &g.rules {
            if let RuleKind::Alerting(r) = &entry.kind {
                list.extend(r.active_alerts().map(|a| json!(api_alert(a))));
            }
        }
    }
    axum::Json(json!({"status": "success", "data": {"alerts": list}}))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.metrics.encode(&shared.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "rules not loaded yet\n").into_response()
    }
}

async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match shared.request_reload().await {
        Ok(()) => (StatusCode::OK, "rules reloaded\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render_group(out: &mut String, g: &Group) {
    let _ = write!(
        out,
        "<h2>{} <small>({}, every {:?}, last evaluation {} took {:.3}s)</small></h2>",
        escape(&g.name),
        escape(&g.file),
        g.interval,
        escape(&rfc3339(g.last_evaluation)),
        g.evaluation_time.as_secs_f64()
    );
    out.push_str("<table><tr><th>rule</th><th>expr</th><th>health</th><th>state</th><th>last evaluation</th><th>error</th></tr>");
    for entry in &g.rules {
        let state = match &entry.kind {
            RuleKind::Alerting(r) => r.state().as_str(),
            RuleKind::Recording(_) => "",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{h:?}\">{h:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(entry.name()),
            escape(entry.expr()),
            state,
            escape(&rfc3339(entry.status.last_evaluation)),
            escape(entry.status.last_error.as_deref().unwrap_or("")),
            h = entry.status.health,
        );
        if let RuleKind::Alerting(r) = &entry.kind {
            for a in r.active_alerts() {
                let _ = write!(
                    out,
                    "<tr class=\"alert\"><td></td><td colspan=\"2\">{}</td><td>{}</td><td>since {}</td><td>value {}</td></tr>",
                    escape(&format_labels(&a.labels)),
                    a.state.as_str(),
                    escape(&rfc3339(Some(a.active_at))),
                    escape(&format_value(a.value)),
                );
            }
        }
    }
    out.push_str("</table>");
}

async fn overview(State(shared): State<Arc<Shared>>) -> Html<String> {
    let groups = shared.snapshot();
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kubesignal evaluator</title>\
         <style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
         .Err{color:#b00}.alert{background:#fff4e5}</style></head><body><h1>kubesignal evaluator</h1>",
    );
    if let Some(e) = shared.last_reload_error() {
        let _ = write!(
            out,
            "<p class=\"Err\">Last reload failed: {}</p>",
            escape(&e)
        );
    }
    for g in &groups {
        render_group(&mut out, g);
    }
    out.push_str("</body></html>");
    Html(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_like_go_exponent_notation() {
        assert_eq!(format_value(1.0), "1e+00");
        assert_eq!(format_value(0.25), "2.5e-01");
        assert_eq!(format_value(12345.0), "1.2345e+04");
    }
}
