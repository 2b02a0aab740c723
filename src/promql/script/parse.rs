//! Parser of Prometheus's PromQL test-script language (see
//! `fixtures/promql-tests/FORMAT.md`) into plain data.
//!
//! The parser knows nothing about the engine: native histogram samples and start timestamps
//! are kept as text so the runner can decide to skip what depends on them.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::promql::notation::{self, LabelPairs, Slot};

/// Why a script could not be parsed, with the line (1-based) it happened on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The script's file name as given to the parser.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed script: its commands in file order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Script {
    /// The file name as given to the parser, used in reports.
    pub file: String,
    /// The commands, in order.
    pub commands: Vec<Command>,
}

/// One command of a script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Command {
    /// `load <interval>` or `load_with_nhcb <interval>` with its series lines.
    Load(Load),
    /// `clear`: drop all data.
    Clear {
        /// 1-based line of the command.
        line: usize,
    },
    /// `eval ...` with its expectations.
    Eval(Eval),
}

/// A `load` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Load {
    /// 1-based line of the `load` command.
    pub line: usize,
    /// Time between two consecutive values, in milliseconds.
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also converted to native histograms.
    pub with_nhcb: bool,
    /// The series lines, in order.
    pub series: Vec<SeriesLine>,
    /// `metric{...}@st <durations>` lines: start timestamps of the samples of a series.
    pub start_timestamps: Vec<StartTimestampLine>,
}

/// A series with its value sequence, as written in `load` blocks and expected results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesLine {
    /// 1-based line.
    pub line: usize,
    /// Label pairs, `__name__` included when written; in the order written.
    pub labels: Vec<(String, String)>,
    /// The expanded value sequence, one entry per slot.
    pub values: Vec<SeqValue>,
}

/// One slot of an expanded value sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SeqValue {
    /// `_`: no sample in this slot.
    Omitted,
    /// A float sample (a staleness marker is the StaleNaN bit pattern).
    Float(f64),
    /// A native histogram sample, kept as the text of its `{{...}}` item.
    Histogram(String),
}

/// A `metric{...}@st <seq>` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartTimestampLine {
    /// 1-based line.
    pub line: usize,
    /// The series' labels.
    pub labels: Vec<(String, String)>,
    /// Offset in milliseconds of each sample's start timestamp from the sample's own time;
    /// `None` for `_`.
    pub offsets_ms: Vec<Option<i64>>,
}

/// When an eval runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum EvalKind {
    /// `eval instant at <t>`.
    Instant {
        /// Evaluation time, ms since the epoch.
        at_ms: i64,
    },
    /// `eval range from <s> to <e> step <d>`.
    Range(Window),
}

/// A range of evaluation steps, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First step.
    pub start_ms: i64,
    /// Last possible step (inclusive).
    pub end_ms: i64,
    /// Distance between steps.
    pub step_ms: i64,
}

/// What a failing query must say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FailExpectation {
    /// Any error.
    Any,
    /// The error text must equal this.
    Message(String),
    /// The error text must match this regular expression (unanchored).
    Regex(String),
}

/// Kinds of annotation expectations (`expect warn`, `expect no_info`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnnotationKind {
    /// At least one warning (optionally matching a text).
    Warn,
    /// At least one info annotation.
    Info,
    /// No warnings allowed.
    NoWarn,
    /// No info annotations allowed.
    NoInfo,
}

/// One annotation expectation line (or an `eval_warn`/`eval_info` suffix).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotationExpectation {
    /// 1-based line.
    pub line: usize,
    /// Which kind.
    pub kind: AnnotationKind,
    /// `msg:` or `regex:` text, if any.
    pub text: Option<String>,
}

/// The expected result of an eval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expected {
    /// Series lines (none at all means an empty result). For instant evals each has one value;
    /// for range evals and `expect range vector` each has one value per step.
    Series(Vec<SeriesLine>),
    /// A bare number: the result must be a scalar.
    Scalar(f64),
    /// `expect string "..."`.
    String(String),
}

