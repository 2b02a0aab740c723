//! An in-memory series store: what the engine reads from, what tests load into, and what the
//! embedded evaluator scrapes into.
//!
//! Each series keeps its older samples in compressed [`Chunk`]s and its newest ones in a short
//! uncompressed head, so appends are cheap and memory stays near two bytes per sample for
//! regular scrapes. Series are found through a posting list per metric name; the remaining
//! matchers are checked against each candidate's labels.

use std::collections::HashMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;

use super::chunk::Chunk;
use super::value::{Labels, METRIC_NAME, Point};

/// The matcher sets of a selector, one per `or` alternative (`{a="1" or b="2"}`), each with the
/// metric name written before the braces. A series matches the selector when it satisfies every
/// matcher of at least one set.
pub fn matcher_sets(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    // The parser fills `or_matchers` instead of `matchers` when the selector has alternatives.
    let sets = if vs.matchers.or_matchers.is_empty() {
        vec![vs.matchers.matchers.clone()]
    } else {
        vs.matchers.or_matchers.clone()
    };
    sets.into_iter()
        .map(|mut set| {
            if let Some(name) = &vs.name
                && !set.iter().any(|m| m.name == METRIC_NAME)
            {
                set.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
            }
            set
        })
        .collect()
}

/// Samples kept uncompressed at the head of a series before they are sealed into a chunk.
const HEAD_SAMPLES: usize = 120;

/// Decoded chunks kept for the length of one query, so a range query's steps do not decode
/// the same chunk again and again. Bounded: past the budget it starts over.
#[derive(Debug, Default)]
pub struct DecodeCache {
    chunks: HashMap<usize, std::rc::Rc<Vec<Point>>>,
    points: usize,
}

/// Decoded points a [`DecodeCache`] holds at most (16 bytes each).
const DECODE_CACHE_POINTS: usize = 4_000_000;

impl DecodeCache {
    fn get(&mut self, c: &Chunk) -> std::rc::Rc<Vec<Point>> {
        let key = c as *const Chunk as usize;
        if let Some(hit) = self.chunks.get(&key) {
            return hit.clone();
        }
        let mut v = Vec::new();
        c.decode_into(&mut v);
        if self.points + v.len() > DECODE_CACHE_POINTS {
            self.chunks.clear();
            self.points = 0;
        }
        self.points += v.len();
        let v = std::rc::Rc::new(v);
        self.chunks.insert(key, v.clone());
        v
    }
}

/// A read-only view of one stored series.
#[derive(Clone, Copy, Debug)]
pub struct SeriesView<'a> {
    /// The series' labels, `__name__` included.
    pub labels: &'a Labels,
    series: &'a StoredSeries,
}

impl<'a> SeriesView<'a> {
    /// Appends to `out` the samples with `min <= t <= max` (or `min < t` when `left_open`), in
    /// time order.
    pub fn samples_into(&self, min: i64, max: i64, left_open: bool, out: &mut Vec<Point>) {
        self.read(min, max, left_open, out, None);
    }

    /// As [`Self::samples_into`], reusing chunks decoded earlier in the same query.
    pub fn samples_cached(
        &self,
        min: i64,
        max: i64,
        left_open: bool,
        out: &mut Vec<Point>,
        cache: &mut DecodeCache,
    ) {
        self.read(min, max, left_open, out, Some(cache));
    }

    fn read(
        &self,
        min: i64,
        max: i64,
        left_open: bool,
        out: &mut Vec<Point>,
        mut cache: Option<&mut DecodeCache>,
    ) {
        let after_min = |t: i64| if left_open { t > min } else { t >= min };
        let chunks = &self.series.chunks;
        let first = chunks.partition_point(|c| c.max_t < min);
        let last = chunks.partition_point(|c| c.min_t <= max);
        if first < last {
            out.reserve(chunks[first..last].iter().map(|c| c.count as usize).sum());
        }
        for c in chunks.get(first..last).unwrap_or_default() {
            let whole = after_min(c.min_t) && c.max_t <= max;
            match cache.as_deref_mut() {
                Some(cache) => {
                    let points = cache.get(c);
                    if whole {
                        out.extend_from_slice(&points);
                    } else {
                        let lo = points.partition_point(|p| !after_min(p.t));
                        let hi = points.partition_point(|p| p.t <= max);
                        if lo < hi {
                            out.extend_from_slice(&points[lo..hi]);
                        }
                    }
                }
                None => {
                    let from = out.len();
                    c.decode_into(out);
                    if !whole {
                        let mut kept = from;
                        for i in from..out.len() {
                            if after_min(out[i].t) && out[i].t <= max {
                                out[kept] = out[i];
                                kept += 1;
                            }
                        }
                        out.truncate(kept);
                    }
                }
            }
        }
        let head = &self.series.head;
        let lo = head.partition_point(|p| !after_min(p.t));
        let hi = head.partition_point(|p| p.t <= max);
        if lo < hi {
            out.extend_from_slice(&head[lo..hi]);
        }
    }

