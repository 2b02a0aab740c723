//! Validation of rule files, following Prometheus's rule-file validation (`rulefmt`) and
//! promtool's duplicate-rule lint, and reporting every problem with its file and line.
//!
//! Where we follow Prometheus 3 rather than 2.x: label names and recording-rule names may be
//! any UTF-8 text (Prometheus 3's default name validation). Names outside the classic
//! `[a-zA-Z_][a-zA-Z0-9_]*` set get a warning, since Prometheus 2 rejects them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_yaml_ng::Value;

use super::duration;
use super::file::{Rule, RuleFile, RuleGroup};
use super::load::{self, Document, Seg, Source, key_name, kind_of};
use crate::template::Template;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The file would be rejected.
    Error,
    /// Suspicious but accepted.
    Warning,
}

/// One finding: `FILE:LINE: error: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as named on the command line.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the group/rule/key.
    pub message: String,
}

impl Diagnostic {
    /// An error at `line`.
    pub fn error(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A warning at `line`.
    pub fn warning(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, message)
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(l) => write!(f, "{}:{l}: {sev}: {}", self.file, self.message),
            None => write!(f, "{}: {sev}: {}", self.file, self.message),
        }
    }
}

/// The result of checking several files.
#[derive(Debug, Default)]
pub struct Report {
    /// Number of files checked.
    pub files: usize,
    /// Every finding, file by file, in line order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        writeln!(
            f,
            "{} checked, {}, {}",
            plural(self.files, "file"),
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning")
        )
    }
}

/// Checks each file (what `kubesignal rules check` runs).
pub fn check_files(paths: &[impl AsRef<Path>]) -> Report {
    let mut report = Report::default();
    for p in paths {
        let p = p.as_ref();
        let name = p.display().to_string();
        report.files += 1;
        match std::fs::read_to_string(p) {
            Ok(text) => report.diagnostics.extend(check_text(&name, &text).1),
            Err(e) => report.diagnostics.push(Diagnostic::error(
                &name,
                None,
                format!("cannot read rule file: {e}"),
            )),
        }
    }
    report
}

/// Checks one file's text. Returns the rule model (None when the YAML could not be read at
/// all) and the findings in line order.
pub fn check_text(name: &str, text: &str) -> (Option<RuleFile>, Vec<Diagnostic>) {
    let (source, mut diags) = load::parse_source(name, text);
    let yaml_broken = diags.iter().any(|d| d.message.starts_with("invalid YAML"));
    let mut checker = Checker {
        source: &source,
        diags: Vec::new(),
        rule_ats: Vec::new(),
        group_names: HashMap::new(),
    };
    let mut file = RuleFile::default();
    for doc in &source.documents {
        file.groups.extend(checker.document(doc));
    }
    checker.duplicates(&file);
    diags.extend(checker.diags);
    diags.sort_by_key(|d| d.line.unwrap_or(0));
    ((!yaml_broken).then_some(file), diags)
}

/// Group keys of other rule engines, accepted and ignored so one file serves several tools:
/// vmalert's, Thanos's and Cortex/Mimir's.
const GROUP_EXTENSION_KEYS: &[&str] = &[
    "eval_offset",
    "eval_delay",
    "eval_alignment",
    "concurrency",
    "type",
    "params",
    "headers",
    "notifier_headers",
    "debug",
    "partial_response_strategy",
    "source_tenants",
    "evaluation_delay",
    "align_evaluation_time_on_interval",
];

/// Rule keys of vmalert, accepted and ignored.
const RULE_EXTENSION_KEYS: &[&str] = &["debug", "update_entries_limit"];

/// The standard `for` periods and range windows of non-SLO alerts (see DESIGN.md).
const STANDARD_PERIODS: &[Duration] = &[
    Duration::from_secs(300),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
];

struct Checker<'a> {
    source: &'a Source,
    diags: Vec<Diagnostic>,
    /// Where each rule of the model sits, in model order.
    rule_ats: Vec<At>,
    /// Group names seen in the file, with their lines.
    group_names: HashMap<String, Option<usize>>,
}