/// An `eval` command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Eval {
    /// 1-based line of the command.
    pub line: usize,
    /// The command line as written (trimmed), for reports.
    pub header: String,
    /// The PromQL expression.
    pub expr: String,
    /// Instant or range.
    pub kind: EvalKind,
    /// `eval_fail` / `expect fail ...`.
    pub fail: Option<FailExpectation>,
    /// `eval_ordered` / `expect ordered`.
    pub ordered: bool,
    /// `expect warn|info|no_warn|no_info` lines and `eval_warn`/`eval_info` suffixes.
    pub annotations: Vec<AnnotationExpectation>,
    /// `expect range vector from .. to .. step ..`: the instant query returns a range vector
    /// whose points are expected on this grid.
    pub range_vector: Option<Window>,
    /// The expected result.
    pub expected: Expected,
}

static EVAL_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(\S+)\s+)?(.+)$")
        .expect("valid regex")
});
static EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^eval(?:_(fail|warn|info))?\s+range\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.+)$",
    )
    .expect("valid regex")
});
static EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.*))?$")
        .expect("valid regex")
});
static EXPECT_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+range\s+vector\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)$")
        .expect("valid regex")
});
static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
        .expect("valid regex")
});

/// Parses a Prometheus duration (`1h30m`, `1d`, `100ms`, `0`) into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let caps = DURATION
        .captures(s)
        .filter(|_| !s.is_empty())
        .ok_or_else(|| format!("not a valid duration: {s:?}"))?;
    const UNITS_MS: [i64; 7] = [
        365 * 86_400_000,
        7 * 86_400_000,
        86_400_000,
        3_600_000,
        60_000,
        1_000,
        1,
    ];
    let mut total: i64 = 0;
    for (i, unit) in UNITS_MS.iter().enumerate() {
        if let Some(m) = caps.get(i + 1) {
            let n: i64 = m
                .as_str()
                .parse()
                .map_err(|_| format!("duration {s:?} is too large"))?;
            total = n
                .checked_mul(*unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("duration {s:?} is too large"))?;
        }
    }
    Ok(total)
}

/// Parses a duration with an optional sign (used by `@st` sequences).
fn parse_signed_duration(s: &str) -> Result<i64, String> {
    match s.strip_prefix('-') {
        Some(rest) => parse_duration(rest).map(|d| -d),
        None => parse_duration(s.strip_prefix('+').unwrap_or(s)),
    }
}

/// Parses a number the way the Go harness does for a bare expected scalar: integers (with a
/// `0x` prefix too) and floats, `Inf`/`NaN` in any case.
pub fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = i64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    // Rust's float parser also accepts "infinity", "inf" and "nan" in any case, as Go's does.
    let first = body.chars().next()?;
    if !(first.is_ascii_digit() || first == '.' || matches!(first, 'i' | 'I' | 'n' | 'N')) {
        return None;
    }
    let v: f64 = body.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Parses a whole script. `file` names it in errors and reports.
pub fn parse_script(file: &str, text: &str) -> Result<Script, ParseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let err = |i: usize, message: String| ParseError {
        file: file.to_string(),
        line: i + 1,
        message,
    };
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        // The block of a command runs until the next empty (or comment) line.
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].is_empty())
            .unwrap_or(lines.len());
        let block: Vec<(usize, &str)> = (i + 1..end).map(|j| (j, lines[j])).collect();
        match word.as_str() {
            "clear" => {
                if l.len() > "clear".len() {
                    return Err(err(i, format!("unexpected text after clear: {l:?}")));
                }
                commands.push(Command::Clear { line: i + 1 });
                i += 1;
                continue;
            }
            "load" | "load_with_nhcb" => {
                let load = parse_load(i, l, &block, word == "load_with_nhcb")
                    .map_err(|(j, m)| err(j, m))?;
                commands.push(Command::Load(load));
            }
            w if w.starts_with("eval") => {
                let eval = parse_eval(i, l, &block).map_err(|(j, m)| err(j, m))?;
                commands.push(Command::Eval(eval));
            }
            _ => return Err(err(i, format!("invalid command {l:?}"))),
        }
        i = end;
    }
    Ok(Script {
        file: file.to_string(),
        commands,
    })
}

