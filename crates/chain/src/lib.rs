//! The medspace consortium chain.
//!
//! This crate replicates a deterministic [`Application`] (the ledger state machine, written in
//! `medspace-state`) across a fixed consortium of validators with commonware's simplex BFT
//! consensus. It is generic over the application so consensus can be tested with no knowledge of
//! medical transactions.
//!
//! - [`block`]: the [`block::Block`] type. Its header commits to the parent, the height, the
//!   proposer's time, a hash of the ordered transactions and the state root after applying them.
//! - [`mempool`]: admission-checked, deduplicated, size-bounded pool of pending transactions.
//! - [`engine`]: wires simplex + marshal (block delivery, finalized-block storage, backfill) +
//!   buffered broadcast + a transaction gossip channel around the application. Blocks build on
//!   notarized but unfinalized parents by keeping each executed block's [`Application::Diff`];
//!   finalized blocks are committed in height order exactly once.
//! - [`follow`]: verifying a finalized chain without voting — the next block's height, parent
//!   link, time and finality certificate against the genesis validators — the wire form of a
//!   finalized block, an HTTP source that long-polls validators for it, and the observer's
//!   append-only block log.
//! - [`genesis`]: the consortium spec, the genesis file (validators, observers, application
//!   genesis) and [`genesis::init_consortium`], which writes keys, genesis and node configs.
//! - [`config`]: a node's TOML configuration, validated at load, and its key file.
//! - [`node`]: running one validator on the tokio runtime over authenticated TCP, with the
//!   [`api`] (the node's HTTP API) served beside it.
//! - [`certs`]: a node's TLS key and self-signed certificate, made at `init`.
//! - [`tls`]: TLS on the HTTP APIs with each node's certificate pinned in the genesis: node
//!   certificates, server configuration, the pinned client, serving a router.
//! - [`audit`]: `audit verify` over a stopped node's stored chain (a validator's archives or an
//!   observer's log).
//! - [`recent`]: a bounded map of the latest transactions' entries (statuses, outcomes).
//! - [`bench`](mod@bench): `medspace bench ledger`, validators over loopback TCP measuring finalized tx/s.
//! - `testing` (cargo feature `testing`, off by default): a small real application (signed
//!   key-value counters, ed25519, nonces, SHA-256 root) used by the tests and the counter
//!   benchmark, and `testing::sim`, the deterministic-simulation harness (simulated network,
//!   validator launch, agreement checks) shared by the chain's and the node's simulation tests.
//!
//! Durability: every `checkpoint_every` finalized blocks a validator writes the committed state
//! as a checkpoint ([`Application::checkpoint_reader`], read and written a chunk at a time) to its own storage, synced before older ones
//! are removed. On start the engine restores the newest checkpoint whose state is exactly that
//! of the block at its height in marshal's finalized archive (a torn or stale one is skipped),
//! then replays through [`Application::commit`] only the finalized blocks after it — all of
//! them from genesis when there is none — before consensus starts, so the applied height never
//! disagrees with the state.

pub mod api;
pub mod audit;
pub mod bench;
pub mod block;
pub mod certs;
pub mod config;
pub mod engine;
pub mod follow;
pub mod genesis;
pub mod mempool;
pub mod node;
pub mod recent;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

/// One outcome per transaction of a block, in order: applied, or why it was refused.
pub type Outcomes<R> = Vec<Result<(), R>>;

