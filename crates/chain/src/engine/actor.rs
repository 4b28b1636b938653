//! The node's actor: block execution for consensus (propose, verify, commit), the finalizer loop
//! that commits finalized blocks in height order exactly once, and [`start`], which wires
//! storage, marshal, simplex and gossip around it.
//!
//! Start, step by step: check the signing key against the validator set; check a state sync, if
//! given, before anything is written; open the finalized-block archives (`immutable`, or
//! `prunable` on a node that prunes) and start marshal (with block backfill and broadcast, from
//! the state sync's block as its floor if any); take the state sync's state when the stored chain
//! is behind it, or else restore the newest checkpoint
//! that matches the stored chain and replay the finalized blocks marshal persisted after it, so
//! the application state matches the stored chain; spawn the finalizer (which offers a
//! checkpoint every `checkpoint_every` blocks to the writer);
//! start simplex with the fault-recording reporter; start transaction gossip.

use super::{
    checkpoint,
    config::{
        BlockFinalization, Channels, Config, Marshal, PublicKey, Scheme, StateSync, SyncedState,
        archive_config, epocher, page_cache, prunable_archive_config,
    },
    faults::{Accountable, FaultLog},
    gossip,
    handle::{Finalizer, Handle},
    state::{Committed, Executed, FinalizedChain, PendingChain, Shared, TxStatus},
};
use crate::{
    Application,
    block::{Block, BlockLimits, Header, tx_hash},
};
use bytes::Bytes;
use commonware_consensus::{
    Epochable as _, Heightable as _,
    marshal::{
        self, Identifier, Update, ancestry::Ancestry, core::Actor as MarshalActor,
        resolver::p2p as marshal_resolver, standard::Inline,
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
        types::Context as SimplexContext,
    },
    types::{Epoch, Height, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible as _, Sha256, Signer as _,
    certificate::{ConstantProvider, Verifier as _},
    sha256::Digest,
};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::{
    archive::{immutable, prunable},
    translator::EightCap,
};
use commonware_utils::{
    Acknowledgement as _, NZDuration, NZU64, NZUsize, NonZeroDuration, ordered::Set, sync::Mutex,
};
use futures::{StreamExt as _, channel::mpsc};
use rand_core::CryptoRng;
use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};
use tracing::{debug, error, info, warn};

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
    /// A state sync checkpoint was refused; nothing was written.
    #[error("state sync refused at height={height}: {reason}")]
    StateSync {
        /// Height the checkpoint claims.
        height: u64,
        /// Why it was refused.
        reason: String,
    },
    /// Pruning needs checkpoints to restart from.
    #[error("pruning needs checkpoints: set checkpoint_every above 0")]
    PruneWithoutCheckpoints,
}

/// A state sync that checked: the application restored at the synced block, and what marshal
/// and simplex start from.
struct Synced<A> {
    app: A,
    header: Header,
    finalization: BlockFinalization,
}

