//! medspace-testkit: what the tests share and no library should carry. A dev-dependency only.
//!
//! [`venv_python`]: the Python that `.ci/run` installs into `.ci/venv` for the checks against
//! independent implementations (statsmodels, scipy, lifelines, pycanon). Without it a check is
//! skipped loudly — except under `CI=true`, where a missing check is a failure, so CI can never
//! pass without having run it.

use std::path::PathBuf;

/// The workspace's root (this crate sits at `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python when it imports every module of `modules`; else `None`, after saying on
/// stderr that `check` was skipped.
///
/// # Panics
/// Under `CI=true` when that Python is missing or lacks a module: the check must run there.
pub fn venv_python(modules: &[&str], check: &str) -> Option<PathBuf> {
    let exe = workspace_root().join(".ci/venv/bin/python");
    let ok = exe.exists()
        && std::process::Command::new(&exe)
            .args(["-c", &format!("import {}", modules.join(", "))])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(exe);
    }
    let msg = format!(
        "no python with {} at {} (run .ci/run, which installs the pinned versions into .ci/venv)",
        modules.join(", "),
        exe.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{check}: {msg}"
    );
    eprintln!("SKIPPED: {check}: {msg}");
    None
}
