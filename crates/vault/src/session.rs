//! Query: DataFusion sessions over the committed CDM tables of one vault or of several pooled
//! vaults (each table is registered as one listing table over the Parquet files of every
//! committed segment), and SQL helpers for the operator.
//!
//! Retracted rows (of resource versions a later segment updated or deleted; see
//! [`crate::store`]) are left out here, once, for every reader: a table whose segments retract
//! nothing is the plain listing table; otherwise it is a view, the union of one listing table
//! over the untouched segments' files and, per segment with retracted rows, that segment's file
//! without them (`row id NOT IN (...)` on the table's first column, its row id). Rows are
//! retracted per segment because a new version of a Patient or Encounter keeps its id: the
//! current person row has the same `person_id` as the retracted one, in a later segment.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::empty::EmptyTable;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, ident, lit};

use datafusion::common::config::TableParquetOptions;

use crate::at_rest::{FACTORY_ID, VaultDecryption, VaultKey};
use crate::cdm::{self, TABLES};
use crate::error::VaultError;
use crate::store;

/// A DataFusion session over the committed CDM tables of a node's vault, registered under
/// their CDM names (`person`, `measurement`, ...). Tables with no rows are registered empty
/// with their schema. Read-only: it sees the state of the last commit when it was opened.
/// The encrypted Parquet files are decrypted with the vault's keys as they are read.
pub fn open_session(node_dir: &Path, key: &VaultKey) -> Result<SessionContext, VaultError> {
    open_pooled_session(&[(node_dir, key)])
}

/// A DataFusion session in which each CDM table is the union of that table in the vaults of all
/// `node_dirs` (one logical table over every vault's Parquet files), as if their data had been
/// pooled in one place. The vaults must use disjoint `person_id`s for joins to mean anything.
/// With one directory this is [`open_session`]. Used by `medspace bench federated` for the
/// pooled baseline; a node only ever opens its own vault.
pub fn open_pooled_session(vaults_in: &[(&Path, &VaultKey)]) -> Result<SessionContext, VaultError> {
    let ctx = SessionContext::new_with_config(session_config());
    register_vaults(&ctx, vaults_in)?;
    Ok(ctx)
}

/// The settings of every vault session: two target partitions (the cores of a hospital's
/// small node) and the information schema.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(true)
}

/// How every vault table is read: encrypted Parquet, decrypted through the encryption factory
/// [`FACTORY_ID`] of the session's runtime.
fn listing_options() -> ListingOptions {
    let mut parquet_options = TableParquetOptions::default();
    parquet_options.crypto.factory_id = Some(FACTORY_ID.to_string());
    let format = ParquetFormat::default().with_options(parquet_options);
    ListingOptions::new(Arc::new(format)).with_file_extension(".parquet")
}

/// Registers the CDM tables of the vaults of `vaults_in` in `ctx`, which may be a session of
/// its own ([`open_pooled_session`]) or a client session whose plans run elsewhere (a Ballista
/// scheduler's executors, which decrypt with the same keys; see `medspace-cluster`). Every
/// table provider used is one DataFusion can serialize into a plan: listing tables, views,
/// and empty tables.
pub fn register_vaults(
    ctx: &SessionContext,
    vaults_in: &[(&Path, &VaultKey)],
) -> Result<(), VaultError> {
    let mut vaults: Vec<(std::path::PathBuf, store::Manifest)> =
        Vec::with_capacity(vaults_in.len());
    let mut keys = Vec::with_capacity(vaults_in.len());
    for (node_dir, key) in vaults_in {
        let root = store::vault_dir(node_dir);
        key.check(&root)?;
        let manifest = store::read_manifest(&root, key)?;
        let canonical = root.canonicalize().map_err(VaultError::io(&root))?;
        keys.push((canonical, (*key).clone()));
        vaults.push((root, manifest));
    }
    ctx.runtime_env()
        .register_parquet_encryption_factory(FACTORY_ID, Arc::new(VaultDecryption::new(keys)?));
    let options = listing_options();
    let hidden: Vec<_> = vaults.iter().map(|(_, m)| m.hidden_rows()).collect();
    for table in TABLES {
        let schema = cdm::schema(table);
        let listing = |urls: Vec<ListingTableUrl>| -> Result<Arc<dyn TableProvider>, VaultError> {
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options.clone())
                .with_schema(schema.clone());
            Ok(Arc::new(ListingTable::try_new(config)?))
        };
        let mut clean = Vec::new();
        let mut dirty: Vec<(ListingTableUrl, &Vec<i64>)> = Vec::new();
        for ((root, manifest), hidden) in vaults.iter().zip(&hidden) {
            for seg in &manifest.segments {
                if seg.tables.get(table).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let path = store::segment_dir(root, &seg.name)
                    .join("cdm")
                    .join(format!("{table}.parquet"));
                let path = path.canonicalize().map_err(VaultError::io(&path))?;
                let url = ListingTableUrl::parse(path.to_string_lossy().as_ref())?;
                match hidden.get(&(table.to_string(), seg.name.clone())) {
                    Some(ids) => dirty.push((url, ids)),
                    None => clean.push(url),
                }
            }
        }
        if clean.is_empty() && dirty.is_empty() {
            ctx.register_table(table, Arc::new(EmptyTable::new(schema)))?;
        } else if dirty.is_empty() {
            ctx.register_table(table, listing(clean)?)?;
        } else {
            let id_column = schema.field(0).name().clone();
            let mut frames: Vec<DataFrame> = Vec::new();
            if !clean.is_empty() {
                frames.push(ctx.read_table(listing(clean)?)?);
            }
            for (url, ids) in dirty {
                let list = ids.iter().map(|i| lit(*i)).collect();
                let df = ctx.read_table(listing(vec![url])?)?;
                frames.push(df.filter(ident(&id_column).in_list(list, true))?);
            }
            let mut frames = frames.into_iter();
            let Some(mut all) = frames.next() else {
                continue;
            };
            for f in frames {
                all = all.union(f)?;
            }
            ctx.register_table(table, all.into_view())?;
        }
    }
    Ok(())
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
pub fn sql_blocking(node_dir: &Path, key: &VaultKey, query: &str) -> Result<String, VaultError> {
    let ctx = open_session(node_dir, key)?;
    let rt = runtime()?;
    let batches = rt.block_on(sql(&ctx, query))?;
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| VaultError::Query(e.to_string()))
}

