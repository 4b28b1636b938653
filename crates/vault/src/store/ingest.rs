//! The ingest API: options, the report, and the two entry points ([`Vault::ingest_paths`] for
//! files and folders, [`Vault::ingest_values`] for resources in memory). A batch (see `batch`)
//! is checked, deduplicated, and committed atomically or not at all. An ingest is one batch,
//! or, with [`IngestOptions::commit_every`], a stream of batches: memory then holds one batch
//! whatever the input's size, and an interrupted ingest resumes after its last commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::{Instant, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Vault;
use super::batch::{Batch, progress_bar};
use super::manifest::{RunCursor, segment_name};
pub use super::options::{
    COMMIT_EVERY, IngestOptions, IngestReport, InputError, OnError, updatable,
};
use super::pipeline::{self, Start};
use crate::error::VaultError;
use crate::fhir::{self, Position};

impl Vault {
    /// Ingests FHIR files and folders (Bundle JSON, NDJSON), the files parsed on
    /// [`IngestOptions::threads`] threads (the outcome is the same for any number).
    ///
    /// Without [`IngestOptions::commit_every`] (or with [`OnError::Refuse`]) the input is one
    /// atomic batch. With it, the files are read in [`ingest_order`] and committed in batches
    /// of about that many items, each recording how far the ingest had come; run again on the
    /// same files after a crash, the ingest starts after the last batch it committed. A
    /// reference resolves within its batch or to what earlier batches stored.
    pub fn ingest_paths(
        &mut self,
        paths: &[PathBuf],
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        let bar = progress_bar(opts);
        let every = match opts.on_error {
            OnError::Refuse => 0,
            OnError::Skip => opts.commit_every,
        };
        let report = if every == 0 {
            self.ingest_whole(&files, opts, &bar)
        } else {
            ingest_order(&mut files);
            self.ingest_chunked(&files, opts, every as u64, &bar)
        };
        bar.finish_and_clear();
        report
    }

    /// The files as one batch.
    fn ingest_whole(
        &mut self,
        files: &[PathBuf],
        opts: &IngestOptions,
        bar: &indicatif::ProgressBar,
    ) -> Result<IngestReport, VaultError> {
        let mut batch = Batch::start(self, files.into(), opts, bar)?;
        let source = opts.source.as_deref();
        pipeline::read_files(
            files,
            Start::default(),
            source,
            opts.threads(),
            &mut |file, read| batch.admit(file, read.pos, read.item),
        )?;
        batch.finish(self)
    }

