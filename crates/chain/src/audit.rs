//! `audit verify`: re-verifies a node's stored chain from its data directory.
//!
//! For every height from 1 upward it reads the finalized block and finalization certificate
//! that marshal stored, and checks: the block decodes (which checks its tx root), heights are
//! contiguous, the parent digest links to the previous block, the certificate is a valid quorum
//! certificate of the genesis validators over this block's digest, and re-executing the block on
//! the state rebuilt so far gives the state root in its header. It names the first faulty height
//! and the reason. The node must be stopped while auditing.
//!
//! A node that prunes (`[consensus] prune`) keeps only the blocks since its older checkpoint; it
//! is refused ([`AuditError::Pruned`]): the chain is audited on an archive node.
//!
//! The committed state is not stored separately (it is rebuilt from blocks, see the crate
//! docs), so "tampering with state" means tampering with these archives, which this detects.

use crate::{
    Application,
    block::Block,
    engine::{BlockFinalization, archive_config},
    follow::{BlockLog, ChainCheck, FollowError},
    genesis::Genesis,
};
use commonware_cryptography::sha256::Digest;
use commonware_runtime::{Runner as _, Supervisor as _, buffer::paged::CacheRef};
use commonware_storage::archive::{Archive as _, Identifier, immutable};
use commonware_utils::{NZU16, NZUsize};
use std::path::Path;

/// Result of an audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Highest height verified without fault.
    pub verified_height: u64,
    /// First fault: height and reason.
    pub fault: Option<(u64, String)>,
    /// State root after the last verified block.
    pub root: [u8; 32],
    /// The first of the blocks at the end of the store that no certificate proves (none of
    /// their own, and no later certified block links back to them): a node stopped between
    /// storing a block and its certificate leaves such a tail. They are neither verified nor
    /// counted; nothing in them is trusted.
    pub unproven_tail: Option<u64>,
}

/// Errors that prevent auditing at all.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Bad genesis.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// The node prunes (`[consensus] prune`): its store no longer starts at genesis, so it
    /// cannot be re-verified from there. Audit an archive node (one that does not prune, or an
    /// observer) instead.
    #[error(
        "node prunes its chain: dir={dir}; audit an archive node (prune = false) or an observer"
    )]
    Pruned {
        /// Directory.
        dir: String,
    },
    /// Storage could not be opened.
    #[error("cannot open storage: dir={dir} error={error}")]
    Storage {
        /// Directory.
        dir: String,
        /// Cause.
        error: String,
    },
}

/// Audits the chain stored by node `node_name` under `data_dir` (its `[node].data_dir`),
/// starting from `app` holding the genesis state.
pub fn audit_verify<A: Application>(
    data_dir: &Path,
    node_name: &str,
    genesis: &Genesis,
    mut app: A,
) -> Result<AuditReport, AuditError> {
    let mut check =
        ChainCheck::new(genesis, app.root()).map_err(|e| AuditError::Genesis(e.to_string()))?;
    let log = data_dir.join(OBSERVED_LOG);
    if log.is_file() {
        return audit_log(&log, check, app);
    }
    let certificate_config = check.certificate_config();
    let storage = data_dir.join("storage");
    let dir = storage.display().to_string();
    if !storage.is_dir() {
        return Err(AuditError::Storage {
            dir,
            error: "no storage directory".into(),
        });
    }
    let prefix = format!("medspace-{node_name}");
    // A pruning node's archives (see `engine::Config::prune`) live under their own partitions.
    if ["metadata", "key", "value"].iter().any(|part| {
        storage
            .join(format!("{prefix}-finalized-blocks-pruned-{part}"))
            .exists()
    }) {
        return Err(AuditError::Pruned { dir });
    }
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new().with_storage_directory(storage),
    );
    runner.start(|context| async move {
        let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(64));
        let limits = crate::block::BlockLimits {
            max_txs: usize::MAX / 4,
            max_tx_bytes: usize::MAX / 4,
            max_block_bytes: usize::MAX / 4,
        };
        let storage_err = |e: commonware_storage::archive::Error| AuditError::Storage {
            dir: dir.clone(),
            error: e.to_string(),
        };
        let blocks: immutable::Archive<_, Digest, Block> = immutable::Archive::init(
            context.child("blocks"),
            archive_config(&prefix, "finalized-blocks", limits, page_cache.clone()),
        )
        .await
        .map_err(storage_err)?;
        let finalizations: immutable::Archive<_, Digest, BlockFinalization> =
            immutable::Archive::init(
                context.child("finalizations"),
                archive_config(
                    &prefix,
                    "finalizations-by-height",
                    certificate_config,
                    page_cache,
                ),
            )
            .await
            .map_err(storage_err)?;
        // A block marshal finalized through a later block's certificate has none of its own:
        // it is verified by linkage and counts as final once a later certified block links
        // back to it ([`Tail`]: what the audit reports if no certificate ever covers it).
        let mut height = 0u64;
        let mut root = app.root();
        let mut tail = Tail::default();
        let fault = loop {
            let h = height + 1;
            let fin: Result<Option<BlockFinalization>, _> =
                finalizations.get(Identifier::Index(h)).await;
            let block = blocks.get(Identifier::Index(h)).await;
            let (fin, block) = match (fin, block) {
                (Ok(None), Ok(None)) => break None,
                (Err(e), _) => break Some((h, format!("finality certificate unreadable: {e}"))),
                (_, Err(e)) => break Some((h, format!("block unreadable: {e}"))),
                (Ok(Some(_)), Ok(None)) => break Some((h, "block missing".into())),
                (fin, Ok(Some(b))) => (fin.ok().flatten(), b),
            };
            match step(&mut check, &mut app, &block, fin.as_ref()) {
                Ok(r) => tail.step(h, fin.is_some(), &mut root, r),
                Err(reason) => break Some((h, reason)),
            }
            height = h;
        };
        Ok(tail.report(height, fault, root))
    })
}

