//! The series notation shared by promtool's unit-test files and Prometheus's PromQL test
//! scripts: series descriptions (`up{job="api"}`, also the labels of an expected sample) and the
//! expanding notation of values (`0+10x5 _ stale 3x2`).
//!
//! The grammar follows Prometheus's series-description parser: items are separated by
//! whitespace; `a+bxn` and `a-bxn` give `n+1` values starting at `a`; `axn` repeats `a` `n+1`
//! times; `_` is one missing sample and `_xn` is `n` of them; `stale` is a staleness marker.
//! Numbers are decimal (`1`, `-2.5`, `1e3`) or `Inf`/`NaN`; hexadecimal is not allowed, since
//! `0x10` means "0, eleven times". A native histogram item (`{{schema:1 sum:3}}`, optionally
//! `{{…}}xn`) is kept as text: the engine stores floats only, and callers decide what to do.
//! Inside braces a quoted name is allowed, as in Prometheus 3: `{"my.metric", "a.b"="c"}`.

use super::{Labels, stale_nan};

/// Why a series description or value list could not be read. `column` is 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SyntaxError {
    /// Where in the text the problem is.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        column: column + 1,
        message: message.into(),
    })
}

/// Label pairs in the order they were written.
pub type LabelPairs = Vec<(String, String)>;

/// One slot of an expanded value list: a value, or nothing at that step.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// A sample (possibly a staleness marker).
    Value(f64),
    /// No sample at this step (`_`).
    Missing,
    /// A native histogram sample, as written between `{{` and `}}`.
    Histogram(String),
}

/// Parses a series description or expected-sample labels: an optional metric name followed by
/// an optional `{name="value", ...}` block. Empty text is the empty label set.
pub fn parse_metric(text: &str) -> Result<Labels, SyntaxError> {
    let (pairs, end) = parse_series(text)?;
    if end < text.len() {
        return err(
            end,
            format!("unexpected {:?} after the series", char_at(text, end)),
        );
    }
    Ok(Labels::from_pairs(pairs))
}

/// Parses the series description at the start of `text`; returns its labels in the order
/// written and the index where the rest (values, `@st`, ...) begins, after any whitespace.
pub fn parse_series(text: &str) -> Result<(LabelPairs, usize), SyntaxError> {
    let b = text.as_bytes();
    let mut i = skip_space(b, 0);
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i < b.len() && is_name_start(b[i], true) {
        let start = i;
        while i < b.len() && is_name_char(b[i], true) {
            i += 1;
        }
        pairs.push(("__name__".into(), text[start..i].to_string()));
        i = skip_space(b, i);
    }
    // `{{` opens a native histogram value, not a label block.
    if i < b.len() && b[i] == b'{' && b.get(i + 1) != Some(&b'{') {
        i = skip_space(b, i + 1);
        loop {
            if i >= b.len() {
                return err(i, "unexpected end of input inside braces");
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let (name, after_name) = if matches!(b[i], b'"' | b'\'' | b'`') {
                parse_quoted(text, i)?
            } else if is_name_start(b[i], false) {
                let start = i;
                while i < b.len() && is_name_char(b[i], false) {
                    i += 1;
                }
                (text[start..i].to_string(), i)
            } else {
                return err(
                    i,
                    format!("unexpected character inside braces: {:?}", char_at(text, i)),
                );
            };
            i = skip_space(b, after_name);
            match b.get(i) {
                Some(b'=') => {
                    i = skip_space(b, i + 1);
                    let (value, next) = parse_quoted(text, i)?;
                    pairs.push((name, value));
                    i = skip_space(b, next);
                }
                // A quoted name on its own is the metric name (UTF-8 names).
                Some(b',' | b'}') if matches!(b[after_name - 1], b'"' | b'\'' | b'`') => {
                    pairs.push(("__name__".into(), name));
                }
                _ => return err(i, format!("expected `=` after label name {name:?}")),
            }
            match b.get(i) {
                Some(b',') => i = skip_space(b, i + 1),
                Some(b'}') => {}
                Some(_) => {
                    return err(
                        i,
                        format!("unexpected character inside braces: {:?}", char_at(text, i)),
                    );
                }
                None => return err(i, "unexpected end of input inside braces"),
            }
        }
        i = skip_space(b, i);
    }
    Ok((pairs, i))
}

/// Expands a `values` string into one slot per step.
pub fn parse_values(text: &str) -> Result<Vec<Slot>, SyntaxError> {
    let mut out = Vec::new();
    for (at, item) in split_items(text)? {
        expand_item(item, at, &mut out)?;
    }
    Ok(out)
}

/// Splits a value list at whitespace, keeping a `{{ … }}` histogram (which holds spaces) in one
/// item; returns each item with its byte offset.
fn split_items(text: &str) -> Result<Vec<(usize, &str)>, SyntaxError> {
    let b = text.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            if b[i..].starts_with(b"{{") {
                let Some(close) = text[i..].find("}}") else {
                    return err(i, "unterminated native histogram `{{`");
                };
                i += close + 2;
            } else {
                i += 1;
            }
        }
        items.push((start, &text[start..i]));
    }
    Ok(items)
}

