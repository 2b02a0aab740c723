//! Reading rule files: plain Prometheus rule files (`groups:`), PrometheusRule custom resources
//! (`apiVersion: monitoring.coreos.com/v1`, `kind: PrometheusRule`, rules under
//! `spec.groups`), and multi-document YAML holding either.
//!
//! The YAML is parsed into untyped values so that [`super::check`] can report every problem,
//! not only the first. Values carry no positions, so [`LineIndex`] maps each node's path
//! (`groups[0].rules[3].expr`) to its line by scanning the text's block structure.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::check::{self, Diagnostic};
use super::file::RuleFile;

/// One step of a path into a YAML document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into a YAML document.
pub type YamlPath = Vec<Seg>;

/// Where each node of a file's YAML documents starts (1-based line numbers).
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<(usize, YamlPath), usize>,
}

/// One YAML document of a rule file that holds rule groups.
#[derive(Debug)]
pub struct Document {
    /// Index of the document in the file (0 for a single-document file).
    pub index: usize,
    /// The `groups` sequence (for a PrometheusRule, `spec.groups`).
    pub groups: Value,
    /// Path of `groups` inside the document.
    pub groups_path: YamlPath,
    /// `metadata.name` of a PrometheusRule, None for a plain rule file.
    pub resource_name: Option<String>,
}

/// A rule file read and split into documents, ready to be checked.
#[derive(Debug)]
pub struct Source {
    /// The file name as given (used in messages).
    pub path: String,
    /// The raw text.
    pub text: String,
    /// Documents holding rule groups.
    pub documents: Vec<Document>,
    /// Lines of YAML nodes.
    pub lines: LineIndex,
}

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read rule file: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is read but has problems; every error found is listed.
    #[error("{}", errors_only(.diagnostics))]
    Invalid {
        /// The file.
        path: String,
        /// Errors (and warnings) found, each with its line.
        diagnostics: Vec<Diagnostic>,
    },
}

/// The errors among `diagnostics`, one per line (warnings don't explain a failed load).
fn errors_only(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads a rule file (plain, PrometheusRule, or multi-document), validating it like
/// `rules check`. Warnings don't fail the load; any error does.
pub fn load_file(path: &Path) -> Result<RuleFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&path.display().to_string(), &text)
}

/// Like [`load_file`] for text already in memory; `name` is used in messages.
pub fn load_str(name: &str, text: &str) -> Result<RuleFile, LoadError> {
    let (file, diagnostics) = check::check_text(name, text);
    match file {
        Some(file) if !diagnostics.iter().any(Diagnostic::is_error) => Ok(file),
        _ => Err(LoadError::Invalid {
            path: name.to_string(),
            diagnostics,
        }),
    }
}

/// Splits `text` into YAML documents and finds the rule groups in each. Problems that stop a
/// document from being read at all are returned as diagnostics.
pub fn parse_source(name: &str, text: &str) -> (Source, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut documents = Vec::new();
    let lines = LineIndex::scan(text);
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = match Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                diagnostics.push(Diagnostic::error(
                    name,
                    line,
                    format!("invalid YAML: {}", strip_location(&e.to_string())),
                ));
                // libyaml cannot resynchronise after a syntax error.
                break;
            }
        };
        let top_line = lines.line(index, &[]);
        match value {
            Value::Null => {}
            Value::Mapping(ref m) => {
                let is_cr = m.get("kind").and_then(Value::as_str) == Some("PrometheusRule");
                if is_cr {
                    let api = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                    if !api.starts_with("monitoring.coreos.com/") {
                        diagnostics.push(Diagnostic::error(
                            name,
                            lines.line(index, &[Seg::Key("apiVersion".into())]),
                            format!("PrometheusRule with apiVersion {api:?}: expected monitoring.coreos.com/v1"),
                        ));
                        continue;
                    }
                    let resource_name = m
                        .get("metadata")
                        .and_then(|md| md.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let spec = m.get("spec");
                    let groups = spec.and_then(|s| s.get("groups")).cloned();
                    if let Some(Value::Mapping(spec)) = spec {
                        for key in spec.keys() {
                            let k = key_name(key);
                            if k != "groups" {
                                diagnostics.push(Diagnostic::error(
                                    name,
                                    lines.line(index, &[Seg::Key("spec".into()), Seg::Key(k.clone())]),
                                    format!("unknown key `{k}` in PrometheusRule spec (expected `groups`)"),
                                ));
                            }
                        }
                    }
                    documents.push(Document {
                        index,
                        groups: groups.unwrap_or(Value::Null),
                        groups_path: vec![Seg::Key("spec".into()), Seg::Key("groups".into())],
                        resource_name,
                    });
                    continue;
                }
                let has_groups = m.contains_key("groups");
                let unknown: Vec<String> =
                    m.keys().map(key_name).filter(|k| k != "groups").collect();
                if !has_groups {
                    let keys: Vec<String> = unknown.iter().map(|k| format!("`{k}`")).collect();
                    diagnostics.push(Diagnostic::error(
                        name,
                        top_line,
                        format!(
                            "not a rule file: no `groups` at the top level (found {}){}",
                            keys.join(", "),
                            not_a_rule_file_hint(m)
                        ),
                    ));
                    continue;
                }
                for k in unknown {
                    diagnostics.push(Diagnostic::error(
                        name,
                        lines.line(index, &[Seg::Key(k.clone())]),
                        format!(
                            "unknown key `{k}` at the top level of a rule file (expected `groups`)"
                        ),
                    ));
                }
                if has_groups {
                    documents.push(Document {
                        index,
                        groups: m.get("groups").cloned().unwrap_or(Value::Null),
                        groups_path: vec![Seg::Key("groups".into())],
                        resource_name: None,
                    });
                }
            }
            other => diagnostics.push(Diagnostic::error(
                name,
                top_line,
                format!(
                    "expected a mapping with `groups` (or a PrometheusRule), found {}",
                    kind_of(&other)
                ),
            )),
        }
    }
    (
        Source {
            path: name.to_string(),
            text: text.to_string(),
            documents,
            lines,
        },
        diagnostics,
    )
}

