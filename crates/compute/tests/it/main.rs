//! The integration tests of medspace-compute, in one binary (one link, one copy of the
//! dependencies on disk); each file is a module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ballista;
mod bench_federated;
mod count_once;
mod federated;
mod models;
mod public_health;
mod support;
mod vertical;