type LineError = (usize, String);

fn parse_load(
    i: usize,
    header: &str,
    block: &[(usize, &str)],
    with_nhcb: bool,
) -> Result<Load, LineError> {
    let mut words = header.split_whitespace();
    words.next();
    let interval = words
        .next()
        .ok_or((i, "load needs an interval, e.g. `load 5m`".to_string()))?;
    if let Some(extra) = words.next() {
        return Err((
            i,
            format!("unexpected text after the load interval: {extra:?}"),
        ));
    }
    let interval_ms = parse_duration(interval).map_err(|m| (i, format!("load interval: {m}")))?;
    let mut load = Load {
        line: i + 1,
        interval_ms,
        with_nhcb,
        series: Vec::new(),
        start_timestamps: Vec::new(),
    };
    for &(j, l) in block {
        let (labels, rest) = parse_series_labels(l).map_err(|m| (j, m))?;
        if let Some(seq) = rest.strip_prefix("@st") {
            let offsets_ms = parse_duration_sequence(seq).map_err(|m| (j, m))?;
            load.start_timestamps.push(StartTimestampLine {
                line: j + 1,
                labels,
                offsets_ms,
            });
            continue;
        }
        let values = parse_value_sequence(rest).map_err(|m| (j, m))?;
        if values.is_empty() {
            return Err((j, format!("series line without values: {l:?}")));
        }
        load.series.push(SeriesLine {
            line: j + 1,
            labels,
            values,
        });
    }
    Ok(load)
}

fn parse_window(from: &str, to: &str, step: &str) -> Result<Window, String> {
    let start_ms = parse_duration(from).map_err(|m| format!("start: {m}"))?;
    let end_ms = parse_duration(to).map_err(|m| format!("end: {m}"))?;
    let step_ms = parse_duration(step).map_err(|m| format!("step: {m}"))?;
    if end_ms < start_ms {
        return Err(format!("end {to} is before start {from}"));
    }
    if step_ms <= 0 {
        return Err(format!("step must be positive, got {step:?}"));
    }
    Ok(Window {
        start_ms,
        end_ms,
        step_ms,
    })
}

