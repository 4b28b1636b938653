//! The consensus engine around an [`Application`]: simplex + marshal + block/tx gossip.
//!
//! Layout per validator:
//! - simplex (votes, certificates, resolver channels) drives agreement on block digests;
//! - marshal's [`Inline`] wrapper is simplex's automaton/relay/reporter: it broadcasts full
//!   blocks through `buffered` broadcast, fetches missing blocks over the backfill channel, and
//!   verifies each proposal with our [`Node`] (re-execution) before voting;
//! - marshal stores finalized blocks and finalization certificates in `immutable` archives and
//!   hands them to the finalizer in height order, at least once;
//! - the finalizer commits each finalized block's diff exactly once (duplicates are skipped by
//!   height), updates tx statuses and the mempool, then acknowledges the block to marshal;
//! - transactions submitted locally are admitted ([`Application::precheck`], signatures in
//!   batches and outside the node's lock, then [`Application::check_prechecked`]) and gossiped to
//!   all peers over their own channel;
//! - simplex's fault evidence (two conflicting signed votes from one validator in one view) is
//!   verified, logged, counted and kept in a bounded [`Fault`] log readable from the [`Handle`].
//!   Simplex itself blocks the offending peer through the configured p2p [`Blocker`].

use crate::{
    Application,
    block::{Block, BlockLimits, tx_hash},
    mempool::{Mempool, MempoolError, MempoolLimits},
};
use bytes::Bytes;
use commonware_actor::Feedback;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Epochable as _, Heightable as _, Reporter, Viewable as _,
    marshal::{
        self, Identifier, Update,
        ancestry::Ancestry,
        core::{Actor as MarshalActor, Mailbox as MarshalMailbox},
        resolver::p2p as marshal_resolver,
        standard::{Inline, Standard},
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
        types::{Activity, Attributable as _, Context as SimplexContext, Finalization},
    },
    types::{Epoch, FixedEpocher, Height, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible as _, Sha256, Signer as _,
    certificate::{ConstantProvider, Scheme as _, Verifier as _},
    ed25519,
    sha256::Digest,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{Acknowledgement as _, NZU16, NZU64, NZUsize, ordered::Set, sync::Mutex};
use futures::{StreamExt as _, channel::mpsc};
use rand_core::CryptoRng;
use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};
use tracing::{debug, error, info, warn};

/// Signing scheme of the consortium: ed25519 multi-signature certificates.
pub type Scheme = simplex::scheme::ed25519::Scheme;
/// Validator identity.
pub type PublicKey = ed25519::PublicKey;
/// Marshal mailbox for our block type.
pub type Marshal = MarshalMailbox<Scheme, Standard<Block>>;
/// A finalization certificate over a block digest.
pub type BlockFinalization = Finalization<Scheme, Digest>;

/// Epoch length: the validator set is fixed, so one epoch covers the whole chain.
const EPOCH_LENGTH: u64 = u64::MAX / 2;

/// How many proven faults a node keeps (the oldest are dropped first; the count keeps growing).
pub const MAX_RECORDED_FAULTS: usize = 1024;

/// Errors starting or using the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// This node's key is not in the validator set.
    #[error("signing key is not a validator: public_key={0}")]
    NotValidator(String),
    /// The validator set is empty or has duplicates.
    #[error("invalid validator set: {0}")]
    Validators(String),
    /// A storage archive failed to open.
    #[error("storage error: partition={partition} error={error}")]
    Storage {
        /// Partition name.
        partition: String,
        /// Underlying error.
        error: String,
    },
    /// Replaying finalized blocks on start failed.
    #[error("replay failed at height={height}: {reason}")]
    Replay {
        /// First height that could not be replayed.
        height: u64,
        /// Why.
        reason: String,
    },
}

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

/// What a validator provably did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Two notarize votes for different proposals in the same view.
    ConflictingNotarize,
    /// Two finalize votes for different proposals in the same view.
    ConflictingFinalize,
    /// A nullify vote and a finalize vote in the same view.
    NullifyFinalize,
}

impl FaultKind {
    /// Stable lowercase name (logs, metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConflictingNotarize => "conflicting_notarize",
            Self::ConflictingFinalize => "conflicting_finalize",
            Self::NullifyFinalize => "nullify_finalize",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consensus fault proven by two signed votes of the same validator that contradict each
/// other (both signatures verified by this node before recording).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What the validator did.
    pub kind: FaultKind,
    /// The offending validator.
    pub validator: PublicKey,
    /// Consensus epoch of the conflicting votes.
    pub epoch: u64,
    /// Consensus view of the conflicting votes.
    pub view: u64,
    /// The evidence: simplex's encoded `Activity` holding both votes, verifiable by anyone who
    /// knows the validator set and the chain id.
    pub evidence: Bytes,
}

/// Proven faults seen by this node: the most recent ones and a running total.
#[derive(Default)]
struct FaultLog {
    recent: VecDeque<Fault>,
    total: u64,
}

