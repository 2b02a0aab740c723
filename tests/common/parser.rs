//! Helpers for the exposition parser tests: the shared fixtures, an independent sample count and
//! the real `promtool check metrics`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kubesignal::exposition::Format;

#[path = "fixtures.rs"]
mod shared_fixtures;

/// Where the shared real payloads live.
pub fn fixtures_dir() -> PathBuf {
    shared_fixtures::dir()
}

/// Every exposition fixture (app metrics and cAdvisor), sorted, with the format its file name
/// says (`.om.txt` is OpenMetrics, the rest the text format).
pub fn exposition_fixtures() -> Vec<(PathBuf, Format)> {
    let mut files = Vec::new();
    for dir in ["app-metrics", "cadvisor"] {
        let dir = fixtures_dir().join(dir);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read fixture directory {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let format = if path.to_string_lossy().ends_with(".om.txt") {
                Format::OpenMetrics
            } else {
                Format::PrometheusText
            };
            files.push((path, format));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        files.len() >= 9,
        "expected the 9 shared exposition fixtures, found {files:?}"
    );
    files
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn fixture(relative: &str) -> String {
    read(&fixtures_dir().join(relative))
}

/// Sample lines counted without the parser: every line that is neither blank nor a comment.
pub fn count_sample_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// What `promtool check metrics` made of an input.
#[derive(Debug, PartialEq)]
pub enum Promtool {
    /// It parsed. Lint findings (exit code 3: style problems such as a missing HELP or a counter
    /// without `_total`) are not parse errors and do not count against the input.
    Accepted,
    /// It failed to parse: exit code 1 with "text format parsing error in line N: ...".
    Rejected { line: usize, message: String },
}

/// Run the real `promtool check metrics` on `input` (fed on stdin, as it expects).
pub fn promtool_check_metrics(input: &str) -> Promtool {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `promtool` ({e}): these tests need the real promtool; install it \
                 with `apt-get install -y prometheus` (Debian/Ubuntu) or put Prometheus's promtool \
                 on PATH"
            )
        });
    let mut stdin = child.stdin.take().expect("promtool stdin");
    // promtool may stop reading early on a parse error; a broken pipe is then expected.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        // 0: clean; 3: parsed, but lint problems were reported (promtool's lint exit code).
        Some(0) | Some(3) => {
            assert!(
                !text.contains("parsing error"),
                "promtool exited {:?} yet reported a parse error: {text}",
                out.status.code()
            );
            Promtool::Accepted
        }
        Some(1) => {
            let marker = "parsing error in line ";
            let at = text
                .find(marker)
                .unwrap_or_else(|| panic!("promtool failed without a line number: {text}"));
            let rest = &text[at + marker.len()..];
            let (num, message) = rest.split_once(':').expect("line number then message");
            Promtool::Rejected {
                line: num.trim().parse().expect("promtool line number"),
                message: message.trim().to_string(),
            }
        }
        other => panic!("promtool exited with {other:?}: {text}"),
    }
}
