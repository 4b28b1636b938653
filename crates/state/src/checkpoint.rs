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
use crate::trie::TrieError;
use crate::trie::disk::{Committed, NodeStore};
use commonware_cryptography::{Hasher as _, Sha256};
use medspace_types::Hash;
use std::io::{Read, Write};

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
    /// The checkpoint could not be read or written, or the state store failed under it.
    #[error("checkpoint i/o: {0}")]
    Io(String),
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

/// The checkpoint of `state` taken after the block at `height` with time `time_ms`. Fails only
/// when a stored state cannot be read from its node file.
pub fn encode(state: &State, height: u64, time_ms: u64) -> Result<Vec<u8>, TrieError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 32);
    write_to(state, height, time_ms, &mut out).map_err(|e| TrieError::Store(e.to_string()))?;
    Ok(out)
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

/// Writes the checkpoint of `state` taken after the block at `height` with time `time_ms` to
/// `out` as it walks the state: the same bytes as [`encode`], with memory that of the state's
/// store cache whatever its size. Returns the bytes written.
pub fn write_to(
    state: &State,
    height: u64,
    time_ms: u64,
    out: impl Write,
) -> Result<u64, CheckpointError> {
    let mut out = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let io = |e: std::io::Error| CheckpointError::Io(e.to_string());
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&height.to_be_bytes()).map_err(io)?;
    out.write_all(&time_ms.to_be_bytes()).map_err(io)?;
    out.write_all(&state.root().0).map_err(io)?;
    out.write_all(&(state.len() as u64).to_be_bytes())
        .map_err(io)?;
    let mut count = 0usize;
    state
        .trie
        .visit_all(|key, value| {
            // INVARIANT: keys and records are far below 4 GiB (transactions are at most 64 KiB).
            for part in [
                &(key.len() as u32).to_be_bytes()[..],
                key,
                &(value.len() as u32).to_be_bytes(),
                value,
            ] {
                out.write_all(part)
                    .map_err(|e| TrieError::Input(e.to_string()))?;
            }
            count += 1;
            Ok::<(), TrieError>(())
        })
        .map_err(|e| CheckpointError::Io(e.to_string()))?;
    if count != state.len() {
        return Err(CheckpointError::Io(format!(
            "the state counts {} records, its trie holds {count}",
            state.len()
        )));
    }
    let (mut inner, sum, written) = out.finish();
    inner.write_all(&sum.0).map_err(io)?;
    inner.flush().map_err(io)?;
    Ok(written + 32)
}

/// Restores a checkpoint read from `input` straight into `store`, committed there at the
/// checkpoint's height only once its checksum and its root check out: the same checks as
/// [`decode`], with memory that of the store's cache whatever the checkpoint's size. Checking
/// the root against a certified block stays the caller's part ([`Summary::expect`]).
pub fn restore_into(
    input: impl Read,
    store: &mut NodeStore,
) -> Result<(Summary, State), CheckpointError> {
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut header = [0u8; HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|_| CheckpointError::Format("ends inside its header".into()))?;
    let summary = summary(&header)?;
    let mut records = Records {
        input,
        hasher: Sha256::default(),
        left: summary.records,
        failed: None,
        done: false,
    };
    records.hasher.update(&header);
    let built = store.build(&mut records, summary.height, Some(summary.root));
    let failed = records.failed.take();
    let trie = match (built, failed) {
        (_, Some(e)) => return Err(e),
        (Err(TrieError::RootMismatch { expected, computed }), None) => {
            return Err(CheckpointError::Root {
                claimed: expected,
                computed,
            });
        }
        (Err(e @ (TrieError::OutOfOrder { .. } | TrieError::PrefixConflict { .. })), None) => {
            return Err(CheckpointError::Records(e.to_string()));
        }
        (Err(e), None) => return Err(CheckpointError::Io(e.to_string())),
        (Ok(trie), None) => trie,
    };
    let state = State::from_store(Committed {
        height: summary.height,
        trie,
    })
    .map_err(|e| CheckpointError::Io(e.to_string()))?;
    Ok((summary, state))
}

/// The records of a checkpoint being read: each one as it comes, then — once the count is
/// reached — the checksum checked and the end of the input required, before the build that
/// consumes them may commit.
struct Records<R> {
    input: R,
    hasher: Sha256,
    left: u64,
    failed: Option<CheckpointError>,
    done: bool,
}

impl<R: Read> Records<R> {
    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), CheckpointError> {
        self.input
            .read_exact(buf)
            .map_err(|_| CheckpointError::Format(format!("ends inside a {what}")))?;
        self.hasher.update(buf);
        Ok(())
    }

    fn record(&mut self) -> Result<(Vec<u8>, Vec<u8>), CheckpointError> {
        let mut len = [0u8; 4];
        self.read(&mut len, "key length")?;
        let klen = u32::from_be_bytes(len) as usize;
        if klen == 0 || klen > MAX_KEY {
            return Err(CheckpointError::Records(format!("key of {klen} bytes")));
        }
        let mut key = vec![0u8; klen];
        self.read(&mut key, "key")?;
        self.read(&mut len, "value length")?;
        let vlen = u32::from_be_bytes(len) as usize;
        if vlen > MAX_VALUE {
            return Err(CheckpointError::Records(format!("record of {vlen} bytes")));
        }
        let mut value = vec![0u8; vlen];
        self.read(&mut value, "record")?;
        Ok((key, value))
    }

    fn end(&mut self) -> Result<(), CheckpointError> {
        let mut sum = [0u8; 32];
        self.input
            .read_exact(&mut sum)
            .map_err(|_| CheckpointError::Format("ends inside its checksum".into()))?;
        let (_, digest) = std::mem::take(&mut self.hasher).finalize();
        if digest.0 != sum {
            return Err(CheckpointError::Checksum);
        }
        let mut more = [0u8; 1];
        match self.input.read(&mut more) {
            Ok(0) => Ok(()),
            Ok(_) => Err(CheckpointError::Format("bytes after its checksum".into())),
            Err(e) => Err(CheckpointError::Io(e.to_string())),
        }
    }
}

