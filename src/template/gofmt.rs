//! Go's `fmt` number and value formatting, as far as Prometheus templates reach it: `%v` of a
//! float (`strconv` shortest `'g'`), `%.4g` for `humanize`, and `printf` verbs with flags, width
//! and precision. Output must match Go byte for byte, since users compare alert texts.

use super::value::Value;

/// Decimal digits of `v` (no leading zeros, trailing zeros trimmed) and the decimal point
/// position: `v = 0.d1d2d3... x 10^dp`. `prec` = None means shortest round-trip digits.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        None => format!("{:e}", v.abs()),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    if d == "0" {
        return (String::new(), 0);
    }
    (d, exp + 1)
}

/// `%e`-style from digits: `d.ddde±XX` with `frac` digits after the point.
fn fmt_e(neg: bool, d: &str, dp: i32, frac: usize, upper: bool) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let first = d.chars().next().unwrap_or('0');
    out.push(first);
    if frac > 0 {
        out.push('.');
        let rest: String = d.chars().skip(1).collect();
        out.push_str(&rest);
        for _ in rest.len()..frac {
            out.push('0');
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
    out
}

/// `%f`-style from digits with `frac` digits after the point.
fn fmt_f(neg: bool, d: &str, dp: i32, frac: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let digit = |i: i32| -> char {
        if i >= 0 && (i as usize) < d.len() {
            d.as_bytes()[i as usize] as char
        } else {
            '0'
        }
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac as i32 {
            out.push(digit(dp + i));
        }
    }
    out
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)`; `prec` None is the shortest representation
/// (which `%v` and `{{ $value }}` use).
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    format_g_upper(v, prec, false)
}

fn format_g_upper(v: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let neg = v.is_sign_negative();
    let prec = prec.map(|p| p.max(1));
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let (shortest, p) = match prec {
        None => (true, nd),
        Some(p) => (false, p as i32),
    };
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let p2 = if p > nd { nd } else { p };
        return fmt_e(neg, &d, dp, (p2 - 1).max(0) as usize, upper);
    }
    let p2 = if p > dp { nd } else { p };
    fmt_f(neg, &d, dp, (p2 - dp).max(0) as usize)
}

/// Go's `%.{prec}f`.
pub fn format_f(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    format!("{:.*}", prec, v)
}

/// Go's `%.{prec}e`.
pub fn format_e(v: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (d, dp) = digits(v, Some(prec + 1));
    let dp = if d.is_empty() { 1 } else { dp };
    fmt_e(v.is_sign_negative(), &d, dp, prec, upper)
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
}

fn pad(s: String, width: Option<usize>, flags: Flags, numeric: bool) -> String {
    let Some(w) = width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if flags.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if flags.zero && numeric {
        let (sign, rest) = match s.strip_prefix(['-', '+']) {
            Some(rest) => (&s[..1], rest.to_string()),
            None => ("", s.clone()),
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn with_sign(s: String, v_neg: bool, flags: Flags) -> String {
    if v_neg || s.starts_with(['-', '+']) {
        s
    } else if flags.plus {
        format!("+{s}")
    } else if flags.space {
        format!(" {s}")
    } else {
        s
    }
}

/// Go's rendering of a value with a verb it does not support: `%!d(string=abc)`.
fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Nil => format!("%!{verb}(<nil>)"),
        v => format!("%!{verb}({}={})", v.go_type(), v.to_go_string()),
    }
}

fn format_one(
    verb: char,
    flags: Flags,
    width: Option<usize>,
    prec: Option<usize>,
    v: &Value,
) -> String {
    let out = match (verb, v) {
        ('v' | 'g', Value::Float(f)) => with_sign(format_g(*f, prec), *f < 0.0, flags),
        ('G', Value::Float(f)) => with_sign(format_g_upper(*f, prec, true), *f < 0.0, flags),
        ('f' | 'F', Value::Float(f)) => with_sign(format_f(*f, prec.unwrap_or(6)), *f < 0.0, flags),
        ('e' | 'E', Value::Float(f)) => with_sign(
            format_e(*f, prec.unwrap_or(6), verb == 'E'),
            *f < 0.0,
            flags,
        ),
        ('d' | 'v', Value::Int(i)) => with_sign(i.to_string(), *i < 0, flags),
        ('x', Value::Int(i)) => with_sign(
            if *i < 0 {
                format!("-{:x}", i.unsigned_abs())
            } else {
                format!("{i:x}")
            },
            *i < 0,
            flags,
        ),
        ('X', Value::Int(i)) => with_sign(
            if *i < 0 {
                format!("-{:X}", i.unsigned_abs())
            } else {
                format!("{i:X}")
            },
            *i < 0,
            flags,
        ),
        ('o', Value::Int(i)) => format!("{i:o}"),
        ('b', Value::Int(i)) => format!("{i:b}"),
        ('c', Value::Int(i)) => char::from_u32(*i as u32)
            .map(String::from)
            .unwrap_or_default(),
        ('q', Value::Int(i)) => format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}')),
        ('s' | 'v', Value::Str(s)) => match prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('q', Value::Str(s)) => {
            if flags.sharp && !s.contains('`') {
                format!("`{s}`")
            } else {
                quote(s)
            }
        }
        ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('t' | 'v', Value::Bool(b)) => b.to_string(),
        ('v' | 's', v @ (Value::Map(_) | Value::Struct(..) | Value::List(_) | Value::Time(_))) => {
            v.to_go_string()
        }
        ('v', Value::Nil) => "<nil>".into(),
        _ => return bad_verb(verb, v),
    };
    let numeric = matches!(v, Value::Int(_) | Value::Float(_));
    pad(out, width, flags, numeric)
}

