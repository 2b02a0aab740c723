//! Samples from a file for `kubesignal replay --data`: OpenMetrics text (float-second
//! timestamps, `# EOF` at the end, what `promtool tsdb create-blocks-from openmetrics` takes) or
//! the Prometheus text format with millisecond timestamps, read with the project's exposition
//! parser into an in-memory [`Storage`].

use std::path::{Path, PathBuf};

use crate::exposition::{Entry, Format, Parser};
use crate::promql::{Labels, Storage};

/// Why a data file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// The file could not be read.
    #[error("reading data file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed or unusable.
    #[error("data file {path}: line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no sample.
    #[error("data file {path}: no samples in it")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The format of `text`: OpenMetrics when a line reads `# EOF`, else the Prometheus text
/// format.
pub fn detect_format(text: &str) -> Format {
    if text.lines().any(|l| l.trim_end() == "# EOF") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

/// Reads every sample of `path` into a new store. Every sample must carry a timestamp.
pub fn load(path: &Path) -> Result<Storage, DataFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut storage = Storage::new();
    load_text(&text, &mut storage).map_err(|(line, message)| DataFileError::Line {
        path: path.to_path_buf(),
        line,
        message,
    })?;
    if storage.sample_count() == 0 {
        return Err(DataFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(storage)
}

/// Appends every sample of `text` to `storage`; an error is the 1-based line and the problem.
pub fn load_text(text: &str, storage: &mut Storage) -> Result<(), (usize, String)> {
    let mut parser = Parser::new(text, detect_format(text));
    while let Some(entry) = parser.next() {
        let entry = entry.map_err(|e| (e.line, e.message))?;
        let Entry::Sample(s) = entry else { continue };
        let Some(t) = s.timestamp_ms else {
            return Err((
                parser.line(),
                format!(
                    "sample {} has no timestamp; replay needs a timestamp on every sample",
                    s.name
                ),
            ));
        };
        let labels = Labels::from_pairs(
            std::iter::once(("__name__", s.name.as_ref()))
                .chain(s.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))),
        );
        storage.append(&labels, t, s.value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    #[test]
    fn openmetrics_samples_are_stored_at_their_timestamps_in_milliseconds() {
        let mut s = Storage::new();
        load_text(
            "# TYPE req counter\nreq_total{code=\"200\"} 1 60\nreq_total{code=\"200\"} 5 120.5\n# EOF\n",
            &mut s,
        )
        .unwrap();
        let m = [Matcher::new(MatchOp::Equal, "__name__", "req_total")];
        let got = s.select(&m);
        assert_eq!(got.len(), 1);
        let points: Vec<(i64, f64)> = got[0].all_samples().iter().map(|p| (p.t, p.v)).collect();
        assert_eq!(points, vec![(60_000, 1.0), (120_500, 5.0)]);
        assert_eq!(got[0].labels.get("code"), Some("200"));
    }

    #[test]
    fn prometheus_text_uses_millisecond_timestamps() {
        let mut s = Storage::new();
        load_text("up{job=\"a\"} 1 60000\n", &mut s).unwrap();
        assert_eq!(s.max_time(), Some(60_000));
    }

    #[test]
    fn a_sample_without_a_timestamp_is_an_error_on_its_line() {
        let mut s = Storage::new();
        let (line, msg) = load_text("up 1 0\n\nup 2\n", &mut s).unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("no timestamp"), "{msg}");
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let mut s = Storage::new();
        let (line, _) = load_text("up 1 0\nup{job=\"a\" 1 0\n# EOF\n", &mut s).unwrap_err();
        assert_eq!(line, 2);
    }
}
