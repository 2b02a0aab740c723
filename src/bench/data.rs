//! A deterministic data set shaped like the agent's RED series: request and error counters and
//! classic latency histograms per workload, route and code, plus a memory gauge per pod and a
//! recording-rule-like error-ratio series per SLO.
//!
//! The same generated samples go into the OpenMetrics file Prometheus is loaded from and into
//! our [`Storage`], so both engines answer over identical data.

use std::io::Write;

use crate::promql::{Labels, Storage};

/// Upper bounds of the latency histogram buckets, `+Inf` last.
pub const BUCKETS: [f64; 6] = [0.025, 0.1, 0.25, 0.5, 1.0, f64::INFINITY];

/// The end of the generated data, 2026-11-01T00:00:00Z in milliseconds. Fixed so every run
/// produces the same samples and queries ask about the same instants.
pub const END_MS: i64 = 1_793_491_200_000;

/// How much data to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Days of history ending at [`END_MS`].
    pub days: u32,
    /// Approximate number of series; rounded up to whole workloads of [`SERIES_PER_WORKLOAD`].
    pub series: usize,
    /// Scrape interval in seconds.
    pub interval_s: u32,
}

/// Series one workload brings: per route (2) and code (200, 500) a request counter and an
/// 8-series histogram, an error counter per 500 cell, one memory gauge and one SLO series.
pub const SERIES_PER_WORKLOAD: usize = 2 * 2 * (1 + BUCKETS.len() + 2) + 2 + 1 + 1;

impl DataShape {
    /// Number of workloads needed for about `series` series (at least 2, so per-workload
    /// aggregations have something to group).
    pub fn workloads(&self) -> usize {
        self.series.div_ceil(SERIES_PER_WORKLOAD).max(2)
    }

    /// Number of scrapes per series.
    pub fn points(&self) -> usize {
        (self.days as usize * 86_400) / self.interval_s as usize + 1
    }

    /// Timestamp of the first scrape, in milliseconds.
    pub fn start_ms(&self) -> i64 {
        END_MS - (self.points() as i64 - 1) * self.interval_s as i64 * 1000
    }
}

/// One generated series: its labels (`__name__` included) and one value per scrape.
#[derive(Clone, Debug)]
pub struct GenSeries {
    /// Label pairs, `__name__` first.
    pub labels: Vec<(String, String)>,
    /// One value per scrape, at `start_ms + i * interval`.
    pub values: Vec<f64>,
}

/// The generated data: every series shares the same scrape timestamps.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// What was generated.
    pub shape: DataShape,
    /// The series.
    pub series: Vec<GenSeries>,
}

/// splitmix64: a tiny, fixed pseudo-random sequence, so the data never changes with a crate
/// version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Namespace of workload `w`.
pub fn namespace(w: usize) -> String {
    if w.is_multiple_of(2) {
        "team-a"
    } else {
        "team-b"
    }
    .to_string()
}

/// Name of workload `w`.
pub fn workload(w: usize) -> String {
    format!("svc-{w}")
}

const ROUTES: [(&str, &str); 2] = [("/api/items", "GET"), ("/api/orders", "POST")];
const CODES: [&str; 2] = ["200", "500"];

/// Share of a workload's requests that fail at scrape `i` of `n`: workload 0 runs at 1% and has
/// an incident (25%) over the last 90 minutes, so the SLO burn-rate alerts fire at the end; the
/// others run at 0.1%.
fn error_share(w: usize, i: usize, n: usize, interval_s: u32) -> f64 {
    let incident_scrapes = (90 * 60 / interval_s) as usize;
    match w {
        0 if i + incident_scrapes >= n => 0.25,
        0 => 0.01,
        _ => 0.001,
    }
}

/// Cumulative share of requests at or below each bucket bound, for a success or a failure.
fn latency_cdf(w: usize, failed: bool) -> [f64; 6] {
    let shift = (w % 4) as f64 * 0.02;
    if failed {
        [
            0.05,
            0.2 - shift,
            0.5 - shift,
            0.75 - shift,
            0.93 - shift,
            1.0,
        ]
    } else {
        [
            0.3 - shift,
            0.72 - shift,
            0.9 - shift,
            0.97 - shift,
            0.995,
            1.0,
        ]
    }
}

fn red_labels(name: &str, w: usize, route: usize, code: &str) -> Vec<(String, String)> {
    let (path, method) = ROUTES[route];
    vec![
        ("__name__".into(), name.into()),
        ("namespace".into(), namespace(w)),
        ("workload".into(), workload(w)),
        ("workload_kind".into(), "Deployment".into()),
        ("node".into(), format!("node-{}", w % 3)),
        ("route".into(), path.into()),
        ("method".into(), method.into()),
        ("code".into(), code.into()),
    ]
}

