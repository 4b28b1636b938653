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
use crate::trie::disk::{Build, Committed, NodeStore};
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

/// Bytes a [`Reader`] encodes at a time, and a [`restore_into`] reads at a time.
const CHUNK: usize = 1 << 20;

/// Writes the checkpoint of `state` taken after the block at `height` with time `time_ms` to
/// `out` as it walks the state ([`Reader`]): the same bytes as [`encode`], with memory that of
/// the state's store cache whatever its size. Returns the bytes written.
pub fn write_to(
    state: &State,
    height: u64,
    time_ms: u64,
    mut out: impl Write,
) -> Result<u64, CheckpointError> {
    let mut reader = Reader::new(state, height, time_ms);
    let written = std::io::copy(&mut reader, &mut out).map_err(|e| reader.error_of(e))?;
    out.flush()
        .map_err(|e| CheckpointError::Io(e.to_string()))?;
    Ok(written)
}

/// The checkpoint of a state as bytes read on demand: a [`std::io::Read`] that encodes the
/// next records whenever its last chunk is used up, walking the state one entry at a time
/// ([`crate::trie::Leaves`]). For writers that cannot hand the walk a callback — an async
/// blob written a chunk at a time, a response body — with memory that of one chunk and the
/// store's cache, whatever the state's size. The reader holds the state as it was when made:
/// later commits do not change what it reads.
pub struct Reader {
    leaves: crate::trie::Leaves,
    /// Header and records not read yet: `chunk[at..]`.
    chunk: Vec<u8>,
    at: usize,
    hasher: Sha256,
    /// Records the state counts, and those encoded so far.
    records: usize,
    encoded: usize,
    /// Whether the checksum has been encoded (nothing follows it).
    ended: bool,
    /// Why the walk failed, kept for [`Reader::error_of`].
    failed: Option<CheckpointError>,
}

impl Reader {
    /// The checkpoint of `state` taken after the block at `height` with time `time_ms`.
    pub fn new(state: &State, height: u64, time_ms: u64) -> Self {
        let mut chunk = Vec::with_capacity(CHUNK + 64);
        chunk.extend_from_slice(MAGIC);
        chunk.extend_from_slice(&height.to_be_bytes());
        chunk.extend_from_slice(&time_ms.to_be_bytes());
        chunk.extend_from_slice(&state.root().0);
        chunk.extend_from_slice(&(state.len() as u64).to_be_bytes());
        let mut hasher = Sha256::default();
        hasher.update(&chunk);
        Self {
            leaves: state.trie.leaves(),
            chunk,
            at: 0,
            hasher,
            records: state.len(),
            encoded: 0,
            ended: false,
            failed: None,
        }
    }

    /// The checkpoint error behind an i/o error this reader returned (or the i/o error itself,
    /// from whatever it was copied into).
    pub fn error_of(&mut self, e: std::io::Error) -> CheckpointError {
        self.failed
            .take()
            .unwrap_or_else(|| CheckpointError::Io(e.to_string()))
    }

    /// Encodes the next chunk of records (and, after the last, the checksum).
    fn refill(&mut self) -> Result<(), CheckpointError> {
        self.chunk.clear();
        self.at = 0;
        while self.chunk.len() < CHUNK {
            let chunk = &mut self.chunk;
            let next = self
                .leaves
                .next_with(|key, value| {
                    // INVARIANT: keys and records are far below 4 GiB (transactions are at
                    // most 64 KiB).
                    chunk.extend_from_slice(&(key.len() as u32).to_be_bytes());
                    chunk.extend_from_slice(key);
                    chunk.extend_from_slice(&(value.len() as u32).to_be_bytes());
                    chunk.extend_from_slice(value);
                })
                .map_err(|e| CheckpointError::Io(e.to_string()))?;
            if next.is_none() {
                if self.encoded != self.records {
                    return Err(CheckpointError::Io(format!(
                        "the state counts {} records, its trie holds {}",
                        self.records, self.encoded
                    )));
                }
                self.hasher.update(&self.chunk);
                let (_, digest) = std::mem::take(&mut self.hasher).finalize();
                self.chunk.extend_from_slice(&digest.0);
                self.ended = true;
                return Ok(());
            }
            self.encoded += 1;
        }
        self.hasher.update(&self.chunk);
        Ok(())
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            if let Err(e) = self.refill() {
                let shown = std::io::Error::other(e.to_string());
                self.failed = Some(e);
                return Err(shown);
            }
        }
        let ready = self.chunk.get(self.at..).unwrap_or_default();
        let n = ready.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), ready.get(..n)) {
            to.copy_from_slice(from);
        }
        self.at += n;
        Ok(n)
    }
}

