//! Binary operators: arithmetic, comparisons (filtering or `bool`), and the set operators, with
//! `on`/`ignoring` matching and `group_left`/`group_right` cardinalities.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{Evaluator, Sample, Val, check_unique};
use crate::promql::engine::EvalError;
use crate::promql::value::{Labels, METRIC_NAME};

pub(super) fn eval<'s>(ev: &Evaluator<'s>, b: &'s BinaryExpr, t: i64) -> Result<Val, EvalError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = scalar_op(op, l, r)?;
            if is_comparison(op) {
                // Between scalars a comparison needs `bool`; the parser enforces it.
                Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Val::Scalar(v))
            }
        }
        (Val::Vector(l), Val::Scalar(r)) => {
            vector_scalar(op, l, r, false, return_bool, ev.v3(), t).map(Val::Vector)
        }
        (Val::Scalar(l), Val::Vector(r)) => {
            vector_scalar(op, r, l, true, return_bool, ev.v3(), t).map(Val::Vector)
        }
        (Val::Vector(l), Val::Vector(r)) => {
            let out = match op {
                T_LAND | T_LOR | T_LUNLESS => set_op(ev, op, b, l, r),
                _ => vector_vector(ev, op, b, l, r, return_bool, t)?,
            };
            Ok(Val::Vector(out))
        }
        (l, r) => Err(EvalError::Execution(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name: the result is no longer that metric. Prometheus 2 forgot
/// `atan2` here; Prometheus 3 drops it for `atan2` too.
fn drops_name(op: TokenId, v3: bool) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW) || (v3 && op == T_ATAN2)
}

/// Applies `op`: the value, and for comparisons whether the pair passes.
fn scalar_op(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        // Rust's `%` on floats is Go's `math.Mod`: the result takes the dividend's sign.
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(EvalError::Execution(
                "operator not allowed between these operands".into(),
            ));
        }
    })
}

fn vector_scalar(
    op: TokenId,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    v3: bool,
    t: i64,
) -> Result<Vec<Sample>, EvalError> {
    if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
        return Err(EvalError::Execution(
            "set operator not allowed in binary scalar expression".into(),
        ));
    }
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_on_left {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, keep) = scalar_op(op, l, r)?;
        // A filtering comparison keeps the vector element's value, whichever side it is on.
        if comparison {
            v = s.v;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = if return_bool || drops_name(op, v3) {
            s.labels.without_name()
        } else {
            s.labels
        };
        out.push(Sample { labels, t, v });
    }
    check_unique(&out)?;
    Ok(out)
}

/// How two vector elements are matched: by the `on` labels, or by all but the `ignoring` ones
/// (and never by the metric name).
struct Matching<'a> {
    on: bool,
    names: &'a [String],
}

impl Matching<'_> {
    fn new(b: &BinaryExpr) -> Matching<'_> {
        match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => Matching {
                on: true,
                names: &l.labels,
            },
            Some(LabelModifier::Exclude(l)) => Matching {
                on: false,
                names: &l.labels,
            },
            None => Matching {
                on: false,
                names: &[],
            },
        }
    }

    /// The signature, memoised per query for this operator node.
    fn sig(&self, ev: &Evaluator<'_>, node: &BinaryExpr, l: &Labels) -> Labels {
        ev.memo(node as *const BinaryExpr as usize, l, |l| self.signature(l))
    }

    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            l.filter(|k| self.names.iter().any(|n| n == k))
        } else {
            l.filter(|k| k != METRIC_NAME && !self.names.iter().any(|n| n == k))
        }
    }
}

fn set_op(
    ev: &Evaluator<'_>,
    op: TokenId,
    b: &BinaryExpr,
    l: Vec<Sample>,
    r: Vec<Sample>,
) -> Vec<Sample> {
    let m = Matching::new(b);
    match op {
        T_LAND => {
            let right: HashSet<Labels> = r.iter().map(|s| m.sig(ev, b, &s.labels)).collect();
            l.into_iter()
                .filter(|s| right.contains(&m.sig(ev, b, &s.labels)))
                .collect()
        }
        T_LUNLESS => {
            let right: HashSet<Labels> = r.iter().map(|s| m.sig(ev, b, &s.labels)).collect();
            l.into_iter()
                .filter(|s| !right.contains(&m.sig(ev, b, &s.labels)))
                .collect()
        }
        _ => {
            let left: HashSet<Labels> = l.iter().map(|s| m.sig(ev, b, &s.labels)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&m.sig(ev, b, &s.labels))),
            );
            out
        }
    }
}