impl<R: Read> Iterator for &mut Records<R> {
    type Item = Result<(Vec<u8>, Vec<u8>), TrieError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.failed.is_some() {
            return None;
        }
        let step = if self.left == 0 {
            self.done = true;
            self.end().map(|()| None)
        } else {
            self.left -= 1;
            self.record().map(Some)
        };
        match step {
            Ok(item) => item.map(Ok),
            Err(e) => {
                let shown = TrieError::Input(e.to_string());
                self.failed = Some(e);
                Some(Err(shown))
            }
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::default(),
            written: 0,
        }
    }

    fn finish(mut self) -> (W, Hash, u64) {
        let (_, digest) = std::mem::take(&mut self.hasher).finalize();
        let sum = Hash(digest.0);
        (self.inner, sum, self.written)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        // INVARIANT: n <= buf.len(), far below u64::MAX in sum.
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
        let bytes = encode(&s, 42, 7_000).unwrap();
        let c = decode(&bytes).unwrap();
        assert_eq!(c.state.root(), s.root());
        assert_eq!(c.state.len(), 300);
        assert_eq!(c.summary, summary(&bytes).unwrap());
        c.summary.expect(42, 7_000, &s.root().0).unwrap();
        assert!(c.summary.expect(43, 7_000, &s.root().0).is_err());
        assert!(c.summary.expect(42, 7_001, &s.root().0).is_err());
        assert!(c.summary.expect(42, 7_000, &[0; 32]).is_err());
        // Byte-identical for the same state.
        assert_eq!(encode(&c.state, 42, 7_000).unwrap(), bytes);
    }

    #[test]
    fn every_torn_or_flipped_checkpoint_is_refused() {
        let bytes = encode(&sample(), 1, 1).unwrap();
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
        let mut bytes = encode(&s, 5, 5).unwrap();
        bytes.truncate(bytes.len() - 32);
        // Name another root, then seal it with a fresh checksum: a forger's checkpoint.
        bytes[24..56].copy_from_slice(&[3u8; 32]);
        let sum = Hash::of(&[&bytes]);
        bytes.extend_from_slice(&sum.0);
        assert!(matches!(decode(&bytes), Err(CheckpointError::Root { .. })));
    }

    #[test]
    fn an_absurd_record_count_is_refused_before_anything_is_allocated() {
        let mut bytes = encode(&State::default(), 0, 0).unwrap();
        bytes.truncate(bytes.len() - 32);
        bytes[56..64].copy_from_slice(&u64::MAX.to_be_bytes());
        let sum = Hash::of(&[&bytes]);
        bytes.extend_from_slice(&sum.0);
        assert!(matches!(decode(&bytes), Err(CheckpointError::Format(_))));
    }

    #[test]
    fn a_streamed_checkpoint_is_the_same_bytes_and_restores_into_a_store() {
        let s = sample();
        let bytes = encode(&s, 42, 7_000).unwrap();
        let mut streamed = Vec::new();
        let n = write_to(&s, 42, 7_000, &mut streamed).unwrap();
        assert_eq!(streamed, bytes);
        assert_eq!(n, bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        let (summary, restored) = restore_into(&bytes[..], &mut store).unwrap();
        assert_eq!(summary, self::summary(&bytes).unwrap());
        assert_eq!((restored.root(), restored.len()), (s.root(), 300));
        // Streamed out of the stored state: the same bytes again.
        let mut again = Vec::new();
        write_to(&restored, 42, 7_000, &mut again).unwrap();
        assert_eq!(again, bytes);
        drop(store);
        let (_, committed) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        let committed = committed.unwrap();
        assert_eq!(
            (committed.height, committed.trie.root_hash()),
            (42, s.root())
        );
    }

    #[test]
    fn a_bad_streamed_checkpoint_commits_nothing() {
        let s = sample();
        let bytes = encode(&s, 3, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        let mut before = State::default();
        before.trie.insert(&[1, 2, 3], vec![4]).unwrap();
        before.persist(&mut store, 1).unwrap();
        let size = store.size();
        let mut forged = bytes.clone();
        forged.truncate(forged.len() - 32);
        forged[24..56].copy_from_slice(&[3u8; 32]);
        let sum = Hash::of(&[&forged]);
        forged.extend_from_slice(&sum.0);
        let mut extra = bytes.clone();
        extra.push(0);
        let mut cases: Vec<Vec<u8>> = vec![forged, extra];
        for cut in [0, 7, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            cases.push(bytes[..cut].to_vec());
        }
        for at in (0..bytes.len()).step_by(89) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            cases.push(bad);
        }
        for (i, bad) in cases.iter().enumerate() {
            let refused = restore_into(&bad[..], &mut store);
            assert!(refused.is_err(), "case {i} was restored");
            assert_eq!(store.size(), size, "case {i} changed the store");
            assert_eq!(store.height(), 1);
        }
        assert!(matches!(
            restore_into(&cases[0][..], &mut store),
            Err(CheckpointError::Root { .. })
        ));
        drop(store);
        let (_, committed) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        assert_eq!(committed.unwrap().trie.root_hash(), before.root());
    }
}
