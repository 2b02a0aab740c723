//! Prometheus remote write (protocol 1.0): recording rule results, `ALERTS` and
//! `ALERTS_FOR_STATE` written back to a Prometheus-compatible store after each group
//! evaluation, with stale markers for series that stopped, as Prometheus writes them to its own
//! TSDB.
//!
//! The protobuf `WriteRequest` is small and fixed (timeseries -> labels, samples), so it is
//! encoded here by hand rather than through generated code; the body is snappy-compressed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::alert::Labels;
use super::datasource::Sample;
use super::group::{Group, Health, RuleKind};
use super::metrics::Metrics;

/// Prometheus's stale marker, a NaN with a particular payload.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// One series with one sample at `ts` (milliseconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Labels including `__name__`.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// Unix milliseconds.
    pub ts: i64,
}

/// Series a group produced at one evaluation: `ALERTS`, `ALERTS_FOR_STATE` and, unless they
/// were already written inline (`recorded: false`), recorded series. Rules whose evaluation
/// failed write nothing (and get no stale markers), as in Prometheus.
pub fn group_series(group: &Group, recorded: bool) -> Vec<Sample> {
    let mut out = Vec::new();
    for entry in &group.rules {
        if entry.status.health == Health::Err {
            continue;
        }
        match &entry.kind {
            RuleKind::Recording(r) => {
                if recorded {
                    out.extend(r.last_result.iter().cloned());
                }
            }
            RuleKind::Alerting(r) => {
                for a in r.active_alerts() {
                    let mut labels = a.labels.clone();
                    labels.insert("__name__".into(), "ALERTS".into());
                    labels.insert("alertstate".into(), a.state.as_str().into());
                    out.push(Sample { labels, value: 1.0 });
                    let mut labels = a.labels.clone();
                    labels.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                    out.push(Sample {
                        labels,
                        value: a.active_at.timestamp() as f64,
                    });
                }
            }
        }
    }
    out
}

/// Whether `labels` is a series written by a rule that failed this time (kept, not staled).
fn from_failed_rule(group: &Group, labels: &Labels) -> bool {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    group.rules.iter().any(|e| {
        e.status.health == Health::Err
            && match &e.kind {
                RuleKind::Recording(r) => r.name == name,
                RuleKind::Alerting(r) => {
                    matches!(name, "ALERTS" | "ALERTS_FOR_STATE")
                        && labels.get("alertname") == Some(&r.name)
                }
            }
    })
}

/// Tracks what a group wrote last time, to add stale markers for series that disappeared.
#[derive(Debug, Default)]
pub struct StaleTracker {
    previous: BTreeMap<String, BTreeSet<Labels>>,
}

