//! What an ingest is told and what it reports: the options, the report with its per-input
//! errors, and which resource types may change in place.

use serde::Serialize;

use crate::fhir::{BadReason, Position};
use crate::vocab::Vocabulary;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Test hook: abort like a crash after this many resources were written to the new
    /// segment (nothing is cleaned up, nothing committed).
    #[doc(hidden)]
    pub fail_after: Option<u64>,
}

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
    /// Stored resources replaced by a changed version (only types without CDM rows, such as
    /// Organization or Practitioner, may change; see [`updatable`]).
    pub updated: u64,
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
    /// Wall time in seconds.
    pub seconds: f64,
}

impl IngestReport {
    /// `read=.. stored=.. unchanged=.. skipped=.. refused=..`.
    pub fn summary_line(&self) -> String {
        format!(
            "read={} stored={} updated={} unchanged={} skipped={} refused={} committed={}",
            self.read,
            self.stored,
            self.updated,
            self.unchanged,
            self.skipped,
            self.refused,
            self.committed
        )
    }
}

/// Whether a stored resource of this type may be replaced by a changed version. Types that feed
/// CDM rows may not (their rows would have to be retracted); reference data such as
/// Organization, Practitioner or Location may (Synthea ships updated copies of them).
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
    )
}
