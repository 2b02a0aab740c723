//! Functions over range vectors: counter rates with Prometheus's extrapolation, `*_over_time`,
//! regressions and smoothing. Each takes one series' points in the window and gives one value,
//! or none when the window holds too few points.

use super::Matrix;
use super::aggregate::quantile;
use super::kahan_add;
use crate::promql::value::Point;

/// `rate`, `increase` and `delta`: the change across the window, extrapolated towards the
/// window's edges when the first and last samples lie close enough to them.
pub(super) fn extrapolated_rate(
    points: &[Point],
    m: &Matrix,
    is_counter: bool,
    is_rate: bool,
    newer_cutoff: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let range_start = m.end - m.range;
    let range_end = m.end;
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for p in &points[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;

    let threshold = average_gap * 1.1;
    let interval = if newer_cutoff {
        // Prometheus 3 first limits the start gap to half a sample interval, then applies the
        // zero cutoff to what is left.
        if to_start >= threshold {
            to_start = average_gap / 2.0;
        }
        if is_counter && result > 0.0 && first.v >= 0.0 {
            to_start = to_start.min(sampled * (first.v / result));
        }
        let to_end = if to_end >= threshold {
            average_gap / 2.0
        } else {
            to_end
        };
        sampled + to_start + to_end
    } else {
        // A counter cannot go below zero: don't extrapolate past the point where it would.
        if is_counter && result > 0.0 && first.v >= 0.0 {
            to_start = to_start.min(sampled * (first.v / result));
        }
        let mut interval = sampled;
        interval += if to_start < threshold {
            to_start
        } else {
            average_gap / 2.0
        };
        interval += if to_end < threshold {
            to_end
        } else {
            average_gap / 2.0
        };
        interval
    };
    result *= interval / sampled;
    if is_rate {
        result /= m.range as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` and `idelta`: from the last two samples only.
pub(super) fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last = points[points.len() - 1];
    let prev = points[points.len() - 2];
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let gap = last.t - prev.t;
    if gap == 0 {
        return None;
    }
    if is_rate {
        v /= gap as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares line through the points, with x measured in seconds from `intercept_time`.
pub(super) fn linear_regression(points: &[Point], intercept_time: i64) -> (f64, f64) {
    let first = points[0].v;
    let constant = points.iter().all(|p| p.v == first);
    if constant {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for p in points {
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1000.0;
        (sx, cx) = kahan_add(x, sx, cx);
        (sy, cy) = kahan_add(p.v, sy, cy);
        (sxy, cxy) = kahan_add(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_add(x * x, sx2, cx2);
    }
    let sx = sx + cx;
    let sy = sy + cy;
    let sxy = sxy + cxy;
    let sx2 = sx2 + cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// `holt_winters` / `double_exponential_smoothing`.
pub(super) fn double_exponential_smoothing(points: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = points[0].v;
    let mut b = points[1].v - points[0].v;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

pub(super) fn avg(points: &[Point]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    let mut mean = 0.0;
    let mut overflow = false;
    for (i, p) in points.iter().enumerate() {
        if !overflow {
            let (s, cc) = kahan_add(p.v, sum, c);
            if s.is_infinite() && !p.v.is_infinite() {
                // The sum overflowed: continue with a running mean from here.
                overflow = true;
                mean = (sum + c) / i as f64;
            } else {
                (sum, c) = (s, cc);
                continue;
            }
        }
        if mean.is_infinite() {
            if p.v.is_infinite() && (mean > 0.0) == (p.v > 0.0) {
                continue;
            }
            if !p.v.is_infinite() && !p.v.is_nan() {
                continue;
            }
        }
        let n = (i + 1) as f64;
        mean += p.v / n - mean / n;
    }
    if overflow {
        mean
    } else {
        let total = if c.is_finite() { sum + c } else { sum };
        total / points.len() as f64
    }
}

pub(super) fn sum(points: &[Point]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in points {
        (sum, c) = kahan_add(p.v, sum, c);
    }
    if c.is_finite() { sum + c } else { sum }
}

pub(super) fn min(points: &[Point]) -> f64 {
    let mut m = points[0].v;
    for p in &points[1..] {
        if p.v < m || m.is_nan() {
            m = p.v;
        }
    }
    m
}

pub(super) fn max(points: &[Point]) -> f64 {
    let mut m = points[0].v;
    for p in &points[1..] {
        if p.v > m || m.is_nan() {
            m = p.v;
        }
    }
    m
}

pub(super) fn stdvar(points: &[Point]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for p in points {
        count += 1.0;
        let delta = p.v - mean;
        mean += delta / count;
        m2 += delta * (p.v - mean);
    }
    m2 / count
}

/// The time (in seconds) of the last sample holding the smallest (or largest) value.
pub(super) fn ts_of_extreme(points: &[Point], better: impl Fn(f64, f64) -> bool) -> Option<f64> {
    let mut best: Option<Point> = None;
    for p in points {
        if p.v.is_nan() {
            continue;
        }
        match best {
            Some(b) if better(b.v, p.v) => {}
            _ => best = Some(*p),
        }
    }
    best.or(points.last().copied()).map(|p| p.t as f64 / 1000.0)
}

pub(super) fn changes(points: &[Point]) -> f64 {
    let mut n = 0.0;
    for w in points.windows(2) {
        if w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()) {
            n += 1.0;
        }
    }
    n
}

pub(super) fn resets(points: &[Point]) -> f64 {
    points.windows(2).filter(|w| w[1].v < w[0].v).count() as f64
}

pub(super) fn quantile_over_time(q: f64, points: &[Point]) -> f64 {
    quantile(q, points.iter().map(|p| p.v).collect())
}

pub(super) fn mad(points: &[Point]) -> f64 {
    if points.iter().any(|p| p.v.is_nan()) {
        return f64::NAN;
    }
    let values: Vec<f64> = points.iter().map(|p| p.v).collect();
    let median = quantile(0.5, values.clone());
    quantile(
        0.5,
        values.into_iter().map(|v| (v - median).abs()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn rate_of_a_steady_counter_is_its_slope() {
        // One sample per minute, +60 per minute, window of 5m ending on a sample.
        let p = pts(&[
            (60_000, 60.0),
            (120_000, 120.0),
            (180_000, 180.0),
            (240_000, 240.0),
            (300_000, 300.0),
        ]);
        let m = Matrix {
            series: vec![],
            range: 300_000,
            end: 300_000,
        };
        let r = extrapolated_rate(&p, &m, true, true, false).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn a_counter_reset_adds_the_value_before_the_drop() {
        let p = pts(&[(0, 10.0), (10_000, 20.0), (20_000, 5.0)]);
        let m = Matrix {
            series: vec![],
            range: 20_000,
            end: 20_000,
        };
        let inc = extrapolated_rate(&p, &m, true, false, false).unwrap();
        assert!((inc - 15.0).abs() < 1e-9, "{inc}");
        assert_eq!(resets(&p), 1.0);
    }

    #[test]
    fn regression_of_a_line_recovers_slope_and_intercept() {
        let p = pts(&[(0, 1.0), (1000, 3.0), (2000, 5.0)]);
        let (slope, intercept) = linear_regression(&p, 0);
        assert!((slope - 2.0).abs() < 1e-12);
        assert!((intercept - 1.0).abs() < 1e-12);
    }
}
