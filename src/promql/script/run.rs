//! Runs parsed scripts against one [`Storage`] and an [`Engine`], checking each eval's result the
//! way Prometheus's own harness does.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use promql_parser::parser::{self as ast, AtModifier, Expr, VectorSelector};
use regex::Regex;
use serde::Serialize;

use super::parse::{
    AnnotationKind, Command, Eval, EvalKind, Expected, FailExpectation, Load, Script, SeqValue,
    SeriesLine, Window, parse_script,
};
use crate::promql::value::{METRIC_NAME, is_stale};
use crate::promql::{
    Engine, EngineOptions, EvalError, Labels, Semantics, Series, Storage, Value, matcher_sets,
};

/// The engine settings the acceptance scripts assume: lookback 5m, at most 10 000 samples per
/// query (some cases expect that error), 1m default subquery step.
pub fn harness_options(semantics: Semantics) -> EngineOptions {
    EngineOptions {
        lookback: Duration::from_secs(300),
        max_samples: 10_000,
        timeout: Duration::from_secs(60),
        semantics,
        default_subquery_step: Duration::from_secs(60),
    }
}

/// How one eval went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    /// Every checked expectation held.
    Pass,
    /// An expectation did not hold; the message says which, with expected and actual values.
    Fail(String),
    /// The case was not run; the reason says why.
    Skipped(String),
}

/// The result of one eval command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// The script file.
    pub file: String,
    /// 1-based line of the eval command.
    pub line: usize,
    /// The eval command line as written.
    pub command: String,
    /// The PromQL expression.
    pub expr: String,
    /// Pass, fail or skipped.
    pub outcome: Outcome,
    /// `expect warn`/`expect info` assertions (and `eval_warn`/`eval_info`) that were not
    /// checked because the engine raises no annotations.
    pub unchecked_annotations: usize,
}

/// The results of one script file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// The file as given.
    pub file: String,
    /// Why the file could not be read or parsed (`file:line: message`); it then counts as one
    /// failure.
    pub error: Option<String>,
    /// One result per eval, in file order.
    pub cases: Vec<CaseResult>,
}

/// Counts over cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed (a file that cannot be parsed counts as one).
    pub failed: usize,
    /// Cases not run.
    pub skipped: usize,
    /// Annotation assertions not checked in the cases that ran.
    pub unchecked_annotations: usize,
}

impl Summary {
    /// Passed cases over cases that ran (passed + failed), in percent; 100 when none ran.
    pub fn pass_rate(&self) -> f64 {
        let ran = self.passed + self.failed;
        if ran == 0 {
            100.0
        } else {
            self.passed as f64 * 100.0 / ran as f64
        }
    }

    fn add(&mut self, other: Summary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.unchecked_annotations += other.unchecked_annotations;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )?;
        if self.unchecked_annotations > 0 {
            write!(
                f,
                " ({} warn/info expectations not checked)",
                self.unchecked_annotations
            )?;
        }
        Ok(())
    }
}

impl FileReport {
    /// The counts of this file.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            failed: usize::from(self.error.is_some()),
            ..Summary::default()
        };
        for c in &self.cases {
            match c.outcome {
                Outcome::Pass => s.passed += 1,
                Outcome::Fail(_) => s.failed += 1,
                Outcome::Skipped(_) => s.skipped += 1,
            }
            if !matches!(c.outcome, Outcome::Skipped(_)) {
                s.unchecked_annotations += c.unchecked_annotations;
            }
        }
        s
    }
}

/// The counts over several files.
pub fn total(reports: &[FileReport]) -> Summary {
    let mut s = Summary::default();
    for r in reports {
        s.add(r.summary());
    }
    s
}

/// The text `kubesignal promql test` prints: each failure (`file:line: eval ...: message`), then
/// `PASS|FAIL file: counts` per file and a total line. With `verbose`, skipped cases and their
/// reasons are listed too.
pub fn render(reports: &[FileReport], verbose: bool) -> String {
    let mut out = String::new();
    for r in reports {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{e}");
        }
        for c in &r.cases {
            match &c.outcome {
                Outcome::Fail(m) => {
                    let _ = writeln!(out, "{}:{}: {}: {}", c.file, c.line, c.command, m);
                }
                Outcome::Skipped(reason) if verbose => {
                    let _ = writeln!(
                        out,
                        "{}:{}: {}: skipped: {}",
                        c.file, c.line, c.command, reason
                    );
                }
                _ => {}
            }
        }
    }
    for r in reports {
        let s = r.summary();
        let verdict = if s.failed == 0 { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "{verdict} {}: {s}", r.file);
    }
    let t = total(reports);
    let _ = writeln!(
        out,
        "TOTAL {} files: {t}; pass rate {:.1}%",
        reports.len(),
        t.pass_rate()
    );
    out
}