fn parse_eval(i: usize, header: &str, block: &[(usize, &str)]) -> Result<Eval, LineError> {
    let (modifier, kind, expr) = if let Some(c) = EVAL_INSTANT.captures(header) {
        let at = c
            .get(2)
            .map(|m| parse_duration(m.as_str()))
            .transpose()
            .map_err(|m| (i, format!("eval time: {m}")))?
            .unwrap_or(0);
        (
            c.get(1),
            EvalKind::Instant { at_ms: at },
            c.get(3).map_or("", |m| m.as_str()).trim(),
        )
    } else if let Some(c) = EVAL_RANGE.captures(header) {
        let w = parse_window(&c[2], &c[3], &c[4]).map_err(|m| (i, m))?;
        (
            c.get(1),
            EvalKind::Range(w),
            c.get(5).map_or("", |m| m.as_str()).trim(),
        )
    } else {
        return Err((
            i,
            format!(
                "invalid eval command {header:?}: expected `eval[_fail|_ordered|_warn|_info] instant at <time> <query>` or `eval[_fail|_warn|_info] range from <start> to <end> step <step> <query>`"
            ),
        ));
    };
    let mut eval = Eval {
        line: i + 1,
        header: header.to_string(),
        expr: expr.to_string(),
        kind,
        fail: None,
        ordered: false,
        annotations: Vec::new(),
        range_vector: None,
        expected: Expected::Series(Vec::new()),
    };
    match modifier.map(|m| m.as_str().to_ascii_lowercase()).as_deref() {
        Some("fail") => eval.fail = Some(FailExpectation::Any),
        Some("ordered") => eval.ordered = true,
        Some("warn") => eval.annotations.push(AnnotationExpectation {
            line: i + 1,
            kind: AnnotationKind::Warn,
            text: None,
        }),
        Some("info") => eval.annotations.push(AnnotationExpectation {
            line: i + 1,
            kind: AnnotationKind::Info,
            text: None,
        }),
        _ => {}
    }
    let is_instant = matches!(eval.kind, EvalKind::Instant { .. });
    let mut series: Vec<SeriesLine> = Vec::new();
    let mut terminal: Option<(usize, Expected)> = None;
    for &(j, l) in block {
        if let Some((k, _)) = &terminal {
            return Err((
                j,
                format!(
                    "no lines may follow the expected scalar or string of line {}",
                    k + 1
                ),
            ));
        }
        // Older scripts follow `eval_fail` with the error text on its own line.
        if eval.fail.is_some() {
            if let Some(m) = l.strip_prefix("expected_fail_message") {
                eval.fail = Some(FailExpectation::Message(m.trim().to_string()));
                continue;
            }
            if let Some(r) = l.strip_prefix("expected_fail_regexp") {
                let r = r.trim();
                Regex::new(r).map_err(|e| (j, format!("invalid regex {r:?}: {e}")))?;
                eval.fail = Some(FailExpectation::Regex(r.to_string()));
                continue;
            }
        }
        if l.starts_with("expect") && l.split_whitespace().next() == Some("expect") {
            let rest = l["expect".len()..].trim_start();
            if let Some(s) = rest.strip_prefix("string") {
                let s = parse_string_literal(s.trim()).map_err(|m| (j, m))?;
                terminal = Some((j, Expected::String(s)));
                continue;
            }
            if rest.starts_with("range") {
                let c = EXPECT_RANGE.captures(l).ok_or((
                    j,
                    format!(
                        "invalid expect line {l:?}: expected `expect range vector from <start> to <end> step <step>`"
                    ),
                ))?;
                if !is_instant {
                    return Err((
                        j,
                        "`expect range vector` applies to instant evals only".into(),
                    ));
                }
                eval.range_vector = Some(parse_window(&c[1], &c[2], &c[3]).map_err(|m| (j, m))?);
                continue;
            }
            let c = EXPECT.captures(l).ok_or((
                j,
                format!(
                    "invalid expect line {l:?}: expected `expect ordered|fail|warn|no_warn|info|no_info [msg:|regex: <text>]`"
                ),
            ))?;
            let text = c.get(3).map(|m| m.as_str().trim().to_string());
            let is_regex = c.get(2).map(|m| m.as_str()) == Some("regex");
            if let (true, Some(t)) = (is_regex, &text) {
                Regex::new(t).map_err(|e| (j, format!("invalid regex {t:?}: {e}")))?;
            }
            let kind = match &c[1] {
                "ordered" => {
                    if !is_instant {
                        return Err((j, "`expect ordered` applies to instant evals only".into()));
                    }
                    eval.ordered = true;
                    continue;
                }
                "fail" => {
                    eval.fail = Some(match (text, is_regex) {
                        (None, _) => FailExpectation::Any,
                        (Some(t), false) => FailExpectation::Message(t),
                        (Some(t), true) => FailExpectation::Regex(t),
                    });
                    continue;
                }
                "warn" => AnnotationKind::Warn,
                "info" => AnnotationKind::Info,
                "no_warn" => AnnotationKind::NoWarn,
                _ => AnnotationKind::NoInfo,
            };
            eval.annotations.push(AnnotationExpectation {
                line: j + 1,
                kind,
                text,
            });
            continue;
        }
        if let Some(v) = parse_number(l) {
            if !series.is_empty() {
                return Err((j, "a bare scalar cannot follow series lines".into()));
            }
            terminal = Some((j, Expected::Scalar(v)));
            continue;
        }
        let (labels, rest) = parse_series_labels(l).map_err(|m| (j, m))?;
        let values = parse_value_sequence(rest).map_err(|m| (j, m))?;
        if values.is_empty() {
            return Err((j, format!("expected series line without a value: {l:?}")));
        }
        if is_instant && eval.range_vector.is_none() && values.len() != 1 {
            return Err((
                j,
                "an instant eval expects exactly one value per series (use `expect range vector` for a range vector result)".into(),
            ));
        }
        series.push(SeriesLine {
            line: j + 1,
            labels,
            values,
        });
    }
    if eval.fail.is_some() && (!series.is_empty() || terminal.is_some()) {
        return Err((
            i,
            "an eval that expects a failure cannot list results".into(),
        ));
    }
    eval.expected = match terminal {
        Some((_, e)) => e,
        None => Expected::Series(series),
    };
    Ok(eval)
}