impl FaultLog {
    /// Records a fault unless the same (kind, validator, round) is already recorded. Returns
    /// whether it was new.
    fn record(&mut self, fault: Fault) -> bool {
        let seen = self.recent.iter().any(|f| {
            f.kind == fault.kind
                && f.validator == fault.validator
                && f.epoch == fault.epoch
                && f.view == fault.view
        });
        if seen {
            return false;
        }
        if self.recent.len() >= MAX_RECORDED_FAULTS {
            self.recent.pop_front();
        }
        self.recent.push_back(fault);
        self.total = self.total.saturating_add(1);
        true
    }
}

/// Simplex reporter: forwards every activity to marshal (through [`Inline`]) and records the
/// fault evidence simplex produces, after verifying both of its signatures.
struct Accountable<R, E> {
    inner: R,
    rng: Arc<Mutex<E>>,
    scheme: Scheme,
    faults: Arc<Mutex<FaultLog>>,
}

impl<R: Clone, E> Clone for Accountable<R, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rng: self.rng.clone(),
            scheme: self.scheme.clone(),
            faults: self.faults.clone(),
        }
    }
}

impl<R, E> Accountable<R, E>
where
    E: CryptoRng,
{
    fn record(&mut self, activity: &Activity<Scheme, Digest>) {
        let (kind, signer) = match activity {
            Activity::ConflictingNotarize(c) => (FaultKind::ConflictingNotarize, c.signer()),
            Activity::ConflictingFinalize(c) => (FaultKind::ConflictingFinalize, c.signer()),
            Activity::NullifyFinalize(c) => (FaultKind::NullifyFinalize, c.signer()),
            _ => return,
        };
        let (epoch, view) = (activity.epoch().get(), activity.view().get());
        // Simplex reports conflicts before it verifies vote signatures: only keep evidence that
        // proves the fault to a third party. (Simplex blocks the sender either way.)
        if !activity.verify(&mut *self.rng.lock(), &self.scheme, &Sequential) {
            debug!(%kind, epoch, view, "chain.consensus.fault: evidence does not verify; ignored");
            return;
        }
        let Some(validator) = self.scheme.participants().get(usize::from(signer)).cloned() else {
            debug!(%kind, %signer, "chain.consensus.fault: signer is not a validator; ignored");
            return;
        };
        let fault = Fault {
            kind,
            validator: validator.clone(),
            epoch,
            view,
            evidence: Bytes::from(activity.encode().to_vec()),
        };
        if self.faults.lock().record(fault) {
            warn!(
                %kind,
                validator = %validator,
                epoch,
                view,
                "chain.consensus.fault: validator signed conflicting votes"
            );
        }
    }
}

impl<R, E> Reporter for Accountable<R, E>
where
    R: Reporter<Activity = Activity<Scheme, Digest>>,
    E: CryptoRng + Send + 'static,
{
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        self.record(&activity);
        self.inner.report(activity)
    }
}

/// Engine configuration.
pub struct Config<B, P> {
    /// Chain id (also the consensus namespace).
    pub chain_id: String,
    /// This validator's consensus key.
    pub signer: ed25519::PrivateKey,
    /// All validators.
    pub validators: Vec<PublicKey>,
    /// Prefix of every storage partition of this node.
    pub partition_prefix: String,
    /// Peer blocker (the p2p oracle/control).
    pub blocker: B,
    /// Peer set provider (the p2p oracle/manager).
    pub peer_provider: P,
    /// Block limits (also the block codec configuration).
    pub block_limits: BlockLimits,
    /// Mempool limits.
    pub mempool_limits: MempoolLimits,
    /// How far ahead of local time a proposal's time may be, in ms.
    pub max_future_ms: u64,
    /// Simplex leader timeout.
    pub leader_timeout: Duration,
    /// Simplex certification timeout.
    pub certification_timeout: Duration,
    /// Simplex nullify retry.
    pub timeout_retry: Duration,
    /// Marshal/simplex fetch timeout.
    pub fetch_timeout: Duration,
    /// Mailbox sizes.
    pub mailbox_size: NonZeroUsize,
}

/// The network channels one validator needs, all on the same authenticated network.
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex certificate resolver.
    pub resolver: (S, R),
    /// Marshal backfill.
    pub backfill: (S, R),
    /// Full blocks (buffered broadcast).
    pub blocks: (S, R),
    /// Transaction gossip.
    pub txs: (S, R),
}

/// Channel ids used by [`Channels`] (register these on the p2p network).
pub mod channel {
    /// Votes.
    pub const VOTES: u64 = 0;
    /// Certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Certificate resolver.
    pub const RESOLVER: u64 = 2;
    /// Marshal backfill.
    pub const BACKFILL: u64 = 3;
    /// Blocks.
    pub const BLOCKS: u64 = 4;
    /// Transactions.
    pub const TXS: u64 = 5;
}

#[derive(Clone)]
struct Executed<D> {
    height: u64,
    parent: Digest,
    time_ms: u64,
    diff: Arc<D>,
    tx_ids: Arc<Vec<[u8; 32]>>,
    outcomes: Arc<Vec<Result<(), String>>>,
}

/// Executed-but-unfinalized ancestry from the committed tip to some block.
struct PendingChain<D> {
    /// Diffs, oldest first.
    diffs: Vec<Arc<D>>,
    /// Digests of the same blocks, oldest first.
    digests: Vec<Digest>,
    /// Height of the newest block (the committed height when empty).
    height: u64,
    /// Time of the newest block.
    time_ms: u64,
}

