//! Writing CDM rows: the Arrow schema of each table (derived from [`super::tables`]), row
//! buffers, and one Parquet file per table and segment, bounded in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::tables::{ColumnType, TABLES, columns};
use crate::at_rest::{VaultKey, rel_path};
use crate::error::VaultError;

/// The Arrow schema of a CDM table (empty schema for an unknown name).
pub fn schema(table: &str) -> SchemaRef {
    let fields: Vec<Field> = columns(table)
        .iter()
        .map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow type a column is stored as.
fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Date32 => DataType::Date32,
    }
}

/// One cell of a row being appended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    I64(Option<i64>),
    I32(Option<i32>),
    F64(Option<f64>),
    Str(Option<&'a str>),
    Date(Option<i32>),
}

enum Builder {
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Date(Date32Builder),
}

/// Rows of one table, buffered before they go to Parquet.
struct TableBuf {
    table: &'static str,
    builders: Vec<Builder>,
    rows: usize,
}

impl TableBuf {
    fn new(table: &'static str) -> TableBuf {
        let builders = columns(table)
            .iter()
            .map(|c| match c.ty {
                ColumnType::Int64 => Builder::I64(Int64Builder::new()),
                ColumnType::Int32 => Builder::I32(Int32Builder::new()),
                ColumnType::Float64 => Builder::F64(Float64Builder::new()),
                ColumnType::Utf8 => Builder::Str(StringBuilder::new()),
                ColumnType::Date32 => Builder::Date(Date32Builder::new()),
            })
            .collect();
        TableBuf {
            table,
            builders,
            rows: 0,
        }
    }

    fn push(&mut self, row: &[Val<'_>]) -> Result<(), VaultError> {
        if row.len() != self.builders.len() {
            return Err(VaultError::storage(self.table)(format!(
                "row has {} cells, table has {} columns",
                row.len(),
                self.builders.len()
            )));
        }
        // Check every cell's type first so a bad row never leaves the builders uneven.
        for (b, v) in self.builders.iter().zip(row) {
            let ok = matches!(
                (b, v),
                (Builder::I64(_), Val::I64(_))
                    | (Builder::I32(_), Val::I32(_))
                    | (Builder::F64(_), Val::F64(_))
                    | (Builder::Str(_), Val::Str(_))
                    | (Builder::Date(_), Val::Date(_))
            );
            if !ok {
                return Err(VaultError::storage(self.table)(
                    "cell type does not match column".into(),
                ));
            }
        }
        for (b, v) in self.builders.iter_mut().zip(row) {
            match (b, v) {
                (Builder::I64(b), Val::I64(x)) => b.append_option(*x),
                (Builder::I32(b), Val::I32(x)) => b.append_option(*x),
                (Builder::F64(b), Val::F64(x)) => b.append_option(*x),
                (Builder::Str(b), Val::Str(x)) => b.append_option(*x),
                (Builder::Date(b), Val::Date(x)) => b.append_option(*x),
                _ => {}
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch, VaultError> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::I64(b) => Arc::new(b.finish()),
                    Builder::I32(b) => Arc::new(b.finish()),
                    Builder::F64(b) => Arc::new(b.finish()),
                    Builder::Str(b) => Arc::new(b.finish()),
                    Builder::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema(self.table), arrays)
            .map_err(|e| VaultError::storage(self.table)(e.to_string()))
    }
}

const FLUSH_ROWS: usize = 64 * 1024;

/// Writes the CDM rows of one segment into `<dir>/<table>.parquet`, bounded in memory, each
/// file encrypted (footer and columns) under keys derived for its path in the vault.
pub(crate) struct CdmWriter {
    dir: PathBuf,
    root: PathBuf,
    key: VaultKey,
    bufs: Vec<TableBuf>,
    writers: Vec<Option<ArrowWriter<File>>>,
    /// Rows written per table.
    pub counts: BTreeMap<String, u64>,
}

impl CdmWriter {
    /// A writer into `dir`, inside the vault at `root` whose keys are `key`.
    pub fn new(root: &Path, key: &VaultKey, dir: &Path) -> Result<CdmWriter, VaultError> {
        std::fs::create_dir_all(dir).map_err(VaultError::io(dir))?;
        Ok(CdmWriter {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            key: key.clone(),
            bufs: TABLES.iter().map(|t| TableBuf::new(t)).collect(),
            writers: TABLES.iter().map(|_| None).collect(),
            counts: BTreeMap::new(),
        })
    }

    pub fn push(&mut self, table: &str, row: &[Val<'_>]) -> Result<(), VaultError> {
        let Some(i) = TABLES.iter().position(|t| *t == table) else {
            return Err(VaultError::storage(table)("unknown table".into()));
        };
        let full = match self.bufs.get_mut(i) {
            Some(buf) => {
                buf.push(row)?;
                buf.rows >= FLUSH_ROWS
            }
            None => false,
        };
        *self.counts.entry(table.to_string()).or_insert(0) += 1;
        if full {
            self.flush(i)?;
        }
        Ok(())
    }

    fn flush(&mut self, i: usize) -> Result<(), VaultError> {
        let (Some(buf), Some(slot)) = (self.bufs.get_mut(i), self.writers.get_mut(i)) else {
            return Ok(());
        };
        if buf.rows == 0 {
            return Ok(());
        }
        let table = buf.table;
        let batch = buf.finish()?;
        if slot.is_none() {
            let path = self.dir.join(format!("{table}.parquet"));
            let file = File::create(&path).map_err(VaultError::io(&path))?;
            let encryption = self
                .key
                .parquet_encryption(&rel_path(&self.root, &path), table)?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(256 * 1024))
                .with_file_encryption_properties(encryption)
                .build();
            let w = ArrowWriter::try_new(file, schema(table), Some(props))
                .map_err(|e| VaultError::storage(table)(e.to_string()))?;
            *slot = Some(w);
        }
        if let Some(w) = slot.as_mut() {
            w.write(&batch)
                .map_err(|e| VaultError::storage(table)(e.to_string()))?;
        }
        Ok(())
    }

    /// Flushes and closes every file; returns the tables that got a file.
    pub fn finish(mut self) -> Result<Vec<String>, VaultError> {
        for i in 0..TABLES.len() {
            self.flush(i)?;
        }
        let mut written = Vec::new();
        for (i, slot) in self.writers.into_iter().enumerate() {
            if let Some(w) = slot {
                let table = TABLES.get(i).copied().unwrap_or("");
                let file = w
                    .into_inner()
                    .map_err(|e| VaultError::storage(table)(e.to_string()))?;
                file.sync_all()
                    .map_err(VaultError::io(self.dir.join(format!("{table}.parquet"))))?;
                written.push(table.to_string());
            }
        }
        Ok(written)
    }
}