/// Restores a checkpoint read from `input` straight into `store`, committed there at the
/// checkpoint's height only once its checksum and its root check out: the same checks as
/// [`decode`], with memory that of the store's cache whatever the checkpoint's size. Checking
/// the root against a certified block stays the caller's part ([`Summary::expect`]).
pub fn restore_into(
    mut input: impl Read,
    store: &mut NodeStore,
) -> Result<(Summary, State), CheckpointError> {
    let mut restore = Restore::new(None);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                restore.abandon(store);
                return Err(CheckpointError::Io(e.to_string()));
            }
        };
        restore.feed(store, chunk.get(..n).unwrap_or_default())?;
    }
    restore.finish(store)
}

/// What the parts of a checkpoint being restored wait for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Header,
    KeyLen,
    Key(usize),
    ValueLen,
    Value(usize),
    Checksum,
    End,
    Failed,
}

impl Part {
    /// Bytes this part takes.
    fn len(self) -> usize {
        match self {
            Part::Header => HEADER_LEN,
            Part::KeyLen | Part::ValueLen => 4,
            Part::Key(n) | Part::Value(n) => n,
            Part::Checksum => 32,
            Part::End | Part::Failed => 0,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Part::Header => "its header",
            Part::KeyLen => "a key length",
            Part::Key(_) => "a key",
            Part::ValueLen => "a value length",
            Part::Value(_) => "a record",
            Part::Checksum => "its checksum",
            Part::End | Part::Failed => "nothing",
        }
    }
}

/// A checkpoint restored into a store as its bytes arrive, in pieces of any size
/// ([`Restore::feed`]): for a reader that cannot hand over a [`std::io::Read`] — an async
/// blob, a response body read a chunk at a time. Each record is built into the store as it
/// is complete ([`crate::trie::disk::Build`]); only [`Restore::finish`], after the checksum
/// and the root check out, commits. The same checks as [`decode`] and [`restore_into`];
/// memory: one record and one root-to-leaf path.
///
/// With an expected height, time and root (from a certified header), a checkpoint of anything
/// else is refused as soon as its header arrives, before anything is written.
#[derive(Debug)]
pub struct Restore {
    expect: Option<(u64, u64, [u8; 32])>,
    part: Part,
    /// The bytes of `part` received so far, when they came in more than one piece.
    carry: Vec<u8>,
    hasher: Sha256,
    summary: Option<Summary>,
    /// Records still to come.
    left: u64,
    key: Vec<u8>,
    build: Option<Build>,
    /// Why it failed (given again to every later call).
    failed: Option<CheckpointError>,
}

impl Restore {
    /// A restore expecting the checkpoint of the block at `(height, time_ms, root)`, or of any
    /// block with `None` (the caller checks the summary against a certified block later).
    pub fn new(expect: Option<(u64, u64, [u8; 32])>) -> Self {
        Self {
            expect,
            part: Part::Header,
            carry: Vec::new(),
            hasher: Sha256::default(),
            summary: None,
            left: 0,
            key: Vec::new(),
            build: None,
            failed: None,
        }
    }

    /// The checkpoint's summary, once its header has arrived.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }

