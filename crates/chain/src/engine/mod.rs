//! The consensus engine around an [`Application`](crate::Application): simplex + marshal +
//! block/tx gossip.
//!
//! Layout per validator:
//! - simplex (votes, certificates, resolver channels) drives agreement on block digests;
//! - marshal's `Inline` wrapper is simplex's automaton/relay/reporter: it broadcasts full blocks
//!   through `buffered` broadcast, fetches missing blocks over the backfill channel, and verifies
//!   each proposal with our [`Node`] (re-execution) before voting;
//! - marshal stores finalized blocks and finalization certificates in `immutable` archives and
//!   hands them to the finalizer in height order, at least once;
//! - the finalizer commits each finalized block's diff exactly once (duplicates are skipped by
//!   height), updates tx statuses and the mempool, then acknowledges the block to marshal;
//! - transactions submitted locally are admitted
//!   ([`Application::precheck`](crate::Application::precheck), signatures in batches and outside
//!   the node's lock, then [`Application::check_prechecked`](crate::Application::check_prechecked))
//!   and gossiped to all peers over their own channel;
//! - simplex's fault evidence (two conflicting signed votes from one validator in one view) is
//!   verified, logged, counted and kept in a bounded [`Fault`] log readable from the [`Handle`].
//!   Simplex itself blocks the offending peer through the configured p2p blocker.
//!
//! Modules, in dependency order (each uses only those before it):
//! - `config`: [`Config`], [`Channels`], [`channel`] ids, the consortium's types ([`Scheme`],
//!   [`PublicKey`], [`BlockFinalization`]) and the storage layout;
//! - `faults`: [`Fault`], [`FaultKind`] and the reporter that records proven faults;
//! - `state`: the state a node's actor and handle share, with [`TxStatus`] and [`Committed`];
//! - `handle`: [`Handle`], [`SubmitError`], admission, and the [`Finalizer`] marshal reports to;
//! - `gossip`: the transaction batch framing ([`encode_tx_batch`], [`decode_tx_batch`]) and the
//!   gossip tasks;
//! - `checkpoint`: the node's checkpoints on its storage (written every `checkpoint_every`
//!   blocks on their own task, restored at start against the finalized archive; on a node that
//!   prunes, each written checkpoint prunes the blocks below the older kept one);
//! - `actor`: the [`Node`] (propose, verify, commit), the finalizer loop, and [`start`]
//!   (including a join by state sync: a peer's checkpoint, checked against the validator set,
//!   as marshal's and simplex's floor).

mod actor;
mod checkpoint;
mod config;
mod faults;
mod gossip;
mod handle;
mod state;

pub use actor::{EngineError, Node, start};
pub(crate) use config::archive_config;
pub use config::{
    BlockFinalization, Channels, Config, Marshal, PublicKey, Scheme, StateSync, SyncedState,
    channel,
};
pub use faults::{Fault, FaultKind, MAX_RECORDED_FAULTS};
pub use gossip::{GOSSIP_BATCH_TXS, decode_tx_batch, encode_tx_batch};
pub use handle::{Finalizer, Handle, SubmitError};
pub use state::{Committed, TxStatus};
