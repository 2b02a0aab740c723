//! Helpers for the PromQL acceptance-script tests: where the suites are, running them through
//! the library, and running the real `kubesignal promql test` binary.

#![allow(dead_code)]

#[path = "fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubesignal::promql::Semantics;
use kubesignal::promql::script::{FileReport, run_file};

/// The `*.test` files of one suite (`v2.42` or `latest`), sorted.
pub fn suite_files(suite: &str) -> Vec<PathBuf> {
    let dir = fixtures::dir().join("promql-tests").join(suite);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    files
}

/// Runs every file of a suite through the library.
pub fn run_suite(suite: &str, semantics: Semantics) -> Vec<FileReport> {
    suite_files(suite)
        .iter()
        .map(|f| run_file(f, semantics))
        .collect()
}

/// The file name of a report, without its directory.
pub fn short(report_file: &str) -> String {
    Path::new(report_file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the real binary: `kubesignal promql test ARGS...`.
pub fn kubesignal_promql_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .args(["promql", "test"])
        .args(args)
        .output()
        .expect("running the kubesignal binary")
}
