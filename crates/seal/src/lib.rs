//! Encryption at rest for medspace's files: secrets sealed under a passphrase, and files of any
//! size sealed under a key.
//!
//! * [`kdf`] — a [`Passphrase`] and where it comes from (a file named in a config, or an
//!   environment variable), and argon2id ([`KdfParams`]) turning it into a key-encryption key.
//!   The parameters travel with what they sealed, so they can be raised later.
//! * [`keyfile`] — the sealed key file ([`SealedKey`]): a small versioned JSON document holding a
//!   secret (a ledger key, an X25519 secret, a vault's data keys) sealed with
//!   XChaCha20-Poly1305 under an argon2id key, its role and parameters bound as associated
//!   data; reading a key file that may be sealed or plain ([`read_secret`]); re-wrapping under a
//!   new passphrase.
//! * [`file`] — owner-only files written atomically ([`write_private`]).
//! * [`stream`] — sealed files of any size: the STREAM construction over XChaCha20-Poly1305 in
//!   64 KiB chunks (a random nonce prefix per file, the file's role as associated data of every
//!   chunk, the last chunk marked so truncation is detected), as a [`std::io::Write`] and a
//!   [`std::io::Read`], and for whole byte strings; keys derived from a master key by HKDF
//!   ([`DataKey`]).
//!
//! Every primitive is RustCrypto's (argon2, chacha20poly1305, aead-stream, hkdf); this crate only
//! frames them: file headers, associated data, key derivation labels and typed errors. Failures
//! never say more than which check failed: no secret or plaintext appears in an error.

pub mod file;
pub mod kdf;
pub mod keyfile;
pub mod stream;

pub use file::write_private;
pub use kdf::{KdfParams, Passphrase, PassphraseSource};
pub use keyfile::{KeyFileKind, SealedKey, Unlock, read_secret};
pub use stream::{DataKey, OpenReader, SealWriter, open_bytes, seal_bytes};

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A sealed key did not open: the passphrase is wrong or the key file was altered (the two
    /// cannot be told apart).
    #[error("wrong passphrase, or the key file was altered")]
    WrongPassphrase,
    /// Sealed data did not authenticate: it was altered, truncated, moved to another role, or
    /// sealed under another key.
    #[error("sealed data failed authentication (altered, truncated, or another key)")]
    Tampered,
    /// Not a sealed file of a version this code reads.
    #[error("not a sealed file this version reads: {0}")]
    Format(String),
    /// A sealed key file holds a secret for another purpose.
    #[error("key file is for role={found}, expected role={expected}")]
    Role {
        /// The role the caller asked for.
        expected: String,
        /// The role the file names.
        found: String,
    },
    /// The key file is plain (unencrypted) and plain key files are not allowed here.
    #[error("key file is not encrypted and plain key files are not allowed: {0}")]
    PlainRefused(String),
    /// A passphrase file that others than its owner may read or write.
    #[error("passphrase file is readable or writable by others than its owner (chmod 600): {0}")]
    Exposed(String),
    /// A sealed key file was found but no passphrase was given.
    #[error("key file is encrypted and no passphrase was given: {0}")]
    NoPassphrase(String),
    /// Argon2 parameters out of range (or argon2 failed).
    #[error("key derivation: {0}")]
    Kdf(String),
    /// A file could not be read or written.
    #[error("i/o failed: path={path} error={source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl SealError {
    /// The sealing error carried inside an I/O error raised by [`OpenReader`] or
    /// [`SealWriter`] (they must speak `std::io::Error` to sit under other readers).
    pub fn in_io(e: &std::io::Error) -> Option<&SealError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<SealError>())
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SealError + '_ {
        move |source| SealError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
