//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, ...) with `by`/`without` grouping.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMIT_RATIO, T_LIMITK, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::{Evaluator, Sample, Val, expect_scalar, expect_string, expect_vector, kahan_add};
use crate::promql::engine::EvalError;
use crate::promql::value::{Labels, METRIC_NAME};

/// The labels an element is grouped by.
fn group_labels(modifier: &Option<LabelModifier>, l: &Labels) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(names)) => l.filter(|k| names.labels.iter().any(|n| n == k)),
        Some(LabelModifier::Exclude(names)) => {
            l.filter(|k| k != METRIC_NAME && !names.labels.iter().any(|n| n == k))
        }
    }
}

/// Running state of one group.
struct Group {
    labels: Labels,
    count: usize,
    sum: f64,
    comp: f64,
    mean: f64,
    m2: f64,
    value: f64,
    members: Vec<Sample>,
}

pub(super) fn eval<'s>(ev: &Evaluator<'s>, a: &'s AggregateExpr, t: i64) -> Result<Val, EvalError> {
    let op = a.op.id();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let input = expect_vector(ev.eval(&a.expr, t)?, "aggregation")?;
    if op == T_COUNT_VALUES {
        let label = expect_string(required(param, a)?, "count_values")?;
        return count_values(&a.modifier, &label, input, t);
    }
    let k = match op {
        T_TOPK | T_BOTTOMK | T_QUANTILE | T_LIMITK | T_LIMIT_RATIO => {
            Some(expect_scalar(required(param, a)?, "aggregation parameter")?)
        }
        _ => None,
    };

    if let Some(k) = k
        && k.is_nan()
    {
        match op {
            T_TOPK | T_BOTTOMK | T_LIMITK => {
                return Err(EvalError::Execution("Parameter value is NaN".into()));
            }
            T_LIMIT_RATIO => return Err(EvalError::Execution("Ratio value is NaN".into())),
            _ => {}
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let key = ev.memo(a as *const AggregateExpr as usize, &s.labels, |l| {
            group_labels(&a.modifier, l)
        });
        let gi = match index.get(&key) {
            Some(&i) => i,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    labels: key,
                    count: 0,
                    sum: 0.0,
                    comp: 0.0,
                    mean: 0.0,
                    m2: 0.0,
                    value: s.v,
                    members: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        g.count += 1;
        match op {
            T_SUM => (g.sum, g.comp) = kahan_add(s.v, g.sum, g.comp),
            T_AVG => {
                (g.sum, g.comp) = kahan_add(s.v, g.sum, g.comp);
                incremental_mean(&mut g.mean, g.count, s.v);
            }
            T_MAX if g.value < s.v || g.value.is_nan() => g.value = s.v,
            T_MIN if g.value > s.v || g.value.is_nan() => g.value = s.v,
            T_STDDEV | T_STDVAR => {
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.m2 += delta * (s.v - g.mean);
            }
            T_TOPK | T_BOTTOMK | T_QUANTILE | T_LIMITK | T_LIMIT_RATIO => g.members.push(s),
            _ => {}
        }
    }

    let mut out = Vec::new();
    for g in groups {
        let v = match op {
            T_SUM => {
                if g.comp.is_finite() {
                    g.sum + g.comp
                } else {
                    g.sum
                }
            }
            T_AVG => {
                let sum = g.sum + if g.comp.is_finite() { g.comp } else { 0.0 };
                if sum.is_finite() || g.sum.is_nan() {
                    sum / g.count as f64
                } else {
                    // The plain sum overflowed; the running mean did not.
                    g.mean
                }
            }
            T_COUNT => g.count as f64,
            T_GROUP => 1.0,
            T_MAX | T_MIN => g.value,
            T_STDVAR => g.m2 / g.count as f64,
            T_STDDEV => (g.m2 / g.count as f64).sqrt(),
            T_QUANTILE => {
                let values: Vec<f64> = g.members.iter().map(|s| s.v).collect();
                quantile(k.unwrap_or(f64::NAN), values)
            }
            T_TOPK | T_BOTTOMK => {
                out.extend(top_bottom(op == T_TOPK, k.unwrap_or(0.0), g.members, t));
                continue;
            }
            T_LIMITK => {
                let n = clamp_k(k.unwrap_or(0.0), g.members.len());
                let mut members = g.members;
                members.truncate(n);
                out.extend(members.into_iter().map(|s| Sample { t, ..s }));
                continue;
            }
            T_LIMIT_RATIO => {
                let r = k.unwrap_or(0.0).clamp(-1.0, 1.0);
                out.extend(g.members.into_iter().filter_map(|s| {
                    let keep = ratio_sample(&s.labels);
                    let pass = if r >= 0.0 { keep < r } else { keep >= 1.0 + r };
                    pass.then_some(Sample { t, ..s })
                }));
                continue;
            }
            _ => {
                return Err(EvalError::Execution(format!(
                    "unsupported aggregation {}",
                    a.op
                )));
            }
        };
        out.push(Sample {
            labels: g.labels,
            t,
            v,
        });
    }
    Ok(Val::Vector(out))
}

/// The parameter of `topk`, `quantile`, `count_values`, ...; the parser insists on it, but an
/// expression built another way might not have one.
fn required(param: Option<Val>, a: &AggregateExpr) -> Result<Val, EvalError> {
    param.ok_or_else(|| EvalError::Execution(format!("{} needs a parameter", a.op)))
}

/// Prometheus's running mean, which cannot overflow where the plain sum would.
fn incremental_mean(mean: &mut f64, count: usize, v: f64) {
    if mean.is_infinite() {
        if v.is_infinite() && (*mean > 0.0) == (v > 0.0) {
            return;
        }
        if !v.is_infinite() && !v.is_nan() {
            return;
        }
    }
    let n = count as f64;
    *mean += v / n - *mean / n;
}

fn clamp_k(k: f64, len: usize) -> usize {
    if k.is_nan() || k < 1.0 {
        0
    } else if k >= len as f64 {
        len
    } else {
        k as usize
    }
}

/// The largest (or smallest) `k` elements of a group, best first; NaN ranks last.
fn top_bottom(top: bool, k: f64, mut members: Vec<Sample>, t: i64) -> Vec<Sample> {
    let n = clamp_k(k, members.len());
    members.sort_by(|a, b| {
        use std::cmp::Ordering;
        match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if top => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
            _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
        }
    });
    members.truncate(n);
    members.into_iter().map(|s| Sample { t, ..s }).collect()
}

