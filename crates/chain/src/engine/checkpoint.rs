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
//! finalization. A checkpoint is written and restored a chunk ([`CHUNK`]) at a time — pulled
//! from the application's reader, pushed into its restore — so neither ever holds it whole.

use super::state::{FinalizedChain, Shared};
use crate::{Application, Restoring, block::Block};
use commonware_consensus::marshal::Identifier;
use commonware_consensus::types::Height;
use commonware_cryptography::Digestible as _;
use commonware_runtime::{Blob as _, ReadOptions, Spawner, Storage, WriteOptions};
use commonware_utils::sync::Mutex;
use futures::{StreamExt as _, channel::mpsc};
use std::io::Read;
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

/// Bytes of a checkpoint read from or written to its blob at a time: what a checkpoint costs
/// in memory on top of the application's reader or restore, whatever its size.
const CHUNK: usize = 1 << 20;

/// Feeds the checkpoint of `height` to `restoring`, a chunk at a time; returns its length.
async fn read_into<E: Storage, A>(
    context: &E,
    partition: &str,
    height: u64,
    restoring: &mut dyn Restoring<A>,
    chunk: usize,
) -> Result<u64, String> {
    let (blob, len) = context
        .open(partition, &height.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if len == 0 {
        return Err("empty checkpoint".into());
    }
    let mut offset = 0u64;
    while offset < len {
        // INVARIANT: at most `chunk`, which fits usize.
        let n = (len - offset).min(chunk as u64) as usize;
        let bufs = blob
            .read_at(offset, n, ReadOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        restoring.feed(bufs.coalesce().as_ref())?;
        offset += n as u64;
    }
    Ok(len)
}

/// Reads from `reader` until `buf` is full or the reader ends; returns the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes the checkpoint `reader` gives as that of `height`, a chunk at a time, syncs it, then
/// removes all but the newest [`KEEP`]. Returns its length.
async fn write<E: Storage>(
    context: &E,
    partition: &str,
    height: u64,
    mut reader: Box<dyn Read + Send>,
    chunk: usize,
) -> Result<u64, String> {
    let (blob, _) = context
        .open(partition, &height.to_be_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; chunk];
    let mut len = 0u64;
    loop {
        let n = fill(&mut *reader, &mut chunk).map_err(|e| e.to_string())?;
        let Some(bytes) = chunk.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        blob.write_at(len, bytes.to_vec(), WriteOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        // INVARIANT: n <= chunk.len().
        len += n as u64;
    }
    blob.resize(len).await.map_err(|e| e.to_string())?;
    blob.sync().await.map_err(|e| e.to_string())?;
    drop(blob);
    for old in heights(context, partition).await.into_iter().skip(KEEP) {
        if let Err(e) = context.remove(partition, Some(&old.to_be_bytes())).await {
            warn!(height = old, error = %e, "chain.checkpoint: could not remove an old checkpoint");
        }
    }
    Ok(len)
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
        let (time, root) = (block.header.time_ms, block.header.state_root);
        let app = shared.lock().app.clone();
        let restored = match app.restoring(height, time, root) {
            Ok(mut restoring) => {
                match read_into(context, &partition, height, &mut *restoring, CHUNK).await {
                    Ok(len) => restoring.finish().map(|app| (app, len)),
                    Err(reason) => Err(reason),
                }
            }
            Err(reason) => Err(reason),
        };
        match restored {
            Ok((restored, len)) => {
                let mut shared = shared.lock();
                shared.app = restored;
                shared.finalized =
                    FinalizedChain::starting_at(height, (block.digest(), time, root));
                info!(
                    height,
                    bytes = len,
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
                let Some(reader) = app.checkpoint_reader(height, time) else {
                    continue;
                };
                match write(&context, &partition, height, reader, CHUNK).await {
                    Ok(size) => info!(height, bytes = size, "chain.checkpoint: written"),
                    Err(e) => {
                        warn!(height, error = %e, "chain.checkpoint: write failed");
                        // A torn blob would be kept as one of the newest in place of a whole one.
                        let _ = context
                            .remove(&partition, Some(&height.to_be_bytes()))
                            .await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::{Runner as _, deterministic};

    /// Collects what a restore is fed, piece by piece.
    struct Pieces(Vec<Vec<u8>>);

    impl Restoring<Vec<Vec<u8>>> for Pieces {
        fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
            self.0.push(bytes.to_vec());
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<Vec<Vec<u8>>, String> {
            Ok(self.0)
        }
    }

    /// A reader handing out at most 333 bytes per read, as an encoder's chunks end anywhere.
    struct Dribble(std::io::Cursor<Vec<u8>>);

    impl Read for Dribble {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(333);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn a_checkpoint_goes_to_and_from_its_blob_a_chunk_at_a_time_and_two_are_kept() {
        deterministic::Runner::default().start(|context| async move {
            let bytes: Vec<u8> = (0..2_500u32).map(|i| (i * 7 % 251) as u8).collect();
            let partition = partition("t");
            for height in [4u64, 8, 12] {
                let reader = Box::new(Dribble(std::io::Cursor::new(bytes.clone())));
                let len = write(&context, &partition, height, reader, 1_000)
                    .await
                    .unwrap();
                assert_eq!(len, 2_500);
            }
            // The newest two are kept.
            assert_eq!(heights(&context, &partition).await, vec![12, 8]);
            let mut pieces = Box::new(Pieces(Vec::new()));
            let len = read_into(&context, &partition, 12, &mut *pieces, 1_000)
                .await
                .unwrap();
            assert_eq!(len, 2_500);
            let pieces = pieces.finish().unwrap();
            let sizes: Vec<usize> = pieces.iter().map(Vec::len).collect();
            assert_eq!(sizes, vec![1_000, 1_000, 500]);
            assert_eq!(pieces.concat(), bytes);
            // A checkpoint that was never written, or an empty blob, is no checkpoint.
            let mut none = Box::new(Pieces(Vec::new()));
            assert!(
                read_into(&context, &partition, 4, &mut *none, 1_000)
                    .await
                    .is_err()
            );
        });
    }
}
