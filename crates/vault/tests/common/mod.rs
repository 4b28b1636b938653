//! Helpers shared by the vault's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data/synthea-r4` relative to the repository root, if present. Skips loudly when
/// absent, and panics when `CI=true` (CI always has it).
pub fn synthea_dir(test: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("../shared/data/synthea-r4");
    if dir.join("hospital-a").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: ../shared/data/synthea-r4 is missing and CI=true");
    }
    eprintln!(
        "SKIPPED: {test}: ../shared/data/synthea-r4 not found (tests on Synthea data did not run)"
    );
    None
}

pub fn vocab_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/omop-vocabulary-subset");
    d.join("CONCEPT.csv").exists().then_some(d)
}