/// A stable pseudo-random position in [0, 1) for a series, so `limit_ratio` picks the same
/// series at every step.
fn ratio_sample(l: &Labels) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    l.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The φ-quantile of `values` with linear interpolation between closest ranks, as
/// `quantile()` and `quantile_over_time()` compute it.
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort.Float64s orders NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn count_values(
    modifier: &Option<LabelModifier>,
    label: &str,
    input: Vec<Sample>,
    t: i64,
) -> Result<Val, EvalError> {
    if !is_valid_label_name(label) {
        return Err(EvalError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut counts: Vec<(Labels, f64)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in input {
        let key = group_labels(modifier, &s.labels).with(label, &format_value(s.v));
        match index.get(&key) {
            Some(&i) => counts[i].1 += 1.0,
            None => {
                index.insert(key.clone(), counts.len());
                counts.push((key, 1.0));
            }
        }
    }
    Ok(Val::Vector(
        counts
            .into_iter()
            .map(|(labels, v)| Sample { labels, t, v })
            .collect(),
    ))
}

/// A label name as Prometheus 2 accepts it: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Formats a float the way Go's `strconv.FormatFloat(v, 'f', -1, 64)` does.
pub(super) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let s = format!("{v}");
        if s == "-0" { "-0".into() } else { s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_between_ranks() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, vec![3.0, 1.0]), 1.0);
        assert_eq!(quantile(2.0, vec![1.0]), f64::INFINITY);
        assert!(quantile(0.5, vec![]).is_nan());
    }

    #[test]
    fn values_format_like_go_shortest_floats() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }
}