struct Shared<A: Application> {
    app: A,
    /// `finalized[h]` = (digest, time, root) of the finalized block at height h (0 = genesis).
    finalized: Vec<(Digest, u64, [u8; 32])>,
    pending: HashMap<Digest, Executed<A::Diff>>,
    mempool: Mempool,
    status: HashMap<[u8; 32], TxStatus>,
    subscribers: Vec<mpsc::UnboundedSender<Committed>>,
    halted: Option<String>,
}

impl<A: Application> Shared<A> {
    fn committed(&self) -> (u64, Digest, u64) {
        let h = self.finalized.len().saturating_sub(1) as u64;
        match self.finalized.last() {
            Some((d, t, _)) => (h, *d, *t),
            None => (0, Digest::from([0u8; 32]), 0),
        }
    }

    /// Pending diffs from the committed tip up to and including `digest` (oldest first), or
    /// `None` when `digest` does not descend from the committed tip through executed blocks.
    fn chain_to(&self, mut digest: Digest) -> Option<PendingChain<A::Diff>> {
        let (_, tip, tip_time) = self.committed();
        let mut diffs = Vec::new();
        let mut digests = Vec::new();
        let mut top: Option<(u64, u64)> = None;
        loop {
            if digest == tip {
                diffs.reverse();
                digests.reverse();
                let (h, t) =
                    top.unwrap_or((self.finalized.len().saturating_sub(1) as u64, tip_time));
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

    fn finalized_at(&self, height: u64) -> Option<Digest> {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.finalized.get(h))
            .map(|(d, _, _)| *d)
    }
}

enum Check {
    Valid,
    Invalid(String),
}

/// The application side of consensus for one node (implements marshal's `Application`).
pub struct Node<A: Application> {
    shared: Arc<Mutex<Shared<A>>>,
    /// Serializes execution and commits of this node. Executing a block takes long; it runs
    /// holding only this lock, so admission, status reads and the API never wait for it.
    exec: Arc<Mutex<()>>,
    limits: BlockLimits,
    max_future_ms: u64,
    /// How long a leader with an empty mempool waits for transactions before proposing an
    /// empty block (a third of the leader timeout): an idle chain makes a few blocks per
    /// second instead of as many as the network allows, and followers keep up.
    empty_wait: Duration,
}

impl<A: Application> Clone for Node<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            exec: self.exec.clone(),
            limits: self.limits,
            max_future_ms: self.max_future_ms,
            empty_wait: self.empty_wait,
        }
    }
}

