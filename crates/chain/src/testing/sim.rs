//! Deterministic-simulation harness shared by the chain's and the node's tests: a consortium of
//! validators running the real [`engine`] on commonware's deterministic runtime and simulated
//! p2p network, with helpers to cut and heal links, wait for transactions and check agreement.
//!
//! Everything here is deterministic for a given runtime seed. The helpers return errors instead
//! of panicking; tests decide what is fatal.
//!
//! Typical use: [`runner`] for a seed, [`Sim::new`], [`Sim::link_all`] (or [`Sim::link`] for a
//! partition), [`Sim::launch`] each validator, submit through [`Validator::handle`], then
//! [`wait_applied`], [`converge`] and [`check_consistent`].

use crate::{
    Application,
    block::BlockLimits,
    engine::{
        self, Channels, Config, EngineError, Handle, PublicKey, Scheme, StateSync, TxStatus,
        channel,
    },
    mempool::MempoolLimits,
};
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::simulated::{self, Control, Link, Network, Oracle};
use commonware_runtime::{Quota, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, ordered::Set, probability};
use futures::StreamExt as _;
use std::time::Duration;

/// The runtime context of a simulation.
pub type Ctx = deterministic::Context;
/// The simulated network's oracle (links, blocking, per-peer control).
pub type SimOracle = Oracle<PublicKey, Ctx>;
/// A registered simulated channel.
pub type SimChannel = (
    simulated::Sender<PublicKey, Ctx>,
    simulated::Receiver<PublicKey>,
);

/// Per-channel rate limit of every simulated validator.
pub const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

/// The default link between two validators: 20 ms ± 5 ms, lossless.
pub const LINK: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: probability!(1.0),
};

/// Why a simulation step failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No validator has this index.
    #[error("no validator at index={0}")]
    NoValidator(usize),
    /// The simulated network refused an operation.
    #[error("simulated network error: {0}")]
    Network(String),
    /// The engine did not start.
    #[error("validator did not start: {0}")]
    Start(#[from] EngineError),
    /// The validator's task ended before handing back its handle.
    #[error("validator task ended before it started")]
    Stopped,
    /// A validator's block subscription closed (the node stopped) while waiting.
    #[error("validator stopped while waiting for transactions")]
    SubscriptionClosed,
    /// Two validators finalized different blocks at the same height.
    #[error("finalized chains diverge: validators={a},{b} height={height}")]
    Diverged {
        /// First validator (index in the checked slice).
        a: usize,
        /// Second validator.
        b: usize,
        /// First differing height.
        height: usize,
    },
    /// A validator's committed state root is not the root of its last finalized block.
    #[error("committed root differs from the last finalized header: validator={0}")]
    RootMismatch(usize),
    /// A validator halted.
    #[error("validator halted: validator={index} reason={reason}")]
    Halted {
        /// Index in the checked slice.
        index: usize,
        /// Why it halted.
        reason: String,
    },
}

/// A deterministic runner for `seed` that fails the run after `timeout` of simulated time.
pub fn runner(seed: u64, timeout: Duration) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(timeout)),
    )
}

/// Validator keys `0..n` (ed25519 from fixed seeds).
pub fn keys(n: usize) -> Vec<ed25519::PrivateKey> {
    (0..n as u64).map(ed25519::PrivateKey::from_seed).collect()
}

/// A running validator.
pub struct Validator<A: Application> {
    /// Its engine handle.
    pub handle: Handle<A>,
    /// Its task (abort it to crash the validator; storage survives).
    pub task: commonware_runtime::Handle<()>,
}

/// A simulated consortium: keys, the network, and how validators are configured.
pub struct Sim {
    /// Chain id (also the consensus namespace).
    pub chain_id: String,
    /// Validator signing keys, by index.
    pub keys: Vec<ed25519::PrivateKey>,
    /// Validator public keys, by index.
    pub peers: Vec<PublicKey>,
    /// The network oracle.
    pub oracle: SimOracle,
    /// Validators launched from now on write a checkpoint every this many finalized blocks (0,
    /// the default: never).
    pub checkpoint_every: u64,
    /// Validators launched from now on prune their finalized blocks below their older kept
    /// checkpoint (`false`, the default: they keep the whole chain).
    pub prune: bool,
}

