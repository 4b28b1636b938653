//! The integration tests of medspace-vault, in one binary (one link, one copy of the
//! dependencies on disk); each file is a module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod at_rest;
mod bad_input;
mod chunked;
mod common;
mod cost;
mod crash_quality_export;
mod decoders;
mod export_privacy;
mod location;
mod remap;
mod synthea;
mod versions;
