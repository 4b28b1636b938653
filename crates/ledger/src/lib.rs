//! medspace-ledger: the ledger as the consortium chain replicates it, without any of the data
//! plane (no DataFusion, no vault).
//!
//! - [`LedgerApp`] ([`app`]): the deterministic state machine ([`medspace_state::State`]) as the
//!   chain's `Application` — blocks execute on their parent's state, finalized blocks commit.
//! - [`execute`]: a block's raw transactions executed exactly as every validator, follower and
//!   auditor does (decode, each signer's transactions in nonce order, one batch signature
//!   check, the rules).
//! - [`Follower`] ([`follow`]): the state rebuilt from finalized blocks verified one by one
//!   (certificate of the genesis validators, parent link, re-execution to the header's root),
//!   from genesis or from a checkpoint whose records hash to a certified header's root.
//! - [`Ledger`] ([`view`]): the one view of a ledger that a node's services use — implemented by
//!   a validator's chain handle, an observer's follower and the simulations' in-process ledger.
//! - [`local`]: an in-process ledger sealing blocks with no consensus (benchmarks, tools).
//! - [`audit`]: re-verifying a stopped node's stored chain from genesis.
//! - [`bench`], [`bench_apply`]: the ledger's benchmark workloads and the apply benchmark.

pub mod app;
pub mod audit;
pub mod bench;
pub mod bench_apply;
pub mod execute;
pub mod follow;
pub mod local;
pub mod view;

pub use app::{BlockState, LedgerApp, StoreError};
pub use audit::audit;
pub use execute::{Refusal, TxOutcome, execute_block, execute_block_with};
pub use follow::{Applied, Follower, Outcome};
pub use medspace_chain::recent::Recent;
pub use view::{Anchor, Finality, FollowerView, Ledger, Snapshot, SubmitError, TxStatus};

/// Errors of building the ledger application.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The application genesis does not parse.
    #[error("application genesis: {0}")]
    AppGenesis(String),
    /// The genesis is not a valid starting state.
    #[error(transparent)]
    Genesis(#[from] medspace_state::GenesisError),
}