fn now_ms(clock: &impl Clock) -> u64 {
    clock
        .current()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<A: Application> Node<A> {
    /// Checks and executes one block whose parent is executed or committed; caches its diff.
    fn execute_block(&self, block: &Block, now: Option<u64>) -> Check {
        let _exec = self.exec.lock();
        let digest = block.digest();
        let (app, diffs) = {
            let shared = self.shared.lock();
            let (committed_h, _, _) = shared.committed();
            if block.header.height <= committed_h {
                return if shared.finalized_at(block.header.height) == Some(digest) {
                    Check::Valid
                } else {
                    Check::Invalid(format!(
                        "conflicts with finalized chain: height={}",
                        block.header.height
                    ))
                };
            }
            if shared.pending.contains_key(&digest) {
                return Check::Valid;
            }
            let Some(PendingChain {
                diffs,
                height: parent_h,
                time_ms: parent_time,
                ..
            }) = shared.chain_to(block.header.parent)
            else {
                return Check::Invalid(format!(
                    "parent not on the committed chain: height={}",
                    block.header.height
                ));
            };
            if block.header.height != parent_h.saturating_add(1) {
                return Check::Invalid(format!(
                    "height is not parent+1: height={} parent_height={parent_h}",
                    block.header.height
                ));
            }
            if block.header.time_ms <= parent_time {
                return Check::Invalid(format!(
                    "time not after parent: time_ms={} parent_time_ms={parent_time}",
                    block.header.time_ms
                ));
            }
            if let Some(now) = now
                && block.header.time_ms > now.saturating_add(self.max_future_ms)
            {
                return Check::Invalid(format!(
                    "time too far in the future: time_ms={} now_ms={now}",
                    block.header.time_ms
                ));
            }
            if block.txs.len() > self.limits.max_txs
                || block.tx_bytes() > self.limits.max_block_bytes
            {
                return Check::Invalid(format!("block over limits: txs={}", block.txs.len()));
            }
            (shared.app.clone(), diffs)
        };
        // The committed state cannot move while `exec` is held: execute without the node lock.
        let refs: Vec<&A::Diff> = diffs.iter().map(|d| d.as_ref()).collect();
        let (diff, root, outcomes) =
            app.execute(&refs, block.header.height, block.header.time_ms, &block.txs);
        if root != block.header.state_root {
            return Check::Invalid(format!(
                "state root mismatch: height={} header={} computed={}",
                block.header.height,
                hex::encode(block.header.state_root),
                hex::encode(root)
            ));
        }
        let executed = Executed {
            height: block.header.height,
            parent: block.header.parent,
            time_ms: block.header.time_ms,
            diff: Arc::new(diff),
            tx_ids: Arc::new(block.txs.iter().map(|t| tx_hash(t)).collect()),
            outcomes: Arc::new(outcomes),
        };
        self.shared.lock().pending.insert(digest, executed);
        Check::Valid
    }

    /// Walks `ancestry` (newest first) until reaching a block whose parent is known, then
    /// executes the collected blocks oldest first. Returns the verdict for the newest block.
    async fn ensure_executed(
        &self,
        mut ancestry: impl Ancestry<Block>,
        now_for_newest: Option<u64>,
    ) -> Option<Check> {
        let mut stack: Vec<Digested<Block>> = Vec::new();
        while let Some(block) = ancestry.next().await {
            let done = {
                let shared = self.shared.lock();
                let (committed_h, tip, _) = shared.committed();
                let b = block.inner();
                b.header.height <= committed_h
                    || b.header.parent == tip
                    || shared.pending.contains_key(&block.digest())
                    || shared.pending.contains_key(&b.header.parent)
            };
            stack.push(block);
            if done {
                break;
            }
        }
        let newest = stack.first().map(|b| b.digest());
        let mut verdict = None;
        while let Some(block) = stack.pop() {
            let now = if Some(block.digest()) == newest {
                now_for_newest
            } else {
                None
            };
            match self.execute_block(block.inner(), now) {
                Check::Valid => verdict = Some(Check::Valid),
                Check::Invalid(reason) => return Some(Check::Invalid(reason)),
            }
        }
        verdict
    }

    fn build(&self, parent: Digest, now: u64) -> Option<Block> {
        let _exec = self.exec.lock();
        let (app, diffs, height, time_ms, selected) = {
            let shared = self.shared.lock();
            let PendingChain {
                diffs,
                digests,
                height: parent_h,
                time_ms: parent_time,
            } = shared.chain_to(parent)?;
            // Transactions already in pending ancestors must not be proposed again.
            let in_flight: std::collections::HashSet<[u8; 32]> = digests
                .iter()
                .filter_map(|d| shared.pending.get(d))
                .flat_map(|e| e.tx_ids.iter().copied())
                .collect();
            let selected =
                shared
                    .mempool
                    .select(self.limits.max_txs, self.limits.max_block_bytes, |id| {
                        in_flight.contains(id)
                    });
            let height = parent_h.saturating_add(1);
            let time_ms = now.max(parent_time.saturating_add(1));
            (shared.app.clone(), diffs, height, time_ms, selected)
        };
        let refs: Vec<&A::Diff> = diffs.iter().map(|d| d.as_ref()).collect();
        let mut txs: Vec<Bytes> = selected.iter().map(|(_, tx)| tx.clone()).collect();
        let (mut diff, mut root, mut outcomes) = app.execute(&refs, height, time_ms, &txs);
        if outcomes.iter().any(Result::is_err) {
            // Drop refused transactions from the proposal (and from the pool) and re-execute.
            let mut kept = Vec::with_capacity(txs.len());
            {
                let mut shared = self.shared.lock();
                for ((id, tx), outcome) in selected.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => kept.push(tx.clone()),
                        Err(reason) => {
                            shared.mempool.remove(id);
                            shared.status.insert(*id, TxStatus::Dropped(reason));
                        }
                    }
                }
            }
            txs = kept;
            (diff, root, outcomes) = app.execute(&refs, height, time_ms, &txs);
        }
        let block = Block::new(parent, height, time_ms, txs, root);
        let executed = Executed {
            height,
            parent,
            time_ms,
            diff: Arc::new(diff),
            tx_ids: Arc::new(block.txs.iter().map(|t| tx_hash(t)).collect()),
            outcomes: Arc::new(outcomes),
        };
        self.shared.lock().pending.insert(block.digest(), executed);
        Some(block)
    }

    /// Commits a finalized block (skips heights already committed). Errors when the block does
    /// not extend the committed tip or its root does not match re-execution.
    fn commit(&self, block: &Block) -> Result<bool, String> {
        let _exec = self.exec.lock();
        let height = block.header.height;
        let digest = block.digest();
        // Either this node executed the block already, or it executes it now (outside the
        // node lock) on the committed state.
        let executed = {
            let shared = self.shared.lock();
            if let Some(reason) = &shared.halted {
                return Err(reason.clone());
            }
            let (committed_h, tip, _) = shared.committed();
            if height <= committed_h {
                return Ok(false);
            }
            if height != committed_h + 1 || block.header.parent != tip {
                return Err(format!(
                    "finalized block does not extend the committed tip: height={height} committed_height={committed_h}"
                ));
            }
            shared
                .pending
                .get(&digest)
                .map(|e| (e.diff.clone(), e.outcomes.clone(), e.tx_ids.clone()))
                .ok_or_else(|| shared.app.clone())
        };
        let (diff, outcomes, tx_ids) = match executed {
            Ok(found) => found,
            Err(app) => {
                let (diff, root, outcomes) =
                    app.execute(&[], height, block.header.time_ms, &block.txs);
                if root != block.header.state_root {
                    let reason = format!(
                        "finalized block root mismatch: height={height} header={} computed={}",
                        hex::encode(block.header.state_root),
                        hex::encode(root)
                    );
                    self.shared.lock().halted = Some(reason.clone());
                    return Err(reason);
                }
                let ids = block.txs.iter().map(|tx| tx_hash(tx)).collect();
                (Arc::new(diff), Arc::new(outcomes), Arc::new(ids))
            }
        };
        let mut shared = self.shared.lock();
        let root = shared.app.commit(height, &diff);
        if root != block.header.state_root {
            let reason = format!("committed root differs from header: height={height}");
            shared.halted = Some(reason.clone());
            return Err(reason);
        }
        shared.finalized.push((digest, block.header.time_ms, root));
        for (id, outcome) in tx_ids.iter().zip(outcomes.iter()) {
            shared.mempool.remove(id);
            shared.status.insert(
                *id,
                TxStatus::Finalized {
                    height,
                    outcome: outcome.clone(),
                },
            );
        }
        shared.pending.retain(|_, e| e.height > height);
        let event = Committed {
            height,
            digest,
            root,
            txs: block.txs.len(),
            tx_ids,
        };
        shared
            .subscribers
            .retain(|s| s.unbounded_send(event.clone()).is_ok());
        Ok(true)
    }
}