/// Says what a non-rule YAML document probably is.
fn not_a_rule_file_hint(m: &serde_yaml_ng::Mapping) -> &'static str {
    let has = |k: &str| m.contains_key(k);
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    if has("tests") || has("rule_files") {
        "; this looks like a promtool unit-test file"
    } else if has("slos")
        || text("kind").contains("ServiceLevel")
        || text("apiVersion").starts_with("sloth.slok.dev")
        || text("apiVersion").starts_with("openslo")
    {
        "; this looks like an SLO spec (see `kubesignal slo generate`)"
    } else {
        ""
    }
}

/// A mapping key as text (YAML allows non-string keys; they are shown as written).
pub(crate) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

/// A short name of a YAML value's type, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde_yaml_ng appends " at line L column C"; we print the line ourselves.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl LineIndex {
    /// The line of the node at `path` in document `doc`, or of its nearest ancestor the scan
    /// found (flow-style `{...}` mappings are not broken down).
    pub fn line(&self, doc: usize, path: &[Seg]) -> Option<usize> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&(doc, path[..n].to_vec())).copied())
    }

    /// Scans block-style YAML: tracks indentation, `- ` sequence items and `key:` entries, and
    /// skips the content of multi-line scalars (block `|`/`>`, quoted, plain continuation).
    pub fn scan(text: &str) -> LineIndex {
        let mut index = LineIndex::default();
        let mut stack: Vec<(usize, Seg)> = Vec::new();
        let mut skip_deeper_than: Option<usize> = None;
        let mut doc = 0;
        let mut doc_started = false;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.trim_end_matches('\r');
            let indent = line.len() - line.trim_start_matches(' ').len();
            let content = line[indent..].trim_end();
            if let Some(k) = skip_deeper_than {
                if content.is_empty() || indent > k {
                    continue;
                }
                skip_deeper_than = None;
            }
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if indent == 0 && (content == "---" || content.starts_with("--- ")) {
                if doc_started {
                    doc += 1;
                }
                doc_started = true;
                stack.clear();
                continue;
            }
            if indent == 0 && (content == "..." || content.starts_with('%')) {
                continue;
            }
            if !doc_started {
                doc_started = true;
                index.lines.insert((doc, Vec::new()), line_no);
            }
            index.lines.entry((doc, Vec::new())).or_insert(line_no);
            let mut col = indent;
            let mut rest = content;
            let mut dash_col = None;
            while rest == "-" || rest.starts_with("- ") {
                while stack.last().is_some_and(|(c, _)| *c > col) {
                    stack.pop();
                }
                match stack.last_mut() {
                    Some((c, Seg::Index(i))) if *c == col => *i += 1,
                    _ => stack.push((col, Seg::Index(0))),
                }
                index.record(doc, &stack, line_no);
                dash_col = Some(col);
                let after = &rest[1..];
                let trimmed = after.trim_start_matches(' ');
                col += 1 + (after.len() - trimmed.len());
                rest = trimmed;
            }
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            match split_key(rest) {
                Some((key, value)) => {
                    while stack.last().is_some_and(|(c, _)| *c >= col) {
                        stack.pop();
                    }
                    stack.push((col, Seg::Key(key)));
                    index.record(doc, &stack, line_no);
                    if has_inline_value(value) {
                        skip_deeper_than = Some(col);
                    }
                }
                None => {
                    // A scalar list item: more-indented lines continue it.
                    if let Some(d) = dash_col {
                        skip_deeper_than = Some(d);
                    }
                }
            }
        }
        index
    }

    fn record(&mut self, doc: usize, stack: &[(usize, Seg)], line: usize) {
        let path: YamlPath = stack.iter().map(|(_, s)| s.clone()).collect();
        self.lines.entry((doc, path)).or_insert(line);
    }
}

