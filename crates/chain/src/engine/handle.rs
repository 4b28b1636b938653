//! What a running node offers the rest of the process: the [`Handle`] (submit transactions, read
//! their status and the finalized chain, subscribe to committed blocks, read proven faults),
//! transaction admission, and the [`Finalizer`] through which marshal hands finalized blocks to
//! the node.

use super::{
    config::{BlockFinalization, Marshal, StateSync, SyncedState},
    faults::{Fault, FaultLog},
    state::{Committed, Shared, TxStatus},
};
use crate::{
    Application,
    block::{Block, tx_hash},
    mempool::MempoolError,
};
use bytes::Bytes;
use commonware_actor::Feedback;
use commonware_consensus::{
    Reporter,
    marshal::{Identifier, Update},
    types::Height,
};
use commonware_cryptography::sha256::Digest;
use commonware_utils::sync::Mutex;
use futures::{StreamExt as _, channel::mpsc};
use std::sync::Arc;

/// Why a submitted transaction was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Refused by the application's admission checks.
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// Larger than the block limit for one transaction.
    #[error("transaction too large: size={size} max={max}")]
    TooLarge {
        /// Size of the transaction.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Already finalized.
    #[error("transaction already finalized: height={0}")]
    AlreadyFinalized(u64),
    /// Mempool refused it (duplicate or full).
    #[error(transparent)]
    Mempool(#[from] MempoolError),
}

/// Receives finalized blocks from marshal and forwards them to the finalizer task.
#[derive(Clone)]
pub struct Finalizer {
    sender: mpsc::UnboundedSender<Update<Block>>,
}

impl Finalizer {
    /// A reporter forwarding finalized blocks to `sender` (the finalizer task's queue).
    pub(super) fn new(sender: mpsc::UnboundedSender<Update<Block>>) -> Self {
        Self { sender }
    }
}

impl Reporter for Finalizer {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        if let Update::Block(..) = &activity {
            let _ = self.sender.unbounded_send(activity);
        }
        Feedback::Ok
    }
}

/// Handle to a running node: submit transactions, query status, subscribe to finalized blocks.
pub struct Handle<A: Application> {
    shared: Arc<Mutex<Shared<A>>>,
    marshal: Marshal,
    gossip: Arc<dyn Fn(Bytes) + Send + Sync>,
    max_tx_bytes: usize,
    faults: Arc<Mutex<FaultLog>>,
}

impl<A: Application> Clone for Handle<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            marshal: self.marshal.clone(),
            gossip: self.gossip.clone(),
            max_tx_bytes: self.max_tx_bytes,
            faults: self.faults.clone(),
        }
    }
}

/// Admits transactions to the mempool. The stateless checks (size, decoding, signatures in one
/// batch) run without the node's lock, so that neither consensus nor other submitters wait for
/// signature verification; the lock is taken once for the stateful checks and the inserts.
/// One outcome per transaction, in order; nothing changes for a refused one.
pub(super) fn admit<A: Application>(
    shared: &Mutex<Shared<A>>,
    txs: &[Bytes],
    max: usize,
) -> Vec<Result<[u8; 32], SubmitError>> {
    let ids: Vec<[u8; 32]> = txs.iter().map(|tx| tx_hash(tx)).collect();
    // Transactions already pending here (a peer's copy of one we have) need no checking. The
    // application is cloned (cheap: an application shares its state) so the stateless checks
    // run outside the lock with whatever the application keeps across checks (decompressed
    // keys).
    let (pending, app): (Vec<bool>, A) = {
        let shared = shared.lock();
        (
            ids.iter().map(|id| shared.mempool.contains(id)).collect(),
            shared.app.clone(),
        )
    };
    let mut out: Vec<Option<Result<[u8; 32], SubmitError>>> = txs
        .iter()
        .zip(&ids)
        .zip(&pending)
        .map(|((tx, id), pending)| {
            if tx.len() > max {
                Some(Err(SubmitError::TooLarge {
                    size: tx.len(),
                    max,
                }))
            } else if *pending {
                Some(Err(MempoolError::Duplicate(hex::encode(id)).into()))
            } else {
                None
            }
        })
        .collect();
    let to_check: Vec<Bytes> = txs
        .iter()
        .zip(&out)
        .filter(|(_, o)| o.is_none())
        .map(|(tx, _)| tx.clone())
        .collect();
    let mut prechecked = app.precheck(&to_check).into_iter();
    let mut shared = shared.lock();
    for (tx, slot) in txs.iter().zip(out.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        *slot = Some(match prechecked.next() {
            Some(Ok(())) => admit_prechecked(&mut shared, tx),
            Some(Err(e)) => Err(SubmitError::Rejected(e.to_string())),
            None => Err(SubmitError::Rejected("transaction was not checked".into())),
        });
    }
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Err(SubmitError::Rejected("transaction was not checked".into())))
        })
        .collect()
}

