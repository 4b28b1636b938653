//! The ingest API: options, the report, and the two entry points ([`Vault::ingest_paths`] for
//! files and folders, [`Vault::ingest_values`] for resources in memory). Each call is one batch
//! (see `batch`): checked, deduplicated, and committed atomically or not at all.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Vault;
use super::batch::Batch;
pub use super::options::{IngestOptions, IngestReport, InputError, OnError, updatable};
use super::pipeline;
use crate::error::VaultError;
use crate::fhir::Position;

impl Vault {
    /// Ingests FHIR files and folders (Bundle JSON, NDJSON) as one atomic batch, the files
    /// parsed on [`IngestOptions::threads`] threads (the outcome is the same for any number).
    pub fn ingest_paths(
        &mut self,
        paths: &[PathBuf],
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        let mut batch = Batch::start(self, opts)?;
        for file in &files {
            batch.add_file(file.clone());
        }
        let source = opts.source.as_deref();
        pipeline::read_files(&files, source, opts.threads(), &mut |file, read| {
            batch.admit(file, read.pos, read.item)
        })?;
        batch.finish(self)
    }

    /// Ingests resources held in memory (e.g. from the generator) as one atomic batch; `source`
    /// names them in error reports.
    pub fn ingest_values(
        &mut self,
        source: &str,
        resources: impl IntoIterator<Item = Value>,
        opts: &IngestOptions,
    ) -> Result<IngestReport, VaultError> {
        let mut batch = Batch::start(self, opts)?;
        batch.add_file(PathBuf::from(source));
        for (i, r) in resources.into_iter().enumerate() {
            let item = pipeline::prepare(Ok(r), opts.source.as_deref());
            batch.admit(0, Position::Entry(i as u64), item)?;
        }
        batch.finish(self)
    }
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