fn expand_item(item: &str, at: usize, out: &mut Vec<Slot>) -> Result<(), SyntaxError> {
    if item.starts_with("{{") {
        let close = item.rfind("}}").map_or(item.len(), |c| c + 2);
        let copies = if close == item.len() {
            1
        } else {
            parse_times(&item[close..], at + close)? + 1
        };
        let h = Slot::Histogram(item[..close].to_string());
        out.extend(std::iter::repeat_n(h, copies as usize));
        return Ok(());
    }
    if let Some(rest) = item.strip_prefix('_') {
        if rest.is_empty() {
            out.push(Slot::Missing);
            return Ok(());
        }
        let n = parse_times(rest, at + 1)?;
        out.extend(std::iter::repeat_n(Slot::Missing, n as usize));
        return Ok(());
    }
    let (start, used) = parse_number(item, at)?;
    let rest = &item[used..];
    if rest.is_empty() {
        out.push(Slot::Value(start));
        return Ok(());
    }
    let (step, rest, rest_at) = if rest.starts_with(['+', '-']) {
        let (step, used2) = parse_number(rest, at + used)?;
        (step, &rest[used2..], at + used + used2)
    } else {
        (0.0, rest, at + used)
    };
    if step != 0.0 && start.to_bits() == stale_nan().to_bits() {
        return err(rest_at, "`stale` cannot be incremented");
    }
    let n = parse_times(rest, rest_at)?;
    let mut v = start;
    for _ in 0..=n {
        out.push(Slot::Value(v));
        v += step;
    }
    Ok(())
}

/// `xN` after a value.
fn parse_times(rest: &str, at: usize) -> Result<u64, SyntaxError> {
    let Some(digits) = rest.strip_prefix('x') else {
        return err(at, format!("unexpected {rest:?} in series values"));
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return err(
            at + 1,
            format!("expected a repetition count after `x`, found {digits:?}"),
        );
    }
    digits
        .parse()
        .or_else(|_| err(at + 1, format!("repetition count {digits:?} is too large")))
}

/// A number (with optional sign) or `stale` at the start of `s`; returns it and the bytes used.
fn parse_number(s: &str, at: usize) -> Result<(f64, usize), SyntaxError> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'+') => {
            i = 1;
            false
        }
        Some(b'-') => {
            i = 1;
            true
        }
        _ => false,
    };
    let word_end = i + s[i..]
        .bytes()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    let word = &s[i..word_end];
    if !word.is_empty() {
        // A word followed by the repetition `x` is split there: `NaNx3`, `stalex2`.
        let (word, end) = match word.char_indices().find(|&(k, _)| {
            let w = &word[..k];
            k > 0 && word[k..].starts_with('x') && is_number_word(w)
        }) {
            Some((k, _)) => (&word[..k], i + k),
            None => (word, word_end),
        };
        let v = match word.to_ascii_lowercase().as_str() {
            "inf" => f64::INFINITY,
            "nan" => f64::NAN,
            "stale" if i == 0 => return Ok((stale_nan(), end)),
            _ => {
                return err(
                    at,
                    format!("unexpected {word:?} in series values: expected a number or \"stale\""),
                );
            }
        };
        return Ok((if negative { -v } else { v }, end));
    }
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    let digits = &s[start..i];
    if digits.is_empty() || digits == "." {
        return err(
            at + start,
            format!(
                "expected a number in series values, found {:?}",
                &s[start..]
            ),
        );
    }
    let v: f64 = digits
        .parse()
        .or_else(|_| err(at + start, format!("invalid number {digits:?}")))?;
    Ok((if negative { -v } else { v }, i))
}

fn is_number_word(w: &str) -> bool {
    matches!(w.to_ascii_lowercase().as_str(), "inf" | "nan" | "stale")
}

/// The quoted string (`"…"`, `'…'` or `` `…` ``) at `at`, with Go's escapes; returns it and the
/// index after the closing quote.
pub fn parse_quoted(text: &str, at: usize) -> Result<(String, usize), SyntaxError> {
    let b = text.as_bytes();
    let Some(&quote) = b.get(at) else {
        return err(at, "expected a quoted label value, found the end of input");
    };
    if !matches!(quote, b'"' | b'\'' | b'`') {
        return err(
            at,
            format!(
                "expected a quoted label value, found {:?}",
                char_at(text, at)
            ),
        );
    }
    let mut out = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let pos = at + 1 + k;
        if c as u32 == u32::from(quote) {
            return Ok((out, pos + 1));
        }
        if c == '\n' && quote != b'`' {
            return err(pos, "unterminated quoted string");
        }
        if c != '\\' || quote == b'`' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return err(pos, "unterminated escape sequence");
        };
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' | 'u' | 'U' => {
                let len = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..len)
                    .filter_map(|_| chars.next().map(|(_, h)| h))
                    .collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == len);
                match code.and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => return err(pos, format!("invalid escape \\{e}{hex}")),
                }
            }
            '0'..='7' => {
                let mut oct = String::from(e);
                for _ in 0..2 {
                    if let Some((_, d)) = chars.next() {
                        oct.push(d);
                    }
                }
                match u32::from_str_radix(&oct, 8).ok().and_then(char::from_u32) {
                    Some(ch) if oct.len() == 3 => out.push(ch),
                    _ => return err(pos, format!("invalid escape \\{oct}")),
                }
            }
            other => return err(pos, format!("unknown escape sequence \\{other}")),
        }
    }
    err(text.len(), "unterminated quoted string")
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn is_name_start(c: u8, metric: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (metric && c == b':')
}

