//! End-to-end tests of The Eye: the real `eye-server` binary, spawned as a child
//! process on `127.0.0.1` over a fresh SQLite file in its own working directory and
//! with a clean environment, driven by the real eye-client. The tests live in
//! `tests/e2e/` (one binary); this library only finds the binary.
//!
//! # Layout
//!
//! - `src/lib.rs`: [`server_binary`], the path of the built `eye-server`, building it
//!   once if it is missing or older than its sources.
//! - `tests/e2e/main.rs`: the test binary's modules.
//! - `tests/e2e/helpers.rs`: `Server::start()` (spawns the binary), restart on the same
//!   port, keys made with `eye-server apps create`, clients, bounded polling.
//! - `tests/e2e/delivery.rs`: every tracked event stored exactly once, across a
//!   server restart; rejections reported with reasons; bad keys.
//! - `tests/e2e/queries.rs`: typed queries, page streams and error codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The `eye-server` binary these tests run: `target/<profile>/eye-server`, next to the
/// `deps/` folder of the running test executable.
///
/// Cargo sets `CARGO_BIN_EXE_eye-server` only for tests of the package that owns the
/// binary, and does not build another package's binary for a test of this one. So the
/// first call (once per test process, whatever the number of threads asking) runs
/// `cargo build -p eye-server --bin eye-server` in the same profile and target folder
/// when the binary is missing or older than any source it is built from; cargo's own
/// lock serialises test processes that ask at the same time.
///
/// # Panics
///
/// When the binary cannot be built.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_if_stale)
}

fn build_if_stale() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/e2e-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let binary = profile_dir.join(format!("eye-server{}", std::env::consts::EXE_SUFFIX));
    if !stale(&binary) {
        return binary;
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let target_dir = profile_dir.parent().expect("target folder");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "eye-server", "--bin", "eye-server"])
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build for eye-server");
    assert!(status.success(), "cargo build -p eye-server failed");
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/")
        .to_owned()
}

/// Missing, or older than a source file of eye-server or eye-core, or the lock file.
fn stale(binary: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    let newest = ["eye-server", "eye-core"]
        .iter()
        .map(|krate| newest_mtime(&root.join(krate)))
        .chain([mtime(&root.join("Cargo.lock"))])
        .max()
        .flatten();
    newest.is_some_and(|newest| newest > built)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The newest modification time under `dir`, skipping `tests/` (tests are not built
/// into the binary) and hidden folders.
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = mtime(dir);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "tests" || name == "target" {
            continue;
        }
        let candidate = if path.is_dir() {
            newest_mtime(&path)
        } else {
            mtime(&path)
        };
        newest = newest.max(candidate);
    }
    newest
}
