//! The state a node's actor and its handle share: the committed chain, executed but not yet
//! finalized blocks, the mempool, what this node knows of each transaction, and the subscribers
//! to committed blocks.

use crate::{
    Application,
    block::Block,
    mempool::{Mempool, MempoolLimits},
    recent::Recent,
};
use commonware_cryptography::Digestible as _;
use commonware_cryptography::sha256::Digest;
use futures::channel::mpsc;
use std::{collections::HashMap, sync::Arc};

/// How many transaction statuses a node remembers (about 40 MB at most).
pub const STATUSES_KEPT: usize = 1 << 18;

/// Status of a transaction as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Waiting in the mempool.
    Pending,
    /// In a finalized block: `outcome` is `Ok` or the refusal reason from the application.
    Finalized {
        /// Block height.
        height: u64,
        /// Application outcome.
        outcome: Result<(), String>,
    },
    /// Dropped by this node's proposer because the application refused it.
    Dropped(String),
    /// Not known.
    Unknown,
}

/// A finalized block as committed by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Height.
    pub height: u64,
    /// Block digest.
    pub digest: Digest,
    /// State root after the block (equals the header's root).
    pub root: [u8; 32],
    /// Number of transactions in the block.
    pub txs: usize,
    /// Ids (SHA-256) of the block's transactions, in order.
    pub tx_ids: Arc<Vec<[u8; 32]>>,
}

/// A block this node executed and that is not finalized yet: what committing it needs.
#[derive(Clone)]
pub(super) struct Executed<D> {
    pub(super) height: u64,
    pub(super) parent: Digest,
    pub(super) time_ms: u64,
    pub(super) diff: Arc<D>,
    pub(super) tx_ids: Arc<Vec<[u8; 32]>>,
    pub(super) outcomes: Arc<Vec<Result<(), String>>>,
}

/// Executed-but-unfinalized ancestry from the committed tip to some block.
pub(super) struct PendingChain<D> {
    /// Diffs, oldest first.
    pub(super) diffs: Vec<Arc<D>>,
    /// Digests of the same blocks, oldest first.
    pub(super) digests: Vec<Digest>,
    /// Height of the newest block (the committed height when empty).
    pub(super) height: u64,
    /// Time of the newest block.
    pub(super) time_ms: u64,
}

/// Everything a node's actor and handle share, behind one lock.
pub(super) struct Shared<A: Application> {
    /// The committed application state.
    pub(super) app: A,
    /// (digest, time, root) of each finalized block this node knows, from genesis or, after a
    /// start from a checkpoint, from the checkpoint's height.
    pub(super) finalized: FinalizedChain,
    /// Executed blocks that are not finalized yet, by digest.
    pub(super) pending: HashMap<Digest, Executed<A::Diff>>,
    /// Admitted transactions waiting for a block.
    pub(super) mempool: Mempool,
    /// What this node knows of each transaction, by id.
    /// Bounded: the oldest are forgotten first ([`STATUSES_KEPT`]); a forgotten one reads as
    /// `Unknown` and a client falls back on the blocks it verifies.
    pub(super) status: Recent<TxStatus>,
    /// Receivers of committed blocks (dropped ones are removed on the next commit).
    pub(super) subscribers: Vec<mpsc::UnboundedSender<Committed>>,
    /// Why this node stopped committing, if it did.
    pub(super) halted: Option<String>,
}

impl<A: Application> Shared<A> {
    /// State at genesis: `app` holds the genesis state and `genesis` is the genesis block.
    pub(super) fn new(app: A, genesis: &Block, mempool_limits: MempoolLimits) -> Self {
        Self {
            app,
            finalized: FinalizedChain {
                first: 0,
                blocks: vec![(genesis.digest(), 0, genesis.header.state_root)],
            },
            pending: HashMap::new(),
            mempool: Mempool::new(mempool_limits),
            status: Recent::new(STATUSES_KEPT),
            subscribers: Vec::new(),
            halted: None,
        }
    }

    /// The committed tip: height, digest and time.
    pub(super) fn committed(&self) -> (u64, Digest, u64) {
        let h = self.finalized.tip();
        match self.finalized.blocks.last() {
            Some((d, t, _)) => (h, *d, *t),
            None => (0, Digest::from([0u8; 32]), 0),
        }
    }

    /// Pending diffs from the committed tip up to and including `digest` (oldest first), or
    /// `None` when `digest` does not descend from the committed tip through executed blocks.
    pub(super) fn chain_to(&self, mut digest: Digest) -> Option<PendingChain<A::Diff>> {
        let (_, tip, tip_time) = self.committed();
        let mut diffs = Vec::new();
        let mut digests = Vec::new();
        let mut top: Option<(u64, u64)> = None;
        loop {
            if digest == tip {
                diffs.reverse();
                digests.reverse();
                let (h, t) = top.unwrap_or((self.finalized.tip(), tip_time));
                return Some(PendingChain {
                    diffs,
                    digests,
                    height: h,
                    time_ms: t,
                });
            }
            let e = self.pending.get(&digest)?;
            if top.is_none() {
                top = Some((e.height, e.time_ms));
            }
            diffs.push(e.diff.clone());
            digests.push(digest);
            digest = e.parent;
        }
    }

    /// Digest of the finalized block at `height`.
    pub(super) fn finalized_at(&self, height: u64) -> Option<Digest> {
        self.finalized.get(height).map(|(d, _, _)| *d)
    }
}

/// The finalized blocks a node knows: (digest, time, root) for each height from `first` on.
/// `first` is 0 (genesis) for a node that replayed the chain, or the height of the checkpoint
/// it started from: what lies below was never read, so a restart costs nothing per old block.
pub(super) struct FinalizedChain {
    pub(super) first: u64,
    pub(super) blocks: Vec<(Digest, u64, [u8; 32])>,
}

impl FinalizedChain {
    /// The chain starting at one known block (a checkpoint's).
    pub(super) fn starting_at(height: u64, block: (Digest, u64, [u8; 32])) -> Self {
        Self {
            first: height,
            blocks: vec![block],
        }
    }

    /// Height of the last finalized block.
    pub(super) fn tip(&self) -> u64 {
        // INVARIANT: `blocks` is never empty (it starts with genesis or the checkpoint's block).
        self.first + (self.blocks.len().saturating_sub(1) as u64)
    }

    /// The block at `height`, if known.
    pub(super) fn get(&self, height: u64) -> Option<&(Digest, u64, [u8; 32])> {
        let offset = usize::try_from(height.checked_sub(self.first)?).ok()?;
        self.blocks.get(offset)
    }

    /// Appends the block after the tip.
    pub(super) fn push(&mut self, block: (Digest, u64, [u8; 32])) {
        self.blocks.push(block);
    }
}