/// Splits `key: value` (the key plain or quoted); None when the line holds no mapping key.
fn split_key(s: &str) -> Option<(String, &str)> {
    if s.starts_with(['{', '[', '|', '>', '&', '*', '!']) {
        return None;
    }
    let (key, after) = if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let mut end = None;
        let bytes = s.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            if bytes[i] == b'\\' && q == '"' {
                i += 2;
                continue;
            }
            if bytes[i] == q as u8 {
                if q == '\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                end = Some(i);
                break;
            }
            i += 1;
        }
        let end = end?;
        let after = s[end + 1..].trim_start_matches(' ');
        (s[1..end].to_string(), after)
    } else {
        let i = s
            .match_indices(':')
            .map(|(i, _)| i)
            .find(|&i| matches!(s.as_bytes().get(i + 1), None | Some(b' ') | Some(b'\t')))?;
        if s[..i].contains(" #") {
            return None;
        }
        return Some((s[..i].trim_end().to_string(), s[i + 1..].trim_start()));
    };
    let value = after.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, value.trim_start()))
}

/// Whether a key's value starts on its own line (so deeper lines belong to that scalar or
/// flow collection) rather than below it as a nested block.
fn has_inline_value(v: &str) -> bool {
    let v = v.trim();
    if v.is_empty() || v.starts_with('#') {
        return false;
    }
    // An anchor or tag alone still leaves the value to the following lines.
    let only_props = v
        .split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .all(|w| w.starts_with('&') || w.starts_with('!'));
    !only_props
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn the_line_index_finds_nested_nodes_and_skips_multi_line_scalars() {
        let text = "\
# comment
groups:
  - name: a
    rules:
    - alert: X
      expr: |
        up
        - not: a key
      annotations:
        summary: \"one
          two: three\"
        description: plain
          continued
      labels: {severity: page}
    - record: y
      expr: z
  - name: b
    interval: 1m
";
        let idx = LineIndex::scan(text);
        let g = |i| vec![k("groups"), Seg::Index(i)];
        let r = |gi, ri| {
            let mut p = g(gi);
            p.extend([k("rules"), Seg::Index(ri)]);
            p
        };
        assert_eq!(idx.line(0, &g(0)), Some(3));
        assert_eq!(idx.line(0, &[r(0, 0), vec![k("expr")]].concat()), Some(6));
        assert_eq!(
            idx.line(
                0,
                &[r(0, 0), vec![k("annotations"), k("description")]].concat()
            ),
            Some(12)
        );
        assert_eq!(
            idx.line(0, &[r(0, 0), vec![k("labels"), k("severity")]].concat()),
            Some(14)
        );
        assert_eq!(idx.line(0, &r(0, 1)), Some(15));
        assert_eq!(idx.line(0, &[g(1), vec![k("interval")]].concat()), Some(18));
        assert_eq!(idx.line(0, &[r(0, 0), vec![k("not")]].concat()), Some(5));
    }

    #[test]
    fn documents_are_counted_across_separators() {
        let text = "---\na: 1\n---\nb:\n  - c: 2\n";
        let idx = LineIndex::scan(text);
        assert_eq!(idx.line(0, &[k("a")]), Some(2));
        assert_eq!(idx.line(1, &[k("b"), Seg::Index(0), k("c")]), Some(5));
    }

    #[test]
    fn a_prometheus_rule_resource_yields_its_spec_groups() {
        let text = "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r}\nspec:\n  groups:\n  - name: g\n    rules: []\n";
        let (src, diags) = parse_source("f.yaml", text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(src.documents.len(), 1);
        assert_eq!(src.documents[0].resource_name.as_deref(), Some("r"));
        assert_eq!(
            src.lines.line(0, &[k("spec"), k("groups"), Seg::Index(0)]),
            Some(6)
        );
    }

    #[test]
    fn a_failed_load_lists_the_errors_with_lines_but_not_the_warnings() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n        for: 2m\n      - alert: A\n        expr: up\n";
        let err = load_str("f.yml", text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("f.yml:5: error: group \"g\", rule 1 (alert \"A\")"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1, "{msg}");
        let LoadError::Invalid { diagnostics, .. } = err else {
            panic!("expected Invalid");
        };
        assert!(
            diagnostics.iter().any(|d| !d.is_error()),
            "the warnings stay available"
        );
    }

    #[test]
    fn a_unit_test_file_is_rejected_with_a_hint() {
        let (_, diags) = parse_source("t.yml", "# a test\nrule_files: [a.yml]\ntests: []\n");
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].to_string().contains("unit-test file"),
            "{}",
            diags[0]
        );
        assert_eq!(diags[0].line, Some(2));
    }
}
