//! Evaluation of a parsed PromQL expression.
//!
//! Every expression is evaluated one instant at a time: a range query is a loop of instant
//! evaluations, and a subquery loops over its own steps. This keeps each operator a function
//! from values at one timestamp to a value, close to how the PromQL documentation defines it.
//! Selector lookups are cached per query, so the loop does not re-scan the index at each step.

mod aggregate;
mod binary;
mod functions;
mod histogram;
mod over_time;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::engine::{Engine, EngineOptions, EvalError, Semantics};
use super::storage::{DecodeCache, SeriesView, Storage, matcher_sets};
use super::value::{Labels, Point, Series, is_stale};

/// One element of an instant vector during evaluation. `t` is the time of the sample a
/// selector found (which `timestamp()` reports); every other operator sets it to the
/// evaluation time.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A range vector with the window it was cut from, which rate extrapolation needs.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub series: Vec<Series>,
    /// Length of the window in milliseconds.
    pub range: i64,
    /// End of the window (evaluation time, shifted by `offset` and `@`).
    pub end: i64,
}

/// A value during evaluation.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Matrix),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::String(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

type Selected<'s> = Rc<Vec<SeriesView<'s>>>;

/// Memo operation for dropping `__name__`; other operations use their AST node's address,
/// which is never this small.
const WITHOUT_NAME: usize = 1;
/// Memo operation for `histogram_quantile`'s bucket grouping key.
pub(crate) const WITHOUT_LE: usize = 2;
/// Entries a query's label memo holds before it starts over.
const LABEL_MEMO_LIMIT: usize = 1_000_000;

/// The state of one query: its data, settings, time limits and caches.
pub(crate) struct Evaluator<'s> {
    storage: &'s Storage,
    engine: &'s Engine,
    opts: &'s EngineOptions,
    /// Query start and end, which `@ start()` and `@ end()` refer to.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Query step (0 for an instant query), which the experimental `step()` reports.
    pub(crate) step: i64,
    deadline: Instant,
    selections: RefCell<HashMap<usize, Selected<'s>>>,
    decoded: RefCell<DecodeCache>,
    /// Whether reads go through `decoded`: worth it only when steps revisit the same chunks
    /// (range queries and subqueries), a cost otherwise.
    pub(crate) reuse_chunks: Cell<bool>,
    /// Label sets derived from others (name dropped, grouping key, match signature), by the
    /// source set's address and the deriving operation. The source is kept alive in the entry so
    /// its address cannot be reused while the entry exists.
    label_memo: RefCell<HashMap<(usize, usize), (Labels, Labels)>>,
    /// Samples held by the step being evaluated.
    samples: Cell<usize>,
}

