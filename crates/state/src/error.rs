//! Why a transaction was refused.

use medspace_types::{Level, Role};

/// A refused transaction. Every refusal leaves the state, and its root, exactly as before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The transaction is for another chain.
    #[error("wrong chain id: expected=`{expected}` got=`{got}`")]
    ChainId {
        /// This chain.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The signature does not verify.
    #[error("bad signature: signer={signer}")]
    BadSignature {
        /// The claimed signer.
        signer: String,
    },
    /// The nonce is not the signer's next one (a replay, or out of order).
    #[error("bad nonce: signer={signer} expected={expected} got={got}")]
    Nonce {
        /// The signer.
        signer: String,
        /// The next nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The signing key belongs to nobody on the ledger.
    #[error("unknown signer: key={key}")]
    UnknownSigner {
        /// The key.
        key: String,
    },
    /// The signing key was replaced by a rotation.
    #[error("retired key: key={key}")]
    RetiredKey {
        /// The key.
        key: String,
    },
    /// The signer's kind cannot do this (e.g. a patient approving a contract).
    #[error("{kind} must be signed by {need}, not by {have}")]
    WrongSigner {
        /// The transaction kind.
        kind: &'static str,
        /// Who may sign it.
        need: &'static str,
        /// Who signed it.
        have: String,
    },
    /// The signer's role does not allow this.
    #[error("role not allowed: kind={kind} role={have} allowed={need}")]
    WrongRole {
        /// The transaction kind.
        kind: &'static str,
        /// The signer's role.
        have: Role,
        /// The roles that may.
        need: String,
    },
    /// The institution is not (or no longer) a member.
    #[error("not a member: member=`{member}`")]
    NotMember {
        /// The institution.
        member: String,
    },
    /// A referenced record does not exist.
    #[error("{what} not found: id={id}")]
    NotFound {
        /// What kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A record being created exists already.
    #[error("{what} already exists: id={id}")]
    AlreadyExists {
        /// What kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Something expired at block time.
    #[error("{what} expired: id={id} expiry_ms={expiry_ms} now_ms={now_ms}")]
    Expired {
        /// What.
        what: &'static str,
        /// Its id.
        id: String,
        /// Its expiry.
        expiry_ms: u64,
        /// Block time.
        now_ms: u64,
    },
    /// A contract in the wrong state for this operation.
    #[error("contract {id} is {status}, not {need}")]
    ContractState {
        /// The contract.
        id: String,
        /// Its state.
        status: &'static str,
        /// The state required.
        need: &'static str,
    },
    /// The differential-privacy budget would be exceeded.
    #[error(
        "epsilon budget exceeded: contract={contract} budget={budget} spent={spent} reserved={reserved} requested={requested} (micro-epsilon)"
    )]
    BudgetExceeded {
        /// The contract.
        contract: String,
        /// Its budget.
        budget: u64,
        /// Spent so far.
        spent: u64,
        /// Reserved by running jobs.
        reserved: u64,
        /// Asked for.
        requested: u64,
    },
    /// A dataset's lifetime differential-privacy budget (over every contract) would be
    /// exceeded.
    #[error(
        "dataset epsilon budget exceeded: dataset={dataset} budget={budget} spent={spent} reserved={reserved} requested={requested} (micro-epsilon)"
    )]
    DatasetBudgetExceeded {
        /// The dataset.
        dataset: String,
        /// Its lifetime budget (policy).
        budget: u64,
        /// Spent so far.
        spent: u64,
        /// Reserved by running jobs.
        reserved: u64,
        /// Asked for.
        requested: u64,
    },
    /// The patient's consent does not allow this use.
    #[error("no consent: patient={patient} purpose={purpose} level={level}")]
    NoConsent {
        /// The patient's pseudonym.
        patient: String,
        /// The purpose.
        purpose: String,
        /// The level.
        level: Level,
    },
    /// Outside what a contract or grant covers.
    #[error("out of scope: {reason}")]
    OutOfScope {
        /// What is out of scope.
        reason: String,
    },
    /// The signer may not do this here.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why.
        reason: String,
    },
    /// A malformed field value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Not enough credits.
    #[error("insufficient balance: member=`{member}` balance={balance} needed={needed}")]
    InsufficientBalance {
        /// The member.
        member: String,
        /// Its balance.
        balance: u64,
        /// What is needed.
        needed: u64,
    },
    /// The state holds a record that does not decode (a corrupted store).
    #[error("corrupt state record: table={table}")]
    Corrupt {
        /// The table tag.
        table: u8,
    },
    /// The node could not read its own state store (a disk error, or a file altered behind its
    /// back). Not a verdict on the transaction: the node's root then differs from the
    /// certified one, and it halts at commit rather than diverge.
    #[error("state store unreadable: {0}")]
    Store(String),
}

impl From<crate::trie::TrieError> for TxError {
    fn from(e: crate::trie::TrieError) -> Self {
        TxError::Store(e.to_string())
    }
}

/// Errors building the genesis state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A genesis entry is invalid.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}