/// Checks a state sync against the validator set before anything is written: the certificate
/// is a quorum certificate of `scheme`'s validators, in the chain's one epoch, over the header's
/// digest, and the checkpoint restores to exactly the header's state at its height and time.
fn verify_state_sync<A: Application>(
    rng: &mut impl CryptoRng,
    scheme: &Scheme,
    app: &A,
    sync: StateSync,
) -> Result<Synced<A>, EngineError> {
    let StateSync {
        checkpoint,
        header,
        finalization,
    } = sync;
    let height = header.height;
    let refused = |reason: &str| EngineError::StateSync {
        height,
        reason: reason.into(),
    };
    if height == 0 {
        return Err(refused("a checkpoint of genesis is not a state sync"));
    }
    if finalization.proposal.payload != header.digest() {
        return Err(refused("finality certificate is for a different block"));
    }
    if finalization.epoch() != Epoch::zero() {
        return Err(refused("finality certificate of another epoch"));
    }
    if !finalization.verify(rng, scheme, &Sequential) {
        return Err(refused("finality certificate signature invalid"));
    }
    let app = match checkpoint {
        SyncedState::Bytes(bytes) => app.restore(&bytes, height, header.time_ms, header.state_root),
        SyncedState::Restored => app.restored(height, header.state_root),
    }
    .map_err(|reason| EngineError::StateSync { height, reason })?;
    Ok(Synced {
        app,
        header,
        finalization,
    })
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
    /// The node of a validator configured by `config`, on `shared` state.
    fn new<B, P>(shared: Arc<Mutex<Shared<A>>>, config: &Config<B, P>) -> Self {
        Self {
            shared,
            exec: Arc::new(Mutex::new(())),
            limits: config.block_limits,
            max_future_ms: config.max_future_ms,
            empty_wait: config.leader_timeout / 3,
        }
    }

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
        let outcomes = as_text(outcomes);
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
        let (mut diff, mut root, outcomes) = app.execute(&refs, height, time_ms, &txs);
        let mut outcomes = as_text(outcomes);
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
            let again;
            (diff, root, again) = app.execute(&refs, height, time_ms, &txs);
            outcomes = as_text(again);
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
                (Arc::new(diff), Arc::new(as_text(outcomes)), Arc::new(ids))
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

/// Starts a validator: opens storage, replays finalized blocks into `app`, starts marshal,
/// simplex and the gossip tasks. `app` must hold the genesis state. With
/// [`Config::state_sync`], the checkpoint is checked first (refused with
/// [`EngineError::StateSync`] before anything is written) and a node whose storage is behind it
/// starts at its block.
pub async fn start<E, A, S, R, B, P>(
    mut context: E,
    mut config: Config<B, P>,
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
    let scheme = signing_scheme(&config)?;
    if config.prune && config.checkpoint_every == 0 {
        return Err(EngineError::PruneWithoutCheckpoints);
    }
    let genesis = Block::genesis(&config.chain_id, app.genesis_root());
    let synced = match config.state_sync.take() {
        Some(sync) => Some(verify_state_sync(&mut context, &scheme, &app, sync)?),
        None => None,
    };
    let shared = Arc::new(Mutex::new(Shared::new(
        app,
        &genesis,
        config.mempool_limits,
    )));
    let node = Node::new(shared.clone(), &config);
    let page_cache = page_cache();
    let Channels {
        votes,
        certificates,
        resolver,
        backfill,
        blocks,
        txs,
    } = channels;
    let floor = synced.as_ref().map(|s| s.finalization.clone());
    let (marshal, finalized) = start_marshal(
        &context,
        &config,
        &scheme,
        (&genesis, floor.clone()),
        page_cache.clone(),
        backfill,
        blocks,
    )
    .await?;
    replay(&context, &config, &node, &marshal, synced).await?;
    {
        let (node, marshal) = (node.clone(), marshal.clone());
        let checkpoints = (config.checkpoint_every > 0).then(|| {
            let pruner = config.prune.then(|| marshal.clone());
            (
                config.checkpoint_every,
                checkpoint::start_writer(&context, &config.partition_prefix, pruner),
            )
        });
        context
            .child("finalizer")
            .spawn(move |_| run_finalizer(node, marshal, finalized, checkpoints));
    }
    let faults = start_consensus(
        &context,
        &config,
        scheme,
        (node, &marshal),
        (&genesis, floor),
        page_cache,
        (votes, certificates, resolver),
    );
    let max_tx_bytes = config.block_limits.max_tx_bytes;
    let gossip = gossip::start(&context, shared.clone(), max_tx_bytes, txs);
    info!(public_key = %me, "chain.node.start: validator started");
    Ok(Handle::new(shared, marshal, gossip, max_tx_bytes, faults))
}

/// This validator's signing scheme over the configured validator set.
fn signing_scheme<B, P>(config: &Config<B, P>) -> Result<Scheme, EngineError> {
    let participants = Set::try_from(config.validators.clone())
        .map_err(|e| EngineError::Validators(format!("{e:?}")))?;
    Scheme::signer(
        config.chain_id.as_bytes(),
        participants,
        config.signer.clone(),
    )
    .ok_or_else(|| EngineError::NotValidator(config.signer.public_key().to_string()))
}

/// The configured fetch timeout, or one second if it is zero.
fn fetch_timeout<B, P>(config: &Config<B, P>) -> NonZeroDuration {
    NonZeroDuration::new(config.fetch_timeout).unwrap_or(NZDuration!(Duration::from_secs(1)))
}

/// Starts block delivery (backfill resolver, buffered broadcast of full blocks) and marshal on
/// the finalized-block archives. Returns marshal's mailbox and the queue of finalized blocks
/// marshal reports (for the finalizer).
async fn start_marshal<E, S, R, B, P>(
    context: &E,
    config: &Config<B, P>,
    scheme: &Scheme,
    (genesis, floor): (&Block, Option<BlockFinalization>),
    page_cache: CacheRef,
    backfill: (S, R),
    blocks: (S, R),
) -> Result<(Marshal, mpsc::UnboundedReceiver<Update<Block>>), EngineError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
{
    let me = config.signer.public_key();
    let resolver = marshal_resolver::init(
        context.child("backfill"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: config.peer_provider.clone(),
            blocker: config.blocker.clone(),
            mailbox_size: config.mailbox_size,
            fetch_timeout: fetch_timeout(config),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        backfill,
    );
    let (broadcast_engine, buffer) = commonware_broadcast::buffered::Engine::new(
        context.child("broadcast"),
        commonware_broadcast::buffered::Config {
            public_key: me,
            mailbox_size: config.mailbox_size,
            deque_size: 10,
            priority: false,
            codec_config: config.block_limits,
            peer_provider: config.peer_provider.clone(),
            strategy: Sequential,
        },
    );
    broadcast_engine.start(blocks);
    let start = match floor {
        // A state sync: marshal fetches the floor's block from peers and delivers blocks from
        // its height on (unless this node's own storage is already past it).
        Some(finalization) => marshal::Start::Floor(finalization),
        None => marshal::Start::Genesis(Digested::precomputed(genesis.clone(), genesis.digest())),
    };
    let marshal_config = marshal::Config {
        provider: ConstantProvider::new(scheme.clone()),
        epocher: epocher(),
        start,
        partition_prefix: format!("{}-marshal", config.partition_prefix),
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
    };
    let (sender, finalized) = mpsc::unbounded();
    let finalizer = Finalizer::new(sender);
    // The two layouts differ only in their archives' type: marshal's mailbox is the same.
    let mailbox = if config.prune {
        let (finalizations, finalized_blocks) =
            open_prunable_archives(context, config, scheme, page_cache).await?;
        let (actor, mailbox, _floor) = MarshalActor::init(
            context.child("marshal"),
            finalizations,
            finalized_blocks,
            marshal_config,
        )
        .await;
        actor.start(finalizer, buffer, resolver);
        mailbox
    } else {
        let (finalizations, finalized_blocks) =
            open_archives(context, config, scheme, page_cache).await?;
        let (actor, mailbox, _floor) = MarshalActor::init(
            context.child("marshal"),
            finalizations,
            finalized_blocks,
            marshal_config,
        )
        .await;
        actor.start(finalizer, buffer, resolver);
        mailbox
    };
    Ok((mailbox, finalized))
}

/// The archives marshal keeps finalized data in: finalization certificates by height, and
/// finalized blocks.
#[allow(clippy::type_complexity)]
async fn open_archives<E, B, P>(
    context: &E,
    config: &Config<B, P>,
    scheme: &Scheme,
    page_cache: CacheRef,
) -> Result<
    (
        immutable::Archive<E, Digest, BlockFinalization>,
        immutable::Archive<E, Digest, Arc<Block>>,
    ),
    EngineError,
>
where
    E: Clock + Spawner + Storage + Metrics,
{
    let prefix = &config.partition_prefix;
    let storage = |name: &'static str| {
        move |e: commonware_storage::archive::Error| EngineError::Storage {
            partition: format!("{prefix}-{name}"),
            error: e.to_string(),
        }
    };
    let finalizations = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            prefix,
            "finalizations-by-height",
            scheme.certificate_codec_config(),
            page_cache.clone(),
        ),
    )
    .await
    .map_err(storage("finalizations-by-height"))?;
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(prefix, "finalized-blocks", config.block_limits, page_cache),
    )
    .await
    .map_err(storage("finalized-blocks"))?;
    Ok((finalizations, blocks))
}

