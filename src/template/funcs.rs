//! The functions a Prometheus template can call: Go's builtins (`eq`, `len`, `printf`, ...) and
//! Prometheus's own (`humanize`, `query`, `label`, `reReplaceAll`, ...). Output formats follow
//! Prometheus's `template/template.go` so rendered alerts read the same.

use std::collections::BTreeMap;
use std::rc::Rc;

use chrono::{DateTime, TimeZone, Utc};

use super::gofmt::{self, format_g};
use super::value::Value;
use super::{QuerySample, TemplateQuerier};

/// What the functions may reach outside their arguments.
pub(crate) struct Env<'a> {
    pub external_url: &'a str,
    pub querier: Option<&'a dyn TemplateQuerier>,
}

/// Every function name the parser accepts.
pub(crate) const NAMES: &[&str] = &[
    // Go builtins.
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    // Prometheus.
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "args",
    "tmpl",
    "safeHtml",
    "match",
    "reReplaceAll",
    "title",
    "toUpper",
    "toLower",
    "stripPort",
    "stripDomain",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "pathPrefix",
    "externalURL",
    "graphLink",
    "tableLink",
    "parseDuration",
    "urlQueryEscape",
];

/// Whether `name` is a known function.
pub(crate) fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

type FResult = Result<Value, String>;

fn want(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn as_str(v: &Value) -> Result<&str, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.go_type()
        )),
    }
}

/// Prometheus's `convertToFloat`.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .or_else(|_| go_parse_float_special(s))
            .map_err(|_| {
                format!(
                    "strconv.ParseFloat: parsing {}: invalid syntax",
                    gofmt::quote(s)
                )
            }),
        Value::Duration(ns) => Ok(*ns as f64 / 1e9),
        Value::Time(t) => Ok(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9),
        other => Err(format!("can't convert {} to float", other.go_type())),
    }
}

fn go_parse_float_special(s: &str) -> Result<f64, ()> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => Err(()),
    }
}

fn sample_field(v: &Value, field: &str) -> Result<Value, String> {
    match v {
        Value::Nil => Ok(Value::Nil),
        Value::Struct("*template.sample", _) => v.field(field),
        other => Err(format!(
            "wrong type for value; expected *template.sample; got {}",
            other.go_type()
        )),
    }
}

