//! The function library: calls are dispatched by name to instant-vector transforms, range-vector
//! reductions (in [`super::over_time`]) and the handful of functions with their own rules.

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::aggregate::is_valid_label_name;
use super::histogram::{histogram_fraction, histogram_quantile};
use super::over_time as ot;
use super::{
    Evaluator, Matrix, Sample, Val, check_unique, expect_matrix, expect_scalar, expect_string,
    expect_vector,
};
use crate::promql::engine::{EvalError, Semantics};
use crate::promql::value::{Labels, METRIC_NAME, Point};

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

pub(super) fn eval<'s>(ev: &Evaluator<'s>, c: &'s Call, t: i64) -> Result<Val, EvalError> {
    let name = c.func.name;
    let args = &c.args.args;
    let arg = |i: usize| -> Result<Val, EvalError> { ev.eval(&args[i], t) };
    let scalar_arg = |i: usize| -> Result<f64, EvalError> { expect_scalar(arg(i)?, name) };
    let vector_arg = |i: usize| -> Result<Vec<Sample>, EvalError> { expect_vector(arg(i)?, name) };
    let matrix_arg = |i: usize| -> Result<Matrix, EvalError> { expect_matrix(arg(i)?, name) };
    let left_open = ev.opts.semantics == Semantics::V3;

    let out = match name {
        "time" => return Ok(Val::Scalar(t as f64 / 1000.0)),
        // Experimental in Prometheus 3: the query's own parameters.
        "start" => return Ok(Val::Scalar(ev.start as f64 / 1000.0)),
        "end" => return Ok(Val::Scalar(ev.end as f64 / 1000.0)),
        "range" => return Ok(Val::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "step" => return Ok(Val::Scalar(ev.step as f64 / 1000.0)),
        "min_of" | "max_of" => {
            let mut acc: Option<f64> = None;
            for i in 0..args.len() {
                let v = scalar_arg(i)?;
                acc = Some(match acc {
                    None => v,
                    Some(a) if name == "min_of" => go_min(a, v),
                    Some(a) => go_max(a, v),
                });
            }
            return Ok(Val::Scalar(acc.unwrap_or(f64::NAN)));
        }
        "pi" => return Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => {
            return Ok(Val::Vector(vec![Sample {
                labels: Labels::empty(),
                t,
                v: scalar_arg(0)?,
            }]));
        }
        "scalar" => {
            let v = vector_arg(0)?;
            return Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }));
        }

        // Range-vector reductions.
        "rate" => over(ev, matrix_arg(0)?, t, false, |p, m| {
            ot::extrapolated_rate(p, m, true, true, left_open)
        }),
        "increase" => over(ev, matrix_arg(0)?, t, false, |p, m| {
            ot::extrapolated_rate(p, m, true, false, left_open)
        }),
        "delta" => over(ev, matrix_arg(0)?, t, false, |p, m| {
            ot::extrapolated_rate(p, m, false, false, left_open)
        }),
        "irate" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            ot::instant_value(p, true)
        }),
        "idelta" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            ot::instant_value(p, false)
        }),
        "avg_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::avg(p))),
        "sum_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::sum(p))),
        "count_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(p.len() as f64)),
        "min_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::min(p))),
        "max_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::max(p))),
        "stdvar_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::stdvar(p))),
        "stddev_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            Some(ot::stdvar(p).sqrt())
        }),
        "last_over_time" => over(ev, matrix_arg(0)?, t, true, |p, _| p.last().map(|p| p.v)),
        "first_over_time" => over(ev, matrix_arg(0)?, t, true, |p, _| p.first().map(|p| p.v)),
        "ts_of_last_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            p.last().map(|p| p.t as f64 / 1000.0)
        }),
        "ts_of_first_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            p.first().map(|p| p.t as f64 / 1000.0)
        }),
        "ts_of_min_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            ot::ts_of_extreme(p, |a, b| a < b)
        }),
        "ts_of_max_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            ot::ts_of_extreme(p, |a, b| a > b)
        }),
        "present_over_time" => over(ev, matrix_arg(0)?, t, false, |_, _| Some(1.0)),
        "mad_over_time" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::mad(p))),
        "changes" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::changes(p))),
        "resets" => over(ev, matrix_arg(0)?, t, false, |p, _| Some(ot::resets(p))),
        "deriv" => over(ev, matrix_arg(0)?, t, false, |p, _| {
            (p.len() >= 2).then(|| ot::linear_regression(p, p[0].t).0)
        }),
        "predict_linear" => {
            let m = matrix_arg(0)?;
            let d = scalar_arg(1)?;
            over(ev, m, t, false, |p, _| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = ot::linear_regression(p, t);
                    slope * d + intercept
                })
            })
        }
        "quantile_over_time" => {
            let q = scalar_arg(0)?;
            over(ev, matrix_arg(1)?, t, false, |p, _| {
                Some(ot::quantile_over_time(q, p))
            })
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let m = matrix_arg(0)?;
            let sf = scalar_arg(1)?;
            let tf = scalar_arg(2)?;
            if sf <= 0.0 || sf >= 1.0 {
                return Err(EvalError::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(EvalError::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            over(ev, m, t, false, |p, _| {
                ot::double_exponential_smoothing(p, sf, tf)
            })
        }
        "absent_over_time" => {
            let m = matrix_arg(0)?;
            return Ok(Val::Vector(if m.series.is_empty() {
                vec![Sample {
                    labels: absent_labels(&args[0]),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }));
        }
        "absent" => {
            let v = vector_arg(0)?;
            return Ok(Val::Vector(if v.is_empty() {
                vec![Sample {
                    labels: absent_labels(&args[0]),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }));
        }

        // Instant-vector transforms.
        "timestamp" => {
            let from_selector = matches!(unwrap_parens(&args[0]), Expr::VectorSelector(_));
            vector_arg(0)?
                .into_iter()
                .map(|s| Sample {
                    labels: s.labels.without_name(),
                    t,
                    v: if from_selector { s.t } else { t } as f64 / 1000.0,
                })
                .collect()
        }
        "abs" => map(ev, vector_arg(0)?, t, f64::abs),
        "ceil" => map(ev, vector_arg(0)?, t, f64::ceil),
        "floor" => map(ev, vector_arg(0)?, t, f64::floor),
        "exp" => map(ev, vector_arg(0)?, t, f64::exp),
        "sqrt" => map(ev, vector_arg(0)?, t, f64::sqrt),
        "ln" => map(ev, vector_arg(0)?, t, f64::ln),
        "log2" => map(ev, vector_arg(0)?, t, f64::log2),
        "log10" => map(ev, vector_arg(0)?, t, f64::log10),
        "sgn" => map(ev, vector_arg(0)?, t, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "deg" => map(ev, vector_arg(0)?, t, f64::to_degrees),
        "rad" => map(ev, vector_arg(0)?, t, f64::to_radians),
        "sin" => map(ev, vector_arg(0)?, t, f64::sin),
        "cos" => map(ev, vector_arg(0)?, t, f64::cos),
        "tan" => map(ev, vector_arg(0)?, t, f64::tan),
        "asin" => map(ev, vector_arg(0)?, t, f64::asin),
        "acos" => map(ev, vector_arg(0)?, t, f64::acos),
        "atan" => map(ev, vector_arg(0)?, t, f64::atan),
        "sinh" => map(ev, vector_arg(0)?, t, f64::sinh),
        "cosh" => map(ev, vector_arg(0)?, t, f64::cosh),
        "tanh" => map(ev, vector_arg(0)?, t, f64::tanh),
        "asinh" => map(ev, vector_arg(0)?, t, f64::asinh),
        "acosh" => map(ev, vector_arg(0)?, t, f64::acosh),
        "atanh" => map(ev, vector_arg(0)?, t, f64::atanh),
        "round" => {
            let v = vector_arg(0)?;
            let to = if args.len() > 1 { scalar_arg(1)? } else { 1.0 };
            let inverse = 1.0 / to;
            map(ev, v, t, |x| (x * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let v = vector_arg(0)?;
            let (lo, hi) = (scalar_arg(1)?, scalar_arg(2)?);
            if hi < lo {
                Vec::new()
            } else {
                map(ev, v, t, |x| go_max(lo, go_min(hi, x)))
            }
        }
        "clamp_min" => {
            let v = vector_arg(0)?;
            let lo = scalar_arg(1)?;
            map(ev, v, t, |x| go_max(lo, x))
        }
        "clamp_max" => {
            let v = vector_arg(0)?;
            let hi = scalar_arg(1)?;
            map(ev, v, t, |x| go_min(hi, x))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if args.is_empty() {
                vec![Sample {
                    labels: Labels::empty(),
                    t,
                    v: t as f64 / 1000.0,
                }]
            } else {
                vector_arg(0)?
            };
            map(ev, v, t, |x| date_part(name, x))
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(0)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering;
                match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
                    _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
                }
            });
            return Ok(Val::Vector(
                v.into_iter().map(|s| Sample { t, ..s }).collect(),
            ));
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(0)?;
            let mut names = Vec::new();
            for i in 1..args.len() {
                names.push(expect_string(arg(i)?, name)?);
            }
            v.sort_by(|a, b| {
                for n in &names {
                    let o =
                        natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                a.labels.cmp(&b.labels)
            });
            if name == "sort_by_label_desc" {
                v.reverse();
            }
            return Ok(Val::Vector(
                v.into_iter().map(|s| Sample { t, ..s }).collect(),
            ));
        }
        "label_replace" => {
            let v = vector_arg(0)?;
            let dst = expect_string(arg(1)?, name)?;
            let replacement = expect_string(arg(2)?, name)?;
            let src = expect_string(arg(3)?, name)?;
            let re_src = expect_string(arg(4)?, name)?;
            let flags = if left_open { "(?s)" } else { "" };
            let re = Regex::new(&format!("{flags}^(?:{re_src})$")).map_err(|_| {
                EvalError::Execution(format!(
                    "invalid regular expression in label_replace(): {re_src}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(EvalError::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| {
                    let value = s.labels.get(&src).unwrap_or("");
                    let labels = match re.captures(value) {
                        Some(caps) => {
                            let mut res = String::new();
                            caps.expand(&replacement, &mut res);
                            s.labels.with(&dst, &res)
                        }
                        None => s.labels,
                    };
                    Sample { labels, t, v: s.v }
                })
                .collect();
            check_unique(&out)?;
            return Ok(Val::Vector(out));
        }
        "label_join" => {
            let v = vector_arg(0)?;
            let dst = expect_string(arg(1)?, name)?;
            let sep = expect_string(arg(2)?, name)?;
            let mut srcs = Vec::new();
            for i in 3..args.len() {
                srcs.push(expect_string(arg(i)?, name)?);
            }
            if !is_valid_label_name(&dst) {
                return Err(EvalError::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let out: Vec<Sample> = v
                .into_iter()
                .map(|s| {
                    let joined = srcs
                        .iter()
                        .map(|n| s.labels.get(n).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    Sample {
                        labels: s.labels.with(&dst, &joined),
                        t,
                        v: s.v,
                    }
                })
                .collect();
            check_unique(&out)?;
            return Ok(Val::Vector(out));
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            histogram_quantile(ev, q, vector_arg(1)?, t)
        }
        "histogram_fraction" => {
            let lower = scalar_arg(0)?;
            let upper = scalar_arg(1)?;
            histogram_fraction(ev, lower, upper, vector_arg(2)?, t)
        }
        // Native histograms are not stored, so these have nothing to read from float series.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => Vec::new(),
        other => {
            return Err(EvalError::Execution(format!(
                "function {other:?} is not supported by the embedded engine"
            )));
        }
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// Applies a reduction to each series of a range vector.
fn over(
    ev: &Evaluator<'_>,
    m: Matrix,
    t: i64,
    keep_name: bool,
    f: impl Fn(&[Point], &Matrix) -> Option<f64>,
) -> Vec<Sample> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        if let Some(v) = f(&s.points, &m) {
            out.push(Sample {
                labels: if keep_name {
                    s.labels.clone()
                } else {
                    ev.without_name(&s.labels)
                },
                t,
                v,
            });
        }
    }
    out
}

fn map(ev: &Evaluator<'_>, v: Vec<Sample>, t: i64, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            labels: ev.without_name(&s.labels),
            t,
            v: f(s.v),
        })
        .collect()
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let Some(d) = DateTime::from_timestamp(secs.floor() as i64, 0) else {
        return f64::NAN;
    };
    match name {
        "day_of_month" => d.day() as f64,
        "day_of_week" => d.weekday().num_days_from_sunday() as f64,
        "day_of_year" => d.ordinal() as f64,
        "days_in_month" => {
            let (y, m) = (d.year(), d.month());
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
            let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
            match (first, first_next) {
                (Some(a), Some(b)) => (b - a).num_days() as f64,
                _ => f64::NAN,
            }
        }
        "hour" => d.hour() as f64,
        "minute" => d.minute() as f64,
        "month" => d.month() as f64,
        "year" => d.year() as f64,
        _ => f64::NAN,
    }
}

/// The labels `absent()` gives its one element: those fixed by equality matchers, except
/// labels matched more than once or by other matcher types.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !set.iter().any(|(k, _)| *k == m.name) {
            set.push((m.name.clone(), m.value.clone()));
        } else {
            dropped.push(&m.name);
        }
    }
    set.retain(|(k, _)| !dropped.contains(&k.as_str()));
    Labels::from_pairs(set)
}

/// Orders strings with embedded numbers by their numeric value ("a2" before "a10").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut ai, mut bi) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (ai.peek().copied(), bi.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let mut na = String::new();
                while let Some(c) = ai.peek().copied().filter(char::is_ascii_digit) {
                    na.push(c);
                    ai.next();
                }
                let mut nb = String::new();
                while let Some(c) = bi.peek().copied().filter(char::is_ascii_digit) {
                    nb.push(c);
                    bi.next();
                }
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let o = ta.len().cmp(&tb.len()).then(ta.cmp(tb));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                ai.next();
                bi.next();
            }
        }
    }
}