pub(crate) fn millis(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn system_time_millis(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn offset_millis(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

impl<'s> Evaluator<'s> {
    pub(crate) fn new(storage: &'s Storage, engine: &'s Engine, start: i64, end: i64) -> Self {
        let opts = engine.options();
        Evaluator {
            storage,
            engine,
            opts,
            start,
            end,
            step: 0,
            deadline: Instant::now() + opts.timeout,
            selections: RefCell::new(HashMap::new()),
            decoded: RefCell::new(DecodeCache::default()),
            reuse_chunks: Cell::new(start != end),
            samples: Cell::new(0),
            label_memo: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn v3(&self) -> bool {
        self.opts.semantics == Semantics::V3
    }

    /// `derive(l)`, computed once per query for each source set and operation. Range queries
    /// derive the same sets at every step; this saves the allocations and string hashing.
    pub(crate) fn memo(
        &self,
        op: usize,
        l: &Labels,
        derive: impl FnOnce(&Labels) -> Labels,
    ) -> Labels {
        let key = (l.addr(), op);
        if let Some((_, hit)) = self.label_memo.borrow().get(&key) {
            return hit.clone();
        }
        let derived = derive(l);
        let mut memo = self.label_memo.borrow_mut();
        if memo.len() >= LABEL_MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(key, (l.clone(), derived.clone()));
        derived
    }

    /// The set without `__name__`, memoised.
    pub(crate) fn without_name(&self, l: &Labels) -> Labels {
        self.memo(WITHOUT_NAME, l, Labels::without_name)
    }

    /// Starts a new top-level step: the sample budget applies per step.
    pub(crate) fn begin_step(&self) -> Result<(), EvalError> {
        if Instant::now() >= self.deadline {
            return Err(EvalError::Timeout);
        }
        self.samples.set(0);
        Ok(())
    }

    pub(crate) fn count_samples(&self, n: usize) -> Result<(), EvalError> {
        // Every selector passes here, so a query stuck in one long step still meets its deadline.
        if Instant::now() >= self.deadline {
            return Err(EvalError::Timeout);
        }
        let total = self.samples.get() + n;
        self.samples.set(total);
        if total > self.opts.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    /// The time a selector reads at: `@` replaces the evaluation time, then `offset` shifts it.
    fn reference_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_millis(st),
        };
        base - offset_millis(offset)
    }

    /// Series matching a selector, sorted by labels as Prometheus's index returns them.
    fn select(&self, vs: &'s VectorSelector) -> Selected<'s> {
        let key = vs as *const VectorSelector as usize;
        if let Some(hit) = self.selections.borrow().get(&key) {
            return hit.clone();
        }
        let mut out: Vec<SeriesView<'s>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for mut matchers in matcher_sets(vs) {
            if self.v3() {
                matchers = matchers.into_iter().map(|m| self.dot_all(m)).collect();
            }
            for s in self.storage.select(&matchers) {
                if seen.insert(s.labels as *const Labels as usize) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(b.labels));
        let out = Rc::new(out);
        self.selections.borrow_mut().insert(key, out.clone());
        out
    }

    /// Prometheus 3 compiles regex matchers so that `.` also matches a newline.
    fn dot_all(&self, m: Matcher) -> Matcher {
        let negate = match m.op {
            MatchOp::Re(_) => false,
            MatchOp::NotRe(_) => true,
            _ => return m,
        };
        let re = match self.engine.dot_all_regex(&m.value) {
            Some(re) => re,
            None => match &m.op {
                MatchOp::Re(r) | MatchOp::NotRe(r) => r.clone(),
                _ => unreachable!("only regex matchers reach here"),
            },
        };
        Matcher {
            op: if negate {
                MatchOp::NotRe(re)
            } else {
                MatchOp::Re(re)
            },
            name: m.name,
            value: m.value,
        }
    }

    /// Evaluates `expr` at time `t`.
    pub(crate) fn eval(&self, expr: &'s Expr, t: i64) -> Result<Val, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::VectorSelector(vs) => self.instant_selector(vs, t).map(Val::Vector),
            Expr::MatrixSelector(ms) => {
                let end = self.reference_time(&ms.vs.at, &ms.vs.offset, t);
                let range = millis(&ms.range);
                self.range_selector(&ms.vs, end, range)
                    .map(|series| Val::Matrix(Matrix { series, range, end }))
            }
            Expr::Subquery(sq) => self.subquery(sq, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => {
                    let out: Vec<Sample> = v
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.without_name(&s.labels),
                            t,
                            v: -s.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(Val::Vector(out))
                }
                other => Err(EvalError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(c) => functions::eval(self, c, t),
            Expr::Extension(_) => Err(EvalError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// The newest sample of each matching series within the lookback window.
    pub(crate) fn instant_selector(
        &self,
        vs: &'s VectorSelector,
        t: i64,
    ) -> Result<Vec<Sample>, EvalError> {
        let reference = self.reference_time(&vs.at, &vs.offset, t);
        let lookback = millis(&self.opts.lookback);
        let left_open = self.v3();
        let series = self.select(vs);
        let mut out = Vec::new();
        let mut cache = self.decoded.borrow_mut();
        for s in series.iter() {
            let (min, max) = (reference - lookback, reference);
            let found = if self.reuse_chunks.get() {
                s.last_cached(min, max, left_open, &mut cache)
            } else {
                s.last_in(min, max, left_open)
            };
            let Some(p) = found else {
                continue;
            };
            if is_stale(p.v) {
                continue;
            }
            out.push(Sample {
                labels: s.labels.clone(),
                t: p.t,
                v: p.v,
            });
        }
        self.count_samples(out.len())?;
        Ok(out)
    }

    /// The samples of each matching series in `[end - range, end]`, staleness markers left out.
    fn range_selector(
        &self,
        vs: &'s VectorSelector,
        end: i64,
        range: i64,
    ) -> Result<Vec<Series>, EvalError> {
        let left_open = self.v3();
        let series = self.select(vs);
        let mut out = Vec::new();
        let mut total = 0;
        let mut cache = self.decoded.borrow_mut();
        for s in series.iter() {
            let mut points = Vec::new();
            if self.reuse_chunks.get() {
                s.samples_cached(end - range, end, left_open, &mut points, &mut cache);
            } else {
                s.samples_into(end - range, end, left_open, &mut points);
            }
            points.retain(|p| !is_stale(p.v));
            if points.is_empty() {
                continue;
            }
            total += points.len();
            out.push(Series {
                labels: s.labels.clone(),
                points,
            });
        }
        self.count_samples(total)?;
        Ok(out)
    }

    fn subquery(
        &self,
        sq: &'s promql_parser::parser::SubqueryExpr,
        t: i64,
    ) -> Result<Val, EvalError> {
        let end = self.reference_time(&sq.at, &sq.offset, t);
        let range = millis(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(millis)
            .unwrap_or_else(|| millis(&self.opts.default_subquery_step));
        if step <= 0 {
            return Err(EvalError::Execution(
                "subquery step must be positive".into(),
            ));
        }
        let lower = end - range;
        // Steps are aligned to multiples of the step, counted from the epoch.
        let mut first = lower.div_euclid(step) * step;
        if first < lower || (self.v3() && first == lower) {
            first += step;
        }
        self.reuse_chunks.set(true);
        let mut by_labels: HashMap<Labels, Vec<Point>> = HashMap::new();
        let mut order: Vec<Labels> = Vec::new();
        let mut ts = first;
        while ts <= end {
            if Instant::now() >= self.deadline {
                return Err(EvalError::Timeout);
            }
            let saved = self.samples.get();
            let v = self.eval(&sq.expr, ts)?;
            self.samples.set(saved);
            match v {
                Val::Scalar(v) => push_point(&mut by_labels, &mut order, Labels::empty(), ts, v),
                Val::Vector(samples) => {
                    for s in samples {
                        push_point(&mut by_labels, &mut order, s.labels, ts, s.v);
                    }
                }
                other => {
                    return Err(EvalError::Execution(format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        other.type_name()
                    )));
                }
            }
            ts += step;
        }
        let series: Vec<Series> = order
            .into_iter()
            .map(|labels| {
                let points = by_labels.remove(&labels).unwrap_or_default();
                Series { labels, points }
            })
            .collect();
        self.count_samples(series.iter().map(|s| s.points.len()).sum())?;
        Ok(Val::Matrix(Matrix { series, range, end }))
    }
}

fn push_point(
    by_labels: &mut HashMap<Labels, Vec<Point>>,
    order: &mut Vec<Labels>,
    labels: Labels,
    t: i64,
    v: f64,
) {
    match by_labels.get_mut(&labels) {
        Some(points) => points.push(Point { t, v }),
        None => {
            order.push(labels.clone());
            by_labels.insert(labels, vec![Point { t, v }]);
        }
    }
}

/// Prometheus refuses a vector with two elements of the same label set (e.g. `rate()` over two
/// metrics whose labels differ only in the name).
pub(crate) fn check_unique(v: &[Sample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(EvalError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// The evaluator's argument accessor for functions and aggregations.
pub(crate) fn expect_scalar(v: Val, what: &str) -> Result<f64, EvalError> {
    match v {
        Val::Scalar(s) => Ok(s),
        other => Err(EvalError::Execution(format!(
            "expected scalar for {what}, got {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn expect_vector(v: Val, what: &str) -> Result<Vec<Sample>, EvalError> {
    match v {
        Val::Vector(s) => Ok(s),
        other => Err(EvalError::Execution(format!(
            "expected instant vector for {what}, got {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn expect_matrix(v: Val, what: &str) -> Result<Matrix, EvalError> {
    match v {
        Val::Matrix(m) => Ok(m),
        other => Err(EvalError::Execution(format!(
            "expected range vector for {what}, got {}",
            other.type_name()
        ))),
    }
}

pub(crate) fn expect_string(v: Val, what: &str) -> Result<String, EvalError> {
    match v {
        Val::String(s) => Ok(s),
        other => Err(EvalError::Execution(format!(
            "expected string for {what}, got {}",
            other.type_name()
        ))),
    }
}

/// Compensated (Kahan-Neumaier) summation step, as Prometheus uses for sums and averages.
pub(crate) fn kahan_add(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}