/// Reads a PromQL string literal: `"..."` or `'...'` with escapes, or a raw `` `...` ``.
fn parse_string_literal(s: &str) -> Result<String, String> {
    let (value, end) = notation::parse_quoted(s, 0).map_err(|e| e.to_string())?;
    let rest = &s[end..];
    if !rest.trim().is_empty() {
        return Err(format!("unexpected text after string literal: {rest:?}"));
    }
    Ok(value)
}

/// Splits a series line into its labels (in the order written) and the text after the series.
fn parse_series_labels(l: &str) -> Result<(LabelPairs, &str), String> {
    if l.trim().is_empty() {
        return Err(format!(
            "expected a series (`name{{...}}` or `{{...}}`): {l:?}"
        ));
    }
    let (labels, end) = notation::parse_series(l).map_err(|e| format!("{e} in {l:?}"))?;
    // `{}` is the empty label set; no name and no braces is no series at all.
    if labels.is_empty() && !l.trim_start().starts_with('{') {
        return Err(format!(
            "expected a series (`name{{...}}` or `{{...}}`): {l:?}"
        ));
    }
    Ok((labels, &l[end..]))
}

/// Expands a value sequence (`1 2 _ stale 0+10x3 _x2 {{...}}`).
pub fn parse_value_sequence(s: &str) -> Result<Vec<SeqValue>, String> {
    Ok(notation::parse_values(s)
        .map_err(|e| format!("{e} in {s:?}"))?
        .into_iter()
        .map(|slot| match slot {
            Slot::Value(v) => SeqValue::Float(v),
            Slot::Missing => SeqValue::Omitted,
            Slot::Histogram(h) => SeqValue::Histogram(h),
        })
        .collect())
}

fn parse_times(s: &str, item: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("invalid repetition count {s:?} in {item:?}"))
}