/// Reads, parses and runs one script file with a fresh store and the harness settings.
pub fn run_file(path: &Path, semantics: Semantics) -> FileReport {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return FileReport {
                error: Some(format!("{file}: cannot read the script: {e}")),
                file,
                cases: Vec::new(),
            };
        }
    };
    match parse_script(&file, &text) {
        Ok(script) => FileReport {
            cases: run_script(&script, &Engine::new(harness_options(semantics))),
            file,
            error: None,
        },
        Err(e) => FileReport {
            file,
            error: Some(format!("{e}")),
            cases: Vec::new(),
        },
    }
}

/// Runs the commands of `script` in order against a fresh store; one result per eval.
pub fn run_script(script: &Script, engine: &Engine) -> Vec<CaseResult> {
    let mut runner = Runner {
        engine,
        storage: Storage::new(),
        unsupported: Vec::new(),
    };
    let mut results = Vec::new();
    for cmd in &script.commands {
        match cmd {
            Command::Load(load) => runner.load(load),
            Command::Clear { .. } => {
                runner.storage.clear();
                runner.unsupported.clear();
            }
            Command::Eval(eval) => {
                let outcome = runner.eval(eval);
                results.push(CaseResult {
                    file: script.file.clone(),
                    line: eval.line,
                    command: eval.header.clone(),
                    expr: eval.expr.clone(),
                    outcome,
                    unchecked_annotations: eval
                        .annotations
                        .iter()
                        .filter(|a| matches!(a.kind, AnnotationKind::Warn | AnnotationKind::Info))
                        .count(),
                });
            }
        }
    }
    results
}

/// A series the store does not hold faithfully, and why.
struct Unsupported {
    labels: Labels,
    reason: String,
}

struct Runner<'a> {
    engine: &'a Engine,
    storage: Storage,
    unsupported: Vec<Unsupported>,
}

fn labels_of(pairs: &[(String, String)]) -> Labels {
    Labels::from_pairs(pairs.iter().cloned())
}