fn vector_vector(
    ev: &Evaluator<'_>,
    op: TokenId,
    b: &BinaryExpr,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, EvalError> {
    let v3 = ev.v3();
    let m = Matching::new(b);
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let (include, one_to_many): (&[String], bool) = match &card {
        VectorMatchCardinality::ManyToOne(l) => (&l.labels, false),
        VectorMatchCardinality::OneToMany(l) => (&l.labels, true),
        _ => (&[], false),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    // Experimental `fill`/`fill_left`/`fill_right`: a stand-in value for a missing partner.
    let fills = b
        .modifier
        .as_ref()
        .map(|m| m.fill_values.clone())
        .unwrap_or_default();
    // Prometheus swaps the sides for `group_right` before it reads the fill values, so
    // `fill_left` always stands in for the "many" side and `fill_right` for the "one" side.
    let (one_fill, many_fill) = (fills.rhs, fills.lhs);
    if (lhs.is_empty() || rhs.is_empty()) && fills.lhs.is_none() && fills.rhs.is_none() {
        return Ok(Vec::new());
    }
    // The "many" side is iterated, the "one" side is looked up.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<Labels, &Sample> = HashMap::with_capacity(one.len());
    let mut one_order: Vec<Labels> = Vec::new();
    for s in &one {
        let sig = m.sig(ev, b, &s.labels);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            // Report the pair in sorted order, so the message is stable.
            let (a, b) = if dup.labels <= s.labels {
                (&dup.labels, &s.labels)
            } else {
                (&s.labels, &dup.labels)
            };
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                match_group(&m, &s.labels),
                braced(a),
                braced(b)
            )));
        }
        one_order.push(sig.clone());
        one_by_sig.insert(sig, s);
    }
    let comparison = is_comparison(op);
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    let filled_one = Sample {
        labels: Labels::empty(),
        t,
        v: one_fill.unwrap_or(f64::NAN),
    };
    // Unmatched "one"-side groups get a stand-in "many" element carrying the group's labels.
    let mut stand_ins = Vec::new();
    if let Some(f) = many_fill {
        let many_sigs: HashSet<Labels> = many.iter().map(|s| m.sig(ev, b, &s.labels)).collect();
        for sig in &one_order {
            if !many_sigs.contains(sig) {
                stand_ins.push(Sample {
                    labels: sig.clone(),
                    t,
                    v: f,
                });
            }
        }
    }
    for ms in many.iter().chain(&stand_ins) {
        let sig = m.sig(ev, b, &ms.labels);
        let os = match one_by_sig.get(&sig) {
            Some(os) => *os,
            None if one_fill.is_some() => &filled_one,
            None => continue,
        };
        let (lv, rv) = if one_to_many {
            (os.v, ms.v)
        } else {
            (ms.v, os.v)
        };
        let (mut v, keep) = scalar_op(op, lv, rv)?;
        if comparison && !return_bool {
            v = lv;
        }
        // Prometheus 3 checks the matching before filtering, so a filter cannot hide a
        // many-to-one mistake; Prometheus 2 filtered first.
        if v3 && !return_bool && !keep && one_to_one {
            let seen = matched.entry(sig.clone()).or_default();
            if !seen.is_empty() {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            seen.insert(Labels::empty());
            continue;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = ms.labels.clone();
        if drops_name(op, v3) || return_bool {
            labels = labels.without_name();
        }
        if one_to_one {
            labels = if m.on {
                labels.filter(|k| m.names.iter().any(|n| n == k))
            } else {
                labels.filter(|k| !m.names.iter().any(|n| n == k))
            };
        }
        for name in include {
            labels = labels.with(name, os.labels.get(name).unwrap_or(""));
        }
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(EvalError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            seen.insert(Labels::empty());
        } else if !seen.insert(labels.clone()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, t, v });
    }
    Ok(out)
}

fn match_group(m: &Matching<'_>, l: &Labels) -> Labels {
    if m.on {
        l.filter(|k| m.names.iter().any(|n| n == k))
    } else {
        l.filter(|k| !m.names.iter().any(|n| n == k))
    }
}

/// A label set written the way Prometheus 3 prints one in errors: `{__name__="x", a="b"}`.
fn braced(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}
