//! medspace-types: the shared vocabulary of medspace.
//!
//! Identifiers (member, user, patient pseudonym, dataset, study, contract, job, grant, access,
//! proposal), roles, privacy levels L1–L4, purposes and sharing modes of DESIGN §3, the consortium
//! policy, catalog descriptions, every transaction payload of DESIGN §4, and the signed
//! transaction envelope (ed25519 from commonware-cryptography).
//!
//! The encoding is canonical and versioned (commonware-codec): one byte string per value, every
//! length bounded in the type that decodes it, trailing bytes rejected. Nothing here does I/O or
//! holds patient data; the state machine (`medspace-state`) gives these types their rules.
//!
//! Module map: [`codec`] (bounded [`Text`], [`List`], [`Blob`] and the encoding macros),
//! [`ids`] (identifiers and [`struct@Hash`]), [`keys`] (ed25519 keys and signatures),
//! [`domain`] (roles, levels, purposes, members, the policy, the catalog), [`query`] (the
//! federated query specification: parsing, what it reads, its codes and level), [`query::model`] (its
//! regressions and survival curves), [`tx`] (payloads,
//! [`TxBody`], [`SignedTx`]), [`genesis`] (the first state's description). Every decoder (each
//! wire type's `Decode`, [`SignedTx::from_bytes`], the text and JSON forms) is fuzzed with
//! arbitrary and mutated input in `tests/decoders.rs`: it refuses with a typed error or returns
//! a value that re-encodes to the same bytes, and never panics.

pub mod cdm;
pub mod classification;
pub mod codec;
pub mod domain;
pub mod genesis;
pub mod ids;
pub mod keys;
pub mod query;
pub mod tx;

pub use codec::{Blob, List, Text};
pub use domain::*;
pub use genesis::{Genesis, GenesisMember, GenesisUser};
pub use ids::{
    AccessId, ContractId, DatasetId, GrantId, Hash, JobId, MemberId, Name, PatientId, ProposalId,
    StudyId, UserId,
};
pub use keys::{Keypair, PublicKey, Signature};
pub use tx::*;

/// Errors of building or decoding medspace values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A value is longer than its type allows.
    #[error("{what} too long: len={len} max={max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A name with characters outside `[a-z0-9._-]`, empty, or too long.
    #[error(
        "invalid name `{value}`: expected 1-64 characters of [a-z0-9._-] starting with a letter or digit"
    )]
    BadName {
        /// The offending name.
        value: String,
    },
    /// An unknown enum value in text form.
    #[error("unknown {what} `{value}`")]
    Unknown {
        /// Which enum.
        what: &'static str,
        /// The offending text.
        value: String,
    },
    /// A malformed value in text form.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Bytes that do not decode.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
}