    /// Takes the next bytes of the checkpoint. The first failure abandons the build (nothing
    /// committed, what it wrote cut) and is returned again by every later call.
    pub fn feed(&mut self, store: &mut NodeStore, mut bytes: &[u8]) -> Result<(), CheckpointError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !bytes.is_empty() {
            let want = self.part.len();
            if self.part == Part::End {
                return self.fail(
                    store,
                    CheckpointError::Format("bytes after its checksum".into()),
                );
            }
            // Whole in what arrived: taken from it directly; otherwise gathered in `carry`.
            let stepped = if self.carry.is_empty() && bytes.len() >= want {
                let (part, rest) = bytes.split_at(want);
                bytes = rest;
                self.step(store, part)
            } else {
                let take = (want - self.carry.len()).min(bytes.len());
                let (part, rest) = bytes.split_at(take);
                self.carry.extend_from_slice(part);
                bytes = rest;
                if self.carry.len() < want {
                    continue;
                }
                let carried = std::mem::take(&mut self.carry);
                let stepped = self.step(store, &carried);
                self.carry = carried;
                self.carry.clear();
                stepped
            };
            if let Err(e) = stepped {
                return self.fail(store, e);
            }
        }
        Ok(())
    }

    fn fail(&mut self, store: &mut NodeStore, e: CheckpointError) -> Result<(), CheckpointError> {
        if let Some(build) = self.build.take() {
            build.abandon(store);
        }
        self.part = Part::Failed;
        self.failed = Some(e.clone());
        Err(e)
    }

    /// Takes one whole part.
    fn step(&mut self, store: &mut NodeStore, bytes: &[u8]) -> Result<(), CheckpointError> {
        if self.part != Part::Checksum {
            self.hasher.update(bytes);
        }
        let len =
            |bytes: &[u8]| <[u8; 4]>::try_from(bytes).map_or(0, |b| u32::from_be_bytes(b) as usize);
        self.part = match self.part {
            Part::Header => {
                let summary = summary(bytes)?;
                if let Some((height, time_ms, root)) = &self.expect {
                    summary.expect(*height, *time_ms, root)?;
                }
                self.summary = Some(summary);
                self.left = summary.records;
                self.build = Some(
                    store
                        .begin_build()
                        .map_err(|e| CheckpointError::Io(e.to_string()))?,
                );
                self.next_record()
            }
            Part::KeyLen => match len(bytes) {
                klen @ 1..=MAX_KEY => Part::Key(klen),
                klen => return Err(CheckpointError::Records(format!("key of {klen} bytes"))),
            },
            Part::Key(_) => {
                self.key.clear();
                self.key.extend_from_slice(bytes);
                Part::ValueLen
            }
            Part::ValueLen => match len(bytes) {
                vlen @ 0..=MAX_VALUE => Part::Value(vlen),
                vlen => {
                    return Err(CheckpointError::Records(format!("record of {vlen} bytes")));
                }
            },
            Part::Value(_) => {
                let build = self
                    .build
                    .as_mut()
                    .ok_or_else(|| CheckpointError::Format("records before its header".into()))?;
                build.push(store, &self.key, bytes).map_err(|e| match e {
                    TrieError::OutOfOrder { .. } | TrieError::PrefixConflict { .. } => {
                        CheckpointError::Records(e.to_string())
                    }
                    e => CheckpointError::Io(e.to_string()),
                })?;
                self.left -= 1;
                self.next_record()
            }
            Part::Checksum => {
                let (_, digest) = std::mem::take(&mut self.hasher).finalize();
                if digest.0 != bytes {
                    return Err(CheckpointError::Checksum);
                }
                Part::End
            }
            part @ (Part::End | Part::Failed) => part,
        };
        Ok(())
    }

    fn next_record(&self) -> Part {
        if self.left == 0 {
            Part::Checksum
        } else {
            Part::KeyLen
        }
    }

    /// Ends the checkpoint: committed into `store` at its height once it is whole, its checksum
    /// matches and its records hash to the root it names; anything else commits nothing.
    pub fn finish(mut self, store: &mut NodeStore) -> Result<(Summary, State), CheckpointError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.part != Part::End {
            let e = CheckpointError::Format(format!("ends inside {}", self.part.what()));
            let _ = self.fail(store, e.clone());
            return Err(e);
        }
        let (Some(summary), Some(build)) = (self.summary, self.build.take()) else {
            return Err(CheckpointError::Format("ends inside its header".into()));
        };
        let trie = build
            .finish(store, summary.height, Some(summary.root))
            .map_err(|e| match e {
                TrieError::RootMismatch { expected, computed } => CheckpointError::Root {
                    claimed: expected,
                    computed,
                },
                e => CheckpointError::Io(e.to_string()),
            })?;
        let state = State::from_store(Committed {
            height: summary.height,
            trie,
        })
        .map_err(|e| CheckpointError::Io(e.to_string()))?;
        Ok((summary, state))
    }

    /// Gives the restore up: nothing committed, what it wrote cut.
    pub fn abandon(mut self, store: &mut NodeStore) {
        if let Some(build) = self.build.take() {
            build.abandon(store);
        }
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

    /// The length of the store's node file on disk (what a build appended, committed or not).
    fn on_disk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("nodes-"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    /// Feeds `bytes` cut at `cuts` (positions, any order) into a fresh restore.
    fn fed_in_pieces(
        bytes: &[u8],
        cuts: &[usize],
        store: &mut NodeStore,
        expect: Option<(u64, u64, [u8; 32])>,
    ) -> Result<(Summary, State), CheckpointError> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        let mut restore = Restore::new(expect);
        for w in at.windows(2) {
            restore.feed(store, &bytes[w[0]..w[1]])?;
        }
        restore.finish(store)
    }

    #[test]
    fn the_reader_gives_the_encoded_bytes_whatever_the_reads_it_is_asked_for() {
        let s = sample();
        let bytes = encode(&s, 9, 9).unwrap();
        for size in [1usize, 7, 64, 4096] {
            let mut reader = Reader::new(&s, 9, 9);
            let mut out = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, bytes, "reads of {size}");
        }
        let mut empty = Vec::new();
        Reader::new(&State::default(), 0, 0)
            .read_to_end(&mut empty)
            .unwrap();
        assert_eq!(empty, encode(&State::default(), 0, 0).unwrap());
    }

    #[test]
    fn a_checkpoint_of_another_block_is_refused_at_its_header_before_anything_is_written() {
        let s = sample();
        let bytes = encode(&s, 42, 7_000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
        let before = on_disk(dir.path());
        for expect in [
            (41, 7_000, s.root().0),
            (42, 7_001, s.root().0),
            (42, 7_000, [1; 32]),
        ] {
            let mut restore = Restore::new(Some(expect));
            let refused = restore.feed(&mut store, &bytes[..HEADER_LEN + 10]);
            assert!(matches!(refused, Err(CheckpointError::Mismatch { .. })));
            assert_eq!(on_disk(dir.path()), before);
            // Refused for good: more bytes do not revive it.
            assert!(restore.feed(&mut store, &bytes[HEADER_LEN + 10..]).is_err());
            assert!(restore.finish(&mut store).is_err());
        }
        assert!(store.committed().is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        #[test]
        fn a_checkpoint_fed_in_any_pieces_restores_the_same_state(
            cuts in proptest::collection::vec(0usize..100_000, 0..40),
        ) {
            let s = sample();
            let bytes = encode(&s, 42, 7_000).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
            let (summary, restored) =
                fed_in_pieces(&bytes, &cuts, &mut store, Some((42, 7_000, s.root().0))).unwrap();
            proptest::prop_assert_eq!(summary, self::summary(&bytes).unwrap());
            proptest::prop_assert_eq!((restored.root(), restored.len()), (s.root(), 300));
            proptest::prop_assert_eq!(encode(&restored, 42, 7_000).unwrap(), bytes);
        }

        #[test]
        fn a_torn_or_flipped_checkpoint_fed_in_pieces_commits_nothing(
            cuts in proptest::collection::vec(0usize..100_000, 0..12),
            flip in 0usize..100_000,
            torn in proptest::bool::ANY,
        ) {
            let s = sample();
            let mut bytes = encode(&s, 3, 3).unwrap();
            if torn {
                bytes.truncate(flip % bytes.len());
            } else {
                let at = flip % bytes.len();
                bytes[at] ^= 0x04;
            }
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = NodeStore::open(dir.path(), 1 << 16).unwrap();
            let mut before = State::default();
            before.trie.insert(&[1, 2, 3], vec![4]).unwrap();
            before.persist(&mut store, 1).unwrap();
            let (size, file) = (store.size(), on_disk(dir.path()));
            proptest::prop_assert!(fed_in_pieces(&bytes, &cuts, &mut store, None).is_err());
            proptest::prop_assert_eq!(store.size(), size);
            proptest::prop_assert_eq!(on_disk(dir.path()), file);
            proptest::prop_assert_eq!(store.height(), 1);
            // The store still takes commits after a refused restore.
            let mut after = before.clone();
            after.trie.insert(&[1, 2, 4], vec![5]).unwrap();
            proptest::prop_assert!(after.persist(&mut store, 2).is_ok());
        }
    }
}
