//! medspace-state: the deterministic ledger state machine.
//!
//! `State::apply(tx, block) -> Result<Receipt, TxError>` carries out every transaction kind of
//! DESIGN §4 — governance, catalog, consent, grants, data-use contracts, jobs and results,
//! record-level access audit, settlement — with its authorization rules (membership, role,
//! nonce, contract state, expiry, scope, budget, consent). It reads no clock but the block's
//! time, no randomness, no floating point: the same transactions give the same state root on
//! every machine.
//!
//! The state lives in an authenticated, persistent Merkle trie ([`trie`]): the root commits to
//! every record, any record comes with an inclusion proof checkable against the root alone, and
//! snapshots are O(1), which makes a refused transaction a no-op by construction and lets the
//! chain execute blocks speculatively on unfinalized parents.
//!
//! Module map: [`records`] (what is stored, under which keys), [`policy`] (the authorization
//! decisions, pure), [`apply`] (the transaction rules: the envelope and dispatch in `apply`
//! itself, then one file per domain — `governance`, `patients`, `grants`, `catalog`,
//! `contracts`, `jobs`, `access`, `value` — and `signatures`, the batch signature check),
//! [`query`] (reads for the API, the compute worker and the patient's log), [`trie`] (the
//! authenticated map).
//!
//! Signature checks decompress signer keys through a [`KeyCache`]: a memo owned by each
//! [`State`] (shared by its clones, never part of the root) or by the caller of
//! [`verify_signatures_with`]; no cache is process-global.

pub mod apply;
pub mod checkpoint;
pub mod error;
mod key_cache;
pub mod policy;
pub mod query;
pub mod records;
mod state;
pub mod trie;

pub use apply::{
    CONSENT_BATCH, Created, Event, KeyCache, Receipt, person_epsilon, split_fee, verify_signatures,
    verify_signatures_with,
};
pub use error::{GenesisError, TxError};
pub use query::{CountedJob, Proven};
pub use state::{BlockContext, State};