/// The stateful half of admission, under the node's lock.
fn admit_prechecked<A: Application>(
    shared: &mut Shared<A>,
    tx: &Bytes,
) -> Result<[u8; 32], SubmitError> {
    let id = shared
        .app
        .check_prechecked(tx)
        .map_err(|e| SubmitError::Rejected(e.to_string()))?;
    if let Some(TxStatus::Finalized { height, .. }) = shared.status.get(&id) {
        return Err(SubmitError::AlreadyFinalized(*height));
    }
    shared.mempool.insert(id, tx.clone())?;
    shared.status.insert(id, TxStatus::Pending);
    Ok(id)
}

impl<A: Application> Handle<A> {
    /// A handle on `shared` state; `gossip` sends an admitted transaction to the peers.
    pub(super) fn new(
        shared: Arc<Mutex<Shared<A>>>,
        marshal: Marshal,
        gossip: Arc<dyn Fn(Bytes) + Send + Sync>,
        max_tx_bytes: usize,
        faults: Arc<Mutex<FaultLog>>,
    ) -> Self {
        Self {
            shared,
            marshal,
            gossip,
            max_tx_bytes,
            faults,
        }
    }

    /// Admits a transaction (check_tx, size limit, dedup), adds it to the mempool and gossips it
    /// to the other validators. Returns the tx id. Nothing changes on error.
    pub fn submit(&self, tx: Bytes) -> Result<[u8; 32], SubmitError> {
        let id = admit(&self.shared, std::slice::from_ref(&tx), self.max_tx_bytes)
            .pop()
            .unwrap_or_else(|| Err(SubmitError::Rejected("transaction was not checked".into())))?;
        (self.gossip)(tx);
        Ok(id)
    }

    /// [`Handle::submit`] for many transactions at once (a gateway forwarding its clients'
    /// transactions): their signatures are verified in one batch. One outcome per transaction,
    /// in order; the accepted ones are gossiped.
    pub fn submit_many(&self, txs: &[Bytes]) -> Vec<Result<[u8; 32], SubmitError>> {
        let out = admit(&self.shared, txs, self.max_tx_bytes);
        for (tx, o) in txs.iter().zip(&out) {
            if o.is_ok() {
                (self.gossip)(tx.clone());
            }
        }
        out
    }

    /// Largest transaction this node admits.
    pub fn max_tx_bytes(&self) -> usize {
        self.max_tx_bytes
    }

    /// Status of a transaction by id.
    pub fn status(&self, id: &[u8; 32]) -> TxStatus {
        self.shared
            .lock()
            .status
            .get(id)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }

    /// Committed height.
    pub fn height(&self) -> u64 {
        self.shared.lock().committed().0
    }

    /// (digest, root) of the finalized block at `height`, if this node knows it (a node that
    /// started from a checkpoint knows the blocks from the checkpoint's height on).
    pub fn finalized(&self, height: u64) -> Option<(Digest, [u8; 32])> {
        self.shared
            .lock()
            .finalized
            .get(height)
            .map(|(d, _, r)| (*d, *r))
    }