/// The archives of a node that prunes: the same contents as [`open_archives`], in `prunable`
/// archives (by sections of `PRUNE_SECTION` heights) under their own partitions.
#[allow(clippy::type_complexity)]
async fn open_prunable_archives<E, B, P>(
    context: &E,
    config: &Config<B, P>,
    scheme: &Scheme,
    page_cache: CacheRef,
) -> Result<
    (
        prunable::Archive<EightCap, E, Digest, BlockFinalization>,
        prunable::Archive<EightCap, E, Digest, Arc<Block>>,
    ),
    EngineError,
>
where
    E: Clock + Spawner + Storage + Metrics,
{
    let prefix = &config.partition_prefix;
    let storage = |name: &'static str| {
        move |e: commonware_storage::archive::Error| EngineError::Storage {
            partition: format!("{prefix}-{name}-pruned"),
            error: e.to_string(),
        }
    };
    let finalizations = prunable::Archive::init(
        context.child("finalizations_by_height"),
        prunable_archive_config(
            prefix,
            "finalizations-by-height",
            scheme.certificate_codec_config(),
            page_cache.clone(),
        ),
    )
    .await
    .map_err(storage("finalizations-by-height"))?;
    let blocks = prunable::Archive::init(
        context.child("finalized_blocks"),
        prunable_archive_config(prefix, "finalized-blocks", config.block_limits, page_cache),
    )
    .await
    .map_err(storage("finalized-blocks"))?;
    Ok((finalizations, blocks))
}

