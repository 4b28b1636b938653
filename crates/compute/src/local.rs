//! The local half of a job: run a compiled query over the vault's tables, restricted to the
//! consenting cohort, inside this node. Nothing here leaves the node; callers apply disclosure
//! control and masking to what it returns.

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A site's vault: the node directory holding it, its unlocked keys, and the engine its
/// queries run on.
#[derive(Clone, Copy, Debug)]
pub struct SiteVault<'a> {
    /// The node directory.
    pub dir: &'a Path,
    /// The vault's keys.
    pub key: &'a medspace_vault::VaultKey,
    /// Where its queries run (the node's process, or the hospital's Ballista cluster).
    pub engine: &'a medspace_cluster::Engine,
}

impl<'a> SiteVault<'a> {
    /// The vault of `dir`, queried in this process.
    pub fn embedded(dir: &'a Path, key: &'a medspace_vault::VaultKey) -> SiteVault<'a> {
        SiteVault {
            dir,
            key,
            engine: &medspace_cluster::Engine::Embedded,
        }
    }
}

/// The name under which the consenting cohort is registered for every query.
pub const CONSENTED: &str = "consented";

/// Errors of local execution.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The vault could not be opened or queried.
    #[error("vault: {0}")]
    Vault(#[from] medspace_vault::VaultError),
    /// DataFusion failed.
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// The query's output is not the agreed shape.
    #[error("query output: {0}")]
    Shape(String),
    /// The cluster engine failed.
    #[error("{0}")]
    Cluster(#[from] medspace_cluster::ClusterError),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// One output row: the group's key columns (as text) and its integer values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Group key columns, in output order (e.g. `["female", "40-49"]`).
    pub key: Vec<String>,
    /// Integer value columns, in output order (e.g. `[n, sum_fixed]`).
    pub values: Vec<i64>,
}

/// Runs `sql` over the vault of `node_dir` (unlocked with `key`) in this process, with the
/// table [`CONSENTED`]`(person_id)` holding `cohort`; returns the rows (Utf8 columns form the
/// key, Int64 columns the values).
pub fn run(
    node_dir: &Path,
    key: &medspace_vault::VaultKey,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<Row>, LocalError> {
    run_at(SiteVault::embedded(node_dir, key), cohort, sql)
}

/// Runs `sql` as [`run`] does, on the site's engine (this process, or the hospital's Ballista
/// cluster: the same SQL, the same tables, the same rows).
pub fn run_at(
    vault: SiteVault<'_>,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<Row>, LocalError> {
    rows_of(&collect_at(vault, cohort, sql)?)
}

/// Runs `sql` over the vault of `node_dir` as [`run`] does and returns its Float64 columns by
/// name, for a model's rows (nulls are refused: a model's query yields complete rows).
pub fn run_f64(
    node_dir: &Path,
    key: &medspace_vault::VaultKey,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<(String, Vec<f64>)>, LocalError> {
    run_f64_at(SiteVault::embedded(node_dir, key), cohort, sql)
}

/// [`run_f64`] on the site's engine.
pub fn run_f64_at(
    vault: SiteVault<'_>,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<(String, Vec<f64>)>, LocalError> {
    let batches = collect_at(vault, cohort, sql)?;
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for b in &batches {
        let schema = b.schema();
        for (i, col) in b.columns().iter().enumerate() {
            let name = schema.field(i).name().clone();
            let a = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .ok_or_else(|| LocalError::Shape(format!("column {name} is not Float64")))?;
            if a.null_count() > 0 {
                return Err(LocalError::Shape(format!("column {name} has nulls")));
            }
            match out.get_mut(i) {
                Some((_, v)) => v.extend_from_slice(a.values()),
                None => out.push((name, a.values().to_vec())),
            }
        }
    }
    Ok(out)
}

/// The cohort as the one-column batch registered as [`CONSENTED`].
fn cohort_batch(cohort: &BTreeSet<i64>) -> Result<RecordBatch, LocalError> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "person_id",
        DataType::Int64,
        false,
    )]));
    let ids: ArrayRef = Arc::new(Int64Array::from(cohort.iter().copied().collect::<Vec<_>>()));
    Ok(
        RecordBatch::try_new(schema, vec![ids])
            .map_err(datafusion::error::DataFusionError::from)?,
    )
}

fn collect_at(
    vault: SiteVault<'_>,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<RecordBatch>, LocalError> {
    let mut session = vault.engine.session(vault.dir, vault.key)?;
    session.register_rows(CONSENTED, cohort_batch(cohort)?)?;
    query(session.ctx(), sql)
}

/// Runs `sql` in `ctx` to the end. The runtime has I/O and timers: a cluster session talks to
/// its scheduler and executors.
fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, LocalError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async { ctx.sql(sql).await?.collect().await })?)
}

/// Runs `sql` in an already opened session (which must not yet have a table [`CONSENTED`]) with
/// [`CONSENTED`]`(person_id)` holding `cohort`, exactly as [`run`] does over a node's own vault.
/// The benchmark's pooled baseline runs the same query this way over several vaults at once.
pub fn run_in(
    ctx: &SessionContext,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<Row>, LocalError> {
    let batch = cohort_batch(cohort)?;
    ctx.register_table(
        CONSENTED,
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
    )?;
    rows_of(&query(ctx, sql)?)
}

/// The rows of `batches`: Utf8 columns form the key, Int64 columns the values.
fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Row>, LocalError> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut key = Vec::new();
            let mut values = Vec::new();
            for col in b.columns() {
                match col.data_type() {
                    DataType::Utf8 => {
                        let a = col
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .ok_or_else(|| LocalError::Shape("utf8 column".into()))?;
                        key.push(if a.is_null(r) {
                            String::new()
                        } else {
                            a.value(r).to_string()
                        });
                    }
                    DataType::Int64 => {
                        let a = col
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .ok_or_else(|| LocalError::Shape("int64 column".into()))?;
                        values.push(if a.is_null(r) { 0 } else { a.value(r) });
                    }
                    other => {
                        return Err(LocalError::Shape(format!("unexpected column type {other}")));
                    }
                }
            }
            rows.push(Row { key, values });
        }
    }
    Ok(rows)
}