    /// The lowest height [`Handle::finalized_chain`] starts at: 0, or the height of the
    /// checkpoint this node started from.
    pub fn finalized_from(&self) -> u64 {
        self.shared.lock().finalized.first
    }

    /// The finalized (digest, root) pairs this node knows, from [`Handle::finalized_from`] on.
    pub fn finalized_chain(&self) -> Vec<(Digest, [u8; 32])> {
        self.shared
            .lock()
            .finalized
            .blocks
            .iter()
            .map(|(d, _, r)| (*d, *r))
            .collect()
    }

    /// Number of pending transactions.
    pub fn mempool_len(&self) -> usize {
        self.shared.lock().mempool.len()
    }

    /// Reason the node stopped committing, if it did (a finalized block failed re-execution).
    pub fn halted(&self) -> Option<String> {
        self.shared.lock().halted.clone()
    }

    /// The committed state as a checkpoint of the committed height (what a follower starts
    /// from instead of replaying the chain), if the application keeps them.
    pub fn checkpoint(&self) -> Option<Vec<u8>> {
        let (app, height, time) = {
            let shared = self.shared.lock();
            let (height, _, time) = shared.committed();
            (shared.app.clone(), height, time)
        };
        // Encoded outside the lock, on an O(1) clone of the committed application.
        app.checkpoint(height, time)
    }

    /// [`Handle::checkpoint`] written to `out` as it is encoded
    /// ([`Application::write_checkpoint`]).
    pub fn write_checkpoint(&self, out: &mut dyn std::io::Write) -> Option<std::io::Result<u64>> {
        let (app, height, time) = {
            let shared = self.shared.lock();
            let (height, _, time) = shared.committed();
            (shared.app.clone(), height, time)
        };
        app.write_checkpoint(height, time, out)
    }

    /// What a validator joining by state sync starts from
    /// ([`super::Config::state_sync`]): a checkpoint of the committed state, with its block's
    /// header and finality certificate. `None` when the application keeps no checkpoints or
    /// this node stores no certificate of its committed height (a block finalized through a
    /// later one's certificate); a later call may then succeed.
    pub async fn state_sync(&self) -> Option<StateSync> {
        let (app, height, time) = {
            let shared = self.shared.lock();
            let (height, _, time) = shared.committed();
            (shared.app.clone(), height, time)
        };
        if height == 0 {
            return None;
        }
        let (block, finalization) = self.block(height).await?;
        let finalization = finalization?;
        let checkpoint = app.checkpoint(height, time)?;
        Some(StateSync {
            checkpoint: SyncedState::Bytes(checkpoint),
            header: block.header,
            finalization,
        })
    }

    /// Committed application state (read-only use).
    pub fn with_app<T>(&self, f: impl FnOnce(&A) -> T) -> T {
        f(&self.shared.lock().app)
    }

    /// Proven validator faults this node has seen since it started, oldest first (at most
    /// [`super::MAX_RECORDED_FAULTS`], one per kind, validator and round).
    pub fn faults(&self) -> Vec<Fault> {
        self.faults.lock().recent()
    }

    /// Number of distinct proven faults seen since start (keeps counting past
    /// [`super::MAX_RECORDED_FAULTS`]).
    pub fn fault_count(&self) -> u64 {
        self.faults.lock().total()
    }

    /// Subscribes to blocks committed from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Committed> {
        let (tx, rx) = mpsc::unbounded();
        self.shared.lock().subscribers.push(tx);
        rx
    }

    /// Waits until the committed height is at least `height`.
    pub async fn wait_for_height(&self, height: u64) {
        let mut sub = self.subscribe();
        while self.height() < height {
            if sub.next().await.is_none() {
                return;
            }
        }
    }

    /// A stored finalized block and its finalization certificate.
    pub async fn block(&self, height: u64) -> Option<(Block, Option<BlockFinalization>)> {
        let block = self
            .marshal
            .get_block(Identifier::Height(Height::new(height)))
            .await?;
        let fin = self.marshal.get_finalization(Height::new(height)).await;
        Some((block.inner().clone(), fin))
    }
}