/// Expands an `@st` sequence of signed durations (`_ _ -30s-1mx2 0`).
fn parse_duration_sequence(s: &str) -> Result<Vec<Option<i64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(None, parse_times(n, item)?));
            continue;
        }
        let (body, times) = match item.rfind('x') {
            Some(p) => (&item[..p], Some(parse_times(&item[p + 1..], item)?)),
            None => (item, None),
        };
        // Split `a+b` / `a-b` at the first sign that is not the leading one.
        let split = body
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '+' || c == '-')
            .map(|(p, _)| p);
        let (first, delta) = match split {
            Some(p) => (
                parse_signed_duration(&body[..p])?,
                parse_signed_duration(&body[p..])?,
            ),
            None => (parse_signed_duration(body)?, 0),
        };
        match times {
            Some(n) => out.extend((0..=n as i64).map(|k| Some(first + k * delta))),
            None if split.is_none() => out.push(Some(first)),
            None => return Err(format!("expected `x<count>` in {item:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::is_stale as is_stale_bits;

    fn floats(s: &str) -> Vec<Option<f64>> {
        parse_value_sequence(s)
            .unwrap()
            .into_iter()
            .map(|v| match v {
                SeqValue::Float(f) => Some(f),
                SeqValue::Omitted => None,
                SeqValue::Histogram(h) => panic!("unexpected histogram {h}"),
            })
            .collect()
    }

    #[test]
    fn a_plus_b_times_n_expands_to_n_plus_one_samples() {
        assert_eq!(
            floats("1+1x3"),
            vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)]
        );
        assert_eq!(
            floats("0+10x3"),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
    }

    #[test]
    fn a_minus_b_counts_down_and_a_times_n_repeats() {
        assert_eq!(floats("10-2x2"), vec![Some(10.0), Some(8.0), Some(6.0)]);
        assert_eq!(floats("-1-1x1"), vec![Some(-1.0), Some(-2.0)]);
        assert_eq!(floats("5x2"), vec![Some(5.0); 3]);
        assert_eq!(floats("1e3 -2.5 1e-3+1e-3x1").len(), 4);
        assert_eq!(floats("1e-3+1e-3x1")[1], Some(2e-3));
    }

    #[test]
    fn blank_times_n_is_n_empty_slots_not_n_plus_one() {
        assert_eq!(floats("_x3"), vec![None, None, None]);
        assert_eq!(floats("1 _ 2"), vec![Some(1.0), None, Some(2.0)]);
    }

    #[test]
    fn stale_is_the_stale_nan_bit_pattern_and_nan_is_not() {
        let v = floats("stale NaN Inf -Inf");
        assert!(is_stale_bits(v[0].unwrap()));
        assert!(v[1].unwrap().is_nan() && !is_stale_bits(v[1].unwrap()));
        assert_eq!(v[2], Some(f64::INFINITY));
        assert_eq!(v[3], Some(f64::NEG_INFINITY));
    }

    #[test]
    fn histogram_items_are_kept_whole_and_expanded() {
        let v = parse_value_sequence("{{schema:1 sum:3 buckets:[5 10 7]}}x2 1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            SeqValue::Histogram("{{schema:1 sum:3 buckets:[5 10 7]}}".into())
        );
        assert_eq!(v[3], SeqValue::Float(1.0));
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert!(parse_value_sequence("1+x3").is_err());
        assert!(parse_value_sequence("abc").is_err());
        assert!(parse_value_sequence("1+1").is_err());
        assert!(parse_value_sequence("1x-3").is_err());
    }

    #[test]
    fn durations_follow_prometheus_syntax() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert_eq!(parse_duration("20s500ms"), Ok(20_500));
        assert_eq!(parse_duration("1w"), Ok(7 * 86_400_000));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1m1h").is_err(), "units must be in order");
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1.5m").is_err());
    }

    #[test]
    fn start_timestamp_sequences_expand_signed_durations() {
        assert_eq!(
            parse_duration_sequence("_ -30s-1mx2 0 1ms").unwrap(),
            vec![
                None,
                Some(-30_000),
                Some(-90_000),
                Some(-150_000),
                Some(0),
                Some(1)
            ]
        );
        assert_eq!(parse_duration_sequence("-0msx2").unwrap(), vec![Some(0); 3]);
    }

    #[test]
    fn quoted_label_values_unescape_and_names_are_labels() {
        let (labels, rest) =
            parse_series_labels(r#"m{a="x\"y", b='q', c=`r\n`, d="\u00e9\n"} 1"#).unwrap();
        assert_eq!(
            labels,
            vec![
                ("__name__".to_string(), "m".to_string()),
                ("a".to_string(), "x\"y".to_string()),
                ("b".to_string(), "q".to_string()),
                ("c".to_string(), "r\\n".to_string()),
                ("d".to_string(), "é\n".to_string()),
            ]
        );
        assert_eq!(rest, "1");
        let (labels, _) = parse_series_labels(r#"{__name__="up", job="a",} 1"#).unwrap();
        assert_eq!(labels.len(), 2);
        assert!(parse_series_labels(r#"m{a=~"x"} 1"#).is_err());
        assert!(parse_series_labels(r#"m{a="x} 1"#).is_err());
    }

    const SCRIPT: &str = "# comment\nload 5m\n  up{job=\"a\"} 0+1x2\n\neval instant at 10m up\n  up{job=\"a\"} 2\n\neval_ordered instant at 10m sort(up)\n  up{job=\"a\"} 2\n\nclear\neval range from 0 to 10m step 5m up\n  expect no_warn\n  up{job=\"a\"} 0 _ 2\n\neval instant at 1m vector(1)\n  expect fail msg: boom\n\neval instant at 0 1\n  1\n";

    #[test]
    fn a_script_parses_into_commands_with_their_lines() {
        let s = parse_script("t.test", SCRIPT).unwrap();
        assert_eq!(s.commands.len(), 7);
        let Command::Load(load) = &s.commands[0] else {
            panic!("expected load")
        };
        assert_eq!(
            (load.line, load.interval_ms, load.series.len()),
            (2, 300_000, 1)
        );
        assert_eq!(load.series[0].values.len(), 3);
        let Command::Eval(e) = &s.commands[1] else {
            panic!("expected eval")
        };
        assert_eq!(e.kind, EvalKind::Instant { at_ms: 600_000 });
        assert_eq!(e.expr, "up");
        let Command::Eval(e) = &s.commands[2] else {
            panic!("expected eval")
        };
        assert!(e.ordered);
        assert_eq!(s.commands[3], Command::Clear { line: 11 });
        let Command::Eval(e) = &s.commands[4] else {
            panic!("expected eval")
        };
        assert_eq!(e.line, 12);
        assert_eq!(e.annotations[0].kind, AnnotationKind::NoWarn);
        let Expected::Series(series) = &e.expected else {
            panic!("expected series")
        };
        assert_eq!(series[0].values[1], SeqValue::Omitted);
        let Command::Eval(e) = &s.commands[5] else {
            panic!("expected eval")
        };
        assert_eq!(e.fail, Some(FailExpectation::Message("boom".into())));
        let Command::Eval(e) = &s.commands[6] else {
            panic!("expected eval")
        };
        assert_eq!(e.expected, Expected::Scalar(1.0));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse_script("x.test", "load 5m\n  up 1\n\nfrobnicate\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("x.test", 4));
        assert!(e.message.contains("frobnicate"), "{e}");
        let e = parse_script("x.test", "load 5m\n  up 1 zz\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_script("x.test", "eval instant at 1m up\n  up 1 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_script("x.test", "load 5x\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().starts_with("x.test:1: "), "{e}");
        let e = parse_script("x.test", "\n\neval instant at 1m up\n  expect bogus\n").unwrap_err();
        assert_eq!(e.line, 4);
    }

    #[test]
    fn a_comment_ends_a_block_so_the_eval_expects_an_empty_result() {
        let s = parse_script("t", "eval instant at 1m up\n# empty\n").unwrap();
        let Command::Eval(e) = &s.commands[0] else {
            panic!("expected eval")
        };
        assert_eq!(e.expected, Expected::Series(vec![]));
    }

    #[test]
    fn strings_and_range_vector_expectations_parse() {
        let s = parse_script(
            "t",
            "eval instant at 1m \"a\"\n  expect string \"a\\tb\"\n\neval instant at 1m m[1m]\n  expect range vector from 10s to 1m step 10s\n  m 1 2 _\n",
        )
        .unwrap();
        let Command::Eval(e) = &s.commands[0] else {
            panic!("expected eval")
        };
        assert_eq!(e.expected, Expected::String("a\tb".into()));
        let Command::Eval(e) = &s.commands[1] else {
            panic!("expected eval")
        };
        assert_eq!(
            e.range_vector,
            Some(Window {
                start_ms: 10_000,
                end_ms: 60_000,
                step_ms: 10_000
            })
        );
    }

    #[test]
    fn old_style_expected_fail_lines_set_the_error_to_expect() {
        let s = parse_script(
            "t",
            "eval_fail instant at 0 x\n  expected_fail_message boom here\n\neval_fail instant at 0 x\n  expected_fail_regexp bo+m\n",
        )
        .unwrap();
        let fails: Vec<_> = s
            .commands
            .iter()
            .map(|c| match c {
                Command::Eval(e) => e.fail.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            fails,
            vec![
                Some(FailExpectation::Message("boom here".into())),
                Some(FailExpectation::Regex("bo+m".into()))
            ]
        );
    }

    #[test]
    fn bare_numbers_parse_like_go() {
        assert_eq!(parse_number("3"), Some(3.0));
        assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(parse_number("{} 3"), None);
        assert_eq!(parse_number("infra"), None);
    }
}