impl Sim {
    /// Starts a simulated network for `n` validators (keys from [`keys`]), with no links yet.
    pub async fn new(ctx: &Ctx, chain_id: &str, n: usize) -> Self {
        let keys = keys(n);
        let peers: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size: 8 * 1024 * 1024,
                max_peers_per_set: NZUsize!(n.max(1)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            peers.clone(),
        )
        .await;
        network.start();
        Self {
            chain_id: chain_id.to_string(),
            keys,
            peers,
            oracle,
            checkpoint_every: 0,
            prune: false,
        }
    }

    fn peer(&self, i: usize) -> Result<&PublicKey, SimError> {
        self.peers.get(i).ok_or(SimError::NoValidator(i))
    }

    /// Links every pair of validators inside each group (both directions) with [`LINK`].
    pub async fn link(&self, groups: &[&[usize]]) -> Result<(), SimError> {
        for group in groups {
            for &a in group.iter() {
                for &b in group.iter() {
                    if a != b {
                        let (pa, pb) = (self.peer(a)?.clone(), self.peer(b)?.clone());
                        self.oracle
                            .add_link(pa, pb, LINK)
                            .await
                            .map_err(|e| SimError::Network(e.to_string()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Links every pair of validators.
    pub async fn link_all(&self) {
        for a in &self.peers {
            for b in &self.peers {
                if a != b {
                    // Only fails for an existing link, which is what we want anyway.
                    let _ = self.oracle.add_link(a.clone(), b.clone(), LINK).await;
                }
            }
        }
    }

    /// Removes every link.
    pub async fn unlink_all(&self) {
        for a in &self.peers {
            for b in &self.peers {
                if a != b {
                    // Only fails for a missing link, which is what we want anyway.
                    let _ = self.oracle.remove_link(a.clone(), b.clone()).await;
                }
            }
        }
    }

    /// Registers one channel for validator `i` (e.g. for a Byzantine actor).
    pub async fn register(&self, i: usize, id: u64) -> Result<SimChannel, SimError> {
        let control = self.oracle.control(self.peer(i)?.clone());
        register(&control, id).await
    }

    /// Validator `i`'s consensus signing scheme (e.g. for a Byzantine actor).
    pub fn scheme(&self, i: usize) -> Result<Scheme, SimError> {
        let key = self.keys.get(i).ok_or(SimError::NoValidator(i))?;
        let participants = Set::try_from(self.peers.clone())
            .map_err(|e| SimError::Network(format!("invalid validator set: {e:?}")))?;
        Scheme::signer(self.chain_id.as_bytes(), participants, key.clone())
            .ok_or(SimError::NoValidator(i))
    }

    /// Starts validator `i` running `app` (which must hold the genesis state). Storage
    /// partitions are per index, so launching an index again restarts it from its storage;
    /// `incarnation` only labels the task.
    pub async fn launch<A: Application>(
        &self,
        ctx: &Ctx,
        i: usize,
        incarnation: u32,
        app: A,
    ) -> Result<Validator<A>, SimError> {
        self.launch_synced(ctx, i, incarnation, app, None).await
    }

    /// [`Sim::launch`], joining by state sync from `sync` (e.g. another validator's
    /// [`Handle::state_sync`]) when given.
    pub async fn launch_synced<A: Application>(
        &self,
        ctx: &Ctx,
        i: usize,
        incarnation: u32,
        app: A,
        sync: Option<StateSync>,
    ) -> Result<Validator<A>, SimError> {
        let key = self.keys.get(i).ok_or(SimError::NoValidator(i))?.clone();
        let control = self.oracle.control(key.public_key());
        let channels = Channels {
            votes: register(&control, channel::VOTES).await?,
            certificates: register(&control, channel::CERTIFICATES).await?,
            resolver: register(&control, channel::RESOLVER).await?,
            backfill: register(&control, channel::BACKFILL).await?,
            blocks: register(&control, channel::BLOCKS).await?,
            txs: register(&control, channel::TXS).await?,
        };
        let config = Config {
            chain_id: self.chain_id.clone(),
            signer: key,
            validators: self.peers.clone(),
            partition_prefix: format!("validator-{i}"),
            blocker: control,
            peer_provider: self.oracle.manager(),
            block_limits: BlockLimits::default(),
            mempool_limits: MempoolLimits::default(),
            max_future_ms: 5_000,
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(1),
            mailbox_size: NZUsize!(1024),
            checkpoint_every: self.checkpoint_every,
            state_sync: sync,
            prune: self.prune,
        };
        let (tx, rx) = futures::channel::oneshot::channel();
        let task = ctx
            .child("validator")
            .with_attribute("index", i)
            .with_attribute("incarnation", incarnation)
            .spawn(move |ctx| async move {
                match engine::start(ctx, config, app, channels).await {
                    Ok(handle) => {
                        let _ = tx.send(Ok(handle));
                        // The engine's actors are children of this task: keep it alive.
                        futures::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        let handle = rx.await.map_err(|_| SimError::Stopped)??;
        Ok(Validator { handle, task })
    }
}

async fn register(control: &Control<PublicKey, Ctx>, id: u64) -> Result<SimChannel, SimError> {
    control
        .register(id, QUOTA)
        .await
        .map_err(|e| SimError::Network(format!("register channel={id}: {e}")))
}

/// Waits until every transaction in `ids` is finalized and applied (`Ok`) on `handle`.
pub async fn wait_applied<A: Application>(
    handle: &Handle<A>,
    ids: &[[u8; 32]],
) -> Result<(), SimError> {
    let mut sub = handle.subscribe();
    loop {
        let done = ids.iter().all(|id| {
            matches!(
                handle.status(id),
                TxStatus::Finalized {
                    outcome: Ok(()),
                    ..
                }
            )
        });
        if done {
            return Ok(());
        }
        if sub.next().await.is_none() {
            return Err(SimError::SubscriptionClosed);
        }
    }
}

/// Waits until every handle has committed the highest height any of them had on entry;
/// returns that height.
pub async fn converge<A: Application>(handles: &[&Handle<A>]) -> u64 {
    let target = handles.iter().map(|h| h.height()).max().unwrap_or(0);
    for h in handles {
        h.wait_for_height(target).await;
    }
    target
}

/// Checks that every pair of handles agrees on the common prefix of their finalized chains,
/// that each committed state root is the root of its last finalized block, and that none halted.
pub fn check_consistent<A: Application>(handles: &[&Handle<A>]) -> Result<(), SimError> {
    // Each chain from the height its node knows (genesis, or the checkpoint it started from).
    let chains: Vec<_> = handles
        .iter()
        .map(|h| (h.finalized_from(), h.finalized_chain()))
        .collect();
    for (a, (fa, ca)) in chains.iter().enumerate() {
        for (b, (fb, cb)) in chains.iter().enumerate().skip(a + 1) {
            let from = (*fa).max(*fb);
            let skip = |f: u64| usize::try_from(from - f).unwrap_or(usize::MAX);
            if let Some(at) = ca
                .iter()
                .skip(skip(*fa))
                .zip(cb.iter().skip(skip(*fb)))
                .position(|(x, y)| x != y)
            {
                let height = usize::try_from(from)
                    .unwrap_or(usize::MAX)
                    .saturating_add(at);
                return Err(SimError::Diverged { a, b, height });
            }
        }
    }
    for (index, (h, (_, chain))) in handles.iter().zip(chains.iter()).enumerate() {
        if let Some(reason) = h.halted() {
            return Err(SimError::Halted { index, reason });
        }
        let root = chain.last().map(|(_, r)| *r);
        if root != Some(h.with_app(|a| a.root())) {
            return Err(SimError::RootMismatch(index));
        }
    }
    Ok(())
}
