//! Typed errors of the vault. Messages name files, positions, resource types and fields,
//! never patient data.

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A file or directory of the vault or of the input could not be read or written.
    #[error("i/o failed: path={path} error={source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The vault's own files are not as this code wrote them.
    #[error("vault state is corrupt: path={path} reason={reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Writing or reading a Parquet / Arrow table failed.
    #[error("table storage failed: table={table} error={reason}")]
    Storage {
        /// CDM table name.
        table: String,
        /// What went wrong.
        reason: String,
    },
    /// DataFusion could not plan or run a query.
    #[error("query failed: error={0}")]
    Query(String),
    /// Another process holds the vault's write lock.
    #[error("vault is locked by another process: path={0}")]
    Locked(PathBuf),
    /// No stored patient has this id, FHIR id or pseudonym.
    #[error("patient not found: the given id matches no person_id, Patient.id or pseudonym")]
    PatientNotFound,
    /// The vocabulary files could not be parsed.
    #[error("vocabulary cannot be loaded: path={path} reason={reason}")]
    Vocabulary {
        /// The CSV file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The vault's passphrase is wrong (or its key file was altered); nothing was changed.
    #[error("wrong vault passphrase, or the vault key file was altered: path={0}")]
    WrongPassphrase(PathBuf),
    /// The keys given do not belong to this vault.
    #[error("the keys given are not this vault's: path={0}")]
    WrongKey(PathBuf),
    /// A sealed file failed authentication: altered, truncated, or moved from elsewhere.
    #[error("vault file failed authentication (altered, truncated or moved): path={0}")]
    Tampered(PathBuf),
    /// The vault has no key file yet.
    #[error("vault has no key file: path={0}")]
    NoKey(PathBuf),
    /// The vault was written unencrypted by an earlier version.
    #[error(
        "vault is not encrypted (written by an earlier version); convert it with `medspace vault encrypt`: path={0}"
    )]
    NotEncrypted(PathBuf),
    /// No passphrase was given for a vault.
    #[error("no vault passphrase: set {env} or name a passphrase file")]
    NoPassphrase {
        /// The environment variable consulted.
        env: &'static str,
    },
    /// An ingest named a source that is not a valid source name.
    #[error("invalid source name: use 1 to 64 of A-Z a-z 0-9 . _ -")]
    InvalidSource,
    /// A test hook aborted the ingest mid-batch, as a crash would (nothing is committed).
    #[error("injected fault: ingest aborted after resources={0} (test hook)")]
    InjectedFault(u64),
}

impl VaultError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VaultError {
        let path = path.into();
        move |source| VaultError::Io { path, source }
    }

    pub(crate) fn storage(table: &str) -> impl FnOnce(String) -> VaultError + '_ {
        move |reason| VaultError::Storage {
            table: table.to_string(),
            reason,
        }
    }
}

impl From<datafusion::error::DataFusionError> for VaultError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        VaultError::Query(e.to_string())
    }
}
