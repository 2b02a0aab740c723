//! `histogram_quantile` over classic histograms: `_bucket` series with an `le` label.

use std::collections::HashMap;

use super::{Evaluator, Sample, WITHOUT_LE};
use crate::promql::value::Labels;

struct Bucket {
    upper: f64,
    count: f64,
}

/// Groups bucket series by their labels without `le` (and the metric name) and estimates the
/// φ-quantile of each group. Series without a parsable `le` are left out.
pub(super) fn histogram_quantile(
    ev: &Evaluator<'_>,
    q: f64,
    input: Vec<Sample>,
    t: i64,
) -> Vec<Sample> {
    per_group(ev, input, t, |buckets| bucket_quantile(q, buckets))
}

/// `histogram_fraction(lower, upper, buckets)`: the estimated share of observations between
/// the two values.
pub(super) fn histogram_fraction(
    ev: &Evaluator<'_>,
    lower: f64,
    upper: f64,
    input: Vec<Sample>,
    t: i64,
) -> Vec<Sample> {
    per_group(ev, input, t, |buckets| {
        bucket_fraction(lower, upper, buckets)
    })
}

fn per_group(
    ev: &Evaluator<'_>,
    input: Vec<Sample>,
    t: i64,
    f: impl Fn(Vec<Bucket>) -> f64,
) -> Vec<Sample> {
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let Some(upper) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        // Buckets of different metrics stay apart, even though the name is dropped afterwards.
        let key = ev.memo(WITHOUT_LE, &s.labels, |l| l.with("le", ""));
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper, count: s.v });
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| Sample {
            labels: ev.without_name(&labels),
            t,
            v: f(buckets),
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Sorts buckets by bound and merges those with equal bounds (e.g. `le="1"` and `le="1.0"`).
/// `None` when there is no `+Inf` bucket, without which nothing can be estimated.
fn normalize(mut buckets: Vec<Bucket>) -> Option<Vec<Bucket>> {
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
    if !buckets.last().is_some_and(|b| b.upper == f64::INFINITY) {
        return None;
    }
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(b),
        }
    }
    Some(merged)
}

fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<Bucket>) -> f64 {
    let Some(buckets) = normalize(buckets) else {
        return f64::NAN;
    };
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        // The first bucket is taken to start at 0 when its bound is positive.
        let lo = if i > 0 {
            buckets[i - 1].upper
        } else if b.upper > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let hi = b.upper;
        let interpolate = |v: f64| {
            if lo.is_infinite() || hi.is_infinite() {
                // No width to interpolate over: the whole bucket counts at its upper end.
                rank
            } else {
                rank + (b.count - rank) * (v - lo) / (hi - lo)
            }
        };
        if !lower_set && lo >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lo >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lo < lower && hi > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lo < upper && hi > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn bucket_quantile(q: f64, buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(mut buckets) = normalize(buckets) else {
        return f64::NAN;
    };
    // Counts must not decrease with the bound; scrapes racing with observations can break this.
    let mut max = f64::NEG_INFINITY;
    for b in &mut buckets {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len();
    let b = buckets[..n - 1]
        .iter()
        .position(|b| b.count >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return buckets[n - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upper: f64, count: f64) -> Bucket {
        Bucket { upper, count }
    }

    #[test]
    fn the_median_interpolates_inside_its_bucket() {
        let q = bucket_quantile(0.5, vec![b(1.0, 0.0), b(2.0, 10.0), b(f64::INFINITY, 10.0)]);
        assert!((q - 1.5).abs() < 1e-12, "{q}");
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_reports_the_highest_finite_bound() {
        let q = bucket_quantile(0.99, vec![b(1.0, 1.0), b(f64::INFINITY, 10.0)]);
        assert_eq!(q, 1.0);
    }

    #[test]
    fn without_an_inf_bucket_the_quantile_is_undefined() {
        assert!(bucket_quantile(0.5, vec![b(1.0, 1.0), b(2.0, 2.0)]).is_nan());
    }
}