fn format_le(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".into()
    } else {
        le.to_string()
    }
}

/// Generates the data set for `shape`. The same shape always gives the same samples.
pub fn generate(shape: DataShape) -> Dataset {
    let n = shape.points();
    let step_s = shape.interval_s as f64;
    let start_s = shape.start_ms() as f64 / 1000.0;
    let mut out = Vec::new();
    for w in 0..shape.workloads() {
        let mut rng = Rng(0x6b75_6265 ^ (w as u64).wrapping_mul(0x1000_0001));
        // One counter reset (a restart whose counters the agent did not carry over) on the
        // first route of workload 1, ten days before the end, so rates cross a reset.
        let reset_at =
            (w == 1).then(|| n.saturating_sub((10 * 86_400 / shape.interval_s) as usize));
        let mut slo = vec![0.0; n];
        let mut errors_per_scrape = vec![0.0; n];
        let mut requests_per_scrape = vec![0.0; n];
        for (r, _) in ROUTES.iter().enumerate() {
            let base_rps = 20.0 + 10.0 * w as f64 + 5.0 * r as f64;
            let mut req = [vec![0.0; n], vec![0.0; n]];
            let mut hist = [
                vec![vec![0.0; n]; BUCKETS.len() + 2],
                vec![vec![0.0; n]; BUCKETS.len() + 2],
            ];
            let mut total = [0.0f64; 2];
            let mut buckets = [[0.0f64; 6]; 2];
            let mut sum = [0.0f64; 2];
            for i in 0..n {
                if r == 0 && reset_at == Some(i) {
                    total = [0.0; 2];
                    buckets = [[0.0; 6]; 2];
                    sum = [0.0; 2];
                }
                let t = start_s + i as f64 * step_s;
                let diurnal = 1.0 + 0.5 * (std::f64::consts::TAU * t / 86_400.0).sin();
                let noise = 0.9 + 0.2 * rng.unit();
                let reqs = (base_rps * diurnal * noise * step_s).round();
                let failed = (reqs * error_share(w, i, n, shape.interval_s)).round();
                let counts = [reqs - failed, failed];
                requests_per_scrape[i] += reqs;
                errors_per_scrape[i] += failed;
                for c in 0..2 {
                    total[c] += counts[c];
                    req[c][i] = total[c];
                    let cdf = latency_cdf(w, c == 1);
                    for (b, share) in cdf.iter().enumerate() {
                        buckets[c][b] += (counts[c] * share).round();
                        hist[c][b][i] = buckets[c][b];
                    }
                    let mean = if c == 1 { 0.4 } else { 0.08 } * (0.95 + 0.1 * rng.unit());
                    sum[c] += counts[c] * mean;
                    hist[c][BUCKETS.len()][i] = sum[c];
                    hist[c][BUCKETS.len() + 1][i] = total[c];
                }
            }
            for (c, code) in CODES.iter().enumerate() {
                let [ok, bad] = &req;
                let values = if c == 0 { ok } else { bad };
                out.push(GenSeries {
                    labels: red_labels("kubesignal_red_requests_total", w, r, code),
                    values: values.clone(),
                });
                if c == 1 {
                    // Every 500 is a server-side failure, so the error counter follows it.
                    out.push(GenSeries {
                        labels: red_labels("kubesignal_red_errors_total", w, r, code),
                        values: values.clone(),
                    });
                }
                let series = std::mem::take(&mut hist[c]);
                for (b, values) in series.into_iter().enumerate() {
                    let labels = if b < BUCKETS.len() {
                        let mut l = red_labels(
                            "kubesignal_red_request_duration_seconds_bucket",
                            w,
                            r,
                            code,
                        );
                        l.push(("le".into(), format_le(BUCKETS[b])));
                        l
                    } else if b == BUCKETS.len() {
                        red_labels("kubesignal_red_request_duration_seconds_sum", w, r, code)
                    } else {
                        red_labels("kubesignal_red_request_duration_seconds_count", w, r, code)
                    };
                    out.push(GenSeries { labels, values });
                }
            }
        }
        for i in 0..n {
            slo[i] = errors_per_scrape[i] / requests_per_scrape[i].max(1.0);
        }
        out.push(GenSeries {
            labels: vec![
                ("__name__".into(), "slo:sli_error:ratio_rate5m".into()),
                ("slo".into(), format!("{}-availability", workload(w))),
                ("namespace".into(), namespace(w)),
            ],
            values: slo,
        });
        let memory = (0..n)
            .map(|i| {
                let t = start_s + i as f64 * step_s;
                let wave = (std::f64::consts::TAU * t / 21_600.0).sin();
                (200.0 + 40.0 * w as f64 + 30.0 * wave + 5.0 * rng.unit()).round() * 1_048_576.0
            })
            .collect();
        out.push(GenSeries {
            labels: vec![
                (
                    "__name__".into(),
                    "kubesignal_pod_memory_working_set_bytes".into(),
                ),
                ("namespace".into(), namespace(w)),
                ("pod".into(), format!("{}-7d9f8-{w:05}", workload(w))),
                ("workload".into(), workload(w)),
                ("workload_kind".into(), "Deployment".into()),
                ("node".into(), format!("node-{}", w % 3)),
            ],
            values: memory,
        });
    }
    Dataset { shape, series: out }
}

