//! Writing CDM rows: the Arrow schema of each table (derived from [`super::tables`]), row
//! buffers, and one Parquet file per table and segment, bounded in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

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

/// The Parquet files of one segment's tables: each opened with its first rows, encrypted
/// under keys derived for its path in the vault.
struct Files {
    dir: PathBuf,
    root: PathBuf,
    key: VaultKey,
    writers: Vec<Option<ArrowWriter<File>>>,
}

impl Files {
    fn write(&mut self, i: usize, batch: &RecordBatch) -> Result<(), VaultError> {
        let (Some(table), Some(slot)) = (TABLES.get(i).copied(), self.writers.get_mut(i)) else {
            return Ok(());
        };
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
            w.write(batch)
                .map_err(|e| VaultError::storage(table)(e.to_string()))?;
        }
        Ok(())
    }

    /// Closes and syncs every file; returns the tables that got one.
    fn close(self) -> Result<Vec<String>, VaultError> {
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

/// Where full row buffers are encoded: in the caller's thread, or on an encoding thread of
/// their own (Parquet encoding, compression and encryption overlap the mapping; each file
/// gets the same batches in the same order either way).
enum Sink {
    Here(Files),
    Thread {
        tx: Option<SyncSender<(usize, RecordBatch)>>,
        thread: Option<JoinHandle<Result<Vec<String>, VaultError>>>,
    },
}

/// Writes the CDM rows of one segment into `<dir>/<table>.parquet`, bounded in memory.
pub(crate) struct CdmWriter {
    bufs: Vec<TableBuf>,
    sink: Sink,
    /// Rows written per table.
    pub counts: BTreeMap<String, u64>,
}

impl CdmWriter {
    /// A writer into `dir`, inside the vault at `root` whose keys are `key`; `background`:
    /// encode on a thread of its own.
    pub fn new(
        root: &Path,
        key: &VaultKey,
        dir: &Path,
        background: bool,
    ) -> Result<CdmWriter, VaultError> {
        std::fs::create_dir_all(dir).map_err(VaultError::io(dir))?;
        let files = Files {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            key: key.clone(),
            writers: TABLES.iter().map(|_| None).collect(),
        };
        let sink = if background {
            let (tx, rx) = sync_channel::<(usize, RecordBatch)>(2);
            let thread = std::thread::spawn(move || {
                let mut files = files;
                for (i, batch) in rx {
                    files.write(i, &batch)?;
                }
                files.close()
            });
            Sink::Thread {
                tx: Some(tx),
                thread: Some(thread),
            }
        } else {
            Sink::Here(files)
        };
        Ok(CdmWriter {
            bufs: TABLES.iter().map(|t| TableBuf::new(t)).collect(),
            sink,
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
        let Some(buf) = self.bufs.get_mut(i) else {
            return Ok(());
        };
        if buf.rows == 0 {
            return Ok(());
        }
        let batch = buf.finish()?;
        match &mut self.sink {
            Sink::Here(files) => files.write(i, &batch),
            Sink::Thread { tx, thread } => {
                if tx.as_ref().is_some_and(|tx| tx.send((i, batch)).is_ok()) {
                    return Ok(());
                }
                // The encoding thread stopped: its error is the one to report.
                tx.take();
                Err(join(thread.take()).err().unwrap_or_else(|| {
                    VaultError::storage("cdm")("the encoding thread stopped".into())
                }))
            }
        }
    }

    /// Flushes and closes every file; returns the tables that got a file.
    pub fn finish(mut self) -> Result<Vec<String>, VaultError> {
        for i in 0..TABLES.len() {
            self.flush(i)?;
        }
        match std::mem::replace(
            &mut self.sink,
            Sink::Thread {
                tx: None,
                thread: None,
            },
        ) {
            Sink::Here(files) => files.close(),
            Sink::Thread { tx, thread } => {
                drop(tx);
                join(thread)
            }
        }
    }
}

fn join(
    thread: Option<JoinHandle<Result<Vec<String>, VaultError>>>,
) -> Result<Vec<String>, VaultError> {
    match thread.map(JoinHandle::join) {
        Some(Ok(result)) => result,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Err(VaultError::storage("cdm")(
            "the encoding thread is gone".into(),
        )),
    }
}

impl Drop for CdmWriter {
    /// An unfinished writer (an ingest that failed) still waits for its encoding thread, so
    /// nothing writes into the segment after the ingest returned.
    fn drop(&mut self) {
        if let Sink::Thread { tx, thread } = &mut self.sink {
            tx.take();
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn death(w: &mut CdmWriter, person: i64) -> Result<(), VaultError> {
        w.push(
            "death",
            &[
                Val::I64(Some(person)),
                Val::Date(Some(19_000)),
                Val::I32(Some(0)),
                Val::Str(Some("x")),
            ],
        )
    }

    /// A file that cannot be written is an error of `push` or `finish`, on the caller's thread
    /// or the encoding thread alike, and the encoding thread is gone when the writer is.
    #[test]
    fn a_failed_write_is_reported_on_either_sink() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let key = VaultKey::unlock_or_create(
            &node,
            &medspace_seal::Passphrase::new("test passphrase").unwrap(),
            medspace_seal::KdfParams::INSECURE_FAST,
        )
        .unwrap();
        for background in [false, true] {
            let dir = tmp.path().join(format!("cdm-{background}"));
            let mut w = CdmWriter::new(&node, &key, &dir, background).unwrap();
            death(&mut w, 1).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            // Enough rows for flushes, whose writes fail: an error by `finish` at the latest.
            let mut failed = false;
            for p in 0..(2 * FLUSH_ROWS as i64) {
                if death(&mut w, p).is_err() {
                    failed = true;
                    break;
                }
            }
            if failed {
                drop(w);
            } else {
                assert!(
                    matches!(w.finish(), Err(VaultError::Io { .. })),
                    "{background}"
                );
            }
            assert!(!dir.exists());
        }
    }

    /// Both sinks write the same rows.
    #[test]
    fn both_sinks_write_every_row() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let key = VaultKey::unlock_or_create(
            &node,
            &medspace_seal::Passphrase::new("test passphrase").unwrap(),
            medspace_seal::KdfParams::INSECURE_FAST,
        )
        .unwrap();
        for background in [false, true] {
            let dir = crate::store::vault_dir(&node).join(format!("cdm-{background}"));
            let mut w =
                CdmWriter::new(&crate::store::vault_dir(&node), &key, &dir, background).unwrap();
            for p in 0..(FLUSH_ROWS as i64 + 7) {
                death(&mut w, p).unwrap();
            }
            assert_eq!(w.counts.get("death"), Some(&(FLUSH_ROWS as u64 + 7)));
            assert_eq!(w.finish().unwrap(), vec!["death".to_string()]);
            assert!(dir.join("death.parquet").exists());
        }
    }
}
