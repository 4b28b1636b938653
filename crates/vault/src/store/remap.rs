//! Re-mapping the stored record through a vocabulary: the data-quality fix for codes the
//! vault could not map to standard concepts when they were ingested (no vocabulary then, or
//! an older one). Every current resource that produced CDM rows is mapped again, as a new
//! version of itself (same content, rows mapped through `vocabulary`): the old rows are
//! retracted and the new ones committed atomically per source, exactly as an update feed's
//! (see `finish`), so a crash leaves the vault as it was, and the original resources are
//! untouched. Vault files written before versioning cannot be re-mapped (their rows are not
//! recorded); they are reported, not changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Vault;
use super::ingest::{IngestOptions, IngestReport, OnError};
use crate::error::VaultError;
use crate::vocab::Vocabulary;

/// What a re-mapping did.
#[derive(Debug)]
pub struct Remapped {
    /// Each source's batch.
    pub batches: Vec<IngestReport>,
    /// Resources stored before versioning, whose rows are not recorded: not re-mapped
    /// (re-ingest them to map them).
    pub unversioned: u64,
}

impl Vault {
    /// Maps every current resource with CDM rows again through `vocabulary`, one atomic batch
    /// per source (the default namespace first).
    pub fn remap(
        &mut self,
        vocabulary: Arc<Vocabulary>,
        progress: bool,
    ) -> Result<Remapped, VaultError> {
        let mut by_source: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        let mut unversioned = 0u64;
        for (key, e) in &self.entries {
            if e.rows.is_none() && e.status.is_none() {
                unversioned += 1;
            }
            if e.rows.as_ref().is_some_and(|r| !r.is_empty()) {
                by_source
                    .entry(super::source_of(key).map(String::from))
                    .or_default()
                    .push(key.clone());
            }
        }
        let mut reports = Vec::new();
        for (source, mut keys) in by_source {
            keys.sort();
            let resources = self.load_resources(&keys)?;
            let opts = IngestOptions {
                on_error: OnError::Refuse,
                progress,
                vocabulary: Some(vocabulary.clone()),
                source: source.clone(),
                remap: true,
                ..IngestOptions::default()
            };
            let name = format!("remap:{}", source.as_deref().unwrap_or("default"));
            reports.push(self.ingest_values(
                &name,
                resources.into_iter().map(|(_, v)| v),
                &opts,
            )?);
        }
        Ok(Remapped {
            batches: reports,
            unversioned,
        })
    }
}
