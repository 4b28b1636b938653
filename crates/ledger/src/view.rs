//! [`Ledger`]: what a node's services (the read API, the compute worker, record sharing) know
//! of the ledger — the state at the last finalized block with what anchors its root, a mempool
//! to submit to, and the fate of submitted transactions. A validator's chain handle, an
//! observer's follower and the simulation's in-process ledger all implement it.

use crate::LedgerApp;
use crate::follow::{Follower, Outcome};
use medspace_chain::engine::{Handle, SubmitError as ChainSubmitError, TxStatus as ChainTxStatus};
use medspace_chain::mempool::MempoolError;
use medspace_state::{Receipt, State};
use medspace_types::{Hash, SignedTx};
use serde::Serialize;
use std::sync::{Arc, PoisonError, RwLock};

/// How the finality of an anchored block was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finality {
    /// This validator stored the block's finality certificate with it.
    Certificate,
    /// This observer verified the certificate against the genesis validators.
    VerifiedByObserver,
}

/// What commits to the state a node answers from: the block (height, digest, state root) and
/// how its finality is known. Serialized as the API has always shown it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The block's height.
    pub height: u64,
    /// The block's digest (hex).
    pub digest: String,
    /// The state root in its header.
    pub state_root: Hash,
    /// How finality is known.
    pub finality: Finality,
}

impl Serialize for Anchor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let finality = match self.finality {
            Finality::Certificate => {
                "certificate stored with the block: GET /v1/blocks/{height}/header (any registered key)"
            }
            Finality::VerifiedByObserver => {
                "verified by this observer against the genesis validators; certificate in GET /v1/blocks/{height}/header at any validator"
            }
        };
        serde_json::json!({
            "block": { "height": self.height, "digest": self.digest, "state_root": self.state_root },
            "finality": finality,
        })
        .serialize(s)
    }
}

/// The state a node answers from.
#[derive(Clone)]
pub struct Snapshot {
    /// The state after the last finalized block.
    pub state: State,
    /// That block's height.
    pub height: u64,
    /// That block's time (ms since the epoch; 0 when the node does not know it).
    pub time_ms: u64,
    /// What commits to the state root (none at genesis).
    pub anchor: Option<Anchor>,
}

/// Where a submitted transaction stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// Never seen (or forgotten).
    Unknown,
    /// In the mempool.
    Pending,
    /// In a finalized block and applied.
    Finalized {
        /// The block.
        height: u64,
        /// The receipt (what it created, what followed), when the node kept it.
        receipt: Option<Receipt>,
    },
    /// In a finalized block, refused by the state machine (changing nothing).
    Refused {
        /// The block.
        height: u64,
        /// Why.
        reason: String,
    },
    /// Refused by the node's proposer: it will never be in a block.
    Dropped {
        /// Why.
        reason: String,
    },
}

/// Why a transaction was not admitted to the mempool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// It can never be valid (bad signature, wrong chain, replayed nonce, too large...).
    #[error("{0}")]
    Invalid(String),
    /// Already in the mempool or the chain.
    #[error("duplicate transaction id={0}")]
    Duplicate(Hash),
    /// The mempool is full: try again later.
    #[error("mempool full: try again later")]
    Full,
    /// This node takes no transactions (an observer).
    #[error("this node is an observer and takes no transactions: submit to a validator")]
    ReadOnly,
}

/// What a node's services know of the ledger.
pub trait Ledger: Send + Sync + 'static {
    /// The state at the last finalized block.
    fn snapshot(&self) -> Snapshot;
    /// Admits a transaction to the mempool; its id.
    fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError>;
    /// A transaction's status.
    fn tx_status(&self, id: &Hash) -> TxStatus;
}

impl Ledger for Handle<LedgerApp> {
    fn snapshot(&self) -> Snapshot {
        let (state, height) = self.with_app(|a| (a.state().clone(), a.height()));
        let anchor = self.finalized(height).map(|(digest, root)| Anchor {
            height,
            digest: digest.to_string(),
            state_root: Hash(root),
            finality: Finality::Certificate,
        });
        Snapshot {
            state,
            height,
            time_ms: 0,
            anchor: anchor.filter(|_| height > 0),
        }
    }

    fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let id = tx.id();
        Handle::submit(self, tx.to_bytes())
            .map(Hash)
            .map_err(|e| match e {
                ChainSubmitError::Mempool(MempoolError::Full { .. }) => SubmitError::Full,
                ChainSubmitError::Mempool(MempoolError::Duplicate(_)) => SubmitError::Duplicate(id),
                other => SubmitError::Invalid(other.to_string()),
            })
    }

    fn tx_status(&self, id: &Hash) -> TxStatus {
        match self.status(&id.0) {
            ChainTxStatus::Pending => TxStatus::Pending,
            ChainTxStatus::Finalized {
                height,
                outcome: Ok(()),
            } => TxStatus::Finalized {
                height,
                receipt: None,
            },
            ChainTxStatus::Finalized {
                height,
                outcome: Err(reason),
            } => TxStatus::Refused { height, reason },
            ChainTxStatus::Dropped(reason) => TxStatus::Dropped { reason },
            ChainTxStatus::Unknown => TxStatus::Unknown,
        }
    }
}

/// An observer's view: the state its [`Follower`] verified. It takes no transactions.
#[derive(Clone)]
pub struct FollowerView {
    follower: Arc<RwLock<Follower>>,
}

impl FollowerView {
    /// A view of a shared follower.
    pub fn new(follower: Arc<RwLock<Follower>>) -> Self {
        Self { follower }
    }
}

impl Ledger for FollowerView {
    fn snapshot(&self) -> Snapshot {
        let f = self.follower.read().unwrap_or_else(PoisonError::into_inner);
        let height = f.height();
        let anchor = (height > 0).then(|| Anchor {
            height,
            digest: f.last_digest(),
            state_root: f.state().root(),
            finality: Finality::VerifiedByObserver,
        });
        Snapshot {
            state: f.state().clone(),
            height,
            time_ms: f.time_ms(),
            anchor,
        }
    }

    fn submit(&self, _tx: SignedTx) -> Result<Hash, SubmitError> {
        Err(SubmitError::ReadOnly)
    }

    fn tx_status(&self, id: &Hash) -> TxStatus {
        let f = self.follower.read().unwrap_or_else(PoisonError::into_inner);
        match f.outcome(&id.0) {
            Some(Outcome {
                height,
                result: Ok(r),
            }) => TxStatus::Finalized {
                height: *height,
                receipt: Some(r.clone()),
            },
            Some(Outcome {
                height,
                result: Err(reason),
            }) => TxStatus::Refused {
                height: *height,
                reason: reason.to_string(),
            },
            None => TxStatus::Unknown,
        }
    }
}