impl Dataset {
    /// Total number of samples.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.values.len()).sum()
    }

    /// Appends every sample to `storage`, in scrape order (all series at one instant, then the
    /// next), as a scraper would.
    pub fn load_into(&self, storage: &mut Storage) {
        let labels: Vec<Labels> = self
            .series
            .iter()
            .map(|s| Labels::from_pairs(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .collect();
        let start = self.shape.start_ms();
        let step = self.shape.interval_s as i64 * 1000;
        for i in 0..self.shape.points() {
            let t = start + i as i64 * step;
            for (s, l) in self.series.iter().zip(&labels) {
                storage.append(l, t, s.values[i]);
            }
        }
    }

    /// Writes the samples as OpenMetrics text with timestamps (seconds), series after series,
    /// ending with `# EOF`, the input of `promtool tsdb create-blocks-from openmetrics`.
    pub fn write_openmetrics(&self, out: &mut impl Write) -> std::io::Result<()> {
        let start = self.shape.start_ms() / 1000;
        let step = self.shape.interval_s as i64;
        for s in &self.series {
            let mut prefix = String::new();
            prefix.push_str(&s.labels[0].1);
            prefix.push('{');
            for (i, (k, v)) in s.labels[1..].iter().enumerate() {
                if i > 0 {
                    prefix.push(',');
                }
                prefix.push_str(k);
                prefix.push_str("=\"");
                prefix.push_str(v);
                prefix.push('"');
            }
            prefix.push_str("} ");
            for (i, v) in s.values.iter().enumerate() {
                out.write_all(prefix.as_bytes())?;
                writeln!(out, "{} {}", v, start + i as i64 * step)?;
            }
        }
        out.write_all(b"# EOF\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> DataShape {
        DataShape {
            days: 1,
            series: 1,
            interval_s: 60,
        }
    }

    #[test]
    fn the_same_shape_generates_the_same_samples() {
        let a = generate(tiny());
        let b = generate(tiny());
        assert_eq!(a.series.len(), b.series.len());
        for (x, y) in a.series.iter().zip(&b.series) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.values, y.values);
        }
    }

    #[test]
    fn series_count_follows_the_requested_number_of_series() {
        let shape = DataShape {
            series: 3 * SERIES_PER_WORKLOAD,
            ..tiny()
        };
        let data = generate(shape);
        assert_eq!(data.series.len(), 3 * SERIES_PER_WORKLOAD);
        assert_eq!(data.sample_count(), data.series.len() * 1441);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let data = generate(tiny());
        let find = |name: &str, le: Option<&str>| {
            data.series
                .iter()
                .find(|s| {
                    s.labels[0].1 == name
                        && s.labels.iter().any(|(k, v)| k == "code" && v == "500")
                        && le.is_none_or(|le| s.labels.iter().any(|(k, v)| k == "le" && v == le))
                })
                .unwrap()
        };
        let bucket = "kubesignal_red_request_duration_seconds_bucket";
        let low = find(bucket, Some("0.1"));
        let inf = find(bucket, Some("+Inf"));
        let count = find("kubesignal_red_request_duration_seconds_count", None);
        assert_eq!(inf.values, count.values);
        assert!(low.values.iter().zip(&inf.values).all(|(l, i)| l <= i));
        assert!(inf.values.last().unwrap() > &0.0);
    }

    #[test]
    fn counters_only_drop_at_the_planned_reset() {
        let data = generate(DataShape { days: 12, ..tiny() });
        let drops: Vec<usize> = data
            .series
            .iter()
            .filter(|s| s.labels[0].1 == "kubesignal_red_requests_total")
            .map(|s| s.values.windows(2).filter(|w| w[1] < w[0]).count())
            .collect();
        // Workload 1's first route has a reset on both codes; nothing else drops.
        assert_eq!(drops.iter().sum::<usize>(), 2);
    }

    #[test]
    fn openmetrics_output_has_one_line_per_sample_and_ends_with_eof() {
        let data = generate(tiny());
        let mut buf = Vec::new();
        data.write_openmetrics(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().count(), data.sample_count() + 1);
        assert!(text.ends_with("# EOF\n"));
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("kubesignal_red_requests_total{namespace=\"team-a\""));
        assert!(first.ends_with(&format!(" {}", data.shape.start_ms() / 1000)));
    }
}