fn is_name_char(c: u8, metric: bool) -> bool {
    is_name_start(c, metric) || c.is_ascii_digit()
}

fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap_or(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<Option<f64>> {
        parse_values(text)
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Slot::Value(v) => Some(v),
                Slot::Missing => None,
                Slot::Histogram(h) => panic!("unexpected histogram {h}"),
            })
            .collect()
    }

    #[test]
    fn increments_and_decrements_give_n_plus_one_values() {
        assert_eq!(
            values("0+10x3"),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(values("5-2x2"), vec![Some(5.0), Some(3.0), Some(1.0)]);
        assert_eq!(values("-1-1x1"), vec![Some(-1.0), Some(-2.0)]);
        assert_eq!(values("1e1+1x1"), vec![Some(10.0), Some(11.0)]);
    }

    #[test]
    fn a_bare_repetition_repeats_the_value_n_plus_one_times_and_gaps_n_times() {
        assert_eq!(values("0x2"), vec![Some(0.0); 3]);
        assert_eq!(values("1 _x2 3"), vec![Some(1.0), None, None, Some(3.0)]);
        assert_eq!(values("_ 1"), vec![None, Some(1.0)]);
    }

    #[test]
    fn stale_and_special_numbers_are_understood() {
        let v = parse_values("stale 1 NaN -Inf stalex1").unwrap();
        assert!(matches!(v[0], Slot::Value(x) if crate::promql::is_stale(x)));
        assert!(matches!(v[2], Slot::Value(x) if x.is_nan() && !crate::promql::is_stale(x)));
        assert_eq!(v[3], Slot::Value(f64::NEG_INFINITY));
        assert_eq!(v.len(), 6);
    }

    #[test]
    fn bad_values_are_rejected_with_their_column() {
        let e = parse_values("1 2 abc").unwrap_err();
        assert_eq!(e.column, 5, "{e}");
        assert!(parse_values("1+x3").is_err());
        assert!(parse_values("1x").is_err());
        assert!(parse_values("1+1y3").is_err());
    }

    #[test]
    fn native_histograms_stay_whole_with_their_repetition() {
        let v = parse_values("{{schema:1 sum:3 buckets:[5 10 7]}}x2 1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            Slot::Histogram("{{schema:1 sum:3 buckets:[5 10 7]}}".into())
        );
        assert_eq!(v[3], Slot::Value(1.0));
        assert!(parse_values("{{schema:1").is_err());
    }

    #[test]
    fn a_series_prefix_leaves_the_values_and_reads_quoted_names() {
        let text = r#"{"my.metric", "a.b"="c", d='e'} 1 2"#;
        let (pairs, end) = parse_series(text).unwrap();
        assert_eq!(&text[end..], "1 2");
        assert_eq!(
            Labels::from_pairs(pairs),
            Labels::from_pairs([("__name__", "my.metric"), ("a.b", "c"), ("d", "e")])
        );
        let (_, end) = parse_series("up@st -30s").unwrap();
        assert_eq!(end, 2);
    }

    #[test]
    fn metrics_parse_with_and_without_names_and_escapes() {
        assert_eq!(
            parse_metric(r#"up{job="a", instance='b\n'}"#).unwrap(),
            Labels::from_pairs([("__name__", "up"), ("job", "a"), ("instance", "b\n")])
        );
        assert_eq!(
            parse_metric("job:test:count_over_time1m").unwrap(),
            Labels::from_pairs([("__name__", "job:test:count_over_time1m")])
        );
        assert_eq!(
            parse_metric(r#"{alertname="A",alertstate="firing",}"#).unwrap(),
            Labels::from_pairs([("alertname", "A"), ("alertstate", "firing")])
        );
        assert_eq!(parse_metric("").unwrap(), Labels::empty());
        assert_eq!(parse_metric("requests{}").unwrap().name(), Some("requests"));
    }

    #[test]
    fn an_unclosed_brace_is_an_error_at_the_offending_character() {
        let e = parse_metric(r#"up{job="prometheus", instance="x" 0+0x1"#).unwrap_err();
        assert!(e.message.contains("inside braces"), "{e}");
        assert_eq!(e.column, 35);
    }
}