impl Runner<'_> {
    fn load(&mut self, load: &Load) {
        // Within one block a series written twice keeps its last definition, as in Prometheus.
        let mut order: Vec<Labels> = Vec::new();
        let mut defs: HashMap<Labels, &SeriesLine> = HashMap::new();
        for s in &load.series {
            let labels = labels_of(&s.labels);
            if defs.insert(labels.clone(), s).is_none() {
                order.push(labels);
            }
        }
        for labels in order {
            let s = defs[&labels];
            let mut histograms = false;
            for (i, v) in s.values.iter().enumerate() {
                let t = i as i64 * load.interval_ms;
                match v {
                    SeqValue::Float(f) => self.storage.append(&labels, t, *f),
                    SeqValue::Histogram(_) => histograms = true,
                    SeqValue::Omitted => {}
                }
            }
            if histograms {
                self.unsupported.push(Unsupported {
                    reason: format!(
                        "selects {labels}, which holds native histogram samples (line {}); the engine has no native histograms",
                        s.line
                    ),
                    labels: labels.clone(),
                });
            }
            if load.with_nhcb
                && let Some(name) = labels.name()
                && let Some(base) = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
            {
                let nhcb = labels.filter(|k| k != "le").with(METRIC_NAME, base);
                self.unsupported.push(Unsupported {
                    reason: format!(
                        "selects {nhcb}, which load_with_nhcb (line {}) turns into a native histogram with custom buckets; the engine has no native histograms",
                        load.line
                    ),
                    labels: nhcb,
                });
            }
        }
        for st in &load.start_timestamps {
            let labels = labels_of(&st.labels);
            self.unsupported.push(Unsupported {
                reason: format!(
                    "selects {labels}, which has start timestamps (@st, line {}); the engine does not use start timestamps",
                    st.line
                ),
                labels,
            });
        }
    }

    /// Why `expr` cannot be checked with the data loaded, if it selects an unsupported series.
    fn skip_reason(&self, expr: &str) -> Option<String> {
        if self.unsupported.is_empty() {
            return None;
        }
        // An expression the parser rejects is left to the engine, which will report the error.
        let parsed = ast::parse(expr).ok()?;
        let mut selectors = Vec::new();
        collect_selectors(&parsed, &mut selectors);
        self.unsupported
            .iter()
            .find(|u| selectors.iter().any(|vs| selector_matches(vs, &u.labels)))
            .map(|u| u.reason.clone())
    }

    fn eval(&self, e: &Eval) -> Outcome {
        if let Some(line) = expected_histogram_line(&e.expected) {
            return Outcome::Skipped(format!(
                "expects a native histogram value (line {line}), which the engine does not support"
            ));
        }
        if let Some(reason) = self.skip_reason(&e.expr) {
            return Outcome::Skipped(reason);
        }
        match self.check(e) {
            Ok(()) => Outcome::Pass,
            Err(m) => Outcome::Fail(m),
        }
    }

    fn check(&self, e: &Eval) -> Result<(), String> {
        match e.kind {
            EvalKind::Instant { at_ms } => {
                // With `expect range vector` the query runs at the end of the expected window.
                let at_ms = e.range_vector.map_or(at_ms, |w| w.end_ms);
                self.check_instant(e, &e.expr, at_ms)?;
                if let Some((pinned, times)) = step_invariance_variants(&e.expr, at_ms) {
                    for t in times {
                        self.check_instant(e, &pinned, t).map_err(|m| {
                            format!("step invariance: `{pinned}` evaluated at t={t}ms: {m}")
                        })?;
                    }
                }
                Ok(())
            }
            EvalKind::Range(w) => {
                let res =
                    self.engine
                        .range(&self.storage, &e.expr, w.start_ms, w.end_ms, w.step_ms);
                let series = match (res, &e.fail) {
                    (Err(err), Some(f)) => return check_failure(f, &err),
                    (Err(err), None) => return Err(format!("query failed: {err}")),
                    (Ok(s), Some(_)) => {
                        return Err(format!(
                            "expected the query to fail, but it returned {}",
                            describe_matrix(&s)
                        ));
                    }
                    (Ok(s), None) => s,
                };
                match &e.expected {
                    Expected::Series(exp) => compare_matrix(&series, exp, w),
                    Expected::Scalar(_) => Err(format!(
                        "a range query cannot return a scalar, yet a scalar is expected; got {}",
                        describe_matrix(&series)
                    )),
                    Expected::String(_) => Err(format!(
                        "a range query cannot return a string, yet a string is expected; got {}",
                        describe_matrix(&series)
                    )),
                }
            }
        }
    }

    /// Runs `expr` (the eval's expression, or a variant of it) as an instant query at `at_ms`
    /// and checks the result against the eval's expectations, in range mode too.
    fn check_instant(&self, e: &Eval, expr: &str, at_ms: i64) -> Result<(), String> {
        let res = self.engine.instant(&self.storage, expr, at_ms);
        let value = match (res, &e.fail) {
            (Err(err), Some(f)) => return check_failure(f, &err),
            (Err(err), None) => return Err(format!("query failed: {err}")),
            (Ok(v), Some(_)) => {
                return Err(format!(
                    "expected the query to fail, but it returned {}",
                    describe_value(&v)
                ));
            }
            (Ok(v), None) => v,
        };
        compare_instant(e, &value)?;
        if matches!(value, Value::Vector(_) | Value::Scalar(_)) && !uses_query_parameters(expr) {
            self.check_range_mode(e, expr, at_ms, &value)?;
        }
        Ok(())
    }

    /// Prometheus's harness runs every instant eval again as a range query from t-1m to t+1m
    /// step 1m and expects the middle step to give the same result. For ordered evals only
    /// the query's success is checked: a range result is always ordered by labels.
    fn check_range_mode(
        &self,
        e: &Eval,
        expr: &str,
        at: i64,
        instant: &Value,
    ) -> Result<(), String> {
        let series = self
            .engine
            .range(&self.storage, expr, at - 60_000, at + 60_000, 60_000)
            .map_err(|err| format!("range mode (t-1m..t+1m step 1m): query failed: {err}"))?;
        if e.ordered {
            return Ok(());
        }
        check_sorted(&series).map_err(|m| format!("range mode (t-1m..t+1m step 1m): {m}"))?;
        let middle: Vec<crate::promql::Sample> = series
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.t == at)
                    .map(|p| crate::promql::Sample {
                        labels: s.labels.clone(),
                        t: p.t,
                        v: p.v,
                    })
            })
            .collect();
        let value = match instant {
            Value::Scalar(_) => match middle.first() {
                Some(s) => Value::Scalar(crate::promql::Point { t: at, v: s.v }),
                None => {
                    return Err(format!(
                        "range mode (t-1m..t+1m step 1m): no point at the middle step; got {}",
                        describe_matrix(&series)
                    ));
                }
            },
            _ => Value::Vector(middle),
        };
        let mut unordered = e.clone();
        unordered.ordered = false;
        compare_instant(&unordered, &value)
            .map_err(|m| format!("range mode (t-1m..t+1m step 1m), middle step: {m}"))
    }
}

