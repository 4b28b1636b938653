//! The integration tests of medspace-privacy, in one binary (one link, one copy of the
//! dependencies on disk); each file is a module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod aberration;
mod against_python;
mod join;
mod pharmacovigilance;
mod psi;
