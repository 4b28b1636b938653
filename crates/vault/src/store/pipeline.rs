//! An ingest on several cores with the outcome of one.
//!
//! Both passes over the data parse JSON, which is most of their work; the rest (deduplicating,
//! numbering lines and rows, mapping, writing) must stay in order. So:
//! * **reading** ([`read_files`]): reader threads take the input files in turn, parse them and
//!   analyse each resource (its checks, canonical bytes and hash, references); the batch admits
//!   the items strictly file by file, in each file's order, exactly as one thread would;
//! * **mapping** ([`parse_lines`]): one thread decrypts and decompresses the new segment,
//!   workers parse chunks of its lines, and the mapping takes them back in line order.
//!
//! Every hand-over is a bounded channel, so what is in flight does not grow with the input,
//! and the segment, its index and every CDM row are the same for any number of threads (the
//! vault's pinned-output test runs with one and with several). Written on std threads: the
//! stages are a fixed pipeline with ordered hand-over, which a work-stealing pool does not
//! give without a reordering step of its own, and the vault takes no dependency for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::index::Stamp;
use super::{Vault, qualify, qualify_target};
use crate::error::VaultError;
use crate::fhir::{self, BadReason, Position, RefTarget};

/// Items a reader hands over at once (one hand-over per item would cost a thread wake-up per
/// resource, more than the parallel work gains).
const HAND_OVER: usize = 128;

/// Items a reader may parse ahead of the batch, per file in flight.
const READ_AHEAD: usize = 4 * HAND_OVER;

/// Lines per chunk handed to a parsing worker.
const CHUNK: usize = 256;

/// A resource's canonical bytes (how the segment stores it) and content hash.
pub(super) type Canon = (Vec<u8>, [u8; 16]);

/// The canonical form of a resource: serde_json's map is ordered by key, so serializing the
/// parsed value gives the same bytes for the same content.
pub(super) fn canonical(v: &Value) -> Result<Canon, serde_json::Error> {
    let bytes = serde_json::to_vec(v)?;
    let digest = Sha256::digest(&bytes);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    Ok((bytes, hash))
}

/// A plain resource as a reader analysed it: everything the batch needs of it but its place
/// among the others. The parsed value itself is dropped on the reader's thread.
pub(super) struct Analysed {
    pub(super) rtype: String,
    /// The id, qualified by the batch's source.
    pub(super) qid: String,
    pub(super) canon: Canon,
    pub(super) stamp: Stamp,
    /// Every reference (json path, target qualified by the source).
    pub(super) refs: Vec<(String, RefTarget)>,
    /// The patient it belongs to (none for a Patient).
    pub(super) compartment: Option<RefTarget>,
}

/// Checks and analyses one resource of the batch's `source`.
pub(super) fn analyse(v: &Value, source: Option<&str>) -> Result<Analysed, BadReason> {
    let (rtype, id) = fhir::check_resource(v)?;
    let canon = canonical(v).map_err(|e| BadReason::Malformed(e.to_string()))?;
    let refs = fhir::references(v)
        .into_iter()
        .map(|(field, t)| (field, qualify_target(source, t)))
        .collect();
    let compartment = if rtype == "Patient" {
        None
    } else {
        fhir::compartment_ref(v).map(|t| qualify_target(source, t))
    };
    Ok(Analysed {
        rtype: rtype.to_string(),
        qid: qualify(source, id),
        canon,
        stamp: Stamp::of(v),
        refs,
        compartment,
    })
}

/// One input item, prepared for the batch.
pub(super) enum Prepared {
    /// Not a resource at all (unparsable, truncated, …): why.
    Bad(BadReason),
    /// A plain resource, analysed, or why it is refused.
    Resource(Result<Analysed, BadReason>),
    /// A transaction or batch Bundle: its entries, admitted one by one.
    Transaction(Vec<fhir::TxEntry>),
}

