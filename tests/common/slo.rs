//! Helpers for the SLO tests: the real `promtool`, and rule generation into temporary
//! directories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `slos/` and `tests/slo/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "fixtures.rs"]
mod shared_fixtures;

/// The Sloth examples and Sloth's own output for them (`rules/sloth` of the shared fixtures).
pub fn sloth_fixtures() -> PathBuf {
    shared_fixtures::dir().join("rules/sloth")
}

/// Runs `promtool` with `args` in `dir`; fails the test with install instructions when
/// promtool is missing.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}); install it, e.g. `apt-get install -y prometheus` (Debian ships promtool in that package)"
            )
        })
}

/// Output of a process as one string, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the real `kubesignal` binary.
pub fn kubesignal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubesignal"))
        .args(args)
        .env("KUBESIGNAL_LOG_FORMAT", "text")
        .output()
        .expect("run the kubesignal binary")
}

/// Generates rules for `specs` with `kubesignal slo generate -o dir`; returns the written files.
pub fn generate(specs: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let mut args = vec!["slo".to_string(), "generate".to_string()];
    args.extend(specs.iter().map(|p| p.display().to_string()));
    args.push("-o".into());
    args.push(dir.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kubesignal(&refs);
    assert!(out.status.success(), "slo generate failed: {}", text(&out));
    specs
        .iter()
        .map(|s| {
            let stem = s.file_stem().unwrap().to_string_lossy().into_owned();
            let path = dir.join(format!("{stem}.rules.yaml"));
            assert!(path.exists(), "{} was not written", path.display());
            path
        })
        .collect()
}

/// Files in `dir` whose name ends with one of `exts`, sorted.
pub fn files_with(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .is_some_and(|n| exts.iter().any(|e| n.ends_with(e)))
        })
        .collect();
    files.sort();
    files
}
