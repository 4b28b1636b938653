//! Checkpoints: the committed state at one finalized height as a single self-checking byte
//! string, written by validators to their own disk and served to nodes and clients that would
//! otherwise replay the chain from genesis.
//!
//! A checkpoint is never trusted for its own sake. Whoever restores one compares the root it
//! rebuilds with the state root of the block at that height — a block from its own finalized
//! archive, or a header carrying a finality certificate of the genesis validators — so a stale,
//! torn or forged checkpoint is refused and the caller falls back to replaying blocks.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! "MSCKPT01" | height u64 | time_ms u64 | root [32] | records u64
//! | records × (key_len u32 | key | value_len u32 | value)      keys strictly increasing
//! | SHA-256 of everything before it [32]
//! ```
//!
//! The records are the trie's leaves in key order, so restoring is one bottom-up pass
//! ([`crate::trie::Trie::from_sorted`]) and two states with the same root have byte-identical checkpoints.

use crate::State;
use medspace_types::Hash;

/// The first bytes of every checkpoint (and its format version).
pub const MAGIC: &[u8; 8] = b"MSCKPT01";

/// Bytes before the first record.
pub const HEADER_LEN: usize = 8 + 8 + 8 + 32 + 8;

/// The longest key a checkpoint may carry (the state's keys are a tag and a few bounded parts).
const MAX_KEY: usize = 1 << 12;

/// The longest record a checkpoint may carry (a record is written by one transaction of at
/// most 64 KiB, with room for what the rules add).
const MAX_VALUE: usize = 1 << 20;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes are not a checkpoint of this format.
    #[error("not a checkpoint: {0}")]
    Format(String),
    /// The bytes were cut or altered after writing.
    #[error("checkpoint checksum does not match its contents (torn or altered)")]
    Checksum,
    /// The records are not a valid state (out of order, oversized, or prefix-related keys).
    #[error("checkpoint records are invalid: {0}")]
    Records(String),
    /// The records do not hash to the root the checkpoint names.
    #[error("checkpoint records give root {computed}, the checkpoint names {claimed}")]
    Root {
        /// The root in the checkpoint's header.
        claimed: Hash,
        /// The root of its records.
        computed: Hash,
    },
    /// The checkpoint is not of the block it is checked against.
    #[error("checkpoint does not match the certified block at height={height}: {what}")]
    Mismatch {
        /// The checkpoint's height.
        height: u64,
        /// What differs.
        what: &'static str,
    },
}

/// What a checkpoint says of itself, read without rebuilding its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The height of the block after which the state was taken.
    pub height: u64,
    /// That block's time.
    pub time_ms: u64,
    /// The state root after that block.
    pub root: Hash,
    /// Number of records.
    pub records: u64,
}

impl Summary {
    /// Refuses unless this is the checkpoint of the block at `height` with `time_ms` and
    /// `root` (taken from a certified header or one's own finalized archive).
    pub fn expect(
        &self,
        height: u64,
        time_ms: u64,
        root: &[u8; 32],
    ) -> Result<(), CheckpointError> {
        let mismatch = |what| CheckpointError::Mismatch {
            height: self.height,
            what,
        };
        if self.height != height {
            return Err(mismatch("height"));
        }
        if self.time_ms != time_ms {
            return Err(mismatch("block time"));
        }
        if &self.root.0 != root {
            return Err(mismatch("state root"));
        }
        Ok(())
    }
}

/// A restored checkpoint: its summary and the state it holds (root verified).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// What the checkpoint says of itself; `summary.root == state.root()`.
    pub summary: Summary,
    /// The state, with a fresh key cache.
    pub state: State,
}

/// The checkpoint of `state` taken after the block at `height` with time `time_ms`.
pub fn encode(state: &State, height: u64, time_ms: u64) -> Vec<u8> {
    let records = state.trie.scan_prefix(&[]);
    let body: usize = records.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(&state.root().0);
    out.extend_from_slice(&(records.len() as u64).to_be_bytes());
    for (key, value) in records {
        // INVARIANT: keys and records are far below 4 GiB (transactions are at most 64 KiB).
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    let sum = Hash::of(&[&out]);
    out.extend_from_slice(&sum.0);
    out
}

fn take<'a, const N: usize>(
    bytes: &mut &'a [u8],
    what: &str,
) -> Result<&'a [u8; N], CheckpointError> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| CheckpointError::Format(format!("ends inside the {what}")))?;
    *bytes = rest;
    Ok(head)
}

