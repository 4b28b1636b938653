//! medspace privacy computing primitives (DESIGN.md §6), a pure library used by the node's job
//! runner:
//!
//! - [`dp`]: disclosure control on every output — exact discrete Laplace and discrete Gaussian
//!   noise over a cryptographically secure RNG, and small-cell suppression.
//! - [`secagg`]: secure aggregation of integer vectors over Z/2^64 with double masking (a self
//!   mask and pairwise masks from X25519 agreement keys registered on the ledger), threshold
//!   shares of both checked against Feldman commitments, and dropout recovery, so the aggregator
//!   learns only the total over the survivors.
//! - [`release`]: the released cells of an aggregate: small-cell suppression and labels.
//! - [`glm`]: federated generalized linear models (logistic, Poisson, linear) by Newton/IRLS
//!   over sites' sufficient statistics, encoded as exact fixed point for secure aggregation,
//!   with an optional discrete-Gaussian DP release per iteration.
//! - [`survival`]: Kaplan–Meier curves and the log-rank test from aggregated per-bin counts.
//! - [`pharmacovigilance`]: drug-safety disproportionality from summed 2×2 tables (PRR, ROR
//!   with their intervals, the BCPNN information component, Yates χ², signal rules, a scan with
//!   Benjamini–Hochberg), the risk-window classification of a person, the sites' vector layout.
//! - [`query`]: the compilation of the versioned, declarative federated query spec (cohort +
//!   aggregate + group-by; the spec itself is `medspace_types::query`, re-exported there) to SQL
//!   over the node's OMOP-like tables, always joined to the contract's consent allow-list, with a
//!   fixed group layout so every site's result vector lines up for secure aggregation.
//! - [`query::features`]: the per-person rows of a model or a survival curve (variables built from the
//!   CDM at the index date), compiled to SQL after the same cohort; they never leave the site.
//! - [`psi`]: private set intersection (ECDH-PSI on ristretto255) over keyed identifiers, in
//!   cardinality-only and linked modes, the multi-site dedup rule, and its benchmark.
//! - [`join`]: a grouped private intersection-sum on top of linked PSI — a hospital's groups
//!   summed over an insurer's values on their common patients, under the insurer's exponential
//!   ElGamal key, noised and re-randomized by the hospital, opened by the insurer.
//! - [`aberration`]: outbreak detection on the daily released syndromic counts (EARS C1/C2/C3
//!   and a quasi-Poisson regression with trend, annual harmonics and day of week), with a
//!   simulation harness for sensitivity, false alerts and time to detection.

pub mod aberration;
pub mod dp;
pub mod glm;
pub mod join;
pub mod pharmacovigilance;
pub mod psi;
pub mod query;
pub mod release;
pub mod secagg;
pub mod survival;

pub use dp::{
    DpError, Mechanism, sample_discrete_gaussian, sample_discrete_laplace, suppress_small,
};
pub use query::{
    GroupKey, QueryError, QuerySpec, Validated, compile_sql, group_index, groups, parse, validate,
};
pub use secagg::{SecAggError, decode_i64, encode_i64};
