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

/// Runs `sql` over the vault of `node_dir` (unlocked with `key`) with the table [`CONSENTED`]`(person_id)` holding
/// `cohort`; returns the rows (Utf8 columns form the key, Int64 columns the values).
pub fn run(
    node_dir: &Path,
    key: &medspace_vault::VaultKey,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<Row>, LocalError> {
    run_in(&medspace_vault::open_session(node_dir, key)?, cohort, sql)
}

/// Runs `sql` over the vault of `node_dir` as [`run`] does and returns its Float64 columns by
/// name, for a model's rows (nulls are refused: a model's query yields complete rows).
pub fn run_f64(
    node_dir: &Path,
    key: &medspace_vault::VaultKey,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<(String, Vec<f64>)>, LocalError> {
    let ctx = medspace_vault::open_session(node_dir, key)?;
    let batches = collect(&ctx, cohort, sql)?;
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

fn collect(
    ctx: &SessionContext,
    cohort: &BTreeSet<i64>,
    sql: &str,
) -> Result<Vec<RecordBatch>, LocalError> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "person_id",
        DataType::Int64,
        false,
    )]));
    let ids: ArrayRef = Arc::new(Int64Array::from(cohort.iter().copied().collect::<Vec<_>>()));
    let batch = RecordBatch::try_new(schema.clone(), vec![ids])
        .map_err(datafusion::error::DataFusionError::from)?;
    ctx.register_table(
        CONSENTED,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
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
    let batches = collect(ctx, cohort, sql)?;
    let mut rows = Vec::new();
    for b in &batches {
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