/// Largest width or precision `printf` honours (Go's own limit).
const MAX_WIDTH: usize = 1_000_000;

/// Go's `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut arg = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut flags = Flags::default();
        while i < chars.len() {
            match chars[i] {
                '-' => flags.minus = true,
                '+' => flags.plus = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                '#' => flags.sharp = true,
                _ => break,
            }
            i += 1;
        }
        let number = |i: &mut usize, arg: &mut usize| -> Option<usize> {
            if chars.get(*i) == Some(&'*') {
                *i += 1;
                let v = args.get(*arg).and_then(|a| match a {
                    Value::Int(n) => usize::try_from(*n).ok(),
                    _ => None,
                });
                *arg += 1;
                return v;
            }
            let start = *i;
            while *i < chars.len() && chars[*i].is_ascii_digit() {
                *i += 1;
            }
            if *i > start {
                chars[start..*i].iter().collect::<String>().parse().ok()
            } else {
                None
            }
        };
        let mut width = number(&mut i, &mut arg);
        let mut prec = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            prec = Some(number(&mut i, &mut arg).unwrap_or(0));
        }
        // Go refuses absurd widths too; they would only allocate huge strings.
        if width.is_some_and(|w| w > MAX_WIDTH) {
            out.push_str("%!(BADWIDTH)");
            width = None;
        }
        if prec.is_some_and(|p| p > MAX_WIDTH) {
            out.push_str("%!(BADPREC)");
            prec = None;
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(arg) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(v) => out.push_str(&format_one(verb, flags, width, prec, v)),
        }
        arg += 1;
    }
    if arg < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[arg..]
            .iter()
            .map(|v| match v {
                Value::Nil => "<nil>".to_string(),
                v => format!("{}={}", v.go_type(), v.to_go_string()),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// Go's `fmt.Sprint`: operands joined, with a space between two operands when neither is a
/// string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_go_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_g_switches_to_exponent_form_at_a_million_like_go() {
        assert_eq!(format_g(0.5, None), "0.5");
        assert_eq!(format_g(100000.0, None), "100000");
        assert_eq!(format_g(1000000.0, None), "1e+06");
        assert_eq!(format_g(1e21, None), "1e+21");
        assert_eq!(format_g(123456789.0, None), "1.23456789e+08");
        assert_eq!(format_g(0.0001, None), "0.0001");
        assert_eq!(format_g(0.00001, None), "1e-05");
        assert_eq!(format_g(42.5, None), "42.5");
        assert_eq!(format_g(0.0, None), "0");
        assert_eq!(format_g(-3.0, None), "-3");
    }

    #[test]
    fn g_with_precision_rounds_and_drops_trailing_zeros() {
        assert_eq!(format_g(1234.567, Some(4)), "1235");
        assert_eq!(format_g(1.234567, Some(4)), "1.235");
        assert_eq!(format_g(1234567.0, Some(4)), "1.235e+06");
        assert_eq!(format_g(1.5, Some(4)), "1.5");
        assert_eq!(format_g(100.0, Some(4)), "100");
        assert_eq!(format_g(12345.0, Some(4)), "1.234e+04");
        assert_eq!(format_g(0.0, Some(4)), "0");
    }

    #[test]
    fn printf_handles_the_common_verbs() {
        let v = |f: f64| Value::Float(f);
        assert_eq!(sprintf("%.2f", &[v(42.5)]), "42.50");
        assert_eq!(sprintf("%d%%", &[Value::Int(5)]), "5%");
        assert_eq!(sprintf("%d", &[v(42.5)]), "%!d(float64=42.5)");
        assert_eq!(sprintf("%s", &[Value::Str("x".into())]), "x");
        assert_eq!(sprintf("%q", &[Value::Str("a\"b".into())]), "\"a\\\"b\"");
        assert_eq!(
            sprintf("%5.1f|%-4d|", &[v(1.26), Value::Int(7)]),
            "  1.3|7   |"
        );
        assert_eq!(sprintf("%v %v", &[v(1e6), Value::Bool(true)]), "1e+06 true");
        assert_eq!(sprintf("%s", &[]), "%!s(MISSING)");
        assert_eq!(sprintf("x", &[Value::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(sprintf("%x", &[Value::Str("hi".into())]), "6869");
        assert_eq!(sprintf("%e", &[v(1234.5)]), "1.234500e+03");
    }
}
