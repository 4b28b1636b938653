//! A member's vault (a hospital's, an insurer's): its own patient data, which never leaves the
//! node.
//!
//! * **Ingest** ([`Vault::ingest_paths`], [`Vault::ingest_values`]): FHIR R4 Bundle JSON,
//!   folders of them, and Bulk Data NDJSON, streamed; each resource is checked (malformed,
//!   unknown type, not R4, dangling reference), deduplicated by source, type, id and content
//!   hash (re-ingesting adds nothing), and the whole batch commits atomically as one new
//!   segment (see [`store`]). What refers to a refused resource is refused with it. Each
//!   source system has its own ids ([`IngestOptions::source`]); an update feed
//!   ([`IngestOptions::updates`], `_since` feeds) stores changed content as a new version whose
//!   CDM rows replace the old ones, and transaction Bundles delete (a Patient with its
//!   record); every version stays in the segments for audit ([`Vault::resource_versions`]).
//! * **Storage**: the original resources (zstd-compressed canonical JSON) for export and record
//!   sharing, and OMOP-CDM-5.4-like tables in Parquet ([`cdm`]): person, visit_occurrence,
//!   condition_occurrence, drug_exposure, measurement, observation, procedure_occurrence, death,
//!   location (the region of a person's address: city, state, county and the postal code's
//!   first three characters only), cost (what a visit cost, charged and paid, from a payer's
//!   ExplanationOfBenefit: an insurer's vault holds its members' claims).
//!   Patients get a stable local `person_id` and a ledger pseudonym (HMAC with a per-vault key);
//!   the mapping stays here.
//! * **Query**: [`open_session`] gives a DataFusion `SessionContext` with those tables
//!   ([`open_pooled_session`]: several vaults' tables as one, for the pooled baseline of a
//!   benchmark).
//! * **Quality** ([`quality`]) and the **catalog description** ([`catalog`]) that the ledger
//!   publishes (no data: tables, fields, counts, quality, privacy levels, content hash).
//! * **Export** ([`export`]): one patient as a FHIR Bundle, or all as Bulk NDJSON.
//! * **Benchmarks** ([`bench`](mod@bench)) for `medspace bench ingest` / `bench cohort`, and the synthetic
//!   CDM population builder that `bench federated` uses.
//!
//! Module map:
//! * [`at_rest`] — encryption at rest: the vault's keys ([`VaultKey`], unlocked once from a
//!   passphrase), sealed files, encrypted Parquet and the session's decryption factory.
//! * [`fhir`] — FHIR R4 JSON: resource checks, references, dates, reading Bundle / NDJSON files.
//! * [`store`] — the vault on disk ([`Vault`]): manifest and segments with the crash-safe
//!   commit, segment index, original resources, pseudonyms, and the ingest batch.
//! * [`cdm`] — the CDM schema (`cdm::tables`, one data-like list of tables and columns), Parquet
//!   writing, and one mapper per FHIR resource family.
//! * `session` — DataFusion sessions over the committed tables ([`open_session`],
//!   [`open_pooled_session`], [`sql`], [`sql_blocking`]); the same tables registered in a
//!   session whose plans run elsewhere ([`register_vaults`], [`decryption_factory`]); scratch
//!   tables beside them ([`ScratchTable`]).
//! * [`vocab`] — the OMOP vocabulary subset; [`quality`], [`catalog`], [`export`], [`bench`](mod@bench) as
//!   above; [`error`] — [`VaultError`].

pub mod at_rest;
pub mod bench;
pub mod catalog;
pub mod cdm;
pub mod checks;
pub mod error;
pub mod export;
pub mod fhir;
pub mod quality;
mod session;
pub mod store;
pub mod vocab;

use std::path::Path;
use std::sync::Arc;

pub use at_rest::FACTORY_ID;
pub use at_rest::VaultKey;
pub use cdm::TABLES;
pub use error::VaultError;
/// The sealing primitives (passphrases, argon2id parameters, sealed key files), re-exported for
/// the vault's users.
pub use medspace_seal as seal;
pub(crate) use session::runtime;
pub use session::{
    ScratchTable, decryption_factory, open_pooled_session, open_session, register_vaults,
    session_config, sql, sql_blocking,
};
pub use store::{
    COMMIT_EVERY, Ingest, IngestOptions, IngestReport, InputError, OnError, Vault, ingest_order,
};
pub use vocab::Vocabulary;

/// Row sink handed to [`Vault::bench_commit_cdm`].
#[doc(hidden)]
pub struct BenchRows<'a> {
    pub(crate) writer: &'a mut cdm::CdmWriter,
    pub(crate) counters: &'a mut cdm::Counters,
}

/// Generates `patients` synthetic patients for hospital number `hospital` (see
/// [`medspace_synth`]) and ingests them into the node's vault as one batch. For the devnet:
/// each hospital gets its own, disjoint, deterministic patients.
pub fn ingest_synthetic(
    node_dir: &Path,
    key: &VaultKey,
    hospital: u32,
    patients: u64,
    seed: u64,
    vocabulary: Option<Arc<Vocabulary>>,
) -> Result<IngestReport, VaultError> {
    let mut vault = Vault::open(node_dir, key)?;
    let cfg = medspace_synth::SynthConfig {
        patients,
        seed,
        hospital,
    };
    let opts = IngestOptions {
        on_error: OnError::Refuse,
        vocabulary,
        ..IngestOptions::default()
    };
    // One patient at a time: memory holds one patient's resources, not the population.
    let resources = medspace_synth::hospital_resources(seed, hospital)
        .into_iter()
        .chain(
            (0..cfg.patients)
                .flat_map(move |i| medspace_synth::patient_resources(seed, hospital, i)),
        );
    vault.ingest_values(&format!("synth-hospital-{hospital}"), resources, &opts)
}
