//! Rule results written back into an in-process [`Storage`]: what Prometheus does with its own
//! TSDB, so that later rules (and later steps of a replay or a unit test) can query recorded
//! series, `ALERTS` and `ALERTS_FOR_STATE`.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::datasource::{BoxFuture, Sample};
use super::group::RecordSink;
use super::remote_write::Point;
use crate::promql::{Labels, Storage};

/// Appends recording results to a shared store.
#[derive(Clone, Debug)]
pub struct StorageSink {
    storage: Arc<RwLock<Storage>>,
}

impl StorageSink {
    /// Writes into `storage`.
    pub fn new(storage: Arc<RwLock<Storage>>) -> Self {
        StorageSink { storage }
    }

    /// Appends points that carry their own timestamps (the `ALERTS` series and stale markers a
    /// [`super::remote_write::StaleTracker`] produces).
    pub fn append_points(&self, points: &[Point]) {
        let mut storage = self
            .storage
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for p in points {
            storage.append(&to_labels(&p.labels), p.ts, p.value);
        }
    }
}

/// The evaluator's label map as the engine's label set.
pub fn to_labels(labels: &super::alert::Labels) -> Labels {
    Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl RecordSink for StorageSink {
    fn write<'a>(
        &'a self,
        series: &'a [Sample],
        ts: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let t = ts.timestamp_millis();
            let mut storage = self
                .storage
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for s in series {
                storage.append(&to_labels(&s.labels), t, s.value);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    #[tokio::test]
    async fn recorded_samples_land_in_the_store_at_the_evaluation_time() {
        let storage = Arc::new(RwLock::new(Storage::new()));
        let sink = StorageSink::new(storage.clone());
        let sample = Sample {
            labels: [
                ("__name__".to_string(), "job:up:sum".to_string()),
                ("job".to_string(), "a".to_string()),
            ]
            .into(),
            value: 3.0,
        };
        let ts = DateTime::from_timestamp(60, 0).unwrap();
        sink.write(std::slice::from_ref(&sample), ts).await.unwrap();
        let store = storage.read().unwrap();
        let m = [Matcher::new(MatchOp::Equal, "__name__", "job:up:sum")];
        let found = store.select(&m);
        assert_eq!(found.len(), 1);
        let points = found[0].all_samples();
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].t, points[0].v), (60_000, 3.0));
        assert_eq!(found[0].labels.get("job"), Some("a"));
    }
}