/// Calls function `name` (not `and`/`or`/`tmpl`, which the executor handles).
pub(crate) fn call(name: &str, args: Vec<Value>, env: &Env) -> FResult {
    match name {
        "not" => {
            want(name, &args, 1)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "len" => {
            want(name, &args, 1)?;
            Ok(Value::Int(match &args[0] {
                Value::Str(s) => s.len() as i64,
                Value::Map(m) => m.len() as i64,
                Value::List(l) => l.len() as i64,
                other => return Err(format!("len of type {}", other.go_type())),
            }))
        }
        "index" => {
            let (first, keys) = args
                .split_first()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Map(m), Value::Str(key)) => {
                        m.get(key).cloned().unwrap_or(Value::Str(String::new()))
                    }
                    (Value::List(l), Value::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (Value::Str(s), Value::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| s.as_bytes().get(i).copied())
                        .map(|b| Value::Int(i64::from(b)))
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (Value::Nil, _) => return Err("index of untyped nil".into()),
                    (v, k) => {
                        return Err(format!(
                            "can't index item of type {} with {}",
                            v.go_type(),
                            k.go_type()
                        ));
                    }
                };
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(gofmt::sprint(&args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::to_go_string).collect();
            Ok(Value::Str(format!("{}\n", parts.join(" "))))
        }
        "printf" => {
            let (f, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            Ok(Value::Str(gofmt::sprintf(as_str(f)?, rest)))
        }
        "eq" => {
            let (a, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for b in rest {
                if compare(a, b)? == Some(std::cmp::Ordering::Equal) {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            want(name, &args, 2)?;
            Ok(Value::Bool(
                compare(&args[0], &args[1])? != Some(std::cmp::Ordering::Equal),
            ))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            if matches!(args[0], Value::Bool(_)) || matches!(args[1], Value::Bool(_)) {
                return Err("invalid type for comparison".into());
            }
            let ord = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match (name, ord) {
                (_, None) => false,
                ("lt", Some(o)) => o == Less,
                ("le", Some(o)) => o != Greater,
                ("gt", Some(o)) => o == Greater,
                (_, Some(o)) => o != Less,
            }))
        }
        "html" => Ok(Value::Str(html_escape(&gofmt::sprint(&args)))),
        "js" => Ok(Value::Str(js_escape(&gofmt::sprint(&args)))),
        "urlquery" => Ok(Value::Str(query_escape(&gofmt::sprint(&args)))),
        "slice" => {
            let (v, idx) = args.split_first().ok_or("wrong number of args for slice")?;
            let idx: Vec<usize> = idx
                .iter()
                .map(|i| match i {
                    Value::Int(n) => {
                        usize::try_from(*n).map_err(|_| format!("index out of range: {n}"))
                    }
                    other => Err(format!(
                        "cannot index slice/array with type {}",
                        other.go_type()
                    )),
                })
                .collect::<Result<_, _>>()?;
            match v {
                Value::Str(s) => {
                    let lo = idx.first().copied().unwrap_or(0);
                    let hi = idx.get(1).copied().unwrap_or(s.len());
                    s.get(lo..hi)
                        .map(|x| Value::Str(x.to_string()))
                        .ok_or_else(|| format!("index out of range: {hi}"))
                }
                Value::List(l) => {
                    let lo = idx.first().copied().unwrap_or(0);
                    let hi = idx.get(1).copied().unwrap_or(l.len());
                    l.get(lo..hi)
                        .map(|x| Value::List(Rc::new(x.to_vec())))
                        .ok_or_else(|| format!("index out of range: {hi}"))
                }
                other => Err(format!("can't slice item of type {}", other.go_type())),
            }
        }
        "call" => Err("call of a non-function value".into()),
        "query" => {
            want(name, &args, 1)?;
            let q = as_str(&args[0])?;
            let querier = env
                .querier
                .ok_or("no query function is available in this context")?;
            let samples = querier.query(q)?;
            Ok(Value::List(Rc::new(
                samples
                    .iter()
                    .map(|QuerySample { labels, value }| Value::sample(labels, *value))
                    .collect(),
            )))
        }
        "first" => {
            want(name, &args, 1)?;
            match &args[0] {
                Value::List(l) => l
                    .first()
                    .cloned()
                    .ok_or_else(|| "first() called on vector with no elements".into()),
                other => Err(format!(
                    "wrong type for value; expected template.queryResult; got {}",
                    other.go_type()
                )),
            }
        }
        "label" => {
            want(name, &args, 2)?;
            let l = as_str(&args[0])?.to_string();
            match sample_field(&args[1], "Labels")? {
                Value::Nil => Ok(Value::Str(String::new())),
                labels => labels.field(&l),
            }
        }
        "value" => {
            want(name, &args, 1)?;
            match sample_field(&args[0], "Value")? {
                Value::Nil => Ok(Value::Float(0.0)),
                v => Ok(v),
            }
        }
        "strvalue" => {
            want(name, &args, 1)?;
            match sample_field(&args[0], "Labels")? {
                Value::Nil => Ok(Value::Str(String::new())),
                labels => labels.field("__value__"),
            }
        }
        "sortByLabel" => {
            want(name, &args, 2)?;
            let l = as_str(&args[0])?.to_string();
            let Value::List(items) = &args[1] else {
                return Err(format!(
                    "wrong type for value; expected template.queryResult; got {}",
                    args[1].go_type()
                ));
            };
            let mut sorted: Vec<(String, Value)> = items
                .iter()
                .map(|s| {
                    let key = s
                        .field("Labels")
                        .and_then(|m| m.field(&l))
                        .map(|v| v.to_go_string())
                        .unwrap_or_default();
                    (key, s.clone())
                })
                .collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Value::List(Rc::new(
                sorted.into_iter().map(|(_, v)| v).collect(),
            )))
        }
        "args" => Ok(Value::Map(Rc::new(
            args.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v))
                .collect::<BTreeMap<_, _>>(),
        ))),
        "safeHtml" | "toUpper" | "toLower" | "title" | "stripPort" | "stripDomain"
        | "graphLink" | "tableLink" | "urlQueryEscape" => {
            want(name, &args, 1)?;
            let s = as_str(&args[0])?;
            Ok(Value::Str(match name {
                "safeHtml" => s.to_string(),
                "toUpper" => simple_case(s, true),
                "toLower" => simple_case(s, false),
                "title" => go_title(s),
                "stripPort" => strip_port(s),
                "stripDomain" => strip_domain(s),
                "graphLink" => format!("/graph?g0.expr={}&g0.tab=0", query_escape(s)),
                "tableLink" => format!("/graph?g0.expr={}&g0.tab=1", query_escape(s)),
                _ => query_escape(s),
            }))
        }
        "match" => {
            want(name, &args, 2)?;
            let re = regex::Regex::new(as_str(&args[0])?).map_err(|e| e.to_string())?;
            Ok(Value::Bool(re.is_match(as_str(&args[1])?)))
        }
        "reReplaceAll" => {
            want(name, &args, 3)?;
            let pattern = as_str(&args[0])?;
            let re = regex::Regex::new(pattern)
                .map_err(|e| format!("regexp: Compile({}): {e}", gofmt::quote(pattern)))?;
            Ok(Value::Str(
                re.replace_all(as_str(&args[2])?, as_str(&args[1])?)
                    .into_owned(),
            ))
        }
        "humanizeTimestamp" if matches!(args.as_slice(), [Value::Time(_)]) => {
            // A time (`$activeAt`) prints as itself, without a lossy trip through a float.
            Ok(Value::Str(args[0].to_go_string()))
        }
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" => {
            want(name, &args, 1)?;
            let v = to_float(&args[0])?;
            Ok(Value::Str(match name {
                "humanize" => humanize(v),
                "humanize1024" => humanize1024(v),
                "humanizeDuration" => humanize_duration(v),
                "humanizePercentage" => format!("{}%", format_g(v * 100.0, Some(4))),
                _ => humanize_timestamp(v),
            }))
        }
        "toTime" => {
            want(name, &args, 1)?;
            let v = to_float(&args[0])?;
            Ok(Value::Time(time_from_float(v)?))
        }
        "toDuration" => {
            want(name, &args, 1)?;
            let v = to_float(&args[0])?;
            Ok(Value::Duration((v * 1e9).round() as i64))
        }
        "now" => {
            want(name, &args, 0)?;
            let n = Utc::now();
            Ok(Value::Float(
                n.timestamp() as f64 + f64::from(n.timestamp_subsec_nanos()) / 1e9,
            ))
        }
        "pathPrefix" | "externalURL" => {
            want(name, &args, 0)?;
            Ok(Value::Str(if name == "externalURL" {
                env.external_url.to_string()
            } else {
                url_path(env.external_url)
            }))
        }
        "parseDuration" => {
            want(name, &args, 1)?;
            let d = crate::rules::duration::parse(as_str(&args[0])?).map_err(|e| e.to_string())?;
            Ok(Value::Float(d.as_secs_f64()))
        }
        other => Err(format!("function \"{other}\" not defined")),
    }
}

