//! Forwarding to Alertmanager's v2 API (`POST /api/v2/alerts`) as one more receiver type, for
//! teams that keep Alertmanager's routing, silences and integrations.

use chrono::SecondsFormat;
use serde::Serialize;

use super::Alert;

/// Alertmanager v2 postable alert.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a std::collections::BTreeMap<String, String>,
    annotations: &'a std::collections::BTreeMap<String, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
}

/// `POST` target for an Alertmanager base URL (with or without a path prefix).
pub fn endpoint(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// The JSON array Alertmanager expects.
pub fn render(alerts: &[Alert]) -> String {
    let body: Vec<PostableAlert<'_>> = alerts
        .iter()
        .map(|a| PostableAlert {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: a.starts_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ends_at: a
                .ends_at
                .map(|e| e.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            generator_url: &a.generator_url,
        })
        .collect();
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_posted_as_a_v2_array_under_the_path_prefix() {
        assert_eq!(
            endpoint("http://am:9093/prefix/"),
            "http://am:9093/prefix/api/v2/alerts"
        );
        let a = Alert {
            labels: [("alertname".to_string(), "X".to_string())].into(),
            annotations: Default::default(),
            starts_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            ends_at: Some("2026-01-01T00:10:00Z".parse().unwrap()),
            generator_url: "http://e/g".into(),
            value: Some(1.0),
            expr: Some("up == 0".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&render(&[a])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"labels":{"alertname":"X"},"annotations":{},
                "startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T00:10:00Z",
                "generatorURL":"http://e/g"}])
        );
    }
}
