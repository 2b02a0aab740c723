//! Sending alerts: Prometheus's Alertmanager v2 payload (`POST /api/v2/alerts`, a JSON array
//! of labels, annotations, startsAt, endsAt, generatorURL), batched, to every configured
//! Alertmanager. Destinations sit behind [`AlertSink`]: Alertmanagers, and owner routing
//! ([`OwnerRouting`], `--routing-file`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use super::alert::{Alert, Labels};
use super::datasource::BoxFuture;
use super::metrics::Metrics;

/// Prometheus's default batch size.
pub const MAX_BATCH: usize = 256;

/// One alert as Alertmanager's v2 API takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutAlert {
    /// Labels (with external labels the alert lacked).
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// When it started firing.
    pub starts_at: String,
    /// When it resolved, or until when it is valid.
    pub ends_at: String,
    /// Link back to the expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// The expression's value at the last evaluation (for owner routing's context; not part of
    /// Alertmanager's payload).
    #[serde(skip)]
    pub value: f64,
    /// The rule's expression (for owner routing's chart; not part of Alertmanager's payload).
    #[serde(skip)]
    pub expr: String,
}

impl OutAlert {
    /// Prometheus's mapping: `startsAt = firedAt`, `endsAt = resolvedAt` or `validUntil`;
    /// external labels are added only where the alert lacks them.
    pub fn from_alert(
        alert: &Alert,
        expr: &str,
        external_url: &str,
        external_labels: &Labels,
    ) -> Self {
        let mut labels = alert.labels.clone();
        for (k, v) in external_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let starts = alert.fired_at.unwrap_or(alert.active_at);
        let ends = alert.resolved_at.or(alert.valid_until).unwrap_or(starts);
        OutAlert {
            labels,
            annotations: alert.annotations.clone(),
            starts_at: fmt(starts),
            ends_at: fmt(ends),
            generator_url: generator_url(external_url, expr),
            value: alert.value,
            expr: expr.to_string(),
        }
    }
}

/// `EXTERNAL_URL/graph?g0.expr=EXPR&g0.tab=1`, Prometheus's table link.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={encoded}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request failed.
    #[error("sending {count} alerts to {url}: {message}")]
    Send {
        /// The endpoint.
        url: String,
        /// Alerts in the batch.
        count: usize,
        /// What went wrong.
        message: String,
    },
}

/// A destination for alerts.
pub trait AlertSink: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &str;
    /// Delivers one batch.
    fn send<'a>(&'a self, alerts: &'a [OutAlert]) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// One Alertmanager (v2 API).
pub struct Alertmanager {
    url: String,
    endpoint: String,
    client: reqwest::Client,
}

impl Alertmanager {
    /// A sink posting to `BASE/api/v2/alerts`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("kubesignal/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Alertmanager {
            url: base.to_string(),
            endpoint: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
            client,
        }
    }
}

impl AlertSink for Alertmanager {
    fn name(&self) -> &str {
        &self.url
    }

    fn send<'a>(&'a self, alerts: &'a [OutAlert]) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let fail = |message: String| NotifyError::Send {
                url: self.endpoint.clone(),
                count: alerts.len(),
                message,
            };
            let resp = self
                .client
                .post(&self.endpoint)
                .json(alerts)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return Err(fail(format!("HTTP {status}: {}", body.trim())));
            }
            Ok(())
        })
    }
}

/// Drains the queue, sending each batch to every sink; ends when all senders are dropped.
pub async fn run_notifier(
    mut queue: mpsc::Receiver<Vec<OutAlert>>,
    sinks: Vec<Arc<dyn AlertSink>>,
    metrics: Arc<Metrics>,
) {
    while let Some(mut alerts) = queue.recv().await {
        // Take whatever else is queued so batches are as full as possible.
        while alerts.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(more) => alerts.extend(more),
                Err(_) => break,
            }
        }
        for batch in alerts.chunks(MAX_BATCH) {
            for sink in &sinks {
                match sink.send(batch).await {
                    Ok(()) => metrics.notification_sent(sink.name(), batch.len()),
                    Err(e) => {
                        tracing::warn!(error = %e, "sending alerts failed");
                        metrics.notification_failed(sink.name(), batch.len());
                    }
                }
            }
        }
    }
}

/// Owner routing (`--routing-file`) as a destination: alerts go to the notification pipeline,
/// which groups them and delivers to the owners of each service.
pub struct OwnerRouting {
    notifier: Arc<crate::notify::Notifier>,
}

