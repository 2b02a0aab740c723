//! Byte-level scanning of one line. Every position the cursor stops at is an ASCII delimiter or
//! the end of the line, so slicing the `&str` there is always on a character boundary.

use std::borrow::Cow;

use memchr::memchr2;

/// Which backslash escapes a quoted or HELP string may contain besides `\\` and `\n`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Escapes {
    /// `\\`, `\n` (text-format HELP).
    BackslashNewline,
    /// `\\`, `\n`, `\"` (label values, quoted names, OpenMetrics HELP).
    WithQuote,
}

/// Bit 0: may start a metric name; bit 1: may continue one; bit 2: may start a label name;
/// bit 3: may continue one.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut v = 0;
        if alpha || c == b':' {
            v |= 0b0011;
        }
        if digit {
            v |= 0b0010 | 0b1000;
        }
        if alpha {
            v |= 0b1100;
        }
        t[b] = v;
        b += 1;
    }
    t
};
const METRIC_START: u8 = 0b0001;
const METRIC_CONT: u8 = 0b0010;
const LABEL_START: u8 = 0b0100;
const LABEL_CONT: u8 = 0b1000;

#[derive(Clone)]
pub(super) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Skip spaces and tabs; returns how many were skipped.
    pub(super) fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The rest of the line from the cursor.
    pub(super) fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    /// A description of what is at the cursor, for error messages.
    pub(super) fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "end of line".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// Everything up to the next space or tab (or the end of the line).
    pub(super) fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn scan_class(&mut self, start_class: u8, cont_class: u8) -> &'a str {
        let start = self.pos;
        match self.peek() {
            Some(b) if CLASS[b as usize] & start_class != 0 => self.pos += 1,
            _ => return "",
        }
        while let Some(b) = self.peek() {
            if CLASS[b as usize] & cont_class == 0 {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// A metric name in the legacy character set `[a-zA-Z_:][a-zA-Z0-9_:]*`; empty if none.
    pub(super) fn metric_name(&mut self) -> &'a str {
        self.scan_class(METRIC_START, METRIC_CONT)
    }

    /// A label name in the legacy character set `[a-zA-Z_][a-zA-Z0-9_]*`; empty if none.
    pub(super) fn label_name(&mut self) -> &'a str {
        self.scan_class(LABEL_START, LABEL_CONT)
    }

    /// A double-quoted string starting at the cursor (which must be on the opening quote), with
    /// its escapes resolved. `what` names the string in error messages.
    pub(super) fn quoted(&mut self, what: &str) -> Result<Cow<'a, str>, String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        let start = self.pos + 1;
        let bytes = self.bytes;
        let Some(i) = memchr2(b'"', b'\\', &bytes[start..]) else {
            return Err(format!("{what} has no closing '\"'"));
        };
        let mut p = start + i;
        if bytes[p] == b'"' {
            self.pos = p + 1;
            return Ok(Cow::Borrowed(&self.text[start..p]));
        }
        // Slow path: at least one escape, build an owned string.
        let mut out = String::with_capacity(p - start + 16);
        out.push_str(&self.text[start..p]);
        loop {
            if bytes[p] == b'"' {
                self.pos = p + 1;
                return Ok(Cow::Owned(out));
            }
            // A backslash.
            match bytes.get(p + 1) {
                Some(b'\\') => out.push('\\'),
                Some(b'"') => out.push('"'),
                Some(b'n') => out.push('\n'),
                Some(_) => {
                    self.pos = p;
                    return Err(format!(
                        "invalid escape sequence '\\{}' in {what} (only \\\\, \\\" and \\n are allowed)",
                        self.text[p + 1..].chars().next().unwrap_or(' ')
                    ));
                }
                None => return Err(format!("{what} has no closing '\"'")),
            }
            p += 2;
            let Some(j) = memchr2(b'"', b'\\', &bytes[p..]) else {
                return Err(format!("{what} has no closing '\"'"));
            };
            out.push_str(&self.text[p..p + j]);
            p += j;
        }
    }

    /// The rest of the line as a HELP text, escapes resolved.
    pub(super) fn help_text(&mut self, escapes: Escapes) -> Result<Cow<'a, str>, String> {
        let start = self.pos;
        let rest = self.rest();
        self.pos = self.bytes.len();
        let Some(first) = memchr::memchr(b'\\', rest.as_bytes()) else {
            return Ok(Cow::Borrowed(rest));
        };
        let bytes = rest.as_bytes();
        let mut out = String::with_capacity(rest.len());
        out.push_str(&rest[..first]);
        let mut p = first;
        loop {
            match bytes.get(p + 1) {
                Some(b'\\') => out.push('\\'),
                Some(b'n') => out.push('\n'),
                Some(b'"') if escapes == Escapes::WithQuote => out.push('"'),
                Some(_) => {
                    self.pos = start + p;
                    let allowed = match escapes {
                        Escapes::BackslashNewline => "\\\\ and \\n",
                        Escapes::WithQuote => "\\\\, \\\" and \\n",
                    };
                    return Err(format!(
                        "invalid escape sequence '\\{}' in HELP text (only {allowed} are allowed)",
                        rest[p + 1..].chars().next().unwrap_or(' ')
                    ));
                }
                None => {
                    return Err("HELP text ends in a lone backslash".to_string());
                }
            }
            p += 2;
            match memchr::memchr(b'\\', &bytes[p..]) {
                None => {
                    out.push_str(&rest[p..]);
                    return Ok(Cow::Owned(out));
                }
                Some(j) => {
                    out.push_str(&rest[p..p + j]);
                    p += j;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_string_without_escapes_is_borrowed() {
        let mut c = Cursor::new(r#""abc" rest"#);
        let s = c.quoted("label value").unwrap();
        assert!(matches!(s, Cow::Borrowed("abc")));
        assert_eq!(c.rest(), " rest");
    }

    #[test]
    fn a_quoted_string_resolves_backslash_quote_and_newline_escapes() {
        let mut c = Cursor::new(r#""a\\b\"c\nd"}"#);
        assert_eq!(c.quoted("label value").unwrap(), "a\\b\"c\nd");
        assert_eq!(c.rest(), "}");
    }

    #[test]
    fn an_unknown_escape_in_a_quoted_string_is_rejected() {
        let mut c = Cursor::new(r#""a\tb""#);
        let e = c.quoted("label value").unwrap_err();
        assert!(e.contains("invalid escape sequence '\\t'"), "{e}");
    }

    #[test]
    fn a_quoted_string_ending_in_a_backslash_is_unterminated() {
        for s in [r#""abc"#, r#""ab\"#, r#""a\"b"#, r#""a\\b\"#] {
            let mut c = Cursor::new(s);
            let e = c.quoted("label value").unwrap_err();
            assert!(e.contains("no closing"), "{s}: {e}");
        }
    }

    #[test]
    fn help_text_in_the_text_format_rejects_an_escaped_quote() {
        let mut c = Cursor::new(r#"say \"hi\""#);
        assert!(c.help_text(Escapes::BackslashNewline).is_err());
        let mut c = Cursor::new(r#"say \"hi\" \\ \n"#);
        assert_eq!(c.help_text(Escapes::WithQuote).unwrap(), "say \"hi\" \\ \n");
    }

    #[test]
    fn names_stop_at_the_first_character_outside_their_set() {
        let mut c = Cursor::new("http_requests:rate5m{");
        assert_eq!(c.metric_name(), "http_requests:rate5m");
        let mut c = Cursor::new("a:b");
        assert_eq!(c.label_name(), "a");
        let mut c = Cursor::new("9lives");
        assert_eq!(c.metric_name(), "");
        assert_eq!(c.label_name(), "");
    }
}