impl StaleTracker {
    /// Points for this evaluation: the current series plus a stale marker for each series of
    /// the previous evaluation that is gone.
    pub fn points(&mut self, group: &Group, ts: DateTime<Utc>, recorded: bool) -> Vec<Point> {
        let group_key = group.key();
        let series = group_series(group, recorded);
        let ms = ts.timestamp_millis();
        let mut current: BTreeSet<Labels> = series.iter().map(|s| s.labels.clone()).collect();
        let mut points: Vec<Point> = series
            .into_iter()
            .map(|s| Point {
                labels: s.labels,
                value: s.value,
                ts: ms,
            })
            .collect();
        if let Some(prev) = self.previous.get(&group_key) {
            let held: Vec<Labels> = prev
                .difference(&current)
                .filter(|l| from_failed_rule(group, l))
                .cloned()
                .collect();
            current.extend(held);
            for gone in prev.difference(&current) {
                points.push(Point {
                    labels: gone.clone(),
                    value: f64::from_bits(STALE_NAN),
                    ts: ms,
                });
            }
        }
        self.previous.insert(group_key, current);
        points
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes `prometheus.WriteRequest{timeseries}`; labels sorted by name as the protocol asks.
pub fn encode_write_request(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts_buf = Vec::new();
    let mut item = Vec::new();
    for p in points {
        ts_buf.clear();
        // BTreeMap iteration is sorted, and `__name__` sorts before lowercase names.
        for (name, value) in &p.labels {
            item.clear();
            bytes_field(&mut item, 1, name.as_bytes());
            bytes_field(&mut item, 2, value.as_bytes());
            bytes_field(&mut ts_buf, 1, &item);
        }
        item.clear();
        tag(&mut item, 1, 1);
        item.extend_from_slice(&p.value.to_bits().to_le_bytes());
        tag(&mut item, 2, 0);
        varint(&mut item, p.ts as u64);
        bytes_field(&mut ts_buf, 2, &item);
        bytes_field(&mut out, 1, &ts_buf);
    }
    out
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// Compression failed.
    #[error("compressing the write request: {0}")]
    Compress(String),
    /// The request failed.
    #[error("remote write to {url}: {message}")]
    Send {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
        /// Whether trying again may help.
        retry: bool,
    },
}

/// A remote-write endpoint.
pub struct RemoteWriter {
    url: String,
    client: reqwest::Client,
}

impl RemoteWriter {
    /// A writer posting to `url` (the full write endpoint, e.g. `.../api/v1/write`).
    pub fn new(url: &str, timeout: Duration) -> Self {
        RemoteWriter {
            url: url.to_string(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("kubesignal/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Sends one request.
    pub async fn write(&self, points: &[Point]) -> Result<(), RemoteWriteError> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&encode_write_request(points))
            .map_err(|e| RemoteWriteError::Compress(e.to_string()))?;
        let fail = |message: String, retry: bool| RemoteWriteError::Send {
            url: self.url.clone(),
            message,
            retry,
        };
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(e.to_string(), true))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        // 4xx other than 429 will not get better by retrying (out of order, bad labels).
        let retry = status.as_u16() == 429 || status.is_server_error();
        Err(fail(format!("HTTP {status}: {}", text.trim()), retry))
    }
}

impl super::group::RecordSink for RemoteWriter {
    fn write<'a>(
        &'a self,
        series: &'a [Sample],
        ts: DateTime<Utc>,
    ) -> super::datasource::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ms = ts.timestamp_millis();
            let points: Vec<Point> = series
                .iter()
                .map(|s| Point {
                    labels: s.labels.clone(),
                    value: s.value,
                    ts: ms,
                })
                .collect();
            RemoteWriter::write(self, &points)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Sends queued points, retrying transient failures a few times with backoff.
pub async fn run_remote_writer(
    mut queue: mpsc::Receiver<Vec<Point>>,
    writer: RemoteWriter,
    metrics: Arc<Metrics>,
) {
    while let Some(points) = queue.recv().await {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=4 {
            match writer.write(&points).await {
                Ok(()) => {
                    metrics.remote_written(points.len(), true);
                    break;
                }
                Err(e) => {
                    let retry = matches!(e, RemoteWriteError::Send { retry: true, .. });
                    if !retry || attempt == 4 {
                        tracing::warn!(error = %e, "remote write failed; samples dropped");
                        metrics.remote_written(points.len(), false);
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_encodes_labels_value_and_timestamp_as_protobuf() {
        let p = Point {
            labels: Labels::from([("__name__".into(), "x".into())]),
            value: 1.0,
            ts: 1,
        };
        let bytes = encode_write_request(&[p]);
        // timeseries(1) { labels(1) { name(1)="__name__" value(2)="x" } samples(2) { value(1)=1.0 ts(2)=1 } }
        let expected: Vec<u8> = [
            vec![0x0a, 28, 0x0a, 13, 0x0a, 8],
            b"__name__".to_vec(),
            vec![0x12, 1, b'x', 0x12, 11, 0x09],
            1.0f64.to_le_bytes().to_vec(),
            vec![0x10, 1],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn series_that_disappear_get_one_stale_marker_unless_their_rule_failed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(
            &p,
            "groups:\n- name: g\n  rules:\n  - {record: a, expr: x}\n  - {record: b, expr: y}\n",
        )
        .unwrap();
        let mut g = crate::evaluator::group::load_groups(
            &[p.display().to_string()],
            Duration::from_secs(60),
        )
        .unwrap()
        .remove(0);
        let set = |g: &mut Group, i: usize, v: Vec<Sample>, health: Health| {
            g.rules[i].status.health = health;
            if let RuleKind::Recording(r) = &mut g.rules[i].kind {
                r.last_result = v;
            }
        };
        let s = |name: &str| Sample {
            labels: Labels::from([("__name__".into(), name.into())]),
            value: 1.0,
        };
        let ts = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut t = StaleTracker::default();
        set(&mut g, 0, vec![s("a")], Health::Ok);
        set(&mut g, 1, vec![s("b")], Health::Ok);
        assert_eq!(t.points(&g, ts, true).len(), 2);
        // `b` failed: nothing written for it, and no stale marker either.
        set(&mut g, 1, vec![s("b")], Health::Err);
        let points = t.points(&g, ts, true);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].labels["__name__"], "a");
        // `a` now returns nothing: one stale marker.
        set(&mut g, 0, vec![], Health::Ok);
        let points = t.points(&g, ts, true);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].value.to_bits(), STALE_NAN);
        assert!(t.points(&g, ts, true).is_empty());
    }
}
