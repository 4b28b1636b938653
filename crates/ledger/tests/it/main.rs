//! The integration tests of medspace-ledger, in one binary (one link, one copy of the
//! dependencies on disk); each file is a module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod checkpoints;
mod sim;
mod stores;
