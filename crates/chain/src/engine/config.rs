//! The engine's configuration: what a caller gives [`super::start`] ([`Config`], [`Channels`]),
//! the identity and certificate types of the consortium, and the fixed storage layout (the
//! archives' partitions, which the audit reopens by name).

use crate::{
    block::{Block, BlockLimits, Header},
    mempool::MempoolLimits,
};
use commonware_consensus::{
    marshal::{core::Mailbox as MarshalMailbox, standard::Standard},
    simplex::{self, types::Finalization},
    types::FixedEpocher,
};
use commonware_cryptography::{ed25519, sha256::Digest};
use commonware_runtime::buffer::paged::CacheRef;
use commonware_storage::{
    archive::{immutable, prunable},
    translator::EightCap,
};
use commonware_utils::{NZU16, NZU64, NZUsize};
use std::{num::NonZeroUsize, time::Duration};

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
    /// Write a checkpoint of the committed state every this many finalized blocks (0: never;
    /// a restart then replays from genesis).
    pub checkpoint_every: u64,
    /// Join by state sync: start from this peer's checkpoint of a recent finalized block
    /// instead of fetching every block from genesis. Checked before anything is written (see
    /// [`StateSync`]); ignored when this node's own storage is already at or past its height.
    pub state_sync: Option<StateSync>,
    /// Prune finalized blocks and certificates below the older of the two kept checkpoints once
    /// a checkpoint is durably written (`false`: keep the whole chain, an archive). Needs
    /// `checkpoint_every > 0`, and chooses the storage layout: a node keeps the same setting for
    /// the life of its storage.
    pub prune: bool,
}

/// The committed state of a recent finalized block as a peer serves it, with that block's
/// header and finality certificate: what a validator with no chain starts from. The engine
/// trusts none of it: the certificate must be a quorum certificate of the configured validators
/// over the header's digest, and the checkpoint must restore to exactly the header's state root
/// at its height and time ([`crate::Application::restore`]); anything else is refused with
/// [`super::EngineError::StateSync`] before any storage is opened.
#[derive(Clone)]
pub struct StateSync {
    /// The application's checkpoint of the block's state.
    pub checkpoint: SyncedState,
    /// The block's header.
    pub header: Header,
    /// The block's finality certificate.
    pub finalization: BlockFinalization,
}

/// Where a state sync's state comes from.
#[derive(Clone)]
pub enum SyncedState {
    /// The checkpoint whole, restored by the engine (a simulation's validators, a node without
    /// a state store).
    Bytes(Vec<u8>),
    /// Already restored, as it was fetched, into the application the engine is started with,
    /// and checked against the header there ([`crate::node::fetch_state_sync`]): the engine
    /// takes that application's state ([`crate::Application::restored`]) once the header's
    /// certificate checks out, and refuses if it is at any other.
    Restored,
}

impl std::fmt::Debug for StateSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("StateSync");
        out.field("height", &self.header.height);
        match &self.checkpoint {
            SyncedState::Bytes(bytes) => out.field("checkpoint_bytes", &bytes.len()),
            SyncedState::Restored => out.field("checkpoint", &"restored"),
        };
        out.finish_non_exhaustive()
    }
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

/// The epocher of the chain: one epoch for ever (the validator set is fixed).
pub(super) fn epocher() -> FixedEpocher {
    FixedEpocher::new(NZU64!(EPOCH_LENGTH))
}

/// The page cache shared by one node's archives and journals.
pub(super) fn page_cache() -> CacheRef {
    CacheRef::new(NZU16!(4096), NZUsize!(64))
}

/// Configuration of one `immutable` archive under `prefix`: the partitions are
/// `{prefix}-{name}-*` (the audit reopens them with the same names).
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

/// Heights per section of a pruning node's archives: the granularity of pruning (a section goes
/// once every height in it is below the prune floor). Fixed for the life of the storage.
pub(crate) const PRUNE_SECTION: u64 = 64;

/// Configuration of one `prunable` archive under `prefix`, the layout of a node that prunes
/// (`Config::prune`): the partitions are `{prefix}-{name}-pruned-*`, apart from the archive
/// layout's, so neither is ever opened as the other.
pub(crate) fn prunable_archive_config<C>(
    prefix: &str,
    name: &str,
    codec_config: C,
    page_cache: CacheRef,
) -> prunable::Config<EightCap, C> {
    prunable::Config {
        translator: EightCap,
        metadata_partition: format!("{prefix}-{name}-pruned-metadata"),
        key_partition: format!("{prefix}-{name}-pruned-key"),
        key_page_cache: page_cache,
        value_partition: format!("{prefix}-{name}-pruned-value"),
        compression: None,
        codec_config,
        items_per_section: NZU64!(PRUNE_SECTION),
        key_write_buffer: NZUsize!(1 << 13),
        value_write_buffer: NZUsize!(1 << 13),
        replay_buffer: NZUsize!(1 << 13),
    }
}
