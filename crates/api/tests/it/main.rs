//! The integration tests of medspace-api, in one binary (one link, one copy of the
//! dependencies on disk); each file is a module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api;
mod decoders;
#[path = "support/local.rs"]
mod local;
mod pieces;
mod route_matrix;
