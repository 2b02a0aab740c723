//! Values a template computes with, modelled on the Go types Prometheus passes around
//! (`map[string]string`, `float64`, `*sample`, `queryResult`, `time.Time`, ...), so that printing
//! and comparisons behave as in Go.

use std::collections::BTreeMap;
use std::rc::Rc;

use chrono::{DateTime, Utc};

use super::gofmt;

/// A template value.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Go's untyped nil (also what a missing variable or field gives).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A string map (`map[string]string` for labels, `map[string]interface{}` from `args`).
    Map(Rc<BTreeMap<String, Value>>),
    /// A struct with named fields and its Go type name (the template data, a query sample).
    Struct(&'static str, Rc<Vec<(&'static str, Value)>>),
    /// A slice (a query result).
    List(Rc<Vec<Value>>),
    /// Go's `time.Time`.
    Time(DateTime<Utc>),
    /// Go's `time.Duration`, in nanoseconds.
    Duration(i64),
}

impl Value {
    /// Builds a `map[string]string` from labels.
    pub fn string_map(m: &BTreeMap<String, String>) -> Value {
        Value::Map(Rc::new(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                .collect(),
        ))
    }

    /// A query sample: `*sample{Labels, Value}`.
    pub fn sample(labels: &BTreeMap<String, String>, value: f64) -> Value {
        Value::Struct(
            "*template.sample",
            Rc::new(vec![
                ("Labels", Value::string_map(labels)),
                ("Value", Value::Float(value)),
            ]),
        )
    }

    /// The Go type name, as `%!d(TYPE=...)` and error messages show it.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
            Value::Struct(t, _) => t,
            Value::List(_) => "template.queryResult",
            Value::Time(_) => "time.Time",
            Value::Duration(_) => "time.Duration",
        }
    }

    /// Go's truth: false, 0, nil and empty strings, maps and slices are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Struct(..) | Value::Time(_) => true,
            Value::Duration(d) => *d != 0,
        }
    }

    /// How `fmt.Sprint` (and so `{{ . }}`) prints the value.
    pub fn to_go_string(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => gofmt::format_g(*f, None),
            Value::Str(s) => s.clone(),
            Value::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.to_go_string()))
                    .collect();
                format!("map[{}]", parts.join(" "))
            }
            Value::Struct(_, fields) => {
                let parts: Vec<String> = fields.iter().map(|(_, v)| v.to_go_string()).collect();
                format!("{{{}}}", parts.join(" "))
            }
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(|v| v.to_go_string()).collect();
                format!("[{}]", parts.join(" "))
            }
            Value::Time(t) => go_time_string(t),
            Value::Duration(ns) => go_duration_string(*ns),
        }
    }

    /// Go's `reflect` field lookup: a struct field or a map key (missing keys give the zero
    /// value, as Prometheus runs templates with `missingkey=zero`).
    pub fn field(&self, name: &str) -> Result<Value, String> {
        match self {
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Str(String::new()))),
            Value::Struct(t, fields) => fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("can't evaluate field {name} in type {t}")),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.go_type()
            )),
        }
    }
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(crate) fn go_time_string(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        let s = format!(".{nanos:09}");
        s.trim_end_matches('0').to_string()
    };
    format!("{base}{frac} +0000 UTC")
}

/// Go's `time.Duration.String()`: `1h2m5s`, `1.5s`, `300ms`, `0s`.
pub(crate) fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rem = v % unit;
        if rem == 0 {
            whole.to_string()
        } else {
            let width = unit.ilog10() as usize;
            let f = format!("{rem:0width$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total / 60) % 60;
    let s = secs_total % 60;
    let secs = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}