    /// The files as a stream of batches of about `every` items, from where an interrupted
    /// ingest of the same input stopped. On several threads a full batch is committed on a
    /// thread of its own while the next one fills (so at most two batches are in memory): its
    /// checks and mapping overlap the reading of what follows. On one, batches commit in turn.
    fn ingest_chunked(
        &mut self,
        files: &[PathBuf],
        opts: &IngestOptions,
        every: u64,
        bar: &indicatif::ProgressBar,
    ) -> Result<IngestReport, VaultError> {
        let started = Instant::now();
        let run = run_id(files, opts)?;
        let (start, resumed) = match self.manifest.resume_point(&run) {
            Some(c) => (
                Start {
                    file: usize::try_from(c.file).unwrap_or(usize::MAX),
                    skip: c.item,
                },
                c.read,
            ),
            None => (Start::default(), 0),
        };
        if resumed > 0 {
            tracing::info!(items = resumed, "vault.ingest.resume");
        }
        let (key, root) = (self.key.clone(), self.root.clone());
        // Batches are named ahead of their commits; a name is never reused (see
        // `next_segment_number`), even when a batch commits nothing.
        let mut number = self.manifest.next_segment_number();
        let shared: Arc<[PathBuf]> = files.into();
        let open = |number: u64| {
            let name = segment_name(number);
            Batch::start_named(&key, &root, name, Arc::clone(&shared), opts, bar)
        };
        let cursor = |file: usize, item: u64, read: u64, done: bool| RunCursor {
            id: run.clone(),
            file: file as u64,
            item,
            read,
            done,
        };
        let stopped = || VaultError::Corrupt {
            path: root.clone(),
            reason: "ingest stopped".into(),
        };
        let vault = self;
        thread::scope(|s| {
            // On one thread a full batch commits in place; on several, on a thread of its own,
            // handed over by rendezvous (only once the last one committed).
            let mut committer = if opts.threads() <= 1 {
                Committer::Inline(vault, IngestReport::default())
            } else {
                let (full_tx, full_rx) = sync_channel::<Batch<'_>>(0);
                let thread = s.spawn(move || -> Result<IngestReport, VaultError> {
                    let mut total = IngestReport::default();
                    for batch in full_rx {
                        commit(vault, batch, &mut total, opts)?;
                    }
                    Ok(total)
                });
                Committer::Thread(full_tx, thread)
            };
            let mut batch = None;
            // Where the reader stands: the file, items of it admitted, items of the input.
            let (mut file_at, mut item, mut read) = (start.file, start.skip, resumed);
            let reading = open(number).and_then(|first| {
                batch = Some(first);
                pipeline::read_files(
                    files,
                    start,
                    opts.source.as_deref(),
                    opts.threads(),
                    &mut |file, next| {
                        if file != file_at {
                            (file_at, item) = (file, 0);
                        }
                        let full = batch.as_ref().is_some_and(|b| b.report.read >= every);
                        // A Bundle file is never split: its entries refer to each other.
                        let splittable =
                            item == 0 || files.get(file).is_some_and(|f| fhir::is_ndjson(f));
                        if full
                            && splittable
                            && let Some(mut done) = batch.take()
                        {
                            done.run = Some(cursor(file, item, read, false));
                            committer
                                .hand(done, opts)
                                .map_err(|e| e.unwrap_or_else(stopped))?;
                            number += 1;
                            batch = Some(open(number)?);
                        }
                        item += 1;
                        read += 1;
                        match batch.as_mut() {
                            Some(b) => b.admit(file, next.pos, next.item),
                            None => Ok(()),
                        }
                    },
                )?;
                if let Some(mut last) = batch.take() {
                    last.run = Some(cursor(files.len(), 0, read, true));
                    committer
                        .hand(last, opts)
                        .map_err(|e| e.unwrap_or_else(stopped))?;
                }
                Ok(())
            });
            // The committer's error first: it is why the reading stopped.
            let mut total = committer.end()?;
            reading?;
            total.resumed = resumed;
            total.seconds = started.elapsed().as_secs_f64();
            Ok(total)
        })
    }

    /// Ingests resources held in memory (e.g. from the generator) as one atomic batch; `source`
    /// names them in error reports.
    pub fn ingest_values(
        &mut self,
        source: &str,
        resources: impl IntoIterator<Item = Value>,
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let bar = progress_bar(opts);
        let mut batch = Batch::start(self, Arc::from([PathBuf::from(source)]), opts, &bar)?;
        for (i, r) in resources.into_iter().enumerate() {
            let item = pipeline::prepare(Ok(r), opts.source.as_deref());
            batch.admit(0, Position::Entry(i as u64), item)?;
        }
        let report = batch.finish(self);
        bar.finish_and_clear();
        report
    }
}

/// Where the full batches of a chunked ingest commit.
enum Committer<'v, 'o, 's> {
    /// In the reading thread, in turn (an ingest on one thread): the vault and the report.
    Inline(&'v mut Vault, IngestReport),
    /// On a thread of their own, while the next batch fills.
    Thread(
        std::sync::mpsc::SyncSender<Batch<'o>>,
        thread::ScopedJoinHandle<'s, Result<IngestReport, VaultError>>,
    ),
}

