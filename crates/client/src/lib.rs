//! medspace-client: a client of a running consortium that never trusts a node's word.
//!
//! - [`Remote`] ([`remote`]): submits signed transactions to the validators' HTTP API and acts
//!   on the state it verified itself: a certified state root read in pieces checked against
//!   it ([`pinned`]), and the finalized blocks after it (finality certificates of the genesis
//!   validators, re-execution to each header's state root).
//! - [`study`]: a researcher's study — the data-use contract for a query specification, its
//!   approvals, jobs, and the released result fetched from the aggregating hospital and checked
//!   against the hash on the ledger; the result as a table and as a chart ([`models`]: a
//!   model's coefficient table and forest plot, survival curves and the log-rank test).
//! - [`records`]: a patient's side (grants with fresh authorization codes, the log with every
//!   entry proven, the complete record from every hospital as one Bundle) and a grantee's
//!   redemption of a code at the holding hospital's node, checked against its access record.
//! - [`consortium`]: the embedded default consortium and the local devnet's key derivations.
//!
//! The command line (`medspace query`, `medspace patient`, the demo) and the web console are
//! argument parsing and presentation over this library.

pub mod health;
pub mod light;
pub mod models;
pub mod openpool;
pub mod pinned;
pub mod records;
pub mod remote;
pub mod study;

pub use medspace_consortium as consortium;
pub use remote::Remote;

/// Errors of the client (lowercase, naming what and which value; never a patient's data).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A node could not be reached or answered garbage.
    #[error("{what}: {error}")]
    Http {
        /// The request.
        what: String,
        /// Why.
        error: String,
    },
    /// A node refused the request.
    #[error("{what} refused by the node ({status}): {reason}")]
    Refused {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// The node's reason.
        reason: String,
    },
    /// The chain could not be followed or did not verify.
    #[error(transparent)]
    Follow(#[from] medspace_chain::follow::FollowError),
    /// The verified state could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] medspace_state::TxError),
    /// A value does not fit its type.
    #[error(transparent)]
    Type(#[from] medspace_types::TypeError),
    /// The state machine refused a transaction.
    #[error("{kind} refused: {reason}")]
    Transaction {
        /// The transaction kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Waiting took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Something the workflow needs is not on the ledger or in the consortium.
    #[error("{0}")]
    Missing(String),
    /// What a node delivered does not match the ledger.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The consortium lacks a party.
    #[error(transparent)]
    Consortium(#[from] medspace_consortium::ConsortiumError),
    /// A query specification does not parse.
    #[error("query specification: {0}")]
    Query(#[from] medspace_privacy::QueryError),
    /// The local runtime could not start.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// A client result.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The reason in a node's error answer (its `error` field, or the body).
pub fn error_reason(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