/// Functions whose result depends on the evaluation time even when their arguments do not, so
/// pinning every selector with `@` does not make the query's result time-independent.
const AT_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "step",
    "range",
    "start",
    "end",
];

/// Upstream's step-invariance check: every selector and subquery outside a subquery gets
/// `@ <eval time>` (replacing none, `start()` or `end()`), and the query must then give the
/// same result at other evaluation times (-10t, 0, t/5, t, 10t; or -1s, 0, 1s when t is 0).
/// Returns the pinned expression and those times, or `None` where upstream skips the check
/// (time-dependent functions) or where the expression does not survive being printed and
/// parsed back unchanged, so that a printing quirk of the parser crate cannot fail a case.
fn step_invariance_variants(expr: &str, at_ms: i64) -> Option<(String, Vec<i64>)> {
    let parsed = ast::parse(expr).ok()?;
    if ast::parse(&parsed.to_string()).ok()? != parsed {
        return None;
    }
    let at =
        AtModifier::At(std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(at_ms).ok()?));
    let mut pinned = parsed;
    let mut time_dependent = false;
    pin_at(&mut pinned, &at, &mut time_dependent);
    if time_dependent {
        return None;
    }
    let text = pinned.to_string();
    if ast::parse(&text).ok()? != pinned {
        return None;
    }
    let times = if at_ms == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * at_ms, 0, at_ms / 5, at_ms, 10 * at_ms]
    };
    Some((text, times))
}

fn pin_selector(vs: &mut VectorSelector, at: &AtModifier) {
    if !matches!(vs.at, Some(AtModifier::At(_))) {
        vs.at = Some(at.clone());
    }
}

fn pin_at(e: &mut Expr, at: &AtModifier, time_dependent: &mut bool) {
    match e {
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, at, time_dependent);
            if let Some(p) = &mut a.param {
                pin_at(p, at, time_dependent);
            }
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at, time_dependent),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at, time_dependent);
            pin_at(&mut b.rhs, at, time_dependent);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at, time_dependent),
        // What is inside a subquery is evaluated relative to the subquery's own (now pinned)
        // time, so it is left alone, as upstream does.
        Expr::Subquery(s) => {
            if !matches!(s.at, Some(AtModifier::At(_))) {
                s.at = Some(at.clone());
            }
        }
        Expr::VectorSelector(vs) => pin_selector(vs, at),
        Expr::MatrixSelector(ms) => pin_selector(&mut ms.vs, at),
        Expr::Call(c) => {
            *time_dependent |= AT_UNSAFE_FUNCTIONS.contains(&c.func.name);
            for a in &mut c.args.args {
                pin_at(a, at, time_dependent);
            }
        }
        Expr::Extension(_) => *time_dependent = true,
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
}

/// Whether `expr` calls a function that returns a parameter of the query itself (`step()`,
/// `range()`, `start()`, `end()`): its instant result cannot equal a range query's middle step,
/// so upstream leaves such queries out of the range-mode check.
fn uses_query_parameters(expr: &str) -> bool {
    static QUERY_PARAMETER_CALL: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"\b(?:step|range|start|end)\s*\(\s*\)").expect("valid regex")
    });
    QUERY_PARAMETER_CALL.is_match(expr)
}