/// The deterministic application the chain replicates. Transactions are opaque encoded bytes.
pub trait Application: Clone + Send + Sync + 'static {
    /// The writes one block makes, kept for not-yet-finalized blocks (blocks may build on
    /// notarized but unfinalized parents).
    type Diff: Clone + Send + Sync + 'static;
    /// Why the application refuses a transaction, at admission or in a block. The chain reports
    /// it to the submitter as its text.
    type Refusal: std::fmt::Display + Send + Sync + 'static;
    /// The stateless half of admission for many transactions at once: decoding and signature
    /// checks, batched where the application can. The engine runs it on a clone of the
    /// application, without holding the node's lock, so consensus and other submitters are not
    /// held up by signature verification; it reads no state, only what the application keeps to
    /// check faster (decompressed keys). One outcome per transaction, in order.
    fn precheck(&self, txs: &[bytes::Bytes]) -> Vec<Result<(), Self::Refusal>>;
    /// The stateful half of admission, for a transaction that passed [`Application::precheck`]:
    /// chain id, signer, and that the nonce is not already used in committed state. Cheap; it
    /// runs under the node's lock. Returns the 32-byte tx id.
    fn check_prechecked(&self, tx: &[u8]) -> Result<[u8; 32], Self::Refusal>;
    /// The whole admission check of one transaction: [`Application::precheck`], then
    /// [`Application::check_prechecked`].
    fn check_tx(&self, tx: &[u8]) -> Result<[u8; 32], Self::Refusal> {
        let raw = bytes::Bytes::copy_from_slice(tx);
        if let Some(Err(e)) = self.precheck(std::slice::from_ref(&raw)).pop() {
            return Err(e);
        }
        self.check_prechecked(tx)
    }
    /// Execute `txs` on top of the committed state plus `pending` diffs (oldest first), as block
    /// `height` with block time `time_ms`. Deterministic. Refused transactions are not an error:
    /// they are reported per transaction. Returns the diff, the state root after the block, and
    /// one outcome per tx (Ok or the refusal reason).
    fn execute(
        &self,
        pending: &[&Self::Diff],
        height: u64,
        time_ms: u64,
        txs: &[bytes::Bytes],
    ) -> (Self::Diff, [u8; 32], Outcomes<Self::Refusal>);
    /// Make a finalized block's diff part of the committed state (called in height order,
    /// exactly once per height). Returns the new root.
    fn commit(&mut self, height: u64, diff: &Self::Diff) -> [u8; 32];
    /// Root of the committed state.
    fn root(&self) -> [u8; 32];
    /// The state root at genesis (what the genesis block names). The committed root until the
    /// first commit, unless the application starts from a state of its own storage.
    fn genesis_root(&self) -> [u8; 32] {
        self.root()
    }
    /// The height and root of the committed state this application brought from its own
    /// storage (its last commit before the process stopped), or `None` when it starts at
    /// genesis. The engine resumes there — replaying only the finalized blocks after it — when
    /// that root is the state root of its own stored block at that height, and otherwise
    /// starts over from [`Application::at_genesis`].
    fn resumed(&self) -> Option<(u64, [u8; 32])> {
        None
    }
    /// This application back at genesis, the state it brought from its storage set aside.
    fn at_genesis(&self) -> Result<Self, String> {
        Err("this application keeps no state of its own".into())
    }
    /// The committed state as a checkpoint taken after the finalized block at `height` with
    /// time `time_ms`, as bytes read on demand, or `None` when the application keeps none (its
    /// nodes then always replay from genesis) or is not at `height`. A node writes one every
    /// `checkpoint_every` blocks and serves one to nodes that join from it; both read it a
    /// chunk at a time, so a checkpoint costs the reader's memory, not its size.
    fn checkpoint_reader(
        &self,
        _height: u64,
        _time_ms: u64,
    ) -> Option<Box<dyn std::io::Read + Send>> {
        None
    }
    /// [`Application::checkpoint_reader`] read whole (tests, small states).
    fn checkpoint(&self, height: u64, time_ms: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.checkpoint_reader(height, time_ms)?
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }
    /// [`Application::checkpoint_reader`] copied to `out`; the bytes written, or `None` when
    /// the application keeps none.
    fn write_checkpoint(
        &self,
        height: u64,
        time_ms: u64,
        out: &mut dyn std::io::Write,
    ) -> Option<std::io::Result<u64>> {
        let mut reader = self.checkpoint_reader(height, time_ms)?;
        Some(std::io::copy(&mut reader, out))
    }
    /// The height a checkpoint says it was taken at, read from its first bytes without
    /// restoring it (untrusted until the restore checks it against a certified header), or
    /// `None` when they are not the start of a checkpoint of this application.
    fn checkpoint_height(&self, _bytes: &[u8]) -> Option<u64> {
        None
    }
    /// How many first bytes of a checkpoint [`Application::checkpoint_height`] needs.
    fn checkpoint_header_len(&self) -> usize {
        0
    }
    /// A restore of the checkpoint of the finalized block at `height` whose header has
    /// `time_ms` and `root`, taking the checkpoint's bytes as they arrive ([`Restoring`]).
    /// Refused (changing nothing) unless the application keeps checkpoints.
    fn restoring(
        &self,
        _height: u64,
        _time_ms: u64,
        _root: [u8; 32],
    ) -> Result<Box<dyn Restoring<Self>>, String> {
        Err("this application keeps no checkpoints".into())
    }
    /// This application with its committed state restored from `bytes`, the whole checkpoint
    /// of the finalized block at `height` whose header has `time_ms` and `root`. Refused,
    /// changing nothing, unless the checkpoint is intact and is exactly that block's state.
    fn restore(
        &self,
        bytes: &[u8],
        height: u64,
        time_ms: u64,
        root: [u8; 32],
    ) -> Result<Self, String> {
        let mut restoring = self.restoring(height, time_ms, root)?;
        restoring.feed(bytes)?;
        restoring.finish()
    }
    /// This application, if a restore already brought it to the state of the block at
    /// `height` with state root `root` (a node that joined by state sync restores the
    /// checkpoint as it arrives, before the engine starts: [`crate::node::fetch_state_sync`]).
    /// Refused when it is at any other state.
    fn restored(&self, _height: u64, _root: [u8; 32]) -> Result<Self, String> {
        Err("this application keeps no checkpoints".into())
    }
}

/// A checkpoint being restored as its bytes arrive, in pieces of any size
/// ([`Application::restoring`]). Nothing is committed before [`Restoring::finish`]; the first
/// refusal ends the restore, and one dropped unfinished commits nothing.
pub trait Restoring<A>: Send {
    /// The next bytes of the checkpoint; refused as soon as they show it is not the one
    /// expected (its header names another block, a record is malformed, ...).
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// The whole checkpoint arrived: the application restored at its block, once its checksum
    /// and state root check out.
    fn finish(self: Box<Self>) -> Result<A, String>;
}
