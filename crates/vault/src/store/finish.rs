//! Phases 2 and 3 of an ingest, once every input was read: each version and delete against the
//! vault (unchanged, new, a new version, older than the stored one, a conflict), what a delete
//! takes with it, reference checks (iterated, since a refused resource refuses what refers to
//! it), local ids, the CDM rows (the new resources are streamed again from the segment), the
//! rows the batch retracts, the segment's index, and the commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;

use super::batch::{Batch, Pending, Resolved, State};
use super::identity::pseudonym_with;
use super::index::{Entry, RowSpan, Stamp, Status, write_index};
use super::manifest::{Hidden, SegmentInfo, sync_dir};
use super::options::{IngestReport, OnError, mapped_since_versioning, updatable};
use super::pipeline;
use super::resources::RESOURCES_FILE;
use super::{FastMap, FastSet, Vault, qualify, qualify_target};
use crate::cdm::{self, CdmWriter, Counters, Resolve, RowLog};
use crate::error::VaultError;
use crate::fhir::{BadReason, RefTarget};
use crate::vocab::Vocabulary;

/// A stored resource this batch deletes because it goes with a deleted Patient (its
/// compartment) or Encounter (the resources whose rows refer to its visit).
struct Cascade {
    key: String,
    entry: Entry,
    /// The line of the delete that took it.
    line: u32,
}

/// The type part of a key.
fn type_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(t, _)| t)
}

/// Whether a stored entry was written before versioning for a type with CDM rows: its rows are
/// unknown and cannot be retracted.
fn unversioned(key: &str, e: &Entry) -> bool {
    let ty = type_of(key);
    e.rows.is_none() && !updatable(ty) && !mapped_since_versioning(ty)
}