impl<E, A> commonware_consensus::Application<E> for Node<A>
where
    E: Clock + Send + Sync + 'static,
    A: Application,
{
    type SigningScheme = Scheme;
    type Context = SimplexContext<Digest, PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        context: (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        let (clock, ctx) = context;
        let parent = ctx.parent.1;
        match self.ensure_executed(ancestry, None).await {
            Some(Check::Valid) => {}
            Some(Check::Invalid(reason)) => {
                warn!(%reason, "chain.block.propose: parent invalid");
                return None;
            }
            None => return None,
        }
        // Pace empty blocks: wait (a bounded time) for a transaction to arrive.
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < self.empty_wait && self.shared.lock().mempool.is_empty() {
            clock.sleep(step).await;
            waited += step;
        }
        let block = self.build(parent, now_ms(&clock))?;
        debug!(
            height = block.header.height,
            txs = block.txs.len(),
            "chain.block.propose"
        );
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        context: (E, Self::Context),
        ancestry: impl Ancestry<Self::Block>,
    ) -> bool {
        let (clock, _) = context;
        match self.ensure_executed(ancestry, Some(now_ms(&clock))).await {
            Some(Check::Valid) => true,
            Some(Check::Invalid(reason)) => {
                warn!(%reason, "chain.block.verify: rejected");
                false
            }
            None => false,
        }
    }
}

/// Receives finalized blocks from marshal and forwards them to the finalizer task.
#[derive(Clone)]
pub struct Finalizer {
    sender: mpsc::UnboundedSender<Update<Block>>,
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
    node: Node<A>,
    marshal: Marshal,
    gossip: Arc<dyn Fn(Bytes) + Send + Sync>,
    max_tx_bytes: usize,
    faults: Arc<Mutex<FaultLog>>,
}