/// A small tokio runtime (two workers) for the blocking entry points.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, VaultError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(VaultError::io("tokio-runtime"))
}

/// The decryption factory of the vaults of `vaults_in` (each key checked against its vault),
/// registered as [`FACTORY_ID`] in every vault session: what an engine outside this process
/// (a Ballista executor of the hospital) installs to read the vaults' files.
pub fn decryption_factory(
    vaults_in: &[(&Path, &VaultKey)],
) -> Result<Arc<dyn datafusion::execution::parquet_encryption::EncryptionFactory>, VaultError> {
    let mut keys = Vec::with_capacity(vaults_in.len());
    for (node_dir, key) in vaults_in {
        let root = store::vault_dir(node_dir);
        key.check(&root)?;
        let canonical = root.canonicalize().map_err(VaultError::io(&root))?;
        keys.push((canonical, (*key).clone()));
    }
    Ok(Arc::new(VaultDecryption::new(keys)?))
}

/// The directory of scratch tables inside a vault.
const SCRATCH_DIR: &str = "scratch";

/// A scratch table lives as long as one job's query; one older than this was left by a process
/// that died before dropping it, and the next scratch table written removes it.
pub const SCRATCH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the scratch files in `dir` last modified more than [`SCRATCH_MAX_AGE`] ago (left
/// by a crash). Files of live tables are younger and stay; what cannot be read or removed is
/// left for the next sweep.
fn sweep_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > SCRATCH_MAX_AGE);
        if stale && entry.file_name().to_string_lossy().ends_with(".parquet") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!("vault.scratch: removed a table left by a crash"),
                Err(e) => {
                    tracing::warn!(error = %e, "vault.scratch: a stale table could not be removed")
                }
            }
        }
    }
}

/// Rows a query needs beside the vault's tables (a job's consenting cohort), as an encrypted
/// Parquet file in the vault's `scratch/` directory: any engine that reads the vault can read
/// it (the embedded one, or a Ballista cluster's executors on the hospital's machines, which
/// hold the same keys), and nothing of it is ever in plain text on disk. The file goes when
/// the table is dropped, or, if its process dies first, with the first table written a day
/// later ([`SCRATCH_MAX_AGE`]).
///
/// Its keys are derived from its path like a CDM table's; having no CDM columns, every column
/// is encrypted under the footer key.
pub struct ScratchTable {
    path: std::path::PathBuf,
    provider: Arc<dyn TableProvider>,
}

impl std::fmt::Debug for ScratchTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchTable")
            .field("path", &self.path)
            .finish()
    }
}

impl ScratchTable {
    /// Writes `batch` as the scratch table `name` (letters, digits and `_`) of the vault in
    /// `node_dir`, encrypted under `key`. The session reading it must have that vault's
    /// decryption factory ([`register_vaults`] installs it).
    pub fn write(
        node_dir: &Path,
        key: &VaultKey,
        name: &str,
        batch: &RecordBatch,
    ) -> Result<ScratchTable, VaultError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(VaultError::Query(format!(
                "bad scratch table name {name:?}"
            )));
        }
        let root = store::vault_dir(node_dir);
        let root = root.canonicalize().map_err(VaultError::io(&root))?;
        let dir = root.join(SCRATCH_DIR);
        std::fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        sweep_scratch(&dir);
        let nonce: u64 = rand::random();
        let path = dir.join(format!("{name}-{nonce:016x}.parquet"));
        let rel = crate::at_rest::rel_path(&root, &path);
        let encryption = key.parquet_encryption(&rel, name)?;
        let props = parquet::file::properties::WriterProperties::builder()
            .with_file_encryption_properties(encryption)
            .build();
        let written = (|| {
            let file = std::fs::File::create(&path).map_err(VaultError::io(&path))?;
            let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(|e| VaultError::storage(name)(e.to_string()))?;
            w.write(batch)
                .map_err(|e| VaultError::storage(name)(e.to_string()))?;
            w.close()
                .map_err(|e| VaultError::storage(name)(e.to_string()))?;
            let url = ListingTableUrl::parse(path.to_string_lossy().as_ref())?;
            let config = ListingTableConfig::new(url)
                .with_listing_options(listing_options())
                .with_schema(batch.schema());
            Ok::<_, VaultError>(Arc::new(ListingTable::try_new(config)?) as Arc<dyn TableProvider>)
        })();
        match written {
            Ok(provider) => Ok(ScratchTable { path, provider }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// The table, to register in a session under the name the query uses.
    pub fn provider(&self) -> Arc<dyn TableProvider> {
        self.provider.clone()
    }
}

impl Drop for ScratchTable {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(error = %e, "vault.scratch: a scratch table could not be removed");
        }
    }
}
