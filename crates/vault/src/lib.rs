//! The hospital's vault: its own patient data, which never leaves the node.
//!
//! * **Ingest** ([`Vault::ingest_paths`], [`Vault::ingest_values`]): FHIR R4 Bundle JSON,
//!   folders of them, and Bulk Data NDJSON, streamed; each resource is checked (malformed,
//!   unknown type, not R4, dangling reference), deduplicated by type, id and content hash
//!   (re-ingesting adds nothing), and the whole batch commits atomically as one new segment
//!   (see [`store`]).
//! * **Storage**: the original resources (zstd-compressed canonical JSON) for export and record
//!   sharing, and OMOP-CDM-5.4-like tables in Parquet ([`cdm`]): person, visit_occurrence,
//!   condition_occurrence, drug_exposure, measurement, observation, procedure_occurrence, death.
//!   Patients get a stable local `person_id` and a ledger pseudonym (HMAC with a per-vault key);
//!   the mapping stays here.
//! * **Query**: [`open_session`] gives a DataFusion `SessionContext` with those tables
//!   ([`open_pooled_session`]: several vaults' tables as one, for the pooled baseline of a
//!   benchmark).
//! * **Quality** ([`quality`]) and the **catalog description** ([`catalog`]) that the ledger
//!   publishes (no data: tables, fields, counts, quality, privacy levels, content hash).
//! * **Export** ([`export`]): one patient as a FHIR Bundle, or all as Bulk NDJSON.
//! * **Benchmarks** ([`bench`]) for `medspace bench ingest` / `bench cohort`, and the synthetic
//!   CDM population builder that `bench federated` uses.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bench;
pub mod catalog;
pub mod cdm;
pub mod error;
pub mod export;
pub mod fhir;
pub mod quality;
pub mod store;
pub mod vocab;

use std::path::Path;
use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use cdm::TABLES;
pub use error::VaultError;
pub use store::{IngestOptions, IngestReport, InputError, OnError, Vault};
pub use vocab::Vocabulary;

/// A DataFusion session over the committed CDM tables of a node's vault, registered under
/// their CDM names (`person`, `measurement`, ...). Tables with no rows are registered empty
/// with their schema. Read-only: it sees the state of the last commit when it was opened.
pub fn open_session(node_dir: &Path) -> Result<SessionContext, VaultError> {
    open_pooled_session(&[node_dir])
}

/// A DataFusion session in which each CDM table is the union of that table in the vaults of all
/// `node_dirs` (one logical table over every vault's Parquet files), as if their data had been
/// pooled in one place. The vaults must use disjoint `person_id`s for joins to mean anything.
/// With one directory this is [`open_session`]. Used by `medspace bench federated` for the
/// pooled baseline; a node only ever opens its own vault.
pub fn open_pooled_session(node_dirs: &[&Path]) -> Result<SessionContext, VaultError> {
    let mut vaults = Vec::with_capacity(node_dirs.len());
    for node_dir in node_dirs {
        let root = store::vault_dir(node_dir);
        let manifest = store::read_manifest(&root)?;
        vaults.push((root, manifest));
    }
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    for table in TABLES {
        let schema = cdm::schema(table);
        let mut urls = Vec::new();
        for (root, manifest) in &vaults {
            for seg in &manifest.segments {
                if seg.tables.get(table).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let path = root
                    .join("segments")
                    .join(&seg.name)
                    .join("cdm")
                    .join(format!("{table}.parquet"));
                let path = path.canonicalize().map_err(VaultError::io(&path))?;
                urls.push(ListingTableUrl::parse(path.to_string_lossy().as_ref())?);
            }
        }
        if urls.is_empty() {
            let mem = MemTable::try_new(schema, vec![vec![]])?;
            ctx.register_table(table, Arc::new(mem))?;
        } else {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
        }
    }
    Ok(ctx)
}

/// Runs one SQL query against a session and collects the result.
pub async fn sql(
    ctx: &SessionContext,
    query: &str,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, VaultError> {
    let df = ctx.sql(query).await?;
    Ok(df.collect().await?)
}

/// Runs one SQL query against a node's vault and renders the result as a text table
/// (blocking; for the operator's `medspace sql`). Must not be called inside a tokio runtime.
pub fn sql_blocking(node_dir: &Path, query: &str) -> Result<String, VaultError> {
    let ctx = open_session(node_dir)?;
    let rt = runtime()?;
    let batches = rt.block_on(sql(&ctx, query))?;
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| VaultError::Query(e.to_string()))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, VaultError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(VaultError::io("tokio-runtime"))
}

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
    hospital: u32,
    patients: u64,
    seed: u64,
    vocabulary: Option<Arc<Vocabulary>>,
) -> Result<IngestReport, VaultError> {
    let mut vault = Vault::open(node_dir)?;
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