/// Go's template comparison of basic values; ints and floats don't mix (Go reports
/// "incompatible types for comparison", a classic surprise with `gt $value 0`).
fn compare(a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, String> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Nil, Value::Nil) => Some(std::cmp::Ordering::Equal),
        (Value::Map(_) | Value::List(_) | Value::Struct(..), _)
        | (_, Value::Map(_) | Value::List(_) | Value::Struct(..)) => {
            return Err("non-comparable type".into());
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub(crate) fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes above 1.
pub(crate) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanizeDuration`: `1d 2h 3m 4s`, or sub-second SI prefixes.
pub(crate) fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

/// Prometheus's `humanizeTimestamp`: Go's time format of the instant, in UTC.
fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    match time_from_float(v) {
        Ok(t) => super::value::go_time_string(&t),
        Err(e) => e,
    }
}

/// Seconds since the epoch to a time, truncated to milliseconds like Prometheus's `model.Time`.
fn time_from_float(v: f64) -> Result<DateTime<Utc>, String> {
    let ms = (v * 1e9) as i64 / 1_000_000;
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| format!("{v} is out of the range of timestamps"))
}

/// Go's `strings.ToUpper`/`ToLower`: one rune maps to one rune (`ß` stays `ß`), unlike Rust's
/// full case mapping (`ß` -> `SS`).
fn simple_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut mapped: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            if mapped.len() == 1 {
                mapped.remove(0)
            } else {
                c
            }
        })
        .collect()
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
fn go_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        let sep = if prev.is_ascii() {
            !(prev.is_ascii_alphanumeric() || prev == '_')
        } else {
            !prev.is_alphanumeric() && prev.is_whitespace()
        };
        if sep {
            out.push_str(&simple_case(&c.to_string(), true));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go's `net.SplitHostPort`, enough for `stripPort`/`stripDomain`.
fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains(':') {
            return None;
        }
        return Some((host.to_string(), port.to_string()));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

fn strip_port(s: &str) -> String {
    split_host_port(s).map_or_else(|| s.to_string(), |(h, _)| h)
}

fn strip_domain(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let (host, port) = split_host_port(s).unwrap_or_else(|| (s.to_string(), String::new()));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let host = host.split('.').next().unwrap_or_default().to_string();
    if port.is_empty() {
        host
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The path part of a URL (`http://host:9090/prom` -> `/prom`).
fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) => {
            let path = &after_scheme[i..];
            path.split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_string()
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_uses_si_prefixes_with_four_significant_digits() {
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(999.0), "999");
        assert_eq!(humanize(1000.0), "1k");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize(-1500.0), "-1.5k");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(humanize(f64::NAN), "NaN");
    }

    #[test]
    fn humanize1024_uses_binary_prefixes() {
        assert_eq!(humanize1024(1024.0), "1ki");
        assert_eq!(humanize1024(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5Gi");
        assert_eq!(humanize1024(0.5), "0.5");
    }

    #[test]
    fn humanize_duration_splits_into_days_hours_minutes_seconds() {
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(5.5), "5.5s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(humanize_duration(-65.0), "-1m 5s");
    }

    #[test]
    fn strip_domain_keeps_the_port_and_leaves_ip_addresses_alone() {
        assert_eq!(strip_domain("node1.example.com:9100"), "node1:9100");
        assert_eq!(strip_domain("node1.example.com"), "node1");
        assert_eq!(strip_domain("10.0.0.1:9100"), "10.0.0.1:9100");
        assert_eq!(strip_port("host:80"), "host");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("host"), "host");
    }

    #[test]
    fn title_upper_cases_each_word_like_go() {
        assert_eq!(go_title("hello wide-world_x"), "Hello Wide-World_x");
    }
}