fn take_slice<'a>(
    bytes: &mut &'a [u8],
    len: usize,
    what: &str,
) -> Result<&'a [u8], CheckpointError> {
    if bytes.len() < len {
        return Err(CheckpointError::Format(format!("ends inside a {what}")));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

/// The summary in a checkpoint's header, without checking the rest (a quick look: which height
/// a file or a peer offers).
pub fn summary(bytes: &[u8]) -> Result<Summary, CheckpointError> {
    let mut rest = bytes;
    if take::<8>(&mut rest, "magic")? != MAGIC {
        return Err(CheckpointError::Format("wrong magic or version".into()));
    }
    let height = u64::from_be_bytes(*take::<8>(&mut rest, "height")?);
    let time_ms = u64::from_be_bytes(*take::<8>(&mut rest, "time")?);
    let root = Hash(*take::<32>(&mut rest, "root")?);
    let records = u64::from_be_bytes(*take::<8>(&mut rest, "record count")?);
    Ok(Summary {
        height,
        time_ms,
        root,
        records,
    })
}

/// Restores a checkpoint: checks its checksum, rebuilds the state from its records and checks
/// that they hash to the root it names. Checking that root against a certified block is the
/// caller's part ([`Summary::expect`]).
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let summary = summary(bytes)?;
    let (content, sum) = bytes
        .split_last_chunk::<32>()
        .ok_or_else(|| CheckpointError::Format("shorter than its checksum".into()))?;
    if content.len() < HEADER_LEN {
        return Err(CheckpointError::Format("shorter than its header".into()));
    }
    if Hash::of(&[content]).0 != *sum {
        return Err(CheckpointError::Checksum);
    }
    let mut rest = content.get(HEADER_LEN..).unwrap_or_default();
    // Each record takes at least 8 bytes, which bounds what the count may claim.
    let fits = u64::try_from(rest.len() / 8).unwrap_or(u64::MAX);
    if summary.records > fits {
        return Err(CheckpointError::Format(format!(
            "claims {} records in {} bytes",
            summary.records,
            rest.len()
        )));
    }
    let mut entries: Vec<(&[u8], &[u8])> = Vec::new();
    for _ in 0..summary.records {
        let klen = u32::from_be_bytes(*take::<4>(&mut rest, "key length")?) as usize;
        if klen == 0 || klen > MAX_KEY {
            return Err(CheckpointError::Records(format!("key of {klen} bytes")));
        }
        let key = take_slice(&mut rest, klen, "key")?;
        let vlen = u32::from_be_bytes(*take::<4>(&mut rest, "value length")?) as usize;
        if vlen > MAX_VALUE {
            return Err(CheckpointError::Records(format!("record of {vlen} bytes")));
        }
        let value = take_slice(&mut rest, vlen, "record")?;
        entries.push((key, value));
    }
    if !rest.is_empty() {
        return Err(CheckpointError::Format(format!(
            "{} bytes after the last record",
            rest.len()
        )));
    }
    let state =
        State::from_records(entries).map_err(|e| CheckpointError::Records(e.to_string()))?;
    let computed = state.root();
    if computed != summary.root {
        return Err(CheckpointError::Root {
            claimed: summary.root,
            computed,
        });
    }
    Ok(Checkpoint { summary, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::default();
        for i in 0u32..300 {
            let mut key = vec![9u8];
            key.extend_from_slice(&i.to_be_bytes());
            s.trie.insert(&key, i.to_le_bytes().repeat(3)).unwrap();
        }
        s
    }

    #[test]
    fn a_checkpoint_restores_the_same_root_and_records() {
        let s = sample();
        let bytes = encode(&s, 42, 7_000);
        let c = decode(&bytes).unwrap();
        assert_eq!(c.state.root(), s.root());
        assert_eq!(c.state.len(), 300);
        assert_eq!(c.summary, summary(&bytes).unwrap());
        c.summary.expect(42, 7_000, &s.root().0).unwrap();
        assert!(c.summary.expect(43, 7_000, &s.root().0).is_err());
        assert!(c.summary.expect(42, 7_001, &s.root().0).is_err());
        assert!(c.summary.expect(42, 7_000, &[0; 32]).is_err());
        // Byte-identical for the same state.
        assert_eq!(encode(&c.state, 42, 7_000), bytes);
    }

    #[test]
    fn every_torn_or_flipped_checkpoint_is_refused() {
        let bytes = encode(&sample(), 1, 1);
        for cut in [0, 7, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn records_that_do_not_hash_to_the_named_root_are_refused_even_with_a_good_checksum() {
        let s = sample();
        let mut bytes = encode(&s, 5, 5);
        bytes.truncate(bytes.len() - 32);
        // Name another root, then seal it with a fresh checksum: a forger's checkpoint.
        bytes[24..56].copy_from_slice(&[3u8; 32]);
        let sum = Hash::of(&[&bytes]);
        bytes.extend_from_slice(&sum.0);
        assert!(matches!(decode(&bytes), Err(CheckpointError::Root { .. })));
    }

    #[test]
    fn an_absurd_record_count_is_refused_before_anything_is_allocated() {
        let mut bytes = encode(&State::default(), 0, 0);
        bytes.truncate(bytes.len() - 32);
        bytes[56..64].copy_from_slice(&u64::MAX.to_be_bytes());
        let sum = Hash::of(&[&bytes]);
        bytes.extend_from_slice(&sum.0);
        assert!(matches!(decode(&bytes), Err(CheckpointError::Format(_))));
    }
}
