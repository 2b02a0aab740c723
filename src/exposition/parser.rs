//! The line-by-line parser: finds each line with `memchr`, dispatches comments and samples, and
//! keeps the little state the formats need (family types, duplicate HELP/TYPE, `# EOF`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use memchr::memchr;

use super::cursor::{Cursor, Escapes};
use super::{Entry, Exemplar, Format, MetricType, ParseError, Sample, family_of};

const SEEN_HELP: u8 = 1;
const SEEN_TYPE: u8 = 2;

type Labels<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Body,
    /// OpenMetrics `# EOF` was seen: anything more is an error.
    AfterEof,
    Done,
}

/// An iterator over the entries of an exposition. After an error it carries on with the next
/// line, so a caller may collect every error; [`super::parse_all`] stops at the first.
pub struct Parser<'a> {
    input: &'a str,
    pos: usize,
    line: usize,
    format: Format,
    keep: Option<fn(&str) -> bool>,
    state: State,
    /// Which of HELP ([`SEEN_HELP`]) and TYPE ([`SEEN_TYPE`]) each family has had: one hash
    /// per comment line.
    declared: HashMap<Cow<'a, str>, u8>,
    /// Names of samples outside any typed family (recorded when the name changes), to reject a
    /// TYPE line that comes after its family's samples as `expfmt` does. A sample of the current
    /// typed family needs no record: a second TYPE for that family is already an error.
    sampled: HashSet<Cow<'a, str>>,
    last_sample_name: Option<Cow<'a, str>>,
    /// The family of the last TYPE line, for the `le`/`quantile` checks.
    family: Option<(Cow<'a, str>, MetricType)>,
}

impl<'a> Parser<'a> {
    /// A parser over `input` in the given format.
    pub fn new(input: &'a str, format: Format) -> Self {
        Parser {
            input,
            pos: 0,
            line: 0,
            format,
            keep: None,
            state: State::Body,
            declared: HashMap::new(),
            sampled: HashSet::new(),
            last_sample_name: None,
            family: None,
        }
    }

    /// Only samples whose sample name, or family name (the sample name without a `_bucket`,
    /// `_count`, `_sum`, `_total`, `_created`, `_gcount`, `_gsum` or `_info` suffix), passes `keep`
    /// are fully parsed; other sample lines are skipped cheaply and without validation. Comment
    /// lines are still yielded.
    pub fn with_name_filter(mut self, keep: fn(&str) -> bool) -> Self {
        self.keep = Some(keep);
        self
    }

    /// The 1-based number of the line last read (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }

