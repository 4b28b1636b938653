//! Phases 2 and 3 of an ingest, once every input was read: deduplication against the vault,
//! reference checks (iterated, since a rejected resource can orphan others), local ids for new
//! patients and encounters, the CDM rows (the new resources are streamed again from the
//! segment), the segment's index, and the commit.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use serde_json::Value;

use super::Vault;
use super::batch::Batch;
use super::identity::pseudonym_with;
use super::index::{Entry, write_index};
use super::manifest::{SegmentInfo, sync_dir};
use super::options::{IngestReport, OnError, updatable};
use super::resources::RESOURCES_FILE;
use crate::cdm::{self, CdmWriter, Counters, Resolve};
use crate::error::VaultError;
use crate::fhir::{BadReason, RefTarget};
use crate::vocab::Vocabulary;

impl Batch<'_> {
    /// Phases 2 and 3: reference checks, ids, CDM rows, commit.
    pub(super) fn finish(mut self, vault: &mut Vault) -> Result<IngestReport, VaultError> {
        self.close_resources()?;
        let vault_updates = self.dedup_against_vault(vault);
        self.reject_dangling(vault);
        let bad = self.report.errors.len() as u64;
        if self.opts.on_error == OnError::Refuse && bad > 0 {
            self.report.refused = self.report.read;
            self.report.unchanged = 0;
            return self.abandon();
        }
        self.report.skipped = bad;
        let live = self.pending.iter().filter(|p| !p.dead).count();
        if live == 0 {
            return self.abandon();
        }
        let mut counters = vault.manifest.counters.clone();
        let rows = self.assign_row_ids(&mut counters);
        let CdmOutput { persons, counts } = self.map_to_cdm(vault, &rows, &mut counters)?;
        let seg_no = u32::try_from(vault.manifest.segments.len()).unwrap_or(u32::MAX);
        let new_entries = self.write_segment_index(vault, seg_no, &rows, &persons, live)?;
        let info = SegmentInfo {
            name: self.name.clone(),
            resources: live as u64,
            tables: counts.clone(),
        };
        vault.commit(info, counters)?;
        for (k, e) in new_entries {
            if let Some((t, id)) = k.split_once('/') {
                vault.by_id.insert(id.to_string(), t.to_string());
            }
            vault.entries.insert(k, e);
        }
        vault.persons_cache = std::sync::OnceLock::new();
        self.report.stored = (live as u64).saturating_sub(vault_updates);
        self.report.rows_by_table = counts;
        self.report.committed = true;
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        tracing::info!(segment = %self.name, stored = live, "vault.ingest.commit");
        Ok(self.report)
    }

    /// Finishes and syncs the new segment's resources file.
    fn close_resources(&mut self) -> Result<(), VaultError> {
        if let Some(out) = self.out.take() {
            let path = self.dir.join(RESOURCES_FILE);
            let sealed = out.finish().map_err(|e| VaultError::from_io(&path, e))?;
            crate::at_rest::finish_sealed(&path, sealed)?;
        }
        Ok(())
    }

    /// Nothing to commit: removes the new segment and reports.
    fn abandon(mut self) -> Result<IngestReport, VaultError> {
        fs::remove_dir_all(&self.dir).map_err(VaultError::io(&self.dir))?;
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.bar.finish_and_clear();
        Ok(self.report)
    }

    /// Deduplicates against the vault: same content -> unchanged, other content -> conflict
    /// (or a new version for updatable types). Returns the number of such new versions.
    fn dedup_against_vault(&mut self, vault: &Vault) -> u64 {
        let mut vault_updates = 0u64;
        for i in 0..self.pending.len() {
            let Some(p) = self.pending.get(i) else {
                continue;
            };
            if p.dead {
                continue;
            }
            if let Some(e) = vault.entries.get(&p.key) {
                let (same, file, pos) = (e.hash == p.hash, p.file as usize, p.pos);
                let ty = p.key.split_once('/').map(|(t, _)| t).unwrap_or("");
                if !same && updatable(ty) {
                    self.report.updated += 1;
                    vault_updates += 1;
                    continue;
                }
                if let Some(p) = self.pending.get_mut(i) {
                    p.dead = true;
                    p.bad = !same;
                }
                if same {
                    self.report.unchanged += 1;
                } else {
                    self.error(file, pos, BadReason::Conflict);
                }
            }
        }
        vault_updates
    }

    /// Rejects resources with dangling references; skipping one resource can orphan others, so
    /// this iterates (once only when the batch will be refused anyway).
    fn reject_dangling(&mut self, vault: &Vault) {
        loop {
            let mut newly_dead = Vec::new();
            for (i, p) in self.pending.iter().enumerate() {
                if p.dead {
                    continue;
                }
                if let Some((field, _)) = p
                    .forward
                    .iter()
                    .find(|(_, t)| self.resolve_batch(vault, t).is_none())
                {
                    newly_dead.push((i, field.clone()));
                } else if p
                    .deps
                    .iter()
                    .any(|d| self.pending.get(*d as usize).is_some_and(|x| x.bad))
                {
                    newly_dead.push((i, "(refers to a rejected resource)".to_string()));
                }
            }
            if newly_dead.is_empty() {
                break;
            }
            for (i, field) in newly_dead {
                let Some(p) = self.pending.get_mut(i) else {
                    continue;
                };
                p.dead = true;
                p.bad = true;
                let (file, pos) = (p.file as usize, p.pos);
                self.error(file, pos, BadReason::DanglingReference(field));
            }
            if self.opts.on_error == OnError::Refuse {
                break;
            }
        }
    }

    /// Local ids for new patients and encounters, in input order.
    fn assign_row_ids(&self, counters: &mut Counters) -> HashMap<String, i64> {
        let mut rows: HashMap<String, i64> = HashMap::new();
        for p in self.pending.iter().filter(|p| !p.dead) {
            if p.key.starts_with("Patient/") {
                rows.insert(p.key.clone(), cdm::next_id(counters, "person"));
            } else if p.key.starts_with("Encounter/") {
                rows.insert(p.key.clone(), cdm::next_id(counters, "visit_occurrence"));
            }
        }
        rows
    }

    /// Phase 3: streams the new resources again into the CDM tables of the segment.
    fn map_to_cdm(
        &self,
        vault: &Vault,
        rows: &HashMap<String, i64>,
        counters: &mut Counters,
    ) -> Result<CdmOutput, VaultError> {
        let resolver = BatchResolver {
            batch: self,
            vault,
            rows,
        };
        let persons: Vec<Option<i64>> = self
            .pending
            .iter()
            .map(|p| {
                if p.dead {
                    None
                } else {
                    p.compartment.as_ref().and_then(|t| resolver.person(t))
                }
            })
            .collect();
        self.bar.set_message("mapping");
        self.bar.set_position(0);
        let vocab_empty = Vocabulary::empty();
        let vocab = self.opts.vocabulary.as_deref().unwrap_or(&vocab_empty);
        let mut writer = CdmWriter::new(&vault.root, &vault.key, &self.dir.join("cdm"))?;
        let key = *vault.key.pseudonym_key();
        let pseudonym = move |id: &str| pseudonym_with(&key, id);
        let path = self.dir.join(RESOURCES_FILE);
        let mut done = 0u64;
        let fail_after = self.opts.fail_after;
        vault.scan_segment(&path, &mut |line, bytes| {
            let Some(p) = self.pending.get(line as usize) else {
                return Ok(());
            };
            if p.dead {
                return Ok(());
            }
            if let Some(n) = fail_after
                && done >= n
            {
                return Err(VaultError::InjectedFault(done));
            }
            let v: Value = serde_json::from_slice(bytes).map_err(|e| VaultError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let own = rows.get(&p.key).copied();
            cdm::map_resource(&v, own, &pseudonym, vocab, &resolver, counters, &mut writer)?;
            done += 1;
            self.bar.inc(1);
            Ok(())
        })?;
        let counts = writer.counts.clone();
        writer.finish()?;
        Ok(CdmOutput { persons, counts })
    }

    /// Writes and syncs the index of the new segment (segment number `seg_no`); returns the
    /// new entries for the vault's in-memory index.
    fn write_segment_index(
        &mut self,
        vault: &Vault,
        seg_no: u32,
        rows: &HashMap<String, i64>,
        persons: &[Option<i64>],
        live: usize,
    ) -> Result<Vec<(String, Entry)>, VaultError> {
        let mut new_entries = Vec::with_capacity(live);
        for (p, person) in self.pending.iter().zip(persons) {
            if p.dead {
                continue;
            }
            let row = rows.get(&p.key).copied();
            let person = if p.key.starts_with("Patient/") {
                row
            } else {
                *person
            };
            new_entries.push((
                p.key.clone(),
                Entry {
                    seg: seg_no,
                    line: p.line,
                    hash: p.hash,
                    person,
                    row,
                },
            ));
            if let Some((t, _)) = p.key.split_once('/') {
                *self.report.stored_by_type.entry(t.to_string()).or_insert(0) += 1;
            }
        }
        write_index(
            &vault.key,
            &vault.root,
            &self.dir.join("index.jsonl"),
            &new_entries,
        )?;
        sync_dir(&self.dir)?;
        Ok(new_entries)
    }
}

/// What phase 3 produced.
struct CdmOutput {
    /// Each pending resource's compartment person (`None` for dead ones), in batch order.
    persons: Vec<Option<i64>>,
    /// Rows written per CDM table.
    counts: BTreeMap<String, u64>,
}

/// Resolves references to local ids while mapping: first within the batch, then the vault.
struct BatchResolver<'a> {
    batch: &'a Batch<'a>,
    vault: &'a Vault,
    rows: &'a HashMap<String, i64>,
}

impl BatchResolver<'_> {
    fn row(&self, t: &RefTarget, ty: &str) -> Option<i64> {
        let k = self.batch.resolve_batch(self.vault, t)?;
        if !k.starts_with(ty) {
            return None;
        }
        self.rows
            .get(&k)
            .copied()
            .or_else(|| self.vault.entries.get(&k).and_then(|e| e.row))
    }
}

impl Resolve for BatchResolver<'_> {
    fn person(&self, t: &RefTarget) -> Option<i64> {
        self.row(t, "Patient/")
    }
    fn visit(&self, t: &RefTarget) -> Option<i64> {
        self.row(t, "Encounter/")
    }
}
