//! medspace-devnet: the embedded default consortium on one machine, and what runs on it.
//!
//! - [`devnet`]: five validators (three hospitals, a research institute and an insurer) and the regulator's
//!   observer as real `medspace node` processes over loopback TCP; on first start the keys,
//!   genesis and node configs, each hospital's vault ([`hospitals`]) and worker section; once
//!   the chain runs, each hospital's catalog entry (`medspace_compute::publish`), its patients' registrations
//!   and their research consents. Later starts resume from disk.
//! - [`hints`]: the commands `medspace devnet` prints to try, each runnable as printed.
//! - [`demo`]: the whole story on such a consortium, step by step, printed.
//! - [`health`]: the outbreak and drug-safety ground truths the generator injects, and the
//!   surveillance and drug-safety steps that find them.
//! - [`bench`]: the end-to-end benchmarks that need a running consortium (jobs from submission
//!   to verified result, code redemption node to node).

pub mod bench;
pub mod demo;
pub mod devnet;
pub mod health;
pub mod hints;
pub mod hospitals;

pub use devnet::{Devnet, DevnetOptions};

/// Errors of the devnet, the demo and the end-to-end benchmarks (lowercase, naming what; never
/// a patient's data).
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The client failed.
    #[error(transparent)]
    Client(#[from] medspace_client::ClientError),
    /// The consortium lacks a party.
    #[error(transparent)]
    Consortium(#[from] medspace_consortium::ConsortiumError),
    /// A value does not fit its type.
    #[error(transparent)]
    Type(#[from] medspace_types::TypeError),
    /// The verified state could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] medspace_state::TxError),
    /// A vault failed.
    #[error(transparent)]
    Vault(#[from] medspace_vault::VaultError),
    /// Patient links failed.
    #[error(transparent)]
    Links(#[from] medspace_compute::links::LinkError),
    /// A de-identified release could not be built.
    #[error(transparent)]
    Release(#[from] medspace_compute::release::ReleaseError),
    /// A release specification does not parse.
    #[error(transparent)]
    Deid(#[from] medspace_deid::DeidError),
    /// A vault's catalog entry that does not fit the ledger.
    #[error(transparent)]
    Publish(#[from] medspace_compute::publish::PublishError),
    /// Making or loading the consortium's files failed.
    #[error(transparent)]
    Node(#[from] medspace_chain::node::NodeError),
    /// The TLS client could not be built from the genesis.
    #[error(transparent)]
    Tls(#[from] medspace_chain::tls::TlsError),
    /// A file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON could not be read or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A step failed, with what it was doing.
    #[error("{what}: {error}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        error: String,
    },
    /// An expectation of the story or the benchmark failed.
    #[error("{0}")]
    Failed(String),
}

/// A devnet result.
pub type Result<T, E = DevnetError> = std::result::Result<T, E>;

/// Names what was being done when a step fails.
pub trait Context<T> {
    /// The error, prefixed with `what`.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// The error, prefixed with what `f` says.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| DevnetError::Step {
            what: what.into(),
            error: e.to_string(),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| DevnetError::Step {
            what: f().into(),
            error: e.to_string(),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| DevnetError::Failed(what.into()))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| DevnetError::Failed(f().into()))
    }
}

/// Returns a [`DevnetError::Failed`] with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::DevnetError::Failed(format!($($arg)*)))
    };
}

/// Writes a secret (hex) to a new owner-only file; refuses to overwrite.
pub fn write_secret(out: &std::path::Path, hex_secret: &str) -> Result<()> {
    if out.exists() {
        fail!("refusing to overwrite existing key file {}", out.display());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    std::io::Write::write_all(&mut f, format!("{hex_secret}\n").as_bytes())?;
    Ok(())
}
