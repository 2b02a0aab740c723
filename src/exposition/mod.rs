//! Our own parser for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text.
//!
//! It is shared by the agent's app scraping, its cAdvisor reader and the tests. The surveyed Rust
//! crates drop samples or mis-read escapes, so we parse the format ourselves, byte by byte:
//!
//! - one pass over the input, lines found with `memchr`, no regex and no per-line `String`;
//! - names, label values and HELP texts borrow from the input (`Cow::Borrowed`) unless an escape
//!   sequence has to be resolved;
//! - every malformed line is an error naming the 1-based line and what was expected there;
//!   nothing panics on any input.
//!
//! Where the formats leave room, the parser follows `promtool check metrics` (the Go `expfmt`
//! parser) for the text format and the OpenMetrics 1.0 specification for OpenMetrics, with three
//! deliberate tolerances that cannot change the meaning of a payload: trailing spaces/tabs, CRLF
//! line ends and blank lines are accepted in both formats.

mod cursor;
mod parser;

use std::borrow::Cow;

pub use parser::Parser;

/// The two text formats a scrape target can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): millisecond integer
    /// timestamps, no exemplars, no `# EOF`.
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`): float-second timestamps, exemplars,
    /// `# UNIT`, and a mandatory `# EOF` as the last line.
    OpenMetrics,
}

impl Format {
    /// The `Accept` header a scraper sends to prefer OpenMetrics (for exemplars and `_created`)
    /// and fall back to the text format, the way Prometheus itself negotiates.
    pub const ACCEPT_HEADER: &'static str = "application/openmetrics-text;version=1.0.0;q=0.9,\
         text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    /// From an HTTP `Content-Type` header: `application/openmetrics-text` (any parameters, any
    /// case) is OpenMetrics; anything else, including a missing or unknown type, is the text
    /// format 0.0.4, as Prometheus assumes.
    pub fn from_content_type(ct: &str) -> Format {
        let media_type = ct.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// The type of a metric family, from its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A monotonic counter (`_total`, `_created` samples in OpenMetrics).
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Cumulative buckets (`_bucket{le}`), `_sum`, `_count`.
    Histogram,
    /// An OpenMetrics gauge histogram (`_bucket{le}`, `_gsum`, `_gcount`).
    GaugeHistogram,
    /// Quantiles (`{quantile}`), `_sum`, `_count`.
    Summary,
    /// An OpenMetrics info metric (`_info` sample with value 1).
    Info,
    /// An OpenMetrics state set (one sample per state, value 0 or 1).
    StateSet,
    /// `untyped` in the text format, `unknown` in OpenMetrics.
    Unknown,
}

impl MetricType {
    /// The type named by a `# TYPE` line in the given format, or `None` if the format has no
    /// such type. The text format accepts its type names in any case, as `expfmt` does.
    pub fn from_type_name(name: &str, format: Format) -> Option<MetricType> {
        match format {
            Format::PrometheusText => {
                let known = [
                    ("counter", MetricType::Counter),
                    ("gauge", MetricType::Gauge),
                    ("histogram", MetricType::Histogram),
                    ("summary", MetricType::Summary),
                    ("untyped", MetricType::Unknown),
                ];
                known
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|&(_, t)| t)
            }
            Format::OpenMetrics => match name {
                "counter" => Some(MetricType::Counter),
                "gauge" => Some(MetricType::Gauge),
                "histogram" => Some(MetricType::Histogram),
                "gaugehistogram" => Some(MetricType::GaugeHistogram),
                "summary" => Some(MetricType::Summary),
                "info" => Some(MetricType::Info),
                "stateset" => Some(MetricType::StateSet),
                "unknown" => Some(MetricType::Unknown),
                _ => None,
            },
        }
    }
}

/// One meaningful line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP family text`, escapes resolved.
    Help {
        /// The metric family name.
        family: Cow<'a, str>,
        /// The help text.
        text: Cow<'a, str>,
    },
    /// `# TYPE family kind`.
    Type {
        /// The metric family name.
        family: Cow<'a, str>,
        /// The declared type.
        kind: MetricType,
    },
    /// `# UNIT family unit` (OpenMetrics only; in the text format such a line is a comment).
    Unit {
        /// The metric family name.
        family: Cow<'a, str>,
        /// The unit, e.g. `seconds`; may be empty.
        unit: Cow<'a, str>,
    },
    /// A sample line.
    Sample(Sample<'a>),
    /// The OpenMetrics `# EOF` line. The text format has no end marker: there `# EOF` is an
    /// ordinary comment and this entry never appears.
    Eof,
}

/// One sample line: name, labels, value, optional timestamp and exemplar.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The full sample name, e.g. `foo_bucket`, `foo_total`, `foo_created`.
    pub name: Cow<'a, str>,
    /// Labels in source order, escapes resolved.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The value; NaN, +Inf and -Inf are supported.
    pub value: f64,
    /// Milliseconds since the Unix epoch. The text format gives integer milliseconds;
    /// OpenMetrics gives float seconds, converted here (rounded to the nearest millisecond).
    pub timestamp_ms: Option<i64>,
    /// The OpenMetrics exemplar after ` # `, if any.
    pub exemplar: Option<Exemplar<'a>>,
}

impl<'a> Sample<'a> {
    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// An OpenMetrics exemplar: `# {trace_id="x"} 1.0 123.4`.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar<'a> {
    /// The exemplar's labels in source order, escapes resolved.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The exemplar's value.
    pub value: f64,
    /// Milliseconds since the Unix epoch, converted from float seconds.
    pub timestamp_ms: Option<i64>,
}

/// A malformed line: its 1-based number and what was wrong or expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was expected or what is wrong.
    pub message: String,
}

/// Parse a whole exposition, failing on the first malformed line.
pub fn parse_all(input: &str, format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(input, format).collect()
}

/// The family a sample name belongs to when it carries one of the suffixes the formats give to
/// histogram, summary, counter and info samples; the name itself otherwise.
pub fn family_of(sample_name: &str) -> &str {
    const SUFFIXES: [&str; 8] = [
        "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
    ];
    SUFFIXES
        .iter()
        .find_map(|s| sample_name.strip_suffix(s))
        .filter(|f| !f.is_empty())
        .unwrap_or(sample_name)
}

#[cfg(test)]
mod tests;