    /// The samples with `min <= t <= max` (or `min < t` when `left_open`).
    pub fn samples(&self, min: i64, max: i64, left_open: bool) -> Vec<Point> {
        let mut out = Vec::new();
        self.samples_into(min, max, left_open, &mut out);
        out
    }

    /// Every sample of the series.
    pub fn all_samples(&self) -> Vec<Point> {
        self.samples(i64::MIN, i64::MAX, false)
    }

    /// The newest sample with `min <= t <= max` (or `min < t` when `left_open`).
    pub fn last_in(&self, min: i64, max: i64, left_open: bool) -> Option<Point> {
        self.last(min, max, left_open, None)
    }

    /// As [`Self::last_in`], reusing chunks decoded earlier in the same query.
    pub fn last_cached(
        &self,
        min: i64,
        max: i64,
        left_open: bool,
        cache: &mut DecodeCache,
    ) -> Option<Point> {
        self.last(min, max, left_open, Some(cache))
    }

    fn last(
        &self,
        min: i64,
        max: i64,
        left_open: bool,
        cache: Option<&mut DecodeCache>,
    ) -> Option<Point> {
        let after_min = |t: i64| if left_open { t > min } else { t >= min };
        let head = &self.series.head;
        let hi = head.partition_point(|p| p.t <= max);
        if hi > 0 {
            let p = head[hi - 1];
            return after_min(p.t).then_some(p);
        }
        // Not in the head: the newest chunk that starts at or before `max` holds it, if any.
        let chunks = &self.series.chunks;
        let i = chunks.partition_point(|c| c.min_t <= max);
        if i == 0 {
            return None;
        }
        let c = &chunks[i - 1];
        if c.max_t < min {
            return None;
        }
        let p = match cache {
            Some(cache) => {
                let points = cache.get(c);
                let hi = points.partition_point(|p| p.t <= max);
                points[..hi].last().copied()
            }
            None => {
                let mut buf = Vec::new();
                c.decode_into(&mut buf);
                buf.into_iter().take_while(|p| p.t <= max).last()
            }
        }?;
        after_min(p.t).then_some(p)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the series holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Time of the newest sample.
    pub fn max_time(&self) -> Option<i64> {
        self.series.max_time()
    }
}

#[derive(Debug, Default)]
struct StoredSeries {
    labels: Labels,
    chunks: Vec<Chunk>,
    head: Vec<Point>,
}

impl StoredSeries {
    fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.count as usize).sum::<usize>() + self.head.len()
    }

    fn max_time(&self) -> Option<i64> {
        self.head
            .last()
            .map(|p| p.t)
            .or_else(|| self.chunks.last().map(|c| c.max_t))
    }

    /// Adds a sample; returns whether the count grew (false when it replaced one).
    fn append(&mut self, p: Point) -> bool {
        let newest = self.max_time();
        if newest.is_none_or(|m| p.t > m) {
            self.head.push(p);
            if self.head.len() >= HEAD_SAMPLES {
                self.chunks.push(Chunk::encode(&self.head));
                self.head.clear();
            }
            return true;
        }
        if self.head.first().is_some_and(|f| p.t >= f.t) || self.chunks.is_empty() {
            return insert_sorted(&mut self.head, p);
        }
        // Older than the head: rewrite the chunk that covers it (rare: out-of-order loads).
        let i = self
            .chunks
            .partition_point(|c| c.max_t < p.t)
            .min(self.chunks.len() - 1);
        let mut points = Vec::new();
        self.chunks[i].decode_into(&mut points);
        let grew = insert_sorted(&mut points, p);
        self.chunks[i] = Chunk::encode(&points);
        grew
    }

    /// Drops samples older than `min_t`; returns how many.
    fn truncate_before(&mut self, min_t: i64) -> usize {
        let mut removed = 0;
        let whole = self.chunks.partition_point(|c| c.max_t < min_t);
        removed += self.chunks[..whole]
            .iter()
            .map(|c| c.count as usize)
            .sum::<usize>();
        self.chunks.drain(..whole);
        if let Some(c) = self.chunks.first()
            && c.min_t < min_t
        {
            let mut points = Vec::new();
            c.decode_into(&mut points);
            let cut = points.partition_point(|p| p.t < min_t);
            removed += cut;
            self.chunks[0] = Chunk::encode(&points[cut..]);
        }
        if self.chunks.is_empty() {
            let cut = self.head.partition_point(|p| p.t < min_t);
            removed += cut;
            self.head.drain(..cut);
        }
        removed
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self
                .chunks
                .iter()
                .map(|c| c.size() + std::mem::size_of::<Chunk>())
                .sum::<usize>()
            + self.head.capacity() * std::mem::size_of::<Point>()
    }
}

