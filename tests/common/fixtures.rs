//! Where the shared captured payloads live: `../shared/fixtures` beside the repository, or the
//! directory in `KUBESIGNAL_FIXTURES`. Every test helper finds them through [`dir`].

#![allow(dead_code)]

use std::path::PathBuf;

/// The fixtures directory; fails the test, saying where it looked, when it is missing.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("KUBESIGNAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(
        dir.is_dir(),
        "the shared fixtures were not found at {}: they sit beside the repository as ../shared/fixtures, or set KUBESIGNAL_FIXTURES",
        dir.display()
    );
    dir
}
