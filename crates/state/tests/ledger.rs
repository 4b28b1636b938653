//! Integration tests of the ledger state machine: every transaction kind, its success path and
//! its refusals (each asserting the exact `TxError` variant and that a refusal leaves the root
//! and the signer's nonce unchanged), the queries, the inclusion proofs, and property tests of
//! the codec, of determinism and of the epsilon budget under concurrent jobs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod ledger {
    pub mod fixture;

    mod access;
    mod budget;
    mod catalog;
    mod computations;
    mod consent;
    mod contracts;
    mod dataset_budget;
    mod envelope;
    mod governance;
    mod grants;
    mod jobs;
    mod matrix;
    mod node_keys;
    mod open_pool;
    mod proofs;
    mod props;
    mod public_health;
    mod quality;
    mod rebind;
    mod registration;
    mod roles;
    mod settlement;
    mod studies;
    mod vertical;
}