impl Batch<'_> {
    /// Phases 2 and 3: versions, deletes, reference checks, ids, CDM rows, commit.
    pub(super) fn finish(mut self, vault: &mut Vault) -> Result<IngestReport, VaultError> {
        self.close_resources()?;
        self.dedup_against_vault(vault);
        let mut cascade = self.cascade(vault);
        let deleting = self.deleting(&cascade);
        self.reject_dangling(vault, &deleting);
        self.refuse_deletes_of_refused_recreations();
        // A stored resource whose new version in this batch passed the checks is retired by
        // that version; one whose new version was refused goes with the delete.
        cascade.retain(|c| {
            !self
                .by_key
                .get(&c.key)
                .and_then(|i| self.pending.get(*i))
                .is_some_and(|p| p.live())
        });
        let bad = self.report.errors.len() as u64;
        if self.opts.on_error == OnError::Refuse && bad > 0 {
            self.report.refused = self.report.read;
            self.report.unchanged = 0;
            self.report.updated = 0;
            self.report.stale = 0;
            return self.abandon();
        }
        self.report.skipped = bad;
        let indexed = self
            .pending
            .iter()
            .filter(|p| matches!(p.state, State::Current | State::Old))
            .count();
        if indexed == 0 && cascade.is_empty() {
            return self.abandon();
        }
        let mut counters = vault.manifest.counters.clone();
        let rows = self.assign_row_ids(&mut counters);
        let out = self.map_to_cdm(vault, &rows, &deleting, &mut counters)?;
        let (hidden, retracted) = self.hidden_rows(vault, &cascade);
        let seg_no = u32::try_from(vault.manifest.segments.len()).unwrap_or(u32::MAX);
        let new_entries = self.write_segment_index(vault, seg_no, &rows, &out, &cascade)?;
        let live = self.pending.iter().filter(|p| p.live()).count() as u64;
        let updates = self
            .pending
            .iter()
            .filter(|p| p.live() && p.replaces.is_some())
            .count() as u64;
        let deletes = self
            .pending
            .iter()
            .filter(|p| p.state == State::Current && p.delete && p.replaces.is_some())
            .count() as u64
            + cascade.len() as u64;
        let info = SegmentInfo {
            name: self.name.clone(),
            resources: live,
            tables: out.counts.clone(),
            hidden,
            retired: updates + deletes,
            deleted: deletes,
            source: self.source.clone(),
            since: self.opts.since.clone(),
            run: self.run.clone(),
        };
        vault.commit(info, counters)?;
        for (k, e) in new_entries {
            vault.apply_line(k, e);
        }
        vault.persons_cache = std::sync::OnceLock::new();
        self.report.stored = live - updates;
        self.report.updated += updates;
        self.report.deleted = deletes;
        self.report.rows_by_table = out.counts;
        self.report.rows_retracted_by_table = retracted;
        self.report.committed = true;
        self.report.commits = 1;
        self.report.seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(segment = %self.name, stored = live, updated = updates, deleted = deletes, "vault.ingest.commit");
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
        Ok(self.report)
    }

    /// Rejects pending `i` with `reason`.
    fn reject(&mut self, i: usize, reason: BadReason) {
        let Some(p) = self.pending.get_mut(i) else {
            return;
        };
        p.state = State::Bad;
        let (file, pos) = (p.file as usize, p.pos);
        self.error(file, pos, reason);
    }

    /// Each current version and delete against the vault's current version of its key: same
    /// content -> unchanged; other content -> a new version (in an update feed, or for
    /// reference data), an older version kept for audit (by its `meta`), or a conflict; a
    /// delete retires the stored version, or is unchanged if it was deleted before.
    fn dedup_against_vault(&mut self, vault: &Vault) {
        let updates = self.opts.accepts_updates();
        for i in 0..self.pending.len() {
            let Some(p) = self.pending.get(i) else {
                continue;
            };
            if p.state == State::Old && !p.delete && vault.holds_version(&p.key, &p.hash) {
                // An older version the vault already keeps: nothing to add.
                self.set_state_of(i, State::Dup);
                continue;
            }
            if p.state != State::Current {
                continue;
            }
            let key = p.key.clone();
            let ty = type_of(&key).to_string();
            let stored = vault.entries.get(&key);
            enum Outcome {
                Keep(Option<Entry>),
                Dup,
                Stale,
                Reject(BadReason),
            }
            let outcome = if p.delete {
                match stored {
                    Some(e) if unversioned(&key, e) => Outcome::Reject(BadReason::NotVersioned),
                    Some(e) => Outcome::Keep(Some(e.clone())),
                    None if p.batch_target => Outcome::Keep(None),
                    None if vault.deleted.contains(&key) => Outcome::Dup,
                    None => Outcome::Reject(BadReason::NotStored(ty.clone())),
                }
            } else {
                match stored {
                    None => Outcome::Keep(None),
                    Some(e) if e.hash == p.hash && !p.after_delete && !self.opts.remap => {
                        Outcome::Dup
                    }
                    Some(_) if !p.after_delete && !updates && !updatable(&ty) => {
                        Outcome::Reject(BadReason::Conflict)
                    }
                    Some(e) if !p.after_delete && p.stamp.older_than(&e.stamp) => Outcome::Stale,
                    Some(e) if unversioned(&key, e) => Outcome::Reject(BadReason::NotVersioned),
                    Some(e) => Outcome::Keep(Some(e.clone())),
                }
            };
            match outcome {
                Outcome::Keep(e) => {
                    if let Some(p) = self.pending.get_mut(i) {
                        p.replaces = e;
                    }
                }
                Outcome::Dup => {
                    self.set_state_of(i, State::Dup);
                    self.report.unchanged += 1;
                }
                Outcome::Stale => {
                    self.set_state_of(i, State::Old);
                    self.report.stale += 1;
                }
                Outcome::Reject(reason) => self.reject(i, reason),
            }
        }
    }

    fn set_state_of(&mut self, i: usize, state: State) {
        if let Some(p) = self.pending.get_mut(i) {
            p.state = state;
        }
    }

    /// What the batch's deletes of stored Patients and Encounters take with them: a Patient's
    /// compartment, and the resources whose rows refer to an Encounter's visit (transitively).
    /// A delete that would take a resource stored before versioning is refused.
    fn cascade(&mut self, vault: &Vault) -> Vec<Cascade> {
        let roots: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.state == State::Current
                    && p.delete
                    && p.replaces.is_some()
                    && matches!(type_of(&p.key), "Patient" | "Encounter")
            })
            .map(|(i, _)| i)
            .collect();
        if roots.is_empty() {
            return Vec::new();
        }
        let mut by_person: HashMap<i64, Vec<&String>> = HashMap::new();
        let mut by_visit: HashMap<i64, Vec<&String>> = HashMap::new();
        for (k, e) in &vault.entries {
            if let Some(p) = e.person {
                by_person.entry(p).or_default().push(k);
            }
            if let Some(v) = e.visit {
                by_visit.entry(v).or_default().push(k);
            }
        }
        let mut seen: HashSet<String> = self
            .pending
            .iter()
            .filter(|p| p.state == State::Current && p.delete)
            .map(|p| p.key.clone())
            .collect();
        let mut out = Vec::new();
        for i in roots {
            let Some(p) = self.pending.get(i) else {
                continue;
            };
            let (line, root_key) = (p.line, p.key.clone());
            let mut work = vec![(root_key, p.replaces.as_ref().and_then(|e| e.row))];
            let mut found = Vec::new();
            let mut legacy = false;
            while let Some((k, row)) = work.pop() {
                let Some(row) = row else { continue };
                let deps = match type_of(&k) {
                    "Patient" => by_person.get(&row),
                    "Encounter" => by_visit.get(&row),
                    _ => None,
                };
                for dk in deps.into_iter().flatten() {
                    if !seen.insert((*dk).clone()) {
                        continue;
                    }
                    let Some(de) = vault.entries.get(*dk) else {
                        continue;
                    };
                    legacy |= unversioned(dk, de);
                    if type_of(dk) == "Encounter" {
                        work.push(((*dk).clone(), de.row));
                    }
                    found.push(Cascade {
                        key: (*dk).clone(),
                        entry: de.clone(),
                        line,
                    });
                }
            }
            if legacy {
                self.reject(i, BadReason::NotVersioned);
            } else {
                out.extend(found);
            }
        }
        out
    }

    /// The stored keys this batch deletes: asked for, and taken with them.
    fn deleting(&self, cascade: &[Cascade]) -> FastSet<String> {
        self.pending
            .iter()
            .filter(|p| p.state == State::Current && p.delete)
            .map(|p| p.key.clone())
            .chain(cascade.iter().map(|c| c.key.clone()))
            .collect()
    }

    /// Refuses resources whose references do not resolve: to nothing, to a deleted resource,
    /// or to a resource of this batch that was refused (it is refused with it). Refusing one
    /// resource can refuse others, so this iterates (once only when the batch will be refused
    /// anyway).
    fn reject_dangling(&mut self, vault: &Vault, deleting: &FastSet<String>) {
        loop {
            let mut newly = Vec::new();
            for (i, p) in self.pending.iter().enumerate() {
                if !p.live() {
                    continue;
                }
                for (field, t) in &p.refs {
                    let reason = match self.resolve(vault, t, deleting) {
                        Resolved::Found(_) => continue,
                        Resolved::Refused(ty) => BadReason::RefusedDependency(field.clone(), ty),
                        Resolved::Deleted => BadReason::DeletedReference(field.clone()),
                        Resolved::Missing => BadReason::DanglingReference(field.clone()),
                    };
                    newly.push((i, reason));
                    break;
                }
            }
            if newly.is_empty() {
                break;
            }
            for (i, reason) in newly {
                self.reject(i, reason);
            }
            if self.opts.on_error == OnError::Refuse {
                break;
            }
        }
    }

    /// A delete the batch superseded by re-creating the resource goes with that re-creation:
    /// when it was refused (and nothing else of the key is stored by the batch), the delete is
    /// refused too, so the stored version stays whole — its rows and its index — rather than
    /// leaving the key deleted with its rows still visible.
    fn refuse_deletes_of_refused_recreations(&mut self) {
        let orphaned: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.delete && p.state == State::Old)
            .filter(|(i, p)| {
                let later = || {
                    self.pending
                        .iter()
                        .skip(i.saturating_add(1))
                        .filter(|q| q.key == p.key)
                };
                later().any(|q| q.state == State::Bad) && !later().any(|q| q.live())
            })
            .map(|(i, _)| i)
            .collect();
        for i in orphaned {
            let ty = self
                .pending
                .get(i)
                .map(|p| type_of(&p.key).to_string())
                .unwrap_or_default();
            self.reject(i, BadReason::RefusedDependency("request.url".into(), ty));
        }
    }

    /// Local ids of current patients and encounters, in input order: a new version keeps the
    /// ids of the version it replaces.
    fn assign_row_ids(&self, counters: &mut Counters) -> FastMap<String, i64> {
        let mut rows: FastMap<String, i64> = FastMap::default();
        for p in self.pending.iter().filter(|p| p.live()) {
            let table = match type_of(&p.key) {
                "Patient" => "person",
                "Encounter" => "visit_occurrence",
                _ => continue,
            };
            let id = match p.replaces.as_ref().and_then(|e| e.row) {
                Some(id) => id,
                None => cdm::next_id(counters, table),
            };
            rows.insert(p.key.clone(), id);
        }
        rows
    }

    /// Phase 3: streams the new resources again into the CDM tables of the segment.
    fn map_to_cdm(
        &self,
        vault: &Vault,
        rows: &FastMap<String, i64>,
        deleting: &FastSet<String>,
        counters: &mut Counters,
    ) -> Result<CdmOutput, VaultError> {
        let resolver = BatchResolver {
            batch: self,
            vault,
            rows,
            deleting,
        };
        let persons: Vec<Option<i64>> = self
            .pending
            .iter()
            .map(|p| {
                if p.live() {
                    p.compartment
                        .as_ref()
                        .and_then(|t| resolver.row(t, "Patient/"))
                } else {
                    None
                }
            })
            .collect();
        let mut visits: Vec<Option<i64>> = vec![None; self.pending.len()];
        let mut logs: Vec<Vec<RowSpan>> = vec![Vec::new(); self.pending.len()];
        let mapping = self.pending.iter().filter(|p| p.live()).count();
        self.bar.set_message(format!("mapping 0/{mapping}"));
        let vocab_empty = Vocabulary::empty();
        let vocab = self.opts.vocabulary.as_deref().unwrap_or(&vocab_empty);
        let mut writer = CdmWriter::new(
            &vault.root,
            &vault.key,
            &self.dir.join("cdm"),
            self.opts.threads() > 1,
        )?;
        let key = *vault.key.pseudonym_key();
        let source = self.source.clone();
        let pseudonym = move |id: &str| pseudonym_with(&key, &qualify(source.as_deref(), id));
        let path = self.dir.join(RESOURCES_FILE);
        let mut done = 0u64;
        let fail_after = self.opts.fail_after;
        let pending = &self.pending;
        let wanted = |line: u32| pending.get(line as usize).is_some_and(Pending::live);
        pipeline::parse_lines(
            vault,
            &path,
            self.opts.threads(),
            &wanted,
            &mut |line, v| {
                let Some(p) = self.pending.get(line as usize) else {
                    return Ok(());
                };
                if let Some(n) = fail_after
                    && done >= n
                {
                    return Err(VaultError::InjectedFault(done));
                }
                let own = rows.get(&p.key).copied();
                let mut log = RowLog::default();
                cdm::map_resource(
                    v,
                    own,
                    &pseudonym,
                    vocab,
                    &resolver,
                    counters,
                    &mut writer,
                    &mut log,
                )?;
                if let Some(slot) = logs.get_mut(line as usize) {
                    *slot = log
                        .0
                        .into_iter()
                        .map(|(t, first, n)| RowSpan(t, first, n))
                        .collect();
                }
                if let Some(slot) = visits.get_mut(line as usize) {
                    *slot = cdm::visit_of(v, &resolver);
                }
                done += 1;
                if done.is_multiple_of(4096) {
                    self.bar.set_message(format!("mapping {done}/{mapping}"));
                }
                Ok(())
            },
        )?;
        let counts = writer.counts.clone();
        writer.finish()?;
        Ok(CdmOutput {
            persons,
            visits,
            logs,
            counts,
        })
    }

    /// The earlier CDM rows this batch retracts (of the versions it replaces and the resources
    /// it deletes), and their number per table.
    fn hidden_rows(
        &self,
        vault: &Vault,
        cascade: &[Cascade],
    ) -> (Vec<Hidden>, BTreeMap<String, u64>) {
        let retired = self
            .pending
            .iter()
            .filter(|p| p.state == State::Current)
            .filter_map(|p| p.replaces.as_ref())
            .chain(cascade.iter().map(|c| &c.entry));
        let mut hidden = Vec::new();
        let mut counts = BTreeMap::new();
        for e in retired {
            let Some(seg) = vault.manifest.segments.get(e.seg as usize) else {
                continue;
            };
            for RowSpan(table, first, count) in e.rows.iter().flatten() {
                hidden.push(Hidden {
                    segment: seg.name.clone(),
                    table: table.to_string(),
                    first: *first,
                    count: *count,
                });
                *counts.entry(table.to_string()).or_insert(0) += u64::from(*count);
            }
        }
        (hidden, counts)
    }

    /// Writes and syncs the index of the new segment (segment number `seg_no`); returns its
    /// lines for the vault's in-memory index, in order.
    fn write_segment_index(
        &mut self,
        vault: &Vault,
        seg_no: u32,
        rows: &FastMap<String, i64>,
        out: &CdmOutput,
        cascade: &[Cascade],
    ) -> Result<Vec<(String, Entry)>, VaultError> {
        let mut new_entries = Vec::with_capacity(self.pending.len() + cascade.len());
        for (i, p) in self.pending.iter().enumerate() {
            let base = Entry {
                seg: seg_no,
                line: p.line,
                hash: p.hash,
                person: None,
                row: None,
                rows: None,
                visit: None,
                status: None,
                stamp: p.stamp.clone(),
            };
            let entry = match (p.state, p.delete) {
                (State::Dup | State::Bad, _) => continue,
                (_, true) => Entry {
                    status: Some(Status::Del),
                    person: p.replaces.as_ref().and_then(|e| e.person),
                    row: p.replaces.as_ref().and_then(|e| e.row),
                    ..base
                },
                (State::Old, false) => Entry {
                    status: Some(Status::Old),
                    rows: Some(Box::default()),
                    ..base
                },
                (State::Current, false) => {
                    let row = rows.get(&p.key).copied();
                    let person = if p.key.starts_with("Patient/") {
                        row
                    } else {
                        out.persons.get(i).copied().flatten()
                    };
                    *self
                        .report
                        .stored_by_type
                        .entry(type_of(&p.key).to_string())
                        .or_insert(0) += 1;
                    Entry {
                        person,
                        row,
                        rows: Some(out.logs.get(i).cloned().unwrap_or_default().into()),
                        visit: out.visits.get(i).copied().flatten(),
                        ..base
                    }
                }
            };
            new_entries.push((p.key.clone(), entry));
        }
        for c in cascade {
            new_entries.push((
                c.key.clone(),
                Entry {
                    seg: seg_no,
                    line: c.line,
                    hash: c.entry.hash,
                    person: c.entry.person,
                    row: c.entry.row,
                    rows: None,
                    visit: None,
                    status: Some(Status::Del),
                    stamp: Stamp::default(),
                },
            ));
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

/// What phase 3 produced, per pending resource in batch order (`None` / empty for those not
/// current).
struct CdmOutput {
    /// Compartment person.
    persons: Vec<Option<i64>>,
    /// visit_occurrence_id its rows refer to.
    visits: Vec<Option<i64>>,
    /// CDM rows it produced.
    logs: Vec<Vec<RowSpan>>,
    /// Rows written per CDM table.
    counts: BTreeMap<String, u64>,
}

/// Resolves references to local ids while mapping: first within the batch, then the vault;
/// references are qualified by the batch's source first.
struct BatchResolver<'a> {
    batch: &'a Batch<'a>,
    vault: &'a Vault,
    rows: &'a FastMap<String, i64>,
    deleting: &'a FastSet<String>,
}

impl BatchResolver<'_> {
    /// The local id of a qualified target of type `ty` (`Patient/`, `Encounter/`).
    fn row(&self, t: &RefTarget, ty: &str) -> Option<i64> {
        let Resolved::Found(k) = self.batch.resolve(self.vault, t, self.deleting) else {
            return None;
        };
        if !k.starts_with(ty) {
            return None;
        }
        self.rows
            .get(k)
            .copied()
            .or_else(|| self.vault.entries.get(k).and_then(|e| e.row))
    }

    fn qualified(&self, t: &RefTarget) -> RefTarget {
        qualify_target(self.batch.source.as_deref(), t.clone())
    }
}

impl Resolve for BatchResolver<'_> {
    fn person(&self, t: &RefTarget) -> Option<i64> {
        self.row(&self.qualified(t), "Patient/")
    }
    fn visit(&self, t: &RefTarget) -> Option<i64> {
        self.row(&self.qualified(t), "Encounter/")
    }
}