impl<'o> Committer<'_, 'o, '_> {
    /// Commits `batch` or hands it over; `Err(None)`: the committing thread stopped (its own
    /// error comes from [`Committer::end`]).
    fn hand(&mut self, batch: Batch<'o>, opts: &IngestOptions) -> Result<(), Option<VaultError>> {
        match self {
            Committer::Inline(vault, total) => commit(vault, batch, total, opts).map_err(Some),
            Committer::Thread(tx, _) => tx.send(batch).map_err(|_| None),
        }
    }

    /// Waits for the last commit; the ingest's report.
    fn end(self) -> Result<IngestReport, VaultError> {
        match self {
            Committer::Inline(_, total) => Ok(total),
            Committer::Thread(tx, thread) => {
                drop(tx);
                match thread.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
    }
}

/// Commits one batch of a chunked ingest into `total`.
fn commit(
    vault: &mut Vault,
    batch: Batch<'_>,
    total: &mut IngestReport,
    opts: &IngestOptions,
) -> Result<(), VaultError> {
    total.absorb(batch.finish(vault)?);
    if opts.fail_after_commits.is_some_and(|n| total.commits >= n) {
        return Err(VaultError::InjectedFault(total.commits));
    }
    Ok(())
}

/// Orders the input files of a chunked ingest so that what a resource refers to is read
/// before it: Bulk Data NDJSON files hold one resource type each (`Patient.ndjson`,
/// `Observation.000.ndjson`), so files are ranked by the type their name starts with
/// (organizations and practitioners, then patients, encounters, clinical resources, and the
/// claims that cite them), other files last; the sort is stable, so the collected order (by
/// name) decides within a rank. Bundle files need no order: each carries what it refers to.
pub fn ingest_order(files: &mut [PathBuf]) {
    files.sort_by_key(|f| {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let stem = name.split(['.', '-', '_']).next().unwrap_or_default();
        DEPENDENCY_ORDER
            .iter()
            .position(|t| *t == stem)
            .unwrap_or(DEPENDENCY_ORDER.len())
    });
}

/// Resource types, each after the types it usually refers to (US Core / Synthea).
const DEPENDENCY_ORDER: [&str; 27] = [
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Medication",
    "Substance",
    "Patient",
    "RelatedPerson",
    "Device",
    "Encounter",
    "Condition",
    "AllergyIntolerance",
    "Observation",
    "Procedure",
    "Immunization",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "ImagingStudy",
    "DiagnosticReport",
    "DocumentReference",
    "CareTeam",
    "Goal",
    "CarePlan",
    "Claim",
    "ExplanationOfBenefit",
    "Provenance",
];

/// The identity of a chunked ingest's input: its files in order (path, size, modification
/// time) and the options that change what is stored. A file changed since the interrupted run
/// makes another identity, and the ingest starts over.
fn run_id(files: &[PathBuf], opts: &IngestOptions) -> Result<String, VaultError> {
    let mut h = Sha256::new();
    h.update(b"medspace/ingest-run/v1");
    for f in files {
        let meta = fs::metadata(f).map_err(VaultError::io(f))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let path = f.to_string_lossy();
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(modified.to_le_bytes());
    }
    let option = |h: &mut Sha256, v: Option<&str>| match v {
        Some(s) => {
            h.update([1]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        None => h.update([0]),
    };
    option(&mut h, opts.source.as_deref());
    option(&mut h, opts.since.as_deref());
    h.update([u8::from(opts.updates), u8::from(opts.remap)]);
    Ok(hex::encode(h.finalize().get(..16).unwrap_or_default()))
}

/// The input files under `p`: `p` itself if it is a file, else every `.json`, `.ndjson` and
/// `.jsonl` file below it, in sorted order.
fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), VaultError> {
    let meta = fs::metadata(p).map_err(VaultError::io(p))?;
    if meta.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(p)
            .map_err(VaultError::io(p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        children.sort();
        for c in children {
            let name = c.to_string_lossy();
            if c.is_dir()
                || name.ends_with(".json")
                || name.ends_with(".ndjson")
                || name.ends_with(".jsonl")
            {
                collect_files(&c, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}