/// Rebuilds the committed state before consensus starts: from the newest checkpoint that is
/// the state of its block in marshal's archive, if any, then through marshal's finalized blocks
/// after it (heights `from+1..=processed`). A checked state sync above the stored chain is the
/// state outright (marshal delivers blocks from its height on); one at or below it serves as a
/// base when no own checkpoint is newer and its block is the stored one at its height.
async fn replay<E, A, B, P>(
    context: &E,
    config: &Config<B, P>,
    node: &Node<A>,
    marshal: &Marshal,
    synced: Option<Synced<A>>,
) -> Result<(), EngineError>
where
    E: Storage,
    A: Application,
{
    let processed = marshal
        .get_processed()
        .await
        .map(|p| p.height().get())
        .unwrap_or(0);
    if let Some(synced) = &synced
        && synced.header.height > processed
    {
        let height = synced.header.height;
        let mut shared = node.shared.lock();
        shared.app = synced.app.clone();
        shared.finalized = FinalizedChain::starting_at(
            height,
            (
                synced.header.digest(),
                synced.header.time_ms,
                synced.header.state_root,
            ),
        );
        info!(
            height,
            processed, "chain.node.sync: state restored from a peer's checkpoint"
        );
        return Ok(());
    }
    let mut from = match resume(node, marshal).await? {
        Some(height) => height,
        None => checkpoint::restore(
            context,
            &config.partition_prefix,
            &node.shared,
            marshal,
            processed,
        )
        .await
        .unwrap_or(0),
    };
    if let Some(synced) = synced
        && synced.header.height > from
    {
        let height = synced.header.height;
        let stored = marshal
            .get_block(Identifier::Height(Height::new(height)))
            .await
            .map(|b| b.digest());
        if stored == Some(synced.header.digest()) {
            let mut shared = node.shared.lock();
            shared.app = synced.app;
            shared.finalized = FinalizedChain::starting_at(
                height,
                (
                    synced.header.digest(),
                    synced.header.time_ms,
                    synced.header.state_root,
                ),
            );
            from = height;
        }
    }
    for height in from.saturating_add(1)..=processed {
        let block = marshal
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
        info!(
            processed,
            checkpoint = from,
            replayed = processed - from.min(processed),
            "chain.node.replay: committed state rebuilt"
        );
    }
    Ok(())
}

