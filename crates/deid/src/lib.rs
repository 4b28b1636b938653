//! The open pool: de-identified releases of a hospital's OMOP CDM data with proven
//! k-anonymity, l-diversity, t-closeness and measured re-identification risk (issue #17).
//!
//! A hospital publishes a person-level extract to the consortium's open pool. This crate is the
//! pure computation of that release, independent of storage: the vault feeds it [`Microdata`]
//! (one row per person: the quasi-identifiers as raw [`Value`]s, the sensitive attributes as
//! strings) and writes the files; the crate decides what may be released and proves it.
//!
//! # Privacy models
//!
//! A [`spec::ReleaseSpec`] names the quasi-identifiers (QIs, each with a generalization
//! [`hierarchy::Hierarchy`]), the sensitive attributes and the models to enforce:
//!
//! - **k-anonymity** with record suppression: every released person shares its generalized QI
//!   vector (its *equivalence class*) with at least `k − 1` others; classes smaller than `k` are
//!   suppressed, at most `max_suppression` of the records in all.
//! - **l-diversity**, distinct (every class has at least `l` distinct values of each sensitive
//!   attribute) or entropy (`exp` of every class's entropy is at least `l`).
//! - **t-closeness**: the Earth Mover's Distance between a class's distribution of each
//!   sensitive attribute and the released table's is at most `t` (equal ground distance, the
//!   categorical case of Li et al. 2007, as pycanon computes it).
//!
//! Classes that fail any model are suppressed, all within the same budget.
//!
//! # The search
//!
//! [`search::plan`] finds the generalization (one level per QI: a node of the lattice of level
//! vectors) that satisfies the models with the least information loss (non-uniform entropy or
//! discernibility). No Rust library implements ARX-style lattice search, so it is implemented
//! here: rows are encoded once and collapsed, nodes are evaluated on packed keys (by roll-up
//! from an evaluated node below when one is cached), the monotone criteria prune the lattice
//! Flash-style (binary search on chains with predictive tagging), and the optimum is found by
//! branch and bound with an admissible lower bound of the loss — exact, not a heuristic; see
//! [`search`] for the argument. [`figures::verify`] recomputes every figure from the released
//! table alone, and the tests check it against pycanon.
//!
//! # What each side learns, what is guaranteed
//!
//! - The open pool learns the released table: generalized QIs and sensitive values of the
//!   non-suppressed persons, under per-release pseudonyms ([`pseudonym::Pseudonymizer`]), with
//!   dates shifted per patient or generalized, free text scrubbed of direct identifiers
//!   ([`identifiers::Scrubber`]), and the [`report::Report`] (the figures, the risks, the loss).
//! - Guaranteed, and re-checked from the output: the smallest class has at least `k` persons,
//!   each class meets `l` and `t` when asked, at most `max_suppression` of the persons are
//!   suppressed. The prosecutor re-identification risk of any released person is at most `1/k`.
//! - Not guaranteed: protection against attributes that are not declared QIs, or against
//!   background knowledge beyond the QIs (the syntactic models' known limits; differential
//!   privacy is the privacy crate's business). Unlinkable releases (the default) cannot be
//!   joined by pseudonym; `linkable` ones can, by design.
//! - Error messages name fields, levels and row indices, never patient values.

pub mod bench;
pub mod error;
pub mod figures;
pub mod hierarchy;
pub mod identifiers;
pub mod pseudonym;
pub mod report;
pub mod search;
pub mod spec;

pub use error::DeidError;
pub use figures::{Figures, verify};
pub use report::Report;
pub use search::{Node, Plan, Progress, plan};
pub use spec::ReleaseSpec;

use std::collections::HashMap;

/// One raw cell of a quasi-identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// An integer (an age, a count).
    Int(i64),
    /// A date, days since 1970-01-01.
    Date(i32),
    /// A string (a postal code, a concept code, a category).
    Text(String),
    /// No value: generalized to `*` at every level.
    Missing,
}

/// One person: the quasi-identifiers in [`Microdata::qi`]'s order and the sensitive attributes
/// in [`Microdata::sensitive`]'s.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub qi: Vec<Value>,
    pub sensitive: Vec<String>,
}

/// Person-level input: column names and one [`Record`] per person.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Microdata {
    pub qi: Vec<String>,
    pub sensitive: Vec<String>,
    pub rows: Vec<Record>,
}

/// Parent codes for `tree` hierarchies (a concept's parent concept), possibly empty: a code
/// without a parent is its own ancestor at every level.
pub type Parents = HashMap<String, String>;