impl OwnerRouting {
    /// A sink handing alerts to `notifier`.
    pub fn new(notifier: Arc<crate::notify::Notifier>) -> Self {
        OwnerRouting { notifier }
    }
}

impl AlertSink for OwnerRouting {
    fn name(&self) -> &str {
        "owner-routing"
    }

    fn send<'a>(&'a self, alerts: &'a [OutAlert]) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let parse = |t: &str| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| NotifyError::Send {
                        url: "owner-routing".into(),
                        count: alerts.len(),
                        message: format!("bad timestamp {t:?}: {e}"),
                    })
            };
            let mut batch = Vec::with_capacity(alerts.len());
            for a in alerts {
                batch.push(crate::notify::Alert {
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: parse(&a.starts_at)?,
                    ends_at: Some(parse(&a.ends_at)?),
                    generator_url: a.generator_url.clone(),
                    value: Some(a.value),
                    expr: Some(a.expr.clone()),
                });
            }
            self.notifier.submit(batch).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::evaluator::alert::AlertState;

    /// Records batch sizes; fails every batch when asked to.
    struct Recording {
        batches: Mutex<Vec<usize>>,
        fail: bool,
    }

    impl AlertSink for Recording {
        fn name(&self) -> &str {
            if self.fail { "down" } else { "up" }
        }
        fn send<'a>(&'a self, alerts: &'a [OutAlert]) -> BoxFuture<'a, Result<(), NotifyError>> {
            self.batches.lock().unwrap().push(alerts.len());
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    Err(NotifyError::Send {
                        url: "down".into(),
                        count: alerts.len(),
                        message: "refused".into(),
                    })
                } else {
                    Ok(())
                }
            })
        }
    }

    fn out(i: usize) -> OutAlert {
        OutAlert {
            labels: Labels::from([("alertname".into(), format!("A{i}"))]),
            annotations: Labels::new(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            value: i as f64,
            expr: "up == 0".into(),
        }
    }

    #[tokio::test]
    async fn queued_alerts_go_to_every_sink_in_batches_of_at_most_256_and_failures_are_counted() {
        let (tx, rx) = mpsc::channel(16);
        let up = Arc::new(Recording {
            batches: Mutex::default(),
            fail: false,
        });
        let down = Arc::new(Recording {
            batches: Mutex::default(),
            fail: true,
        });
        let metrics = Arc::new(Metrics::new());
        tx.send((0..300).map(out).collect()).await.unwrap();
        tx.send((0..300).map(out).collect()).await.unwrap();
        drop(tx);
        run_notifier(rx, vec![up.clone(), down.clone()], metrics.clone()).await;
        let sizes = up.batches.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 600);
        assert!(sizes.iter().all(|n| *n <= MAX_BATCH), "{sizes:?}");
        assert_eq!(*down.batches.lock().unwrap(), sizes);
        let text = metrics.encode(&[]);
        assert!(
            text.contains(r#"kubesignal_evaluator_alerts_sent_total{destination="up"} 600"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubesignal_evaluator_alerts_send_failures_total{destination="down"} 600"#
            ),
            "{text}"
        );
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_payload_uses_fired_at_and_valid_until_and_adds_missing_external_labels() {
        let alert = Alert {
            labels: Labels::from([
                ("alertname".into(), "A".into()),
                ("cluster".into(), "mine".into()),
            ]),
            annotations: Labels::new(),
            state: AlertState::Firing,
            value: 1.0,
            active_at: t(0),
            fired_at: Some(t(60)),
            resolved_at: None,
            last_sent_at: Some(t(60)),
            valid_until: Some(t(300)),
            keep_firing_since: None,
        };
        let ext = Labels::from([
            ("cluster".into(), "eu".into()),
            ("region".into(), "x".into()),
        ]);
        let out = OutAlert::from_alert(&alert, "up == 0", "http://ev:9090/", &ext);
        assert_eq!(out.starts_at, "2023-11-14T22:14:20.000Z");
        assert_eq!(out.ends_at, "2023-11-14T22:18:20.000Z");
        assert_eq!(out.labels["cluster"], "mine");
        assert_eq!(out.labels["region"], "x");
        assert_eq!(
            out.generator_url,
            "http://ev:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        );
        let json = serde_json::to_value(&out).unwrap();
        assert!(json.get("generatorURL").is_some() && json.get("startsAt").is_some());
    }
}