impl<A: Application> Clone for Handle<A> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
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
fn admit<A: Application>(
    shared: &Mutex<Shared<A>>,
    txs: &[Bytes],
    max: usize,
) -> Vec<Result<[u8; 32], SubmitError>> {
    let ids: Vec<[u8; 32]> = txs.iter().map(|tx| tx_hash(tx)).collect();
    // Transactions already pending here (a peer's copy of one we have) need no checking.
    let pending: Vec<bool> = {
        let shared = shared.lock();
        ids.iter().map(|id| shared.mempool.contains(id)).collect()
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
    let mut prechecked = A::precheck(&to_check).into_iter();
    let mut shared = shared.lock();
    for (tx, slot) in txs.iter().zip(out.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        let pre = prechecked
            .next()
            .unwrap_or_else(|| Err("transaction was not checked".into()));
        *slot = Some(
            pre.map_err(SubmitError::Rejected)
                .and_then(|()| admit_prechecked(&mut shared, tx)),
        );
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
        .map_err(SubmitError::Rejected)?;
    if let Some(TxStatus::Finalized { height, .. }) = shared.status.get(&id) {
        return Err(SubmitError::AlreadyFinalized(*height));
    }
    shared.mempool.insert(id, tx.clone())?;
    shared.status.insert(id, TxStatus::Pending);
    Ok(id)
}

impl<A: Application> Handle<A> {
    /// Admits a transaction (check_tx, size limit, dedup), adds it to the mempool and gossips it
    /// to the other validators. Returns the tx id. Nothing changes on error.
    pub fn submit(&self, tx: Bytes) -> Result<[u8; 32], SubmitError> {
        let id = admit(
            &self.node.shared,
            std::slice::from_ref(&tx),
            self.max_tx_bytes,
        )
        .pop()
        .unwrap_or_else(|| Err(SubmitError::Rejected("transaction was not checked".into())))?;
        (self.gossip)(tx);
        Ok(id)
    }

    /// [`Handle::submit`] for many transactions at once (a gateway forwarding its clients'
    /// transactions): their signatures are verified in one batch. One outcome per transaction,
    /// in order; the accepted ones are gossiped.
    pub fn submit_many(&self, txs: &[Bytes]) -> Vec<Result<[u8; 32], SubmitError>> {
        let out = admit(&self.node.shared, txs, self.max_tx_bytes);
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
        self.node
            .shared
            .lock()
            .status
            .get(id)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }

    /// Committed height.
    pub fn height(&self) -> u64 {
        self.node.shared.lock().committed().0
    }

    /// (digest, root) of the finalized block at `height`.
    pub fn finalized(&self, height: u64) -> Option<(Digest, [u8; 32])> {
        let shared = self.node.shared.lock();
        usize::try_from(height)
            .ok()
            .and_then(|h| shared.finalized.get(h))
            .map(|(d, _, r)| (*d, *r))
    }

    /// All finalized (digest, root) pairs from genesis.
    pub fn finalized_chain(&self) -> Vec<(Digest, [u8; 32])> {
        self.node
            .shared
            .lock()
            .finalized
            .iter()
            .map(|(d, _, r)| (*d, *r))
            .collect()
    }

    /// Number of pending transactions.
    pub fn mempool_len(&self) -> usize {
        self.node.shared.lock().mempool.len()
    }

    /// Reason the node stopped committing, if it did (a finalized block failed re-execution).
    pub fn halted(&self) -> Option<String> {
        self.node.shared.lock().halted.clone()
    }

    /// Committed application state (read-only use).
    pub fn with_app<T>(&self, f: impl FnOnce(&A) -> T) -> T {
        f(&self.node.shared.lock().app)
    }

    /// Proven validator faults this node has seen since it started, oldest first (at most
    /// [`MAX_RECORDED_FAULTS`], one per kind, validator and round).
    pub fn faults(&self) -> Vec<Fault> {
        self.faults.lock().recent.iter().cloned().collect()
    }

    /// Number of distinct proven faults seen since start (keeps counting past
    /// [`MAX_RECORDED_FAULTS`]).
    pub fn fault_count(&self) -> u64 {
        self.faults.lock().total
    }

    /// Subscribes to blocks committed from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Committed> {
        let (tx, rx) = mpsc::unbounded();
        self.node.shared.lock().subscribers.push(tx);
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

pub(crate) fn archive_config<C>(
    prefix: &str,
    name: &str,
    codec_config: C,
    page_cache: CacheRef,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 256,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 128,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 1 << 20,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: NZUsize!(1 << 13),
        freezer_key_write_buffer: NZUsize!(1 << 13),
        freezer_value_write_buffer: NZUsize!(1 << 13),
        ordinal_write_buffer: NZUsize!(1 << 13),
    }
}

/// Starts a validator: opens storage, replays finalized blocks into `app`, starts marshal,
/// simplex and the gossip tasks. `app` must hold the genesis state.
pub async fn start<E, A, S, R, B, P>(
    context: E,
    config: Config<B, P>,
    app: A,
    channels: Channels<S, R>,
) -> Result<Handle<A>, EngineError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    A: Application,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
{
    let me = config.signer.public_key();
    let participants = Set::try_from(config.validators.clone())
        .map_err(|e| EngineError::Validators(format!("{e:?}")))?;
    let scheme = Scheme::signer(
        config.chain_id.as_bytes(),
        participants,
        config.signer.clone(),
    )
    .ok_or_else(|| EngineError::NotValidator(me.to_string()))?;
    let genesis = Block::genesis(&config.chain_id, app.root());
    let shared = Arc::new(Mutex::new(Shared {
        app,
        finalized: vec![(genesis.digest(), 0, genesis.header.state_root)],
        pending: HashMap::new(),
        mempool: Mempool::new(config.mempool_limits),
        status: HashMap::new(),
        subscribers: Vec::new(),
        halted: None,
    }));
    let node = Node {
        shared: shared.clone(),
        exec: Arc::new(Mutex::new(())),
        limits: config.block_limits,
        max_future_ms: config.max_future_ms,
        empty_wait: config.leader_timeout / 3,
    };
    let prefix = config.partition_prefix.clone();
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(64));

    // Marshal backfill resolver.
    let (backfill_handler, backfill) = marshal_resolver::init(
        context.child("backfill"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: config.peer_provider.clone(),
            blocker: config.blocker.clone(),
            mailbox_size: config.mailbox_size,
            fetch_timeout: commonware_utils::NonZeroDuration::new(config.fetch_timeout)
                .unwrap_or(commonware_utils::NZDuration!(Duration::from_secs(1))),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let resolver = (backfill_handler, backfill);

    // Full-block broadcast.
    let (broadcast_engine, buffer) = commonware_broadcast::buffered::Engine::new(
        context.child("broadcast"),
        commonware_broadcast::buffered::Config {
            public_key: me.clone(),
            mailbox_size: config.mailbox_size,
            deque_size: 10,
            priority: false,
            codec_config: config.block_limits,
            peer_provider: config.peer_provider.clone(),
            strategy: Sequential,
        },
    );
    broadcast_engine.start(channels.blocks);

    let finalizations = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations-by-height",
            scheme.certificate_codec_config(),
            page_cache.clone(),
        ),
    )
    .await
    .map_err(|e| EngineError::Storage {
        partition: format!("{prefix}-finalizations-by-height"),
        error: e.to_string(),
    })?;
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(
            &prefix,
            "finalized-blocks",
            config.block_limits,
            page_cache.clone(),
        ),
    )
    .await
    .map_err(|e| EngineError::Storage {
        partition: format!("{prefix}-finalized-blocks"),
        error: e.to_string(),
    })?;
    let epocher = FixedEpocher::new(NZU64!(EPOCH_LENGTH));
    let (actor, marshal_mailbox, _floor) = MarshalActor::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::new(scheme.clone()),
            epocher: epocher.clone(),
            start: marshal::Start::Genesis(Digested::precomputed(
                genesis.clone(),
                genesis.digest(),
            )),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size: config.mailbox_size,
            view_retention: ViewDelta::new(10),
            prunable_items_per_section: NZU64!(64),
            page_cache: page_cache.clone(),
            replay_buffer: NZUsize!(1 << 13),
            key_write_buffer: NZUsize!(1 << 13),
            value_write_buffer: NZUsize!(1 << 13),
            block_codec_config: config.block_limits,
            max_repair: NZUsize!(16),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;
    let (fin_tx, mut fin_rx) = mpsc::unbounded();
    actor.start(Finalizer { sender: fin_tx }, buffer, resolver);

    // Rebuild the committed state from marshal's finalized blocks before consensus starts.
    let processed = marshal_mailbox
        .get_processed()
        .await
        .map(|p| p.height().get())
        .unwrap_or(0);
    for height in 1..=processed {
        let block = marshal_mailbox
            .get_block(Identifier::Height(Height::new(height)))
            .await
            .ok_or_else(|| EngineError::Replay {
                height,
                reason: "finalized block missing from storage".into(),
            })?;
        node.commit(block.inner())
            .map_err(|reason| EngineError::Replay { height, reason })?;
    }
    if processed > 0 {
        info!(processed, "chain.node.replay: committed state rebuilt");
    }

    // Finalizer: commit in order, then acknowledge to marshal.
    {
        let node = node.clone();
        let marshal_mailbox = marshal_mailbox.clone();
        context.child("finalizer").spawn(move |_| async move {
            while let Some(update) = fin_rx.next().await {
                let Update::Block(block, ack) = update else {
                    continue;
                };
                let height = block.height().get();
                // Fill any gap from storage (marshal delivers in order; this is defensive).
                let committed = node.shared.lock().committed().0;
                for h in committed.saturating_add(1)..height {
                    match marshal_mailbox
                        .get_block(Identifier::Height(Height::new(h)))
                        .await
                    {
                        Some(b) => {
                            if let Err(reason) = node.commit(b.inner()) {
                                error!(%reason, "chain.block.commit: failed");
                                return;
                            }
                        }
                        None => {
                            error!(height = h, "chain.block.commit: missing finalized block");
                            return;
                        }
                    }
                }
                match node.commit(block.inner()) {
                    Ok(_) => ack.acknowledge(),
                    Err(reason) => {
                        error!(%reason, "chain.block.commit: failed; node halted");
                        return;
                    }
                }
            }
        });
    }

    // Consensus.
    let faults = Arc::new(Mutex::new(FaultLog::default()));
    let inline = Inline::new(
        context.child("inline"),
        node.clone(),
        marshal_mailbox.clone(),
        epocher,
    );
    let reporter = Accountable {
        inner: inline.clone(),
        rng: Arc::new(Mutex::new(context.child("faults"))),
        scheme: scheme.clone(),
        faults: faults.clone(),
    };
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: config.blocker.clone(),
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: config.mailbox_size,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(genesis.digest()),
            replay_buffer: NZUsize!(1 << 13),
            write_buffer: NZUsize!(1 << 13),
            page_cache,
            leader_timeout: config.leader_timeout,
            certification_timeout: config.certification_timeout,
            timeout_retry: config.timeout_retry,
            view_retention: ViewDelta::new(10),
            skip: SkipPolicy::Enabled {
                timeout: config
                    .timeout_retry
                    .saturating_add(config.certification_timeout),
                budget: SkipBudget::Participants,
            },
            fetch_timeout: commonware_utils::NonZeroDuration::new(config.fetch_timeout)
                .unwrap_or(commonware_utils::NZDuration!(Duration::from_secs(1))),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
            // Keep every vote until its round is pruned (10 views behind finality) so a
            // conflicting vote arriving after the certificate still yields evidence; with `false`
            // simplex drops the full votes at certification and fault reports are best effort.
            track_historical_votes: true,
        },
    );
    engine.start(channels.votes, channels.certificates, channels.resolver);

    // Transaction gossip, in batches: whatever was submitted since the last message goes out
    // in one (no waiting for a batch to fill, so an idle node adds no latency; under load one
    // message carries hundreds of transactions).
    let (mut gossip_sender, mut gossip_receiver) = channels.txs;
    {
        let shared = shared.clone();
        let max = config.block_limits.max_tx_bytes;
        context.child("tx_gossip").spawn(move |_| async move {
            while let Ok((_, msg)) = gossip_receiver.recv().await {
                // A peer's malformed batch is dropped whole; refusals of single transactions
                // are expected (duplicates via several peers, races with finality).
                let batch = decode_tx_batch(msg.as_ref(), max).unwrap_or_default();
                let _ = admit(&shared, &batch, max);
            }
        });
    }
    let (batch_in, mut batch_out) = mpsc::unbounded::<Bytes>();
    context.child("tx_batcher").spawn(move |_| async move {
        while let Some(first) = batch_out.next().await {
            let mut bytes = first.len();
            let mut batch = vec![first];
            while batch.len() < GOSSIP_BATCH_TXS && bytes < GOSSIP_BATCH_BYTES {
                match batch_out.try_recv() {
                    Ok(tx) => {
                        bytes += tx.len();
                        batch.push(tx);
                    }
                    Err(_) => break,
                }
            }
            let _ = gossip_sender.send(Recipients::All, encode_tx_batch(&batch), false);
        }
    });
    let gossip: Arc<dyn Fn(Bytes) + Send + Sync> = Arc::new(move |tx: Bytes| {
        let _ = batch_in.unbounded_send(tx);
    });
    info!(public_key = %me, "chain.node.start: validator started");
    Ok(Handle {
        node,
        marshal: marshal_mailbox,
        gossip,
        max_tx_bytes: config.block_limits.max_tx_bytes,
        faults,
    })
}

