//! What an ingest is told and what it reports: the options, the report with its per-input
//! errors, and which resource types may change in place.

use serde::Serialize;

use crate::fhir::{BadReason, Position};
use crate::vocab::Vocabulary;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

/// What to do with a bad resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Skip the bad resource, store the rest.
    #[default]
    Skip,
    /// Refuse the whole batch: nothing is stored.
    Refuse,
}

/// Options of one ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Skip bad resources or refuse the batch.
    pub on_error: OnError,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Vocabulary for concept ids (`None`: every concept id is 0).
    pub vocabulary: Option<Arc<Vocabulary>>,
    /// The source system the batch comes from (`lab-system`, `ehr`; 1 to 64 of `A-Z a-z 0-9
    /// . _ -`). Resources are keyed by (source, type, id) and references resolve within their
    /// source, so two sources never collide. `None`: the default namespace, which is where
    /// every resource of a vault written before sources lives.
    pub source: Option<String>,
    /// Accept changed content for a stored (source, type, id) as a new version (an update
    /// feed). Without it, changed content of a type with CDM rows is a conflict and is refused
    /// with everything that depends on it: an id reused by another system for another person
    /// must not silently rewrite a record. Deletes (Bundle entries with `request.method =
    /// DELETE`) are explicit and always applied.
    pub updates: bool,
    /// An incremental feed's `_since` instant (Bulk Data export): recorded with the segment;
    /// implies `updates`.
    pub since: Option<String>,
    /// Map stored resources again (same content) as new versions of themselves, their rows
    /// through this batch's vocabulary ([`crate::Vault::remap`]); implies `updates`.
    pub remap: bool,
    /// Threads that parse the input and the new segment (0: one per core). Items are still
    /// admitted and mapped in input order, so the outcome is the same for any number.
    pub threads: usize,
    /// Commit the input as it is read, in batches of about this many items (0: the whole
    /// input is one atomic batch). Memory then holds one batch, whatever the input's size,
    /// and an interrupted ingest resumes after its last committed batch when run again on the
    /// same files (see [`crate::Vault::ingest_paths`]). A Bundle file is never split across
    /// batches; NDJSON files are split at line boundaries. Ignored with [`OnError::Refuse`],
    /// which refuses or stores the input as a whole.
    pub commit_every: usize,
    /// Test hook: abort like a crash after this many resources were written to the new
    /// segment (nothing is cleaned up, nothing committed).
    #[doc(hidden)]
    pub fail_after: Option<u64>,
    /// Test hook: abort like a crash once this many batches of a chunked ingest committed.
    #[doc(hidden)]
    pub fail_after_commits: Option<u64>,
}

/// Items per committed batch of `medspace ingest` by default: about 100 MB of memory at the
/// peak of a batch (phase 3), whatever the input's size.
pub const COMMIT_EVERY: usize = 50_000;