/// Resumes from the state the application brought from its own storage, if it is the state of
/// the stored finalized block at its height: sets the finalized chain to start there and
/// returns that height. An application state that is not (the chain's storage was wiped or
/// is older) is set aside for the application at genesis, and `None` returned.
async fn resume<A: Application>(
    node: &Node<A>,
    marshal: &Marshal,
) -> Result<Option<u64>, EngineError> {
    let app = node.shared.lock().app.clone();
    let Some((height, root)) = app.resumed() else {
        return Ok(None);
    };
    let block = marshal
        .get_block(Identifier::Height(Height::new(height)))
        .await;
    if let Some(block) = block
        && block.inner().header.state_root == root
    {
        let header = &block.inner().header;
        node.shared.lock().finalized =
            FinalizedChain::starting_at(height, (block.digest(), header.time_ms, root));
        info!(
            height,
            "chain.node.resume: committed state opened from the node's own store"
        );
        return Ok(Some(height));
    }
    warn!(
        height,
        "chain.node.resume: the stored state is not of a finalized block this node holds; starting from genesis"
    );
    let fresh = app
        .at_genesis()
        .map_err(|reason| EngineError::Replay { height, reason })?;
    node.shared.lock().app = fresh;
    Ok(None)
}

/// The finalizer: commits each block marshal reports as finalized, in height order, then
/// acknowledges it to marshal. Stops (the node halts) when a block cannot be committed.
async fn run_finalizer<A: Application>(
    node: Node<A>,
    marshal: Marshal,
    mut finalized: mpsc::UnboundedReceiver<Update<Block>>,
    mut checkpoints: Option<(u64, mpsc::Sender<checkpoint::Job<A>>)>,
) {
    while let Some(update) = finalized.next().await {
        let Update::Block(block, ack) = update else {
            continue;
        };
        let height = block.height().get();
        // Fill any gap from storage (marshal delivers in order; this is defensive).
        let committed = node.shared.lock().committed().0;
        for h in committed.saturating_add(1)..height {
            match marshal.get_block(Identifier::Height(Height::new(h))).await {
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
            Ok(committed) => {
                ack.acknowledge();
                if let Some((every, writer)) = checkpoints.as_mut()
                    && committed
                    && height.is_multiple_of(*every)
                {
                    checkpoint::offer(writer, &node.shared, height, block.inner().header.time_ms);
                }
            }
            Err(reason) => {
                error!(%reason, "chain.block.commit: failed; node halted");
                return;
            }
        }
    }
}

/// Starts simplex on the vote, certificate and resolver channels, with marshal's [`Inline`]
/// wrapper around `node` as automaton and relay, and a reporter that records proven faults.
/// Returns the fault log.
fn start_consensus<E, A, S, R, B, P>(
    context: &E,
    config: &Config<B, P>,
    scheme: Scheme,
    (node, marshal): (Node<A>, &Marshal),
    (genesis, floor): (&Block, Option<BlockFinalization>),
    page_cache: CacheRef,
    (votes, certificates, resolver): ((S, R), (S, R), (S, R)),
) -> Arc<Mutex<FaultLog>>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    A: Application,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let faults = Arc::new(Mutex::new(FaultLog::default()));
    let inline = Inline::new(context.child("inline"), node, marshal.clone(), epocher());
    let reporter = Accountable::new(
        inline.clone(),
        context.child("faults"),
        scheme.clone(),
        faults.clone(),
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: config.blocker.clone(),
            automaton: inline.clone(),
            relay: inline,
            reporter,
            strategy: Sequential,
            partition: format!("{}-simplex", config.partition_prefix),
            mailbox_size: config.mailbox_size,
            epoch: Epoch::zero(),
            // After a state sync, voting starts after the synced block's view (a restart resumes
            // from its journal when that is higher).
            floor: match floor {
                Some(finalization) => simplex::config::Floor::Finalized(finalization),
                None => simplex::config::Floor::Genesis(genesis.digest()),
            },
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
            fetch_timeout: fetch_timeout(config),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
            // Keep every vote until its round is pruned (10 views behind finality) so a
            // conflicting vote arriving after the certificate still yields evidence; with `false`
            // simplex drops the full votes at certification and fault reports are best effort.
            track_historical_votes: true,
        },
    );
    engine.start(votes, certificates, resolver);
    faults
}

/// A block's outcomes as the chain reports them: the application's refusals as text.
fn as_text<R: std::fmt::Display>(outcomes: Vec<Result<(), R>>) -> Vec<Result<(), String>> {
    outcomes
        .into_iter()
        .map(|o| o.map_err(|e| e.to_string()))
        .collect()
}