    fn parse_line(&mut self, line: &'a str) -> Result<Option<Entry<'a>>, String> {
        let mut c = Cursor::new(line);
        c.skip_blanks();
        match c.peek() {
            None => Ok(None),
            Some(b'#') => self.comment(c),
            Some(_) => {
                if let Some(keep) = self.keep
                    && !passes(keep, &c)
                {
                    return Ok(None);
                }
                self.sample(c).map(|s| Some(Entry::Sample(s)))
            }
        }
    }

    fn comment(&mut self, mut c: Cursor<'a>) -> Result<Option<Entry<'a>>, String> {
        c.eat(b'#');
        let keyword = match self.format {
            Format::PrometheusText => {
                c.skip_blanks();
                match c.token() {
                    k @ ("HELP" | "TYPE") => k,
                    // Any other comment, `# EOF` included, carries no meaning in this format.
                    _ => return Ok(None),
                }
            }
            Format::OpenMetrics => {
                if !c.eat(b' ') {
                    return Err(format!(
                        "expected a space after '#' (OpenMetrics allows only # HELP, # TYPE, \
                         # UNIT and # EOF comments), found {}",
                        c.found()
                    ));
                }
                let k = c.token();
                if !matches!(k, "HELP" | "TYPE" | "UNIT" | "EOF") {
                    return Err(format!(
                        "expected HELP, TYPE, UNIT or EOF after '# ' (OpenMetrics has no free \
                         comments), found {k:?}"
                    ));
                }
                k
            }
        };
        if keyword == "EOF" {
            if !c.at_end() {
                return Err(format!("unexpected {:?} after # EOF", c.rest()));
            }
            self.state = State::AfterEof;
            return Ok(Some(Entry::Eof));
        }
        let text = self.format == Format::PrometheusText;
        if c.skip_blanks() == 0 {
            if text && c.at_end() {
                // `expfmt` reads a bare `# HELP` as a plain comment.
                return Ok(None);
            }
            return Err(format!(
                "expected a space after # {keyword}, found {}",
                c.found()
            ));
        }
        let family = comment_name(&mut c, keyword)?;
        if c.at_end() && text {
            // `# HELP name` / `# TYPE name` with nothing after the name: a plain comment to expfmt.
            return Ok(None);
        }
        match keyword {
            "HELP" => {
                let help = if c.at_end() {
                    Cow::Borrowed("")
                } else {
                    if text {
                        c.skip_blanks();
                    } else {
                        c.eat(b' ');
                    }
                    let escapes = if text {
                        Escapes::BackslashNewline
                    } else {
                        Escapes::WithQuote
                    };
                    c.help_text(escapes)?
                };
                if !self.declare(family.clone(), SEEN_HELP) {
                    return Err(format!("second HELP line for metric family {family:?}"));
                }
                Ok(Some(Entry::Help { family, text: help }))
            }
            "TYPE" => {
                c.skip_blanks();
                let name = c.token();
                let Some(kind) = MetricType::from_type_name(name, self.format) else {
                    let known = if text {
                        "counter, gauge, histogram, summary or untyped"
                    } else {
                        "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                    };
                    return Err(format!(
                        "unknown metric type {name:?} for {family:?}, expected {known}"
                    ));
                };
                c.skip_blanks();
                if !c.at_end() {
                    return Err(format!(
                        "unexpected {:?} after the type of {family:?}, expected end of line",
                        c.rest()
                    ));
                }
                if self.sampled.contains(&family) {
                    return Err(format!(
                        "TYPE line for metric family {family:?} comes after its samples"
                    ));
                }
                if !self.declare(family.clone(), SEEN_TYPE) {
                    return Err(format!("second TYPE line for metric family {family:?}"));
                }
                self.family = Some((family.clone(), kind));
                Ok(Some(Entry::Type { family, kind }))
            }
            _ => {
                // UNIT, OpenMetrics only.
                let unit = if c.at_end() {
                    ""
                } else {
                    c.eat(b' ');
                    let u = c.token();
                    c.skip_blanks();
                    if !c.at_end() {
                        return Err(format!(
                            "unexpected {:?} after the unit of {family:?}, expected end of line",
                            c.rest()
                        ));
                    }
                    u
                };
                Ok(Some(Entry::Unit {
                    family,
                    unit: Cow::Borrowed(unit),
                }))
            }
        }
    }

    fn sample(&mut self, mut c: Cursor<'a>) -> Result<Sample<'a>, String> {
        let mut name = None;
        if c.peek() != Some(b'{') {
            let n = c.metric_name();
            if n.is_empty() {
                return Err(format!("expected a metric name, found {}", c.found()));
            }
            name = Some(Cow::Borrowed(n));
        }
        let blanks = c.skip_blanks();
        let mut labels = Vec::new();
        if c.eat(b'{') {
            // Most real label sets (cAdvisor's, client libraries') fit in 8: one allocation.
            labels.reserve(8);
            parse_labels(&mut c, &mut name, &mut labels, true)?;
            c.skip_blanks();
        } else if blanks == 0 && !c.at_end() {
            return Err(format!(
                "expected '{{' or a space after metric name {:?}, found {}",
                name.as_deref().unwrap_or(""),
                c.found()
            ));
        }
        let Some(name) = name else {
            return Err(
                "expected a metric name before '{' or as the first quoted name inside it"
                    .to_string(),
            );
        };
        let token = c.token();
        if token.is_empty() {
            return Err(format!("expected a value for {name:?}, found end of line"));
        }
        let value = parse_float(token)
            .ok_or_else(|| format!("expected a float as the value of {name:?}, found {token:?}"))?;

        let mut timestamp_ms = None;
        let mut exemplar = None;
        c.skip_blanks();
        if !c.at_end() {
            if self.format == Format::OpenMetrics && c.peek() == Some(b'#') {
                exemplar = Some(parse_exemplar(&mut c)?);
            } else {
                timestamp_ms = Some(self.timestamp(c.token())?);
                c.skip_blanks();
                if self.format == Format::OpenMetrics && c.peek() == Some(b'#') {
                    exemplar = Some(parse_exemplar(&mut c)?);
                } else if !c.at_end() {
                    return Err(format!(
                        "unexpected {:?} after the timestamp, expected end of line",
                        c.rest()
                    ));
                }
            }
        }
        let sample = Sample {
            name,
            labels,
            value,
            timestamp_ms,
            exemplar,
        };
        let in_typed_family = self.check_family_rules(&sample)?;
        if !in_typed_family && self.last_sample_name.as_deref() != Some(sample.name.as_ref()) {
            self.sampled.insert(sample.name.clone());
            self.last_sample_name = Some(sample.name.clone());
        }
        Ok(sample)
    }

    /// Record a HELP or TYPE line for `family`; false if it already had one.
    fn declare(&mut self, family: Cow<'a, str>, what: u8) -> bool {
        let seen = self.declared.entry(family).or_insert(0);
        let fresh = *seen & what == 0;
        *seen |= what;
        fresh
    }

    fn timestamp(&self, token: &str) -> Result<i64, String> {
        match self.format {
            Format::PrometheusText => token.parse::<i64>().map_err(|_| {
                format!("expected an integer timestamp in milliseconds, found {token:?}")
            }),
            Format::OpenMetrics => seconds_to_ms(token),
        }
    }

    /// Histogram buckets need a float `le` (OpenMetrics: a present one; the text format, like
    /// `expfmt`, tolerates its absence); summary quantiles need a float `quantile`. Returns
    /// whether the sample belongs to the family of the last TYPE line.
    fn check_family_rules(&self, sample: &Sample<'a>) -> Result<bool, String> {
        let Some((family, kind)) = &self.family else {
            return Ok(false);
        };
        let Some(suffix) = sample.name.strip_prefix(family.as_ref()) else {
            return Ok(false);
        };
        if !suffix_fits(*kind, suffix) {
            return Ok(false);
        }
        match (kind, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => {
                match sample.label("le") {
                    Some(le) if parse_float(le).is_none() => Err(format!(
                        "expected a float as the value of the 'le' label of {:?}, found {le:?}",
                        sample.name
                    )),
                    None if self.format == Format::OpenMetrics => Err(format!(
                        "histogram bucket {:?} has no 'le' label",
                        sample.name
                    )),
                    _ => Ok(true),
                }
            }
            (MetricType::Summary, "") => match sample.label("quantile") {
                Some(q) if parse_float(q).is_none() => Err(format!(
                    "expected a float as the value of the 'quantile' label of {:?}, found {q:?}",
                    sample.name
                )),
                _ => Ok(true),
            },
            _ => Ok(true),
        }
    }

    fn missing_eof(&mut self) -> ParseError {
        let ends_with_newline = self.input.is_empty() || self.input.ends_with('\n');
        ParseError {
            line: self.line + usize::from(ends_with_newline),
            message: "expected '# EOF' as the last line of an OpenMetrics exposition".to_string(),
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.state == State::Done {
                return None;
            }
            let bytes = self.input.as_bytes();
            if self.pos >= bytes.len() {
                let after_eof = self.state == State::AfterEof;
                self.state = State::Done;
                if self.format == Format::OpenMetrics && !after_eof {
                    return Some(Err(self.missing_eof()));
                }
                return None;
            }
            let start = self.pos;
            let end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            self.pos = end + 1;
            self.line += 1;
            if self.state == State::AfterEof {
                self.state = State::Done;
                return Some(Err(ParseError {
                    line: self.line,
                    message: "unexpected content after # EOF".to_string(),
                }));
            }
            let mut trimmed = end;
            while trimmed > start && matches!(bytes[trimmed - 1], b' ' | b'\t' | b'\r') {
                trimmed -= 1;
            }
            match self.parse_line(&self.input[start..trimmed]) {
                Ok(Some(entry)) => return Some(Ok(entry)),
                Ok(None) => continue,
                Err(message) => {
                    return Some(Err(ParseError {
                        line: self.line,
                        message,
                    }));
                }
            }
        }
    }
}

/// Whether a sample named family + `suffix` belongs to a family of this type (in either format).
fn suffix_fits(kind: MetricType, suffix: &str) -> bool {
    match kind {
        MetricType::Counter => matches!(suffix, "" | "_total" | "_created"),
        MetricType::Histogram => {
            matches!(suffix, "" | "_bucket" | "_sum" | "_count" | "_created")
        }
        MetricType::GaugeHistogram => matches!(suffix, "" | "_bucket" | "_gsum" | "_gcount"),
        MetricType::Summary => matches!(suffix, "" | "_sum" | "_count" | "_created"),
        MetricType::Info => matches!(suffix, "" | "_info"),
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => suffix.is_empty(),
    }
}

/// Whether the sample line at the cursor belongs to a kept family. Reads only the name.
fn passes(keep: fn(&str) -> bool, c: &Cursor<'_>) -> bool {
    let mut probe = c.clone();
    let name: Cow<'_, str> = if probe.eat(b'{') {
        probe.skip_blanks();
        if probe.peek() != Some(b'"') {
            // No name: let the full parse report it.
            return true;
        }
        match probe.quoted("metric name") {
            Ok(n) => n,
            Err(_) => return true,
        }
    } else {
        Cow::Borrowed(probe.metric_name())
    };
    name.is_empty() || keep(&name) || keep(family_of(&name))
}

/// A family name after `# HELP`/`# TYPE`/`# UNIT`: a legacy name or a quoted UTF-8 one.
fn comment_name<'a>(c: &mut Cursor<'a>, keyword: &str) -> Result<Cow<'a, str>, String> {
    if c.peek() == Some(b'"') {
        return c.quoted("quoted metric name");
    }
    let name = c.metric_name();
    if name.is_empty() {
        return Err(format!(
            "expected a metric name after # {keyword}, found {}",
            c.found()
        ));
    }
    if !matches!(c.peek(), None | Some(b' ' | b'\t')) {
        return Err(format!(
            "invalid character {} in metric name after # {keyword} (expected [a-zA-Z0-9_:] or a \
             quoted name)",
            c.found()
        ));
    }
    Ok(Cow::Borrowed(name))
}

/// The labels after `{` up to and including `}`. With `allow_name`, a first quoted string not
/// followed by `=` is the metric name (`{"my.metric", a="b"}`).
fn parse_labels<'a>(
    c: &mut Cursor<'a>,
    name: &mut Option<Cow<'a, str>>,
    labels: &mut Labels<'a>,
    allow_name: bool,
) -> Result<(), String> {
    let mut first = true;
    loop {
        c.skip_blanks();
        if c.eat(b'}') {
            return Ok(());
        }
        let label_name = if c.peek() == Some(b'"') {
            let quoted = c.quoted("quoted name")?;
            c.skip_blanks();
            if first && allow_name && name.is_none() && matches!(c.peek(), Some(b',' | b'}')) {
                *name = Some(quoted);
                first = false;
                if c.eat(b',') {
                    continue;
                }
                c.eat(b'}');
                return Ok(());
            }
            quoted
        } else {
            let n = c.label_name();
            if n.is_empty() {
                return Err(format!(
                    "expected a label name or '}}', found {}",
                    c.found()
                ));
            }
            c.skip_blanks();
            Cow::Borrowed(n)
        };
        first = false;
        if !c.eat(b'=') {
            return Err(format!(
                "expected '=' after label name {label_name:?}, found {}",
                c.found()
            ));
        }
        c.skip_blanks();
        if c.peek() != Some(b'"') {
            return Err(format!(
                "expected '\"' to open the value of label {label_name:?}, found {}",
                c.found()
            ));
        }
        let value = c
            .quoted("label value")
            .map_err(|e| format!("{e} (label {label_name:?})"))?;
        if label_name == "__name__" {
            return Err("label name \"__name__\" is reserved".to_string());
        }
        if labels.iter().any(|(n, _)| *n == label_name) {
            return Err(format!("duplicate label name {label_name:?}"));
        }
        labels.push((label_name, value));
        c.skip_blanks();
        if c.eat(b',') {
            continue;
        }
        if c.eat(b'}') {
            return Ok(());
        }
        let last = &labels[labels.len() - 1].0;
        return Err(format!(
            "expected ',' or '}}' after the value of label {last:?}, found {}",
            c.found()
        ));
    }
}

/// ` # {labels} value [timestamp]` at the cursor (which is on the `#`).
fn parse_exemplar<'a>(c: &mut Cursor<'a>) -> Result<Exemplar<'a>, String> {
    c.eat(b'#');
    if c.skip_blanks() == 0 {
        return Err(format!(
            "expected a space after the exemplar's '#', found {}",
            c.found()
        ));
    }
    if !c.eat(b'{') {
        return Err(format!(
            "expected '{{' to open the exemplar's labels, found {}",
            c.found()
        ));
    }
    let mut labels = Vec::new();
    parse_labels(c, &mut None, &mut labels, false)?;
    // OpenMetrics 1.0 caps an exemplar's label set at 128 UTF-8 characters, names and values.
    let chars: usize = labels
        .iter()
        .map(|(n, v)| n.chars().count() + v.chars().count())
        .sum();
    if chars > 128 {
        return Err(format!(
            "exemplar labels have {chars} characters, more than the 128 OpenMetrics allows"
        ));
    }
    c.skip_blanks();
    let token = c.token();
    if token.is_empty() {
        return Err("expected a value after the exemplar's labels, found end of line".to_string());
    }
    let value = parse_float(token)
        .ok_or_else(|| format!("expected a float as the exemplar's value, found {token:?}"))?;
    c.skip_blanks();
    let mut timestamp_ms = None;
    if !c.at_end() {
        timestamp_ms = Some(seconds_to_ms(c.token())?);
        c.skip_blanks();
        if !c.at_end() {
            return Err(format!(
                "unexpected {:?} after the exemplar's timestamp, expected end of line",
                c.rest()
            ));
        }
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}

/// A float the way Go's `strconv.ParseFloat` reads exposition values: decimal or exponent
/// notation, `NaN`, `Inf`/`+Inf`/`-Inf` in any case; an out-of-range literal such as `1e400` is an
/// error rather than infinity.
pub(super) fn parse_float(token: &str) -> Option<f64> {
    let v: f64 = token.parse().ok()?;
    if v.is_infinite() && !token.bytes().any(|b| b == b'i' || b == b'I') {
        return None;
    }
    Some(v)
}

/// An OpenMetrics timestamp (float seconds) as integer milliseconds.
fn seconds_to_ms(token: &str) -> Result<i64, String> {
    let secs = parse_float(token)
        .filter(|s| s.is_finite())
        .ok_or_else(|| format!("expected a timestamp in seconds, found {token:?}"))?;
    let ms = (secs * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, so compare strictly below it.
    if ms.abs() >= 9.223_372_036_854_775e18 {
        return Err(format!("timestamp {token:?} is out of range"));
    }
    Ok(ms as i64)
}