/// The blocks at the end of a stored chain that no certificate proves yet: the first of them
/// and the root before it, while no later certified block has linked back.
#[derive(Default)]
struct Tail(Option<(u64, [u8; 32])>);

impl Tail {
    /// Height `h` was verified (by its certificate, or by linkage only) and gave `next`.
    fn step(&mut self, h: u64, certified: bool, root: &mut [u8; 32], next: [u8; 32]) {
        if certified {
            self.0 = None;
        } else if self.0.is_none() {
            self.0 = Some((h, *root));
        }
        *root = next;
    }

    /// The report of an audit that verified up to `height`: without a fault, an unproven tail
    /// is reported as such and not counted.
    fn report(self, height: u64, fault: Option<(u64, String)>, root: [u8; 32]) -> AuditReport {
        match (&fault, self.0) {
            (None, Some((h, before))) => AuditReport {
                verified_height: h - 1,
                fault: None,
                root: before,
                unproven_tail: Some(h),
            },
            _ => AuditReport {
                verified_height: height,
                fault,
                root,
                unproven_tail: None,
            },
        }
    }
}

/// File name of an observer's block log inside its data directory.
pub const OBSERVED_LOG: &str = "observed.log";

/// Verifies one block as the next of the chain and executes it; the new root.
/// Without `fin` the block is only checked for linkage (see [`ChainCheck::check_link`]).
fn step<A: Application>(
    check: &mut ChainCheck,
    app: &mut A,
    block: &Block,
    fin: Option<&BlockFinalization>,
) -> Result<[u8; 32], String> {
    match fin {
        Some(fin) => check.check(block, fin),
        None => check.check_link(block),
    }
    .map_err(fault_reason)?;
    let h = block.header.height;
    let (diff, computed, _) = app.execute(&[], h, block.header.time_ms, &block.txs);
    if computed != block.header.state_root {
        return Err(format!(
            "re-execution gives a different state root: header={} computed={}",
            hex::encode(block.header.state_root),
            hex::encode(computed)
        ));
    }
    let root = app.commit(h, &diff);
    check.advance(block);
    Ok(root)
}

/// Audits an observer's block log ([`crate::follow::BlockLog`]).
fn audit_log<A: Application>(
    path: &Path,
    mut check: ChainCheck,
    mut app: A,
) -> Result<AuditReport, AuditError> {
    let mut root = app.root();
    let (entries, corrupt) = BlockLog::read(path).map_err(|e| AuditError::Storage {
        dir: path.display().to_string(),
        error: e.to_string(),
    })?;
    let mut fault = None;
    // An entry logged without a certificate of its own (finalized through a later block's) is
    // verified by linkage, and proven once a later certified entry links back to it.
    let mut tail = Tail::default();
    for (i, raw) in entries.iter().enumerate() {
        let h = i as u64 + 1;
        let outcome = check
            .decode_entry(h, raw)
            .map_err(fault_reason)
            .and_then(|(block, fin)| {
                let r = step(&mut check, &mut app, &block, fin.as_ref())?;
                Ok((r, fin.is_some()))
            });
        match outcome {
            Ok((r, certified)) => tail.step(h, certified, &mut root, r),
            Err(reason) => {
                fault = Some((h, reason));
                break;
            }
        }
    }
    if fault.is_none() {
        fault = corrupt.map(|h| (h, "block log entry corrupt (checksum mismatch)".to_string()));
    }
    Ok(tail.report(check.height(), fault, root))
}

/// The reason of a fault as the audit names it (the height is reported separately).
fn fault_reason(e: FollowError) -> String {
    match e {
        FollowError::Invalid { reason, .. } | FollowError::Decode { reason, .. } => reason,
        other => other.to_string(),
    }
}