/// Range results (matrices) must come sorted by label set, as Prometheus returns them.
fn check_sorted(series: &[Series]) -> Result<(), String> {
    match series.windows(2).position(|w| w[0].labels > w[1].labels) {
        None => Ok(()),
        Some(i) => Err(format!(
            "the matrix is not sorted by labels: {} comes before {}",
            series[i].labels,
            series[i + 1].labels
        )),
    }
}

fn expected_histogram_line(expected: &Expected) -> Option<usize> {
    let Expected::Series(series) = expected else {
        return None;
    };
    series
        .iter()
        .find(|s| s.values.iter().any(|v| matches!(v, SeqValue::Histogram(_))))
        .map(|s| s.line)
}

fn collect_selectors<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match e {
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Call(c) => {
            for a in &c.args.args {
                collect_selectors(a, out);
            }
        }
        Expr::Extension(x) => {
            for c in x.expr.children() {
                collect_selectors(c, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
}

fn selector_matches(vs: &VectorSelector, labels: &Labels) -> bool {
    matcher_sets(vs).iter().any(|set| {
        set.iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    })
}

fn check_failure(expect: &FailExpectation, err: &EvalError) -> Result<(), String> {
    let text = err.to_string();
    match expect {
        FailExpectation::Any => Ok(()),
        FailExpectation::Message(m) if *m == text => Ok(()),
        FailExpectation::Message(m) => Err(format!(
            "expected the error {m:?}, but the query failed with {text:?}"
        )),
        FailExpectation::Regex(r) => {
            let re = Regex::new(r).map_err(|e| format!("invalid regex {r:?}: {e}"))?;
            if re.is_match(&text) {
                Ok(())
            } else {
                Err(format!(
                    "expected an error matching {r:?}, but the query failed with {text:?}"
                ))
            }
        }
    }
}

/// Float equality of the harness: relative error below 1e-6, NaN equals NaN, and StaleNaN only
/// equals StaleNaN.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    let min_normal = f64::MIN_POSITIVE;
    if is_stale(a) || is_stale(b) {
        return is_stale(a) && is_stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn fmt_f(v: f64) -> String {
    if is_stale(v) {
        "stale".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

const SHOWN: usize = 6;

fn describe_value(v: &Value) -> String {
    match v {
        Value::Scalar(p) => format!("scalar {}", fmt_f(p.v)),
        Value::String(_, s) => format!("string {s:?}"),
        Value::Vector(samples) => {
            let mut parts: Vec<String> = samples
                .iter()
                .take(SHOWN)
                .map(|s| format!("{} {}", s.labels, fmt_f(s.v)))
                .collect();
            if samples.len() > SHOWN {
                parts.push(format!("… {} more", samples.len() - SHOWN));
            }
            format!("vector [{}]", parts.join(", "))
        }
        Value::Matrix(series) => describe_matrix(series),
    }
}

fn describe_points(points: &[crate::promql::Point]) -> String {
    points
        .iter()
        .map(|p| format!("{}@{}", fmt_f(p.v), p.t))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_matrix(series: &[Series]) -> String {
    let mut parts: Vec<String> = series
        .iter()
        .take(SHOWN)
        .map(|s| format!("{} [{}]", s.labels, describe_points(&s.points)))
        .collect();
    if series.len() > SHOWN {
        parts.push(format!("… {} more", series.len() - SHOWN));
    }
    format!("matrix [{}]", parts.join(", "))
}

fn compare_instant(e: &Eval, got: &Value) -> Result<(), String> {
    if let Some(w) = e.range_vector {
        let Value::Matrix(series) = got else {
            return Err(format!(
                "expected a range vector, got {}",
                describe_value(got)
            ));
        };
        let Expected::Series(exp) = &e.expected else {
            return Err("`expect range vector` needs series lines".into());
        };
        return compare_matrix(series, exp, w);
    }
    match (&e.expected, got) {
        (Expected::String(want), Value::String(_, s)) if want == s => Ok(()),
        (Expected::String(want), _) => Err(format!(
            "expected string {want:?}, got {}",
            describe_value(got)
        )),
        (Expected::Scalar(want), Value::Scalar(p)) if almost_equal(*want, p.v) => Ok(()),
        (Expected::Scalar(want), _) => Err(format!(
            "expected scalar {}, got {}",
            fmt_f(*want),
            describe_value(got)
        )),
        (Expected::Series(exp), Value::Vector(samples)) => compare_vector(samples, exp, e.ordered)
            .map_err(|m| format!("{m}; got {}", describe_value(got))),
        (Expected::Series(_), Value::Matrix(_)) => Err(format!(
            "received a range vector on an instant evaluation (add `expect range vector`): {}",
            describe_value(got)
        )),
        (Expected::Series(exp), _) => Err(format!(
            "expected an instant vector of {} series, got {}",
            exp.len(),
            describe_value(got)
        )),
    }
}

fn compare_vector(
    samples: &[crate::promql::Sample],
    expected: &[SeriesLine],
    ordered: bool,
) -> Result<(), String> {
    let mut want: HashMap<Labels, (usize, &SeqValue)> = HashMap::new();
    for (pos, s) in expected.iter().enumerate() {
        want.insert(labels_of(&s.labels), (pos, &s.values[0]));
    }
    let mut seen = std::collections::HashSet::new();
    for (pos, s) in samples.iter().enumerate() {
        let Some(&(exp_pos, exp)) = want.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} with value {} in the result",
                s.labels,
                fmt_f(s.v)
            ));
        };
        if ordered && exp_pos != pos {
            return Err(format!(
                "expected {} at position {} but it was at position {}",
                s.labels,
                exp_pos + 1,
                pos + 1
            ));
        }
        match exp {
            SeqValue::Float(f) if almost_equal(*f, s.v) => {}
            SeqValue::Float(f) => {
                return Err(format!(
                    "expected {} for {} but got {}",
                    fmt_f(*f),
                    s.labels,
                    fmt_f(s.v)
                ));
            }
            _ => {
                return Err(format!(
                    "expected no sample for {} but got {}",
                    s.labels,
                    fmt_f(s.v)
                ));
            }
        }
        seen.insert(&s.labels);
    }
    for s in expected {
        let labels = labels_of(&s.labels);
        if !seen.contains(&labels) && !matches!(s.values[0], SeqValue::Omitted) {
            let v = match &s.values[0] {
                SeqValue::Float(f) => fmt_f(*f),
                other => format!("{other:?}"),
            };
            return Err(format!(
                "expected series {labels} with value {v} (line {}) not found",
                s.line
            ));
        }
    }
    Ok(())
}

fn compare_matrix(got: &[Series], expected: &[SeriesLine], w: Window) -> Result<(), String> {
    check_sorted(got)?;
    let want: HashMap<Labels, &SeriesLine> =
        expected.iter().map(|s| (labels_of(&s.labels), s)).collect();
    let mut seen = std::collections::HashSet::new();
    for s in got {
        let Some(exp) = want.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} [{}] in the result",
                s.labels,
                describe_points(&s.points)
            ));
        };
        seen.insert(&s.labels);
        let mut points = Vec::new();
        for (i, v) in exp.values.iter().enumerate() {
            let t = w.start_ms + i as i64 * w.step_ms;
            if t > w.end_ms {
                return Err(format!(
                    "line {} lists {} points for {}, more than the time range can return",
                    exp.line,
                    exp.values.len(),
                    s.labels
                ));
            }
            if let SeqValue::Float(f) = v {
                points.push((t, *f));
            }
        }
        let shown = || {
            format!(
                "expected [{}], got [{}]",
                points
                    .iter()
                    .map(|(t, v)| format!("{}@{t}", fmt_f(*v)))
                    .collect::<Vec<_>>()
                    .join(" "),
                describe_points(&s.points)
            )
        };
        if points.len() != s.points.len() {
            return Err(format!(
                "expected {} points for {} but got {}: {}",
                points.len(),
                s.labels,
                s.points.len(),
                shown()
            ));
        }
        for (i, ((t, v), p)) in points.iter().zip(&s.points).enumerate() {
            if *t != p.t {
                return Err(format!(
                    "point {i} of {} is at t={} instead of t={t}: {}",
                    s.labels,
                    p.t,
                    shown()
                ));
            }
            if !almost_equal(*v, p.v) {
                return Err(format!(
                    "point {i} (t={t}) of {}: expected {} but got {}: {}",
                    s.labels,
                    fmt_f(*v),
                    fmt_f(p.v),
                    shown()
                ));
            }
        }
    }
    for s in expected {
        let labels = labels_of(&s.labels);
        if !seen.contains(&labels) {
            return Err(format!(
                "expected series {labels} (line {}) not found; got {}",
                s.line,
                describe_matrix(got)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::stale_nan;

    #[test]
    fn floats_match_within_a_relative_millionth_and_nan_matches_nan() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.0001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn stale_nan_only_matches_stale_nan() {
        assert!(almost_equal(stale_nan(), stale_nan()));
        assert!(!almost_equal(stale_nan(), f64::NAN));
        assert!(!almost_equal(f64::NAN, stale_nan()));
    }

    #[test]
    fn a_selector_matches_a_skipped_series_by_name_and_matchers() {
        let labels = Labels::from_pairs([("__name__", "h"), ("job", "a")]);
        let sel = |q: &str| {
            let e = ast::parse(q).unwrap();
            let mut v = Vec::new();
            collect_selectors(&e, &mut v);
            v.iter().any(|vs| selector_matches(vs, &labels))
        };
        assert!(sel("sum(rate(h[5m]))"));
        assert!(sel("histogram_quantile(0.9, h{job=~\"a|b\"})"));
        assert!(sel("{__name__=~\"h|x\"} + 1"));
        assert!(!sel("h{job=\"b\"}"));
        assert!(!sel("h_bucket"));
    }

    #[test]
    fn step_invariance_pins_selectors_and_top_level_subqueries_with_the_eval_time() {
        let (q, times) = step_invariance_variants("sum(rate(x[5m])) + y", 3_000_000).unwrap();
        assert_eq!(q, "sum(rate(x[5m] @ 3000.000)) + y @ 3000.000");
        assert_eq!(times, vec![-30_000_000, 0, 600_000, 3_000_000, 30_000_000]);
        let (q, times) = step_invariance_variants("max_over_time(rate(x[1m])[5m:1m])", 0).unwrap();
        assert_eq!(q, "max_over_time(rate(x[1m])[5m:1m] @ 0.000)");
        assert_eq!(times, vec![-1000, 0, 1000]);
        let (q, _) = step_invariance_variants("x @ 100 + x @ start()", 60_000).unwrap();
        assert_eq!(q, "x @ 100.000 + x @ 60.000");
    }

    #[test]
    fn step_invariance_is_not_checked_for_time_dependent_functions() {
        assert_eq!(step_invariance_variants("time() - x", 60_000), None);
        assert_eq!(step_invariance_variants("timestamp(x)", 60_000), None);
        assert_eq!(step_invariance_variants("hour(x)", 60_000), None);
        // Inside a subquery the time is the subquery's own, so time() does not matter there.
        assert!(step_invariance_variants("max_over_time(vector(time())[5m:1m])", 60_000).is_some());
    }

    #[test]
    fn query_parameter_functions_are_recognised_by_name_and_empty_arguments() {
        assert!(uses_query_parameters("vector(step())"));
        assert!(uses_query_parameters("end ( ) - start()"));
        assert!(!uses_query_parameters("sum(range_metric)"));
        assert!(!uses_query_parameters("rate(x[5m])"));
    }

    #[test]
    fn an_unsorted_matrix_is_reported() {
        let s = |job: &str| Series {
            labels: Labels::from_pairs([("job", job)]),
            points: vec![],
        };
        assert!(check_sorted(&[s("a"), s("b")]).is_ok());
        let err = check_sorted(&[s("b"), s("a")]).unwrap_err();
        assert!(
            err.contains("{job=\"b\"} comes before {job=\"a\"}"),
            "{err}"
        );
    }

    #[test]
    fn a_load_with_nhcb_marks_the_converted_histogram_as_unsupported() {
        let script = parse_script(
            "t",
            "load_with_nhcb 1m\n  h_bucket{le=\"1\"} 1\n  h_bucket{le=\"+Inf\"} 2\n  h_sum 3\n  h_count 2\n\neval instant at 0 h_count\n  h_count 2\n\neval instant at 0 histogram_count(h)\n  {} 2\n",
        )
        .unwrap();
        let engine = Engine::new(harness_options(Semantics::V2));
        let results = run_script(&script, &engine);
        assert!(
            !matches!(results[0].outcome, Outcome::Skipped(_)),
            "{results:?}"
        );
        let Outcome::Skipped(reason) = &results[1].outcome else {
            panic!("expected a skip: {results:?}")
        };
        assert!(reason.contains("load_with_nhcb"), "{reason}");
    }
}