fn insert_sorted(v: &mut Vec<Point>, p: Point) -> bool {
    match v.binary_search_by(|q| q.t.cmp(&p.t)) {
        Ok(i) => {
            v[i] = p;
            false
        }
        Err(i) => {
            v.insert(i, p);
            true
        }
    }
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
        if self.series[id].append(Point { t, v }) {
            self.samples += 1;
        }
    }

    fn insert_series(&mut self, labels: Labels) -> usize {
        let id = self.series.len();
        let name = labels.name().unwrap_or_default().to_string();
        self.by_name.entry(name).or_default().push(id);
        self.by_labels.insert(labels.clone(), id);
        self.series.push(StoredSeries {
            labels,
            chunks: Vec::new(),
            head: Vec::new(),
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

    /// An estimate of the heap memory the samples and labels take, in bytes (index maps not
    /// included).
    pub fn memory_bytes(&self) -> usize {
        self.series.iter().map(StoredSeries::memory_bytes).sum()
    }

    /// The newest timestamp in the store, if any sample exists.
    pub fn max_time(&self) -> Option<i64> {
        self.series.iter().filter_map(StoredSeries::max_time).max()
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
            removed += s.truncate_before(min_t);
        }
        self.samples -= removed;
        if self.series.iter().any(|s| s.len() == 0) {
            let kept: Vec<StoredSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| s.len() > 0)
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
        series: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value)
    }

    fn times(points: &[Point]) -> Vec<i64> {
        points.iter().map(|p| p.t).collect()
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
        let all = got[0].all_samples();
        assert_eq!(times(&all), [10, 20, 30]);
        assert_eq!(all.iter().map(|p| p.v).collect::<Vec<_>>(), [1.0, 9.0, 3.0]);
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
    fn ranges_are_closed_or_left_open() {
        let mut s = Storage::new();
        let l = Labels::from_pairs([("__name__", "x")]);
        for t in [0, 10, 20, 30] {
            s.append(&l, t, 0.0);
        }
        let m = [eq("__name__", "x")];
        let v = s.select(&m)[0];
        assert_eq!(times(&v.samples(10, 20, false)), [10, 20]);
        assert_eq!(times(&v.samples(10, 20, true)), [20]);
        assert!(v.samples(40, 50, false).is_empty());
        assert_eq!(v.last_in(10, 25, false).map(|p| p.t), Some(20));
        assert_eq!(v.last_in(20, 25, true), None);
    }

    #[test]
    fn reads_span_sealed_chunks_and_the_head_alike() {
        let mut s = Storage::new();
        let l = Labels::from_pairs([("__name__", "c")]);
        let n = HEAD_SAMPLES as i64 * 3 + 7;
        for i in 0..n {
            s.append(&l, i * 1000, i as f64);
        }
        let m = [eq("__name__", "c")];
        let v = s.select(&m)[0];
        assert_eq!(v.len(), n as usize);
        let mid = v.samples(100_000, 250_000, false);
        assert_eq!(mid.len(), 151);
        assert!(mid.iter().all(|p| p.v * 1000.0 == p.t as f64));
        assert_eq!(v.last_in(0, 130_500, false).map(|p| p.t), Some(130_000));
        assert_eq!(
            v.last_in(0, n * 1000, false).map(|p| p.t),
            Some((n - 1) * 1000)
        );
        // An out-of-order sample lands inside a sealed chunk.
        s.append(&l, 5_500, -1.0);
        let v = s.select(&m)[0];
        assert_eq!(
            times(&v.samples(5_000, 6_000, false)),
            [5_000, 5_500, 6_000]
        );
        assert!(s.memory_bytes() < s.sample_count() * 8);
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
        assert_eq!(times(&s.select(&m)[0].all_samples()), [100]);
        s.append(&a, 200, 1.0);
        assert_eq!(s.series_count(), 2);
    }

    #[test]
    fn truncation_cuts_inside_a_sealed_chunk() {
        let mut s = Storage::new();
        let l = Labels::from_pairs([("__name__", "c")]);
        for i in 0..(HEAD_SAMPLES as i64 * 2) {
            s.append(&l, i, 0.0);
        }
        s.truncate_before(50);
        assert_eq!(s.sample_count(), HEAD_SAMPLES * 2 - 50);
        let m = [eq("__name__", "c")];
        assert_eq!(s.select(&m)[0].all_samples()[0].t, 50);
    }
}