/// Where a node is: document and path, for line lookup.
#[derive(Clone)]
struct At {
    doc: usize,
    path: Vec<Seg>,
}

impl At {
    fn key(&self, k: &str) -> At {
        let mut path = self.path.clone();
        path.push(Seg::Key(k.to_string()));
        At {
            doc: self.doc,
            path,
        }
    }

    fn index(&self, i: usize) -> At {
        let mut path = self.path.clone();
        path.push(Seg::Index(i));
        At {
            doc: self.doc,
            path,
        }
    }
}

impl Checker<'_> {
    fn line(&self, at: &At) -> Option<usize> {
        self.source.lines.line(at.doc, &at.path)
    }

    fn error(&mut self, at: &At, msg: impl Into<String>) {
        let line = self.line(at);
        self.diags
            .push(Diagnostic::error(&self.source.path, line, msg));
    }

    fn warn(&mut self, at: &At, msg: impl Into<String>) {
        let line = self.line(at);
        self.diags
            .push(Diagnostic::warning(&self.source.path, line, msg));
    }

    fn document(&mut self, doc: &Document) -> Vec<RuleGroup> {
        let at = At {
            doc: doc.index,
            path: doc.groups_path.clone(),
        };
        let where_ = doc
            .resource_name
            .as_ref()
            .map(|n| format!(" of PrometheusRule {n:?}"))
            .unwrap_or_default();
        let groups = match &doc.groups {
            Value::Sequence(s) => s,
            Value::Null => return Vec::new(),
            other => {
                self.error(
                    &at,
                    format!("`groups`{where_} must be a list, found {}", kind_of(other)),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let gat = at.index(i);
            if let Some(group) = self.group(g, &gat, i) {
                if !group.name.is_empty() {
                    let line = self.line(&gat.key("name"));
                    // Unique per file, across its documents too: the evaluator loads a
                    // multi-document file as one file.
                    if let Some(first) = self.group_names.get(&group.name) {
                        let first = first
                            .map(|l| format!(" (first at line {l})"))
                            .unwrap_or_default();
                        self.error(
                            &gat.key("name"),
                            format!(
                                "group name {:?} is repeated in the same file{first}",
                                group.name
                            ),
                        );
                    } else {
                        self.group_names.insert(group.name.clone(), line);
                    }
                }
                out.push(group);
            }
        }
        out
    }

    fn group(&mut self, g: &Value, at: &At, i: usize) -> Option<RuleGroup> {
        let Value::Mapping(m) = g else {
            self.error(
                at,
                format!("group {} must be a mapping, found {}", i + 1, kind_of(g)),
            );
            return None;
        };
        let mut group = RuleGroup::default();
        let name = m.get("name");
        let label = match name {
            Some(Value::String(s)) if !s.is_empty() => format!("group {s:?}"),
            _ => format!("group {}", i + 1),
        };
        let mut rules_val = None;
        for (k, v) in m {
            let key = key_name(k);
            let kat = at.key(&key);
            match key.as_str() {
                "name" => match v {
                    Value::String(s) if !s.is_empty() => group.name = s.clone(),
                    Value::String(_) | Value::Null => self.error(&kat, format!("{label}: group name must not be empty")),
                    other => self.error(&kat, format!("{label}: `name` must be a string, found {}", kind_of(other))),
                },
                "interval" | "query_offset" => {
                    let d = self.duration(v, &kat, &format!("{label}: `{key}`"));
                    if key == "interval" {
                        group.interval = d;
                    } else {
                        group.query_offset = d;
                    }
                }
                "limit" => match v.as_i64() {
                    Some(n) if n >= 0 => group.limit = n as u64,
                    _ => self.error(&kat, format!("{label}: `limit` must be a non-negative integer")),
                },
                "labels" => {
                    group.labels = self.labels(v, &kat, &label);
                }
                "rules" => rules_val = Some(v),
                _ if GROUP_EXTENSION_KEYS.contains(&key.as_str()) => {
                    group.extra.insert(key, v.clone());
                }
                _ => self.error(
                    &kat,
                    format!("{label}: unknown key `{key}` (expected name, interval, query_offset, limit, labels, rules)"),
                ),
            }
        }
        if name.is_none() {
            self.error(at, format!("{label}: group name must not be empty"));
        }
        match rules_val {
            Some(Value::Sequence(rules)) => {
                for (ri, r) in rules.iter().enumerate() {
                    let rat = at.key("rules").index(ri);
                    if let Some(rule) = self.rule(r, &rat, &label, ri, &group.labels) {
                        group.rules.push(rule);
                        self.rule_ats.push(rat);
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => self.error(
                &at.key("rules"),
                format!("{label}: `rules` must be a list, found {}", kind_of(other)),
            ),
        }
        Some(group)
    }

    fn duration(&mut self, v: &Value, at: &At, what: &str) -> Option<String> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => return None,
            other => {
                self.error(
                    at,
                    format!("{what} must be a duration, found {}", kind_of(other)),
                );
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(_) => Some(text),
            Err(e) => {
                self.error(at, format!("{what}: {e}"));
                None
            }
        }
    }

    /// A `name: value` mapping of labels or annotations.
    fn string_map(&mut self, v: &Value, at: &At, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match v {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, val) in m {
                    let key = key_name(k);
                    let text = match val {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        other => {
                            self.error(
                                &at.key(&key),
                                format!(
                                    "{what} `{key}` must be a string, found {}",
                                    kind_of(other)
                                ),
                            );
                            continue;
                        }
                    };
                    out.insert(key, text);
                }
            }
            other => self.error(
                at,
                format!("{what}s must be a mapping, found {}", kind_of(other)),
            ),
        }
        out
    }

    fn labels(&mut self, v: &Value, at: &At, owner: &str) -> BTreeMap<String, String> {
        let labels = self.string_map(v, at, &format!("{owner}: label"));
        for name in labels.keys() {
            self.label_name(name, &at.key(name), owner, "label");
        }
        labels
    }

    fn label_name(&mut self, name: &str, at: &At, owner: &str, what: &str) {
        if name.is_empty() {
            self.error(at, format!("{owner}: invalid {what} name: empty"));
        } else if what == "label" && name == "__name__" {
            self.error(at, format!("{owner}: invalid label name: __name__ (a rule cannot set the metric name through labels)"));
        } else if !is_legacy_name(name) {
            self.warn(
                at,
                format!("{owner}: {what} name {name:?} is valid only with UTF-8 names (Prometheus 3); Prometheus 2 rejects it"),
            );
        }
    }

    fn rule(
        &mut self,
        r: &Value,
        at: &At,
        group: &str,
        index: usize,
        group_labels: &BTreeMap<String, String>,
    ) -> Option<Rule> {
        let Value::Mapping(m) = r else {
            self.error(
                at,
                format!(
                    "{group}, rule {}: must be a mapping, found {}",
                    index + 1,
                    kind_of(r)
                ),
            );
            return None;
        };
        let str_of = |k: &str| -> Option<String> {
            match m.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let record = str_of("record");
        let alert = str_of("alert");
        let owner = match (&alert, &record) {
            (Some(a), _) => format!("{group}, rule {} (alert {a:?})", index + 1),
            (None, Some(r)) => format!("{group}, rule {} (record {r:?})", index + 1),
            _ => format!("{group}, rule {}", index + 1),
        };
        let mut rule = Rule {
            record: record.clone(),
            alert: alert.clone(),
            ..Rule::default()
        };
        let mut labels_val = None;
        let mut annotations_val = None;
        for (k, v) in m {
            let key = key_name(k);
            let kat = at.key(&key);
            match key.as_str() {
                "record" | "alert" => {
                    if !matches!(v, Value::String(_)) {
                        self.error(&kat, format!("{owner}: `{key}` must be a string, found {}", kind_of(v)));
                    }
                }
                "expr" => match v {
                    Value::String(s) => rule.expr = s.clone(),
                    Value::Number(n) => rule.expr = n.to_string(),
                    other => self.error(&kat, format!("{owner}: `expr` must be a string, found {}", kind_of(other))),
                },
                "for" => rule.for_ = self.duration(v, &kat, &format!("{owner}: `for`")),
                "keep_firing_for" => {
                    rule.keep_firing_for = self.duration(v, &kat, &format!("{owner}: `keep_firing_for`"))
                }
                "labels" => labels_val = Some(v),
                "annotations" => annotations_val = Some(v),
                _ if RULE_EXTENSION_KEYS.contains(&key.as_str()) => {
                    rule.extra.insert(key, v.clone());
                }
                _ => self.error(
                    &kat,
                    format!("{owner}: unknown key `{key}` (expected record or alert, expr, for, keep_firing_for, labels, annotations)"),
                ),
            }
        }
        match (&record, &alert) {
            (Some(_), Some(_)) => self.error(
                at,
                format!("{owner}: only one of `record` and `alert` may be set"),
            ),
            (None, None) => self.error(
                at,
                format!("{owner}: one of `record` or `alert` must be set"),
            ),
            _ => {}
        }
        if let Some(v) = labels_val {
            rule.labels = self.labels(v, &at.key("labels"), &owner);
        }
        if let Some(v) = annotations_val {
            rule.annotations =
                self.string_map(v, &at.key("annotations"), &format!("{owner}: annotation"));
            let names: Vec<String> = rule.annotations.keys().cloned().collect();
            for name in names {
                self.label_name(
                    &name,
                    &at.key("annotations").key(&name),
                    &owner,
                    "annotation",
                );
            }
        }

        // The expression.
        let expr = if !m.contains_key("expr") || rule.expr.trim().is_empty() {
            self.error(at, format!("{owner}: `expr` must be set"));
            None
        } else {
            match parser::parse(&rule.expr) {
                Ok(e) => Some(e),
                Err(e) => {
                    let shown = if rule.expr.len() <= 80 {
                        format!(" in {:?}", rule.expr.trim())
                    } else {
                        String::new()
                    };
                    self.error(
                        &at.key("expr"),
                        format!("{owner}: could not parse expression{shown}: {}", e.trim()),
                    );
                    None
                }
            }
        };

        if let Some(name) = &record {
            if annotations_val.is_some_and(|v| !v.is_null()) {
                self.error(
                    &at.key("annotations"),
                    format!("{owner}: a recording rule cannot have `annotations`"),
                );
            }
            for (key, val) in [
                ("for", &rule.for_),
                ("keep_firing_for", &rule.keep_firing_for),
            ] {
                if val
                    .as_deref()
                    .and_then(|d| duration::parse(d).ok())
                    .is_some_and(|d| !d.is_zero())
                {
                    self.error(
                        &at.key(key),
                        format!("{owner}: a recording rule cannot have `{key}`"),
                    );
                }
            }
            if name.is_empty() {
                self.error(
                    &at.key("record"),
                    format!("{owner}: invalid recording rule name: empty"),
                );
            } else if name.contains('{') || name.contains('}') {
                self.error(
                    &at.key("record"),
                    format!("{owner}: braces present in the recording rule name {name:?}; should they be in `expr`?"),
                );
            } else if !is_legacy_metric_name(name) {
                self.warn(
                    &at.key("record"),
                    format!("{owner}: recording rule name {name:?} is valid only with UTF-8 names (Prometheus 3); Prometheus 2 rejects it"),
                );
            }
        }

        if let Some(name) = &alert {
            if name.is_empty() {
                self.error(
                    &at.key("alert"),
                    format!("{owner}: alert name must not be empty"),
                );
            }
            self.templates(&rule, at, &owner, name);
            let mut all_labels = group_labels.clone();
            all_labels.extend(rule.labels.clone());
            let is_slo = all_labels.contains_key("slo")
                || all_labels.keys().any(|k| k.starts_with("sloth_"));
            if !is_slo {
                self.standard_periods(&rule, expr.as_ref(), at, &owner);
            }
        }
        Some(rule)
    }

    fn templates(&mut self, rule: &Rule, at: &At, owner: &str, alert: &str) {
        let tname = format!("__alert_{alert}");
        for (kind, map) in [("label", &rule.labels), ("annotation", &rule.annotations)] {
            for (key, text) in map {
                if let Err(crate::template::TemplateError::Parse { line, message, .. }) =
                    Template::parse(&tname, text)
                {
                    let kat = at.key(&format!("{kind}s")).key(key);
                    let base = self.line(&kat);
                    // In a block scalar (`|`), template line N sits N lines below the key.
                    let line = match base {
                        Some(b) if self.is_block_scalar_at(b) => Some(b + line),
                        other => other,
                    };
                    self.diags.push(Diagnostic::error(
                        &self.source.path,
                        line,
                        format!("{owner}: {kind} `{key}`: template does not parse: {message}"),
                    ));
                } else if kind == "label" && (text.contains("$value") || text.contains(".Value")) {
                    // Labels make the alert's identity: a value in them starts a new alert (and
                    // resets `for`) whenever the value changes.
                    self.warn(
                        &at.key("labels").key(key),
                        format!("{owner}: label `{key}` uses the alert's value; each new value makes a new alert and restarts `for`"),
                    );
                }
            }
        }
    }

    fn is_block_scalar_at(&self, line: usize) -> bool {
        self.source
            .text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once(": "))
            .is_some_and(|(_, v)| v.trim_start().starts_with(['|', '>']))
    }

    fn standard_periods(&mut self, rule: &Rule, expr: Option<&Expr>, at: &At, owner: &str) {
        let allowed = "5m, 10m, 30m, 1h";
        if let Some(d) = rule.for_.as_deref().and_then(|d| duration::parse(d).ok())
            && !d.is_zero()
            && !STANDARD_PERIODS.contains(&d)
        {
            self.warn(
                &at.key("for"),
                format!(
                    "{owner}: `for: {}` is not one of the standard periods {allowed}",
                    duration::format(d)
                ),
            );
        }
        if let Some(e) = expr {
            let mut windows = Windows(Vec::new());
            let _ = walk_expr(&mut windows, e);
            let mut odd: Vec<Duration> = windows
                .0
                .into_iter()
                .filter(|w| !STANDARD_PERIODS.contains(w))
                .collect();
            odd.sort();
            odd.dedup();
            if !odd.is_empty() {
                let list: Vec<String> = odd
                    .iter()
                    .map(|d| format!("[{}]", duration::format(*d)))
                    .collect();
                self.warn(
                    &at.key("expr"),
                    format!(
                        "{owner}: range window {} is not one of the standard periods {allowed}",
                        list.join(", ")
                    ),
                );
            }
        }
    }

    /// promtool's lint: two rules with the same name and the same labels.
    fn duplicates(&mut self, file: &RuleFile) {
        let mut seen: HashMap<(String, Vec<(String, String)>), usize> = HashMap::new();
        let mut found = Vec::new();
        let positions = std::mem::take(&mut self.rule_ats);
        let rules = file.groups.iter().flat_map(|g| g.rules.iter());
        for (rule, at) in rules.zip(positions) {
            let name = rule
                .record
                .clone()
                .or_else(|| rule.alert.clone())
                .unwrap_or_default();
            let key = (
                name.clone(),
                rule.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            let line = self.line(&at);
            match seen.get(&key) {
                Some(first) => found.push((at, name, rule.labels.clone(), *first)),
                None => {
                    seen.insert(key, line.unwrap_or(0));
                }
            }
        }
        for (at, name, labels, first) in found {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            self.warn(
                &at,
                format!("duplicate rule {name:?} with labels {{{}}} (same as line {first}); it may record or alert inconsistently", labels.join(", ")),
            );
        }
    }
}

/// Collects range windows (`[5m]`, subquery ranges) of an expression.
struct Windows(Vec<Duration>);

impl ExprVisitor for Windows {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
        match e {
            Expr::MatrixSelector(m) => self.0.push(m.range),
            Expr::Subquery(s) => self.0.push(s.range),
            _ => {}
        }
        Ok(true)
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name every Prometheus version accepts.
fn is_legacy_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a metric name every Prometheus version accepts.
fn is_legacy_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}
