//! The engine's configuration: what a caller gives [`super::start`] ([`Config`], [`Channels`]),
//! the identity and certificate types of the consortium, and the fixed storage layout (the
//! archives' partitions, which the audit reopens by name).

use crate::{
    block::{Block, BlockLimits},
    mempool::MempoolLimits,
};
use commonware_consensus::{
    marshal::{core::Mailbox as MarshalMailbox, standard::Standard},
    simplex::{self, types::Finalization},
    types::FixedEpocher,
};
use commonware_cryptography::{ed25519, sha256::Digest};
use commonware_runtime::buffer::paged::CacheRef;
use commonware_storage::archive::immutable;
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