/// Prepares one item read from the input of the batch's `source`.
pub(super) fn prepare(item: fhir::Item, source: Option<&str>) -> Prepared {
    match item {
        Err(reason) => Prepared::Bad(reason),
        Ok(v) => match fhir::transaction_entries(&v) {
            Some(entries) => Prepared::Transaction(entries),
            None => Prepared::Resource(analyse(&v, source)),
        },
    }
}

/// One input item as a reader prepared it, with its place in its file.
pub(super) struct Read {
    pub(super) pos: Position,
    pub(super) item: Prepared,
}

enum FromReader {
    Items(Vec<Read>),
    Failed(VaultError),
}

/// Where reading starts: the first file to read, and the items of it already taken (an
/// interrupted ingest's committed part).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Start {
    pub(super) file: usize,
    pub(super) skip: u64,
}

impl Start {
    /// Items of file `i` not to read.
    fn skip_of(&self, i: usize) -> u64 {
        if i == self.file { self.skip } else { 0 }
    }
}

/// Reads `files` from `start` on `threads` reader threads (one: in the caller's thread) and
/// calls `admit(file, item)` for every item of the first file, then of the next, … in each
/// file's order (`file` numbers the file in `files`). The first error, the reader's or
/// `admit`'s, stops everything and is returned.
pub(super) fn read_files(
    files: &[PathBuf],
    start: Start,
    source: Option<&str>,
    threads: usize,
    admit: &mut dyn FnMut(usize, Read) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let todo: Vec<(usize, &PathBuf)> = files.iter().enumerate().skip(start.file).collect();
    if threads <= 1 {
        for (i, file) in todo {
            fhir::read_file_from(file, start.skip_of(i), &mut |pos, item| {
                let item = prepare(item, source);
                admit(i, Read { pos, item })
            })?;
        }
        return Ok(());
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = todo
        .iter()
        .map(|_| sync_channel::<FromReader>(READ_AHEAD / HAND_OVER))
        .unzip();
    // The files still to read, each with its channel: a reader takes the next under the lock.
    let work = Mutex::new(
        todo.iter()
            .enumerate()
            .map(|(n, (i, path))| (n, *path, start.skip_of(*i)))
            .zip(senders),
    );
    let gate = Gate {
        admitting: Mutex::new(0),
        moved: Condvar::new(),
        ahead: threads + FILES_AHEAD,
        stopped: AtomicBool::new(false),
    };
    thread::scope(|s| {
        for _ in 0..threads.min(todo.len()) {
            s.spawn(|| reader(&work, source, &gate));
        }
        // Owned here, so an early return drops them and unblocks every reader.
        let receivers = receivers;
        let result = admit_in_order(start.file, &receivers, &gate, admit);
        gate.stop();
        result
    })
}

/// Files a reader may start beyond the one being admitted, besides one per reader.
const FILES_AHEAD: usize = 2;

/// How far ahead of the batch the readers may go, in files: a file's channel bounds what is
/// parsed of it, and this bounds how many files are parsed at once (many small Bundle files
/// would otherwise all be parsed into memory while the batch commits).
struct Gate {
    /// The file (its number among those read) being admitted.
    admitting: Mutex<usize>,
    moved: Condvar,
    /// A reader may start file `n` once `n < admitting + ahead`.
    ahead: usize,
    stopped: AtomicBool,
}

impl Gate {
    /// Whether file `n` may be read while file `admitting` is admitted.
    fn may_read(&self, n: usize, admitting: usize) -> bool {
        n < admitting.saturating_add(self.ahead)
    }

    /// Waits until file `n` may be read; false if the ingest stopped meanwhile.
    fn wait_for(&self, n: usize) -> bool {
        let mut at = self
            .admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !self.may_read(n, *at) && !self.stopped.load(Ordering::Relaxed) {
            at = self.moved.wait(at).unwrap_or_else(PoisonError::into_inner);
        }
        !self.stopped.load(Ordering::Relaxed)
    }

    /// The batch moved on to file `n`.
    fn admit(&self, n: usize) {
        *self
            .admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = n;
        self.moved.notify_all();
    }

    /// The ingest stopped: every waiting reader leaves.
    fn stop(&self) {
        let _held = self
            .admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.stopped.store(true, Ordering::Relaxed);
        self.moved.notify_all();
    }
}

/// A reader thread: takes the next file, parses it into that file's channel, and so on.
fn reader<'a>(
    work: &Mutex<impl Iterator<Item = ((usize, &'a PathBuf, u64), SyncSender<FromReader>)>>,
    source: Option<&str>,
    gate: &Gate,
) {
    loop {
        let next = work.lock().unwrap_or_else(PoisonError::into_inner).next();
        let Some(((n, path, skip), tx)) = next else {
            return;
        };
        if !gate.wait_for(n) {
            return;
        }
        let mut gone = false;
        let mut items = Vec::with_capacity(HAND_OVER);
        let read = fhir::read_file_from(path, skip, &mut |pos, item| {
            let item = prepare(item, source);
            items.push(Read { pos, item });
            if items.len() < HAND_OVER {
                return Ok(());
            }
            let full = std::mem::replace(&mut items, Vec::with_capacity(HAND_OVER));
            if tx.send(FromReader::Items(full)).is_err() {
                // The batch stopped: end this file quietly.
                gone = true;
                return Err(VaultError::Corrupt {
                    path: path.clone(),
                    reason: "ingest stopped".into(),
                });
            }
            Ok(())
        });
        if gone || (!items.is_empty() && tx.send(FromReader::Items(items)).is_err()) {
            return;
        }
        if let Err(e) = read
            && tx.send(FromReader::Failed(e)).is_err()
        {
            return;
        }
    }
}

/// Admits what the readers of files `first`, `first + 1`, … send, file by file.
fn admit_in_order(
    first: usize,
    receivers: &[Receiver<FromReader>],
    gate: &Gate,
    admit: &mut dyn FnMut(usize, Read) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    for (n, (i, rx)) in (first..).zip(receivers).enumerate() {
        gate.admit(n);
        // The file's sender is dropped when its reader is done with it.
        for msg in rx {
            match msg {
                FromReader::Items(items) => {
                    for read in items {
                        admit(i, read)?;
                    }
                }
                FromReader::Failed(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// A numbered chunk of a segment's lines: (chunk number, [(line, bytes)]).
type Chunk = (u64, Vec<(u32, Vec<u8>)>);

/// One parsed line of a segment: its number, and its value (or why it did not parse).
type Parsed = (u32, Result<Value, String>);

/// Calls `f(line, value)` for every line of the segment's resources file at `path` for which
/// `wanted(line)`, in line order, the lines parsed on `threads` workers (one: all in the
/// caller's thread). A line that does not parse is [`VaultError::Corrupt`].
///
/// The values go back to the workers to be freed: a value is some thirty allocations of the
/// worker that parsed it, and freeing them on the mapping thread, the one every batch waits
/// for, cost it about a fifth of its time (the allocator collects frees from other threads).
pub(super) fn parse_lines(
    vault: &Vault,
    path: &Path,
    threads: usize,
    wanted: &(dyn Fn(u32) -> bool + Sync),
    f: &mut dyn FnMut(u32, &Value) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let corrupt = |reason: String| VaultError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if threads <= 1 {
        return vault.scan_segment(path, &mut |line, bytes| {
            if !wanted(line) {
                return Ok(());
            }
            let v = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
            f(line, &v)
        });
    }
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(threads * 2);
    // Held by the workers only: when the last one stops, the scanner's sends fail.
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (parsed_tx, parsed_rx) = sync_channel::<(u64, Vec<Parsed>)>(threads * 2);
    // Mapped chunks on their way back to the workers, to be freed there.
    let (spent_tx, spent_rx) = sync_channel::<Vec<Parsed>>(threads * 2);
    let spent_rx = Mutex::new(spent_rx);
    thread::scope(|s| {
        let scanner = s.spawn(move || scan_chunks(vault, path, wanted, chunk_tx));
        for _ in 0..threads {
            let parsed_tx = parsed_tx.clone();
            let chunk_rx = Arc::clone(&chunk_rx);
            let spent_rx = &spent_rx;
            s.spawn(move || parse_chunks(&chunk_rx, spent_rx, parsed_tx));
        }
        drop(parsed_tx);
        drop(chunk_rx);
        // Owned here, so an early return drops it and unblocks the workers and the scanner.
        let parsed_rx = parsed_rx;
        let mut waiting: BTreeMap<u64, Vec<Parsed>> = BTreeMap::new();
        let mut due = 0u64;
        for (seq, chunk) in &parsed_rx {
            waiting.insert(seq, chunk);
            while let Some(chunk) = waiting.remove(&due) {
                due += 1;
                for (line, v) in &chunk {
                    let v = v.as_ref().map_err(|e| corrupt(e.clone()))?;
                    f(*line, v)?;
                }
                // Full (the workers are all parsing): freed here after all.
                let _ = spent_tx.try_send(chunk);
            }
        }
        drop(parsed_rx);
        // Every chunk was mapped; the scanner's own error (a damaged file) comes last.
        match scanner.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The scanning thread: decrypts and decompresses the segment and sends its wanted lines in
/// numbered chunks.
fn scan_chunks(
    vault: &Vault,
    path: &Path,
    wanted: &(dyn Fn(u32) -> bool + Sync),
    tx: SyncSender<Chunk>,
) -> Result<(), VaultError> {
    let mut seq = 0u64;
    let mut chunk = Vec::with_capacity(CHUNK);
    let stopped = || VaultError::Corrupt {
        path: path.to_path_buf(),
        reason: "ingest stopped".into(),
    };
    vault.scan_segment(path, &mut |line, bytes| {
        if wanted(line) {
            chunk.push((line, bytes.to_vec()));
        }
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            tx.send((seq, full)).map_err(|_| stopped())?;
            seq += 1;
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        tx.send((seq, chunk)).map_err(|_| stopped())?;
    }
    Ok(())
}

/// A parsing worker: parses chunks until the scanner is done or the mapping stopped, and
/// frees the chunks the mapping is done with.
fn parse_chunks(
    rx: &Mutex<Receiver<Chunk>>,
    spent: &Mutex<Receiver<Vec<Parsed>>>,
    tx: SyncSender<(u64, Vec<Parsed>)>,
) {
    loop {
        loop {
            let done = spent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_recv();
            match done {
                Ok(chunk) => drop(chunk),
                Err(_) => break,
            }
        }
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((seq, lines)) = next else { return };
        let parsed = lines
            .into_iter()
            .map(|(line, bytes)| {
                let v = serde_json::from_slice(&bytes).map_err(|e| e.to_string());
                (line, v)
            })
            .collect();
        if tx.send((seq, parsed)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of NDJSON: file `f` holds `per` resources `f-0`, `f-1`, … (one malformed line in
    /// file 2, so reasons travel through the readers too).
    fn files(dir: &Path, n: usize, per: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|f| {
                let mut text = String::new();
                for i in 0..per {
                    if f == 2 && i == 5 {
                        text.push_str("{\"resourceType\": \n");
                        continue;
                    }
                    text.push_str(&format!(
                        "{{\"resourceType\":\"Basic\",\"id\":\"{f}-{i}\",\"z\":1,\"a\":[{i}]}}\n"
                    ));
                }
                let p = dir.join(format!("{f:02}.ndjson"));
                std::fs::write(&p, text).unwrap();
                p
            })
            .collect()
    }

    /// What `admit` saw, in order: file, position, id or reason, canonical hash.
    fn admitted(files: &[PathBuf], threads: usize) -> Vec<String> {
        admitted_from(files, Start::default(), threads)
    }

    fn admitted_from(files: &[PathBuf], start: Start, threads: usize) -> Vec<String> {
        let mut seen = Vec::new();
        read_files(files, start, None, threads, &mut |file, read| {
            let what = match &read.item {
                Prepared::Resource(Ok(a)) => format!("{} {}", a.qid, hex::encode(a.canon.1)),
                Prepared::Resource(Err(reason)) | Prepared::Bad(reason) => format!("{reason:?}"),
                Prepared::Transaction(_) => "transaction".into(),
            };
            seen.push(format!("{file} {} {what}", read.pos));
            Ok(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn readers_hand_over_in_file_order_whatever_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        // More items per file than a reader may read ahead, so readers block and resume.
        let files = files(dir.path(), 7, READ_AHEAD * 2 + 3);
        let one = admitted(&files, 1);
        assert_eq!(one.len(), 7 * (READ_AHEAD * 2 + 3));
        assert!(
            one.iter()
                .any(|l| l.starts_with("2 line 6 ") && !l.contains("2-5"))
        );
        for threads in [2, 3, 8] {
            assert_eq!(admitted(&files, threads), one, "{threads} threads");
        }
    }

    #[test]
    fn reading_from_a_start_gives_the_rest_of_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), 5, 40);
        let all = admitted(&files, 1);
        // File 2 holds a malformed line (an item like any other): skip past it.
        let start = Start { file: 2, skip: 7 };
        let rest: Vec<String> = all
            .iter()
            .filter(|l| !l.starts_with("0 ") && !l.starts_with("1 "))
            .skip(7)
            .cloned()
            .collect();
        assert!(rest[0].starts_with("2 line 8 "), "{}", rest[0]);
        for threads in [1, 2, 4] {
            assert_eq!(
                admitted_from(&files, start, threads),
                rest,
                "{threads} threads"
            );
        }
        let end = Start { file: 5, skip: 0 };
        assert!(admitted_from(&files, end, 2).is_empty());
    }

    #[test]
    fn readers_stay_a_few_files_ahead() {
        let gate = Gate {
            admitting: Mutex::new(0),
            moved: Condvar::new(),
            ahead: 2 + FILES_AHEAD,
            stopped: AtomicBool::new(false),
        };
        assert!(gate.may_read(0, 0) && gate.may_read(3, 0));
        assert!(!gate.may_read(4, 0) && !gate.may_read(1000, 0));
        assert!(gate.may_read(4, 1) && !gate.may_read(5, 1));
        // A reader waiting for a file far ahead leaves when the ingest stops.
        thread::scope(|s| {
            let waiting = s.spawn(|| gate.wait_for(50));
            gate.admit(10);
            gate.stop();
            assert!(!waiting.join().unwrap());
        });
        assert!(!gate.wait_for(0), "a stopped ingest reads nothing more");
    }

    #[test]
    fn a_refusal_stops_every_reader() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), 6, READ_AHEAD * 3);
        for threads in [1, 2, 4] {
            let mut n = 0;
            let err = read_files(&files, Start::default(), None, threads, &mut |file, _| {
                n += 1;
                if file == 1 && n > READ_AHEAD * 3 + 10 {
                    return Err(VaultError::InjectedFault(n as u64));
                }
                Ok(())
            })
            .unwrap_err();
            assert!(matches!(err, VaultError::InjectedFault(_)), "{err}");
            assert_eq!(n, READ_AHEAD * 3 + 11);
        }
    }

    #[test]
    fn a_missing_file_is_an_error_after_the_files_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = files(dir.path(), 3, 10);
        files.insert(1, dir.path().join("gone.ndjson"));
        for threads in [1, 3] {
            let mut seen = 0;
            let err = read_files(&files, Start::default(), None, threads, &mut |_, _| {
                seen += 1;
                Ok(())
            })
            .unwrap_err();
            assert!(matches!(err, VaultError::Io { .. }), "{err}");
            assert_eq!(seen, 10, "only the first file was admitted");
        }
    }
}
