//! Generic webhook with the Alertmanager webhook v4 JSON payload, so receivers written for
//! Alertmanager (chat bridges, ticketing hooks) work unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::Alert;
use super::group::Notification;

/// The `endsAt` Alertmanager sends for firing alerts (Go's zero time).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Alertmanager webhook payload, version 4.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Always `"4"`.
    pub version: String,
    /// Identifies the group (route and group labels).
    pub group_key: String,
    /// Alerts left out because of a size limit (always 0: we send all).
    pub truncated_alerts: usize,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    /// The receiver: the route's name (owner or `triage`).
    pub receiver: String,
    /// The group-by labels and their values.
    pub group_labels: BTreeMap<String, String>,
    /// Labels all alerts share.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations all alerts share.
    pub common_annotations: BTreeMap<String, String>,
    /// The evaluator's URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of the payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 start.
    pub starts_at: String,
    /// RFC 3339 end; Go's zero time while firing.
    pub ends_at: String,
    /// Link to the source.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Hex fingerprint of the labels.
    pub fingerprint: String,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn common<'a>(
    mut sets: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = sets.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// The payload of a notification.
pub fn payload(n: &Notification, external_url: &str) -> WebhookPayload {
    WebhookPayload {
        version: "4".into(),
        group_key: n.group_key.clone(),
        truncated_alerts: 0,
        status: n.status().into(),
        receiver: n.route.clone(),
        group_labels: n.group_labels.clone(),
        common_labels: common(n.alerts.iter().map(|a| &a.labels)),
        common_annotations: common(n.alerts.iter().map(|a| &a.annotations)),
        external_url: external_url.into(),
        alerts: n.alerts.iter().map(|a| alert(a, n.at)).collect(),
    }
}

fn alert(a: &Alert, now: DateTime<Utc>) -> WebhookAlert {
    let firing = a.is_firing(now);
    WebhookAlert {
        status: if firing { "firing" } else { "resolved" }.into(),
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: time(a.starts_at),
        ends_at: match a.ends_at {
            Some(e) if !firing => time(e),
            _ => ZERO_TIME.into(),
        },
        generator_url: a.generator_url.clone(),
        fingerprint: format!("{:016x}", a.fingerprint()),
    }
}

/// The JSON body of a notification.
pub fn render(n: &Notification, external_url: &str) -> String {
    serde_json::to_string(&payload(n, external_url)).unwrap_or_default()
}