/// One rejected input item.
#[derive(Clone, Debug, Serialize)]
pub struct InputError {
    /// The file.
    pub file: PathBuf,
    /// Where in it.
    pub position: Position,
    /// Why.
    pub reason: BadReason,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

/// The outcome of one ingest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    /// Resources (or unreadable items) read from the input.
    pub read: u64,
    /// New resources stored.
    pub stored: u64,
    /// Resources already in the vault (or repeated in the batch) with the same content.
    pub unchanged: u64,
    /// Stored resources replaced by a changed version (types with CDM rows only in an update
    /// feed, see [`IngestOptions::updates`]; reference data always, see [`updatable`]).
    pub updated: u64,
    /// Stored resources deleted (asked for, or with the Patient or Encounter they belong to).
    pub deleted: u64,
    /// Versions older than the stored one (by `meta.lastUpdated` / `meta.versionId`) that
    /// arrived late: kept for audit, not current.
    pub stale: u64,
    /// Bad resources skipped (`--on-error skip`).
    pub skipped: u64,
    /// Resources not stored because the batch was refused (`--on-error refuse`).
    pub refused: u64,
    /// Whether a new segment was committed.
    pub committed: bool,
    /// Each problem, with file, position and reason.
    pub errors: Vec<InputError>,
    /// Stored resources per type.
    pub stored_by_type: BTreeMap<String, u64>,
    /// Rows added per CDM table.
    pub rows_by_table: BTreeMap<String, u64>,
    /// Rows of earlier batches retracted per CDM table (updated or deleted resources).
    pub rows_retracted_by_table: BTreeMap<String, u64>,
    /// Batches committed (one per segment; an atomic ingest commits at most one).
    pub commits: u64,
    /// Items not read again because an interrupted ingest of the same input had committed
    /// them (see [`IngestOptions::commit_every`]).
    pub resumed: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl IngestReport {
    /// What `medspace ingest` prints: [`IngestReport::summary_line`], the rate, and the
    /// process's peak memory when known.
    pub fn printed(&self, peak_rss_kib: Option<u64>) -> String {
        let peak = peak_rss_kib
            .map(|k| format!(", peak memory {:.0} MiB", k as f64 / 1024.0))
            .unwrap_or_default();
        format!(
            "{} ({:.0} resources/s{peak})",
            self.summary_line(),
            self.read as f64 / self.seconds.max(1e-9)
        )
    }

    /// Adds the report of the next batch of the same ingest (its time excluded: the caller
    /// times the whole ingest).
    pub(crate) fn absorb(&mut self, next: IngestReport) {
        self.read += next.read;
        self.stored += next.stored;
        self.unchanged += next.unchanged;
        self.updated += next.updated;
        self.deleted += next.deleted;
        self.stale += next.stale;
        self.skipped += next.skipped;
        self.refused += next.refused;
        self.committed |= next.committed;
        self.commits += next.commits;
        self.resumed += next.resumed;
        self.errors.extend(next.errors);
        let add = |to: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>| {
            for (k, n) in from {
                *to.entry(k).or_insert(0) += n;
            }
        };
        add(&mut self.stored_by_type, next.stored_by_type);
        add(&mut self.rows_by_table, next.rows_by_table);
        add(
            &mut self.rows_retracted_by_table,
            next.rows_retracted_by_table,
        );
    }

    /// `read=.. stored=.. unchanged=.. skipped=.. refused=..`, then `commits=..` when the
    /// input was committed in several batches and `resumed=..` when an interrupted ingest was
    /// resumed.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "read={} stored={} updated={} deleted={} unchanged={} skipped={} refused={} committed={}",
            self.read,
            self.stored,
            self.updated,
            self.deleted,
            self.unchanged,
            self.skipped,
            self.refused,
            self.committed
        );
        if self.commits > 1 {
            line.push_str(&format!(" commits={}", self.commits));
        }
        if self.resumed > 0 {
            line.push_str(&format!(" resumed={}", self.resumed));
        }
        line
    }
}

impl IngestOptions {
    /// Whether changed content is a new version (see [`IngestOptions::updates`]).
    pub fn accepts_updates(&self) -> bool {
        self.updates || self.remap || self.since.is_some()
    }

    /// The threads an ingest parses on: [`IngestOptions::threads`], or one per core.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// Whether `name` is a valid source name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_source(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a stored resource of this type may be replaced by a changed version outside an
/// update feed. Types that feed CDM rows may not (see [`IngestOptions::updates`]); reference
/// data such as Organization, Practitioner or Location may (Synthea ships updated copies of
/// them).
pub fn updatable(resource_type: &str) -> bool {
    !matches!(
        resource_type,
        "Patient"
            | "Encounter"
            | "Condition"
            | "Observation"
            | "MedicationRequest"
            | "MedicationStatement"
            | "MedicationAdministration"
            | "Immunization"
            | "Procedure"
            | "AllergyIntolerance"
            | "ExplanationOfBenefit"
    )
}

/// Types that got CDM rows after versioning came (ExplanationOfBenefit → cost): a resource of
/// one stored before versioning produced no rows then, so its rows are known (none) and it may
/// be updated or deleted like any versioned one.
pub(crate) fn mapped_since_versioning(resource_type: &str) -> bool {
    resource_type == "ExplanationOfBenefit"
}
