//! A validator's checkpoints on its own storage: the committed state every `checkpoint_every`
//! finalized blocks, one blob per height in the partition `{prefix}-checkpoints`.
//!
//! Crash safety without renames: a checkpoint is written into a new blob named by its height
//! and synced before any older one is removed, and the newest [`KEEP`] are kept. A process
//! killed mid-write leaves a torn newest blob, which the application's checksum refuses at
//! restore; the one before it is still whole. Whatever is restored must also equal the state
//! root of the block at its height in the node's own finalized archive, so a stale or altered
//! checkpoint is never taken for the chain's state: the node falls back to an older one or to
//! replaying from genesis.
//!
//! Writing runs on its own task, fed through a channel of one slot: a checkpoint that finds the
//! writer still busy with the previous one is skipped, so a large state never holds up
//! finalization.

use super::state::{FinalizedChain, Shared};
use crate::{Application, block::Block};
use commonware_consensus::marshal::Identifier;
use commonware_consensus::types::Height;
use commonware_cryptography::Digestible as _;
use commonware_runtime::{Blob as _, ReadOptions, Spawner, Storage, WriteOptions};
use commonware_utils::sync::Mutex;
use futures::{StreamExt as _, channel::mpsc};
use std::sync::Arc;
use tracing::{info, warn};

use super::config::Marshal;

/// How many checkpoints a validator keeps (the newest and the one before, in case the newest is
/// torn by a crash).
pub(super) const KEEP: usize = 2;

/// The storage partition of a node's checkpoints.
pub(super) fn partition(prefix: &str) -> String {
    format!("{prefix}-checkpoints")
}

/// Heights of the checkpoints in `partition`, newest first (blobs that are not named by a
/// height are ignored).
async fn heights<E: Storage>(context: &E, partition: &str) -> Vec<u64> {
    let mut out: Vec<u64> = match context.scan(partition).await {
        Ok(names) => names
            .iter()
            .filter_map(|n| <[u8; 8]>::try_from(n.as_slice()).ok())
            .map(u64::from_be_bytes)
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

async fn read<E: Storage>(context: &E, partition: &str, height: u64) -> Result<Vec<u8>, String> {
    let (blob, len) = context
        .open(partition, &height.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    if len == 0 {
        return Err("empty checkpoint".into());
    }
    let bufs = blob
        .read_at(0, len, ReadOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(bufs.coalesce().as_ref().to_vec())
}

/// Writes `bytes` as the checkpoint of `height`, syncs it, then removes all but the newest
/// [`KEEP`].
async fn write<E: Storage>(
    context: &E,
    partition: &str,
    height: u64,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let (blob, _) = context
        .open(partition, &height.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // INVARIANT: a checkpoint's length fits u64.
    let len = bytes.len() as u64;
    blob.write_at(0, bytes, WriteOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    blob.resize(len).await.map_err(|e| e.to_string())?;
    blob.sync().await.map_err(|e| e.to_string())?;
    drop(blob);
    for old in heights(context, partition).await.into_iter().skip(KEEP) {
        if let Err(e) = context.remove(partition, Some(&old.to_be_bytes())).await {
            warn!(height = old, error = %e, "chain.checkpoint: could not remove an old checkpoint");
        }
    }
    Ok(())
}

/// Restores the newest stored checkpoint that is exactly the state of the block at its height
/// in marshal's finalized archive (at most `processed`): sets the shared application and the
/// finalized chain to start there. Returns its height, or `None` when no checkpoint qualifies
/// (the caller replays from genesis).
pub(super) async fn restore<E: Storage, A: Application>(
    context: &E,
    prefix: &str,
    shared: &Mutex<Shared<A>>,
    marshal: &Marshal,
    processed: u64,
) -> Option<u64> {
    let partition = partition(prefix);
    for height in heights(context, &partition).await {
        if height == 0 || height > processed {
            continue;
        }
        let Some(block) = marshal
            .get_block(Identifier::Height(Height::new(height)))
            .await
        else {
            continue;
        };
        let block: &Block = block.inner();
        let bytes = match read(context, &partition, height).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                warn!(height, %reason, "chain.checkpoint.restore: unreadable, trying an older one");
                continue;
            }
        };
        let (time, root) = (block.header.time_ms, block.header.state_root);
        let app = shared.lock().app.clone();
        match app.restore(&bytes, height, time, root) {
            Ok(restored) => {
                let mut shared = shared.lock();
                shared.app = restored;
                shared.finalized =
                    FinalizedChain::starting_at(height, (block.digest(), time, root));
                info!(
                    height,
                    bytes = bytes.len(),
                    "chain.checkpoint.restore: state restored from checkpoint"
                );
                return Some(height);
            }
            Err(reason) => {
                warn!(height, %reason, "chain.checkpoint.restore: refused, trying an older one");
            }
        }
    }
    None
}

/// What the writer is handed: a finalized height, its block time and the application committed
/// at it (an O(1) clone).
pub(super) type Job<A> = (u64, u64, A);

/// Starts the writer task; returns the slot to offer checkpoints to. With `pruner` (a node
/// that prunes), each durably written checkpoint is followed by pruning marshal's finalized
/// blocks and certificates below the oldest kept checkpoint: whichever checkpoint a restart
/// restores, its block and every block after it are still stored.
pub(super) fn start_writer<E, A>(
    context: &E,
    prefix: &str,
    pruner: Option<Marshal>,
) -> mpsc::Sender<Job<A>>
where
    E: Storage + Spawner,
    A: Application,
{
    let (sender, mut jobs) = mpsc::channel::<Job<A>>(0);
    let partition = partition(prefix);
    context
        .child("checkpoints")
        .spawn(move |context| async move {
            while let Some((height, time, app)) = jobs.next().await {
                let Some(bytes) = app.checkpoint(height, time) else {
                    continue;
                };
                let size = bytes.len();
                match write(&context, &partition, height, bytes).await {
                    Ok(()) => info!(height, bytes = size, "chain.checkpoint: written"),
                    Err(e) => {
                        warn!(height, error = %e, "chain.checkpoint: write failed");
                        continue;
                    }
                }
                if let Some(marshal) = &pruner
                    && let Some(&oldest) = heights(&context, &partition).await.last()
                {
                    // `oldest` was committed and acknowledged before its checkpoint was offered,
                    // so it is at or below marshal's processed height (marshal ignores a prune
                    // above it; the next checkpoint would then prune).
                    marshal.prune(Height::new(oldest));
                    info!(below = oldest, "chain.checkpoint: pruned finalized blocks");
                }
            }
        });
    sender
}

/// Offers the committed state at `height` to the writer; skipped when it is still busy.
pub(super) fn offer<A: Application>(
    writer: &mut mpsc::Sender<Job<A>>,
    shared: &Arc<Mutex<Shared<A>>>,
    height: u64,
    time: u64,
) {
    let app = shared.lock().app.clone();
    if writer.try_send((height, time, app)).is_err() {
        info!(height, "chain.checkpoint: writer busy, skipped");
    }
}
