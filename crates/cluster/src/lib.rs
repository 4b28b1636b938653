//! The vault past one machine: a hospital's CDM tables queried by an Apache Ballista cluster
//! of the hospital's own machines, with the same compiled plans as the embedded engine.
//!
//! A node's vault is encrypted Parquet (see `medspace_vault::at_rest`). By default the node
//! queries it with DataFusion in its own process ([`Engine::Embedded`]). When its `[vault]`
//! config names a scheduler ([`Engine::Ballista`]), the same SQL and the same registered
//! tables become a logical plan that the node sends to a Ballista scheduler; the scheduler
//! splits it into stages and its executors read the vault's files and return the result.
//! Nothing else changes for the caller: [`VaultSession`] is a DataFusion session either way.
//!
//! **Trust.** The scheduler and the executors are the hospital's machines, inside its walls,
//! like the node. The scheduler plans without keys: a plan holds table paths, never keys, and
//! the scheduler is told not to read file statistics (which would mean decrypting footers).
//! Each executor unlocks the vault's keys itself, from the same passphrase as the node, and
//! decrypts the files it reads ([`executor`]): DataFusion's plan serialization drops a Parquet
//! scan's decryption settings, so the executor attaches the vault's decryption to every
//! Parquet scan of a plan it is given, and refuses any scan of a file outside the vault.
//! Rows a query needs beside the vault's tables (a job's consenting cohort) travel as an
//! encrypted scratch table in the vault, never inline in a plan.
//!
//! Modules:
//! * [`engine`] — [`Engine`] (where queries run) and [`VaultSession`].
//! * [`scheduler`] — a Ballista scheduler on a listener ([`scheduler::run`]).
//! * [`executor`] — a Ballista executor that reads a vault ([`executor::run`]).
//! * [`bench`](mod@bench) — `medspace bench cohort --cluster`: embedded against a local cluster.

pub mod bench;
pub mod engine;
pub mod executor;
pub mod scheduler;

pub use engine::{Engine, VaultSession};

/// Errors of the cluster engine.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The vault could not be opened or read.
    #[error("vault: {0}")]
    Vault(#[from] medspace_vault::VaultError),
    /// DataFusion failed.
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Ballista failed.
    #[error("ballista: {0}")]
    Ballista(String),
    /// A scheduler address is not `df://host:port`.
    #[error("bad scheduler address {0:?}: expected df://host:port")]
    BadScheduler(String),
    /// A socket could not be bound or read.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ballista_core::error::BallistaError> for ClusterError {
    fn from(e: ballista_core::error::BallistaError) -> Self {
        ClusterError::Ballista(e.to_string())
    }
}

/// The runtime a scheduler or an executor runs on: DataFusion's planning recurses deeply, so
/// its threads get large stacks, as Ballista's own binaries give them.
fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()?)
}
