//! An in-memory series store: what the engine reads from, what tests load into, and what the
//! embedded evaluator scrapes into.
//!
//! Each series keeps its timestamps and values in two sorted vectors, so a range lookup is two
//! binary searches and a slice. Series are found through a posting list per metric name; the
//! remaining matchers are checked against each candidate's labels.

use std::collections::HashMap;

use promql_parser::label::{MatchOp, Matcher};

use super::value::{Labels, METRIC_NAME};

/// A read-only view of one stored series.
#[derive(Clone, Copy, Debug)]
pub struct SeriesView<'a> {
    /// The series' labels, `__name__` included.
    pub labels: &'a Labels,
    /// Sample timestamps in milliseconds, ascending.
    pub t: &'a [i64],
    /// Sample values, one per timestamp.
    pub v: &'a [f64],
}

impl<'a> SeriesView<'a> {
    /// Indices of the samples with `min <= t <= max` (or `min < t` when `left_open`).
    pub fn range(&self, min: i64, max: i64, left_open: bool) -> std::ops::Range<usize> {
        let lo = if left_open {
            self.t.partition_point(|&t| t <= min)
        } else {
            self.t.partition_point(|&t| t < min)
        };
        let hi = self.t.partition_point(|&t| t <= max);
        lo..hi.max(lo)
    }
}

#[derive(Debug, Default)]
struct StoredSeries {
    labels: Labels,
    t: Vec<i64>,
    v: Vec<f64>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct Storage {
    series: Vec<StoredSeries>,
    by_labels: HashMap<Labels, usize>,
    by_name: HashMap<String, Vec<usize>>,
    samples: usize,
}

impl Storage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample. A sample at a timestamp the series already has replaces the old value;
    /// a sample older than the newest is inserted in order.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        let id = match self.by_labels.get(labels) {
            Some(&id) => id,
            None => self.insert_series(labels.clone()),
        };
        let s = &mut self.series[id];
        match s.t.last() {
            None => {
                s.t.push(t);
                s.v.push(v);
                self.samples += 1;
            }
            Some(&last) if t > last => {
                s.t.push(t);
                s.v.push(v);
                self.samples += 1;
            }
            Some(_) => match s.t.binary_search(&t) {
                Ok(i) => s.v[i] = v,
                Err(i) => {
                    s.t.insert(i, t);
                    s.v.insert(i, v);
                    self.samples += 1;
                }
            },
        }
    }

    fn insert_series(&mut self, labels: Labels) -> usize {
        let id = self.series.len();
        let name = labels.name().unwrap_or_default().to_string();
        self.by_name.entry(name).or_default().push(id);
        self.by_labels.insert(labels.clone(), id);
        self.series.push(StoredSeries {
            labels,
            t: Vec::new(),
            v: Vec::new(),
        });
        id
    }

    /// Drops every series.
    pub fn clear(&mut self) {
        *self = Storage::default();
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of samples over all series.
    pub fn sample_count(&self) -> usize {
        self.samples
    }

    /// The newest timestamp in the store, if any sample exists.
    pub fn max_time(&self) -> Option<i64> {
        self.series.iter().filter_map(|s| s.t.last().copied()).max()
    }

    /// Every series, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = SeriesView<'_>> {
        self.series.iter().map(view)
    }

    /// The series whose labels satisfy every matcher. A matcher on a label the series lacks is
    /// checked against the empty string, as in Prometheus.
    pub fn select<'a>(&'a self, matchers: &[Matcher]) -> Vec<SeriesView<'a>> {
        let name_eq = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal));
        let matches = |s: &&StoredSeries| {
            matchers
                .iter()
                .all(|m| m.is_match(s.labels.get(&m.name).unwrap_or("")))
        };
        match name_eq {
            Some(m) => self
                .by_name
                .get(&m.value)
                .into_iter()
                .flatten()
                .map(|&id| &self.series[id])
                .filter(matches)
                .map(view)
                .collect(),
            None => self.series.iter().filter(matches).map(view).collect(),
        }
    }

    /// Removes samples older than `min_t` and series left empty by that.
    pub fn truncate_before(&mut self, min_t: i64) {
        let mut removed = 0;
        for s in &mut self.series {
            let cut = s.t.partition_point(|&t| t < min_t);
            if cut > 0 {
                s.t.drain(..cut);
                s.v.drain(..cut);
                removed += cut;
            }
        }
        self.samples -= removed;
        if self.series.iter().any(|s| s.t.is_empty()) {
            let kept: Vec<StoredSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| !s.t.is_empty())
                .collect();
            let samples = self.samples;
            *self = Storage::default();
            self.samples = samples;
            for s in kept {
                let id = self.insert_series(s.labels.clone());
                self.series[id] = s;
            }
        }
    }
}

fn view(s: &StoredSeries) -> SeriesView<'_> {
    SeriesView {
        labels: &s.labels,
        t: &s.t,
        v: &s.v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value)
    }

    #[test]
    fn appends_keep_samples_sorted_and_replace_duplicates() {
        let mut s = Storage::new();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        s.append(&l, 20, 2.0);
        s.append(&l, 10, 1.0);
        s.append(&l, 30, 3.0);
        s.append(&l, 20, 9.0);
        let m = [eq("__name__", "up")];
        let got = s.select(&m);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].t, &[10, 20, 30]);
        assert_eq!(got[0].v, &[1.0, 9.0, 3.0]);
        assert_eq!(s.sample_count(), 3);
    }

    #[test]
    fn select_checks_absent_labels_against_the_empty_string() {
        let mut s = Storage::new();
        s.append(
            &Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            0,
            1.0,
        );
        s.append(&Labels::from_pairs([("__name__", "up")]), 0, 1.0);
        let m = [eq("__name__", "up"), eq("job", "")];
        assert_eq!(s.select(&m).len(), 1);
        let m = [Matcher::new(MatchOp::NotEqual, "job", "")];
        assert_eq!(s.select(&m).len(), 1);
    }

    #[test]
    fn range_is_closed_or_left_open() {
        let mut s = Storage::new();
        let l = Labels::from_pairs([("__name__", "x")]);
        for t in [0, 10, 20, 30] {
            s.append(&l, t, 0.0);
        }
        let m = [eq("__name__", "x")];
        let v = s.select(&m)[0];
        assert_eq!(v.range(10, 20, false), 1..3);
        assert_eq!(v.range(10, 20, true), 2..3);
        assert_eq!(v.range(40, 50, false), 4..4);
    }

    #[test]
    fn truncation_drops_old_samples_and_empty_series() {
        let mut s = Storage::new();
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        s.append(&a, 0, 1.0);
        s.append(&b, 0, 1.0);
        s.append(&b, 100, 2.0);
        s.truncate_before(50);
        assert_eq!(s.series_count(), 1);
        assert_eq!(s.sample_count(), 1);
        let m = [eq("__name__", "b")];
        assert_eq!(s.select(&m)[0].t, &[100]);
        s.append(&a, 200, 1.0);
        assert_eq!(s.series_count(), 2);
    }
}