/// Most transactions in one gossip message (and in one `POST /v1/txs`).
pub const GOSSIP_BATCH_TXS: usize = 1024;
/// Bytes after which a gossip batch is sent without taking more.
const GOSSIP_BATCH_BYTES: usize = 1 << 20;

/// Encodes transactions for one gossip message (and the body of `POST /v1/txs`): `u32 count`,
/// then `u32 length | bytes` each, big-endian.
pub fn encode_tx_batch(txs: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(4 + txs.iter().map(|t| 4 + t.len()).sum::<usize>());
    out.extend_from_slice(&(txs.len() as u32).to_be_bytes());
    for tx in txs {
        out.extend_from_slice(&(tx.len() as u32).to_be_bytes());
        out.extend_from_slice(tx);
    }
    Bytes::from(out)
}

/// Decodes a gossip message; `None` if it is malformed, holds too many transactions or one
/// longer than `max_tx_bytes`.
pub fn decode_tx_batch(msg: &[u8], max_tx_bytes: usize) -> Option<Vec<Bytes>> {
    let word = |at: usize| -> Option<usize> {
        msg.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
    };
    let count = word(0)?;
    if count > GOSSIP_BATCH_TXS {
        return None;
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = word(at)?;
        if len > max_tx_bytes {
            return None;
        }
        let tx = msg.get(at + 4..at + 4 + len)?;
        out.push(Bytes::copy_from_slice(tx));
        at += 4 + len;
    }
    (at == msg.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tx_batches_round_trip_and_refuse_malformed_messages() {
        use super::{Bytes, GOSSIP_BATCH_TXS, decode_tx_batch, encode_tx_batch};
        let txs = vec![
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
        ];
        let msg = encode_tx_batch(&txs);
        assert_eq!(decode_tx_batch(&msg, 300), Some(txs.clone()));
        assert_eq!(decode_tx_batch(&msg, 299), None, "a tx over the limit");
        assert_eq!(
            decode_tx_batch(&msg[..msg.len() - 1], 300),
            None,
            "truncated"
        );
        let mut longer = msg.to_vec();
        longer.push(0);
        assert_eq!(decode_tx_batch(&longer, 300), None, "trailing bytes");
        assert_eq!(decode_tx_batch(b"", 300), None);
        let too_many = ((GOSSIP_BATCH_TXS + 1) as u32).to_be_bytes();
        assert_eq!(decode_tx_batch(&too_many, 300), None);
    }

    use super::*;

    fn fault(kind: FaultKind, seed: u64, view: u64) -> Fault {
        Fault {
            kind,
            validator: ed25519::PrivateKey::from_seed(seed).public_key(),
            epoch: 0,
            view,
            evidence: Bytes::new(),
        }
    }

    #[test]
    fn fault_log_counts_each_kind_validator_and_round_once() {
        let mut log = FaultLog::default();
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 3, 5)));
        assert!(!log.record(fault(FaultKind::ConflictingNotarize, 3, 5)));
        assert!(log.record(fault(FaultKind::ConflictingFinalize, 3, 5)));
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 2, 5)));
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 3, 6)));
        assert_eq!(log.total, 4);
        assert_eq!(log.recent.len(), 4);
    }

    #[test]
    fn fault_log_keeps_the_most_recent_and_the_full_count() {
        let mut log = FaultLog::default();
        let extra = 10u64;
        for view in 0..MAX_RECORDED_FAULTS as u64 + extra {
            assert!(log.record(fault(FaultKind::NullifyFinalize, 1, view)));
        }
        assert_eq!(log.total, MAX_RECORDED_FAULTS as u64 + extra);
        assert_eq!(log.recent.len(), MAX_RECORDED_FAULTS);
        assert_eq!(log.recent.front().map(|f| f.view), Some(extra));
    }
}
