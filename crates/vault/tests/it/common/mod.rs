//! Helpers shared by the vault's integration tests.
//!
//! Tests on the shared data (`../shared` beside the repository: the Synthea sample and the OMOP
//! vocabulary subset) follow one rule: when the data is missing they skip loudly on a developer
//! machine, and fail when `CI=true` (CI always has it).
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository root.
fn shared_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Whether the tests run under CI (`CI=true`).
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `../shared/<rel>` if `<rel>/<marker>` exists. Otherwise fails under `CI=true`, else prints
/// that `what` did not run and returns `None`.
fn shared(test: &str, rel: &str, marker: &str, what: &str) -> Option<PathBuf> {
    shared_in(&shared_root(), test, rel, marker, what)
}

/// [`shared`] with another root (for testing the rule itself).
pub fn shared_in(
    root: &std::path::Path,
    test: &str,
    rel: &str,
    marker: &str,
    what: &str,
) -> Option<PathBuf> {
    let dir = root.join(rel);
    if dir.join(marker).exists() {
        return Some(dir);
    }
    if ci() {
        panic!("{test}: ../shared/{rel} is missing and CI=true");
    }
    eprintln!("SKIPPED: {test}: ../shared/{rel} not found ({what} did not run)");
    None
}

/// `../shared/data/synthea-r4`, with the skip rule of this module.
pub fn synthea_dir(test: &str) -> Option<PathBuf> {
    shared(
        test,
        "data/synthea-r4",
        "hospital-a",
        "tests on Synthea data",
    )
}

/// `../shared/reference/omop-vocabulary-subset`, with the skip rule of this module. Without it
/// the test ingests without a vocabulary (every concept id 0) and skips its concept checks.
pub fn vocab_dir(test: &str) -> Option<PathBuf> {
    shared(
        test,
        "reference/omop-vocabulary-subset",
        "CONCEPT.csv",
        "checks of concept ids from the OMOP vocabulary",
    )
}

/// A test vault's keys in `node`: a fixed passphrase, a fixed pseudonym key (so two vaults give
/// the same pseudonyms), the cheapest argon2id parameters. Created on first use.
pub fn vkey(node: &std::path::Path) -> medspace_vault::VaultKey {
    let pass = medspace_vault::seal::Passphrase::new("test passphrase").unwrap();
    if !node.join("vault").join("vault.key").exists() {
        medspace_vault::VaultKey::create_with_pseudonym_key(
            node,
            &pass,
            medspace_vault::seal::KdfParams::INSECURE_FAST,
            [7u8; 32],
        )
        .unwrap();
    }
    medspace_vault::VaultKey::unlock_or_create(
        node,
        &pass,
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
}
