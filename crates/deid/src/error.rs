//! Typed errors. Messages name fields, levels and row indices, never patient values.

/// Everything that can go wrong in a release.
#[derive(Debug, thiserror::Error)]
pub enum DeidError {
    /// The release spec is malformed or inconsistent.
    #[error("invalid release spec: {0}")]
    Spec(String),
    /// The spec is not valid JSON for the schema.
    #[error("release spec JSON: {0}")]
    Json(String),
    /// The microdata's columns do not match the spec.
    #[error("microdata: {0}")]
    Columns(String),
    /// A cell has the wrong type for its hierarchy (the value itself is not shown).
    #[error("row {row}: field `{field}` has a value of the wrong type for a `{kind}` hierarchy")]
    Type {
        field: String,
        row: usize,
        kind: &'static str,
    },
    /// A record has the wrong number of cells.
    #[error("row {row}: expected {expected} {what} cells, found {found}")]
    Arity {
        row: usize,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// The hierarchy of a field is not a hierarchy: a level does not determine the next.
    #[error("field `{field}`: generalization level {level} does not determine level {next}")]
    Hierarchy {
        field: String,
        level: usize,
        next: usize,
    },
    /// The input is too large for the search's encoding.
    #[error("too large: {0}")]
    TooLarge(String),
    /// No generalization satisfies the privacy models within the suppression budget.
    #[error(
        "no node of the {lattice} node lattice satisfies the privacy models with at most {budget} of {records} records suppressed"
    )]
    NoSolution {
        lattice: u64,
        budget: u64,
        records: u64,
    },
}
