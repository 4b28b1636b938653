//! Phase 1 of an ingest: each resource read is checked, deduplicated within the batch and
//! appended to the new segment's resources file; its references are noted for the checks of
//! phase 2 (see `finish`).

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use medspace_seal::SealWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::index::{Entry, Stamp};
use super::options::{IngestOptions, IngestReport, InputError, updatable};
use super::pipeline::{self, Analysed, Canon, Prepared};
use super::resources::RESOURCES_FILE;
use super::{FastMap, Vault, qualify};
use crate::at_rest::VaultKey;
use crate::error::VaultError;
use crate::fhir::{self, BadReason, Position, RefTarget};

/// What became of a resource (or delete) admitted to the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// The batch's latest version of its key (or a delete of it): indexed as current.
    Current,
    /// Superseded in this batch, or older than the stored version: indexed for audit only.
    Old,
    /// Same content as the stored version: not indexed.
    Dup,
    /// Rejected (an error was reported): not indexed; what refers to it is refused with it.
    Bad,
}

/// A resource or delete admitted to the batch (before reference checks).
pub(super) struct Pending {
    /// `Type/id`, the id qualified by the batch's source.
    pub(super) key: String,
    pub(super) line: u32,
    pub(super) hash: [u8; 16],
    pub(super) file: u32,
    pub(super) pos: Position,
    /// Every reference (json path, target with qualified id), checked at the end against the
    /// whole batch and the vault.
    pub(super) refs: Vec<(String, RefTarget)>,
    pub(super) compartment: Option<RefTarget>,
    pub(super) stamp: Stamp,
    /// A delete of `key` rather than a resource.
    pub(super) delete: bool,
    /// A resource that follows a delete of its key in this batch (a re-creation: no update
    /// permission needed).
    pub(super) after_delete: bool,
    /// A delete of a resource created earlier in this batch.
    pub(super) batch_target: bool,
    pub(super) state: State,
    /// The stored current version this one retires (update or delete).
    pub(super) replaces: Option<Entry>,
}

impl Pending {
    /// A current resource version (it gets CDM rows).
    pub(super) fn live(&self) -> bool {
        self.state == State::Current && !self.delete
    }
}

/// One batch being written into a new segment.
pub(super) struct Batch<'o> {
    pub(super) opts: &'o IngestOptions,
    pub(super) name: String,
    pub(super) dir: PathBuf,
    /// The ingest's input files, numbered as `admit` is given them (shared by its batches).
    pub(super) files: Arc<[PathBuf]>,
    pub(super) out: Option<zstd::Encoder<'static, SealWriter<BufWriter<File>>>>,
    pub(super) pending: Vec<Pending>,
    /// Key -> the batch's latest accepted pending of it.
    pub(super) by_key: FastMap<String, usize>,
    /// Qualified id -> type, for `urn:uuid:` references.
    pub(super) by_id: FastMap<String, String>,
    /// The batch's source (`None`: the default namespace).
    pub(super) source: Option<String>,
    pub(super) report: IngestReport,
    pub(super) started: Instant,
    pub(super) bar: ProgressBar,
    /// Where the ingest this batch belongs to stands once it commits (a chunked ingest).
    pub(super) run: Option<super::manifest::RunCursor>,
    /// Where [`Batch::resolve`] spells the keys it looks up.
    scratch: std::cell::RefCell<String>,
}

/// The progress bar of an ingest (hidden unless [`IngestOptions::progress`]).
pub(super) fn progress_bar(opts: &IngestOptions) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} resources ({per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b
}

impl<'o> Batch<'o> {
    /// A new batch, written into the vault's next segment; `bar` shows its progress (and that
    /// of the other batches of the same ingest).
    pub(super) fn start(
        vault: &Vault,
        files: Arc<[PathBuf]>,
        opts: &'o IngestOptions,
        bar: &ProgressBar,
    ) -> Result<Batch<'o>, VaultError> {
        let name = vault.manifest.next_segment_name();
        Batch::start_named(&vault.key, &vault.root, name, files, opts, bar)
    }

    /// A new batch written into the segment `name` (not yet in the manifest) of the vault at
    /// `root`.
    pub(super) fn start_named(
        key: &VaultKey,
        root: &Path,
        name: String,
        files: Arc<[PathBuf]>,
        opts: &'o IngestOptions,
        bar: &ProgressBar,
    ) -> Result<Batch<'o>, VaultError> {
        if let Some(s) = &opts.source
            && !super::valid_source(s)
        {
            return Err(VaultError::InvalidSource);
        }
        let dir = super::segment_dir(root, &name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(VaultError::io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        let path = dir.join(RESOURCES_FILE);
        let sealed = crate::at_rest::create_sealed(key, root, &path)?;
        let enc = zstd::Encoder::new(sealed, 1).map_err(|e| VaultError::from_io(&path, e))?;
        bar.set_message("reading");
        Ok(Batch {
            opts,
            name,
            dir,
            files,
            out: Some(enc),
            pending: Vec::new(),
            by_key: FastMap::default(),
            by_id: FastMap::default(),
            source: opts.source.clone(),
            report: IngestReport::default(),
            started: Instant::now(),
            bar: bar.clone(),
            run: None,
            scratch: std::cell::RefCell::new(String::with_capacity(128)),
        })
    }

    pub(super) fn error(&mut self, file: usize, pos: Position, reason: BadReason) {
        // The log names the file by its number: Synthea names files after the patient. (The
        // report, printed to the operator who gave the files, names them.)
        tracing::debug!(file, position = %pos, reason = %reason, "vault.ingest.reject");
        let file = self.files.get(file).cloned().unwrap_or_default();
        self.report.errors.push(InputError {
            file,
            position: pos,
            reason,
        });
    }

    /// Phase 1: one input item (a resource, or a transaction Bundle of resources and deletes),
    /// prepared by a reader: deduplicated and appended to the new segment.
    pub(super) fn admit(
        &mut self,
        file: usize,
        pos: Position,
        item: Prepared,
    ) -> Result<(), VaultError> {
        self.report.read += 1;
        self.bar.inc(1);
        let entries = match item {
            Prepared::Bad(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
            Prepared::Resource(analysed) => return self.admit_resource(file, pos, analysed),
            Prepared::Transaction(entries) => entries,
        };
        // Each entry of a transaction counts as one item read.
        self.report.read += (entries.len() as u64).saturating_sub(1);
        if entries.is_empty() {
            self.report.read += 1;
            self.error(file, pos, BadReason::EmptyFile);
        }
        for e in entries {
            match e {
                fhir::TxEntry::Resource(r) => {
                    let analysed = pipeline::analyse(&r, self.source.as_deref());
                    self.admit_resource(file, pos, analysed)?
                }
                fhir::TxEntry::Delete(Ok((ty, id))) => self.admit_delete(file, pos, &ty, &id)?,
                fhir::TxEntry::Delete(Err(reason)) => self.error(file, pos, reason),
            }
        }
        Ok(())
    }

    /// Appends one line to the new segment's resources file.
    fn write_line(&mut self, bytes: &[u8]) -> Result<(), VaultError> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(bytes)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(VaultError::io(&self.dir))?;
        }
        Ok(())
    }

    fn canonical(&self, v: &serde_json::Value) -> Result<Canon, VaultError> {
        pipeline::canonical(v).map_err(|e| VaultError::Corrupt {
            path: self.dir.clone(),
            reason: e.to_string(),
        })
    }

    /// The batch's latest accepted pending of `key`.
    fn latest(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    fn set_state(&mut self, i: usize, state: State) {
        if let Some(p) = self.pending.get_mut(i) {
            p.state = state;
        }
    }

    /// One resource: checked, compared with the batch's earlier version of it, appended.
    fn admit_resource(
        &mut self,
        file: usize,
        pos: Position,
        analysed: Result<Analysed, BadReason>,
    ) -> Result<(), VaultError> {
        let Analysed {
            rtype,
            qid,
            canon: (bytes, hash),
            stamp,
            refs,
            compartment,
        } = match analysed {
            Ok(a) => a,
            Err(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
        };
        let key = format!("{rtype}/{qid}");
        let mut state = State::Current;
        let mut after_delete = false;
        // Resolution of this check against the vault happens in `finish` (it needs the vault).
        if let Some(i) = self.latest(&key)
            && let Some(prev) = self.pending.get(i)
        {
            if prev.delete {
                // Re-created after its delete in this batch: the delete stays for audit.
                after_delete = true;
                self.set_state(i, State::Old);
            } else if prev.hash == hash {
                self.report.unchanged += 1;
                return Ok(());
            } else if !self.opts.accepts_updates() && !updatable(&rtype) {
                self.error(file, pos, BadReason::Conflict);
                return Ok(());
            } else if stamp.older_than(&prev.stamp) {
                state = State::Old;
                self.report.stale += 1;
            } else {
                // A later version in the same batch supersedes the earlier one.
                after_delete = prev.after_delete;
                self.set_state(i, State::Old);
                self.report.updated += 1;
            }
        }
        let line = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        self.write_line(&bytes)?;
        if state == State::Current {
            self.by_id.insert(qid, rtype);
            self.by_key.insert(key.clone(), self.pending.len());
        }
        self.pending.push(Pending {
            key,
            line,
            hash,
            file: u32::try_from(file).unwrap_or(u32::MAX),
            pos,
            refs,
            compartment,
            stamp,
            delete: false,
            after_delete,
            batch_target: false,
            state,
            replaces: None,
        });
        Ok(())
    }

    /// A delete of `Type/id` (of the batch's source): the request is kept as the segment's line.
    fn admit_delete(
        &mut self,
        file: usize,
        pos: Position,
        rtype: &str,
        id: &str,
    ) -> Result<(), VaultError> {
        let qid = qualify(self.source.as_deref(), id);
        let key = format!("{rtype}/{qid}");
        let request =
            serde_json::json!({"request": {"method": "DELETE", "url": format!("{rtype}/{id}")}});
        let (bytes, hash) = self.canonical(&request)?;
        let mut batch_target = false;
        if let Some(i) = self.latest(&key)
            && let Some(prev) = self.pending.get(i)
        {
            if prev.delete {
                self.report.unchanged += 1;
                return Ok(());
            }
            batch_target = true;
            self.set_state(i, State::Old);
        }
        let line = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        self.write_line(&bytes)?;
        self.by_key.insert(key.clone(), self.pending.len());
        self.pending.push(Pending {
            key,
            line,
            hash,
            file: u32::try_from(file).unwrap_or(u32::MAX),
            pos,
            refs: Vec::new(),
            compartment: None,
            stamp: Stamp::default(),
            delete: true,
            after_delete: false,
            batch_target,
            state: State::Current,
            replaces: None,
        });
        Ok(())
    }

    /// Resolves a (qualified) reference target: the batch's latest version of it, else the
    /// vault's; says why not when it cannot. `deleting` holds the stored keys this batch
    /// deletes (with what goes with them). Keys are spelled in the batch's scratch buffer, so
    /// a lookup allocates nothing (a batch resolves several references per resource).
    pub(super) fn resolve<'a>(
        &'a self,
        vault: &'a Vault,
        t: &RefTarget,
        deleting: &super::FastSet<String>,
    ) -> Resolved<'a> {
        let mut key = self.scratch.borrow_mut();
        key.clear();
        let local = match t {
            RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| (ty.as_str(), id.as_str())),
            RefTarget::Typed(ty, id) => Some((ty.as_str(), id.as_str())),
            RefTarget::Unresolvable => None,
        };
        if let Some((ty, id)) = local {
            key.push_str(ty);
            key.push('/');
            key.push_str(id);
            if let Some(p) = self
                .by_key
                .get(key.as_str())
                .and_then(|i| self.pending.get(*i))
            {
                match p.state {
                    State::Bad => return Resolved::Refused(ty.to_string()),
                    State::Current if p.delete => return Resolved::Deleted,
                    State::Current => return Resolved::Found(&p.key),
                    State::Old | State::Dup => {}
                }
            }
        }
        // Most batches delete nothing, and most vaults hold no deletes: no hashing then.
        match vault.resolve_key_in(t, &mut key) {
            Some(k) if !deleting.is_empty() && deleting.contains(k) => Resolved::Deleted,
            Some(k) => Resolved::Found(k),
            None => match t {
                RefTarget::Typed(..)
                    if !vault.deleted.is_empty() && vault.deleted.contains(key.as_str()) =>
                {
                    Resolved::Deleted
                }
                _ => Resolved::Missing,
            },
        }
    }
}

/// What a reference of the batch resolves to.
pub(super) enum Resolved<'a> {
    /// A stored or batch key.
    Found(&'a str),
    /// A resource of this batch that was refused (its type).
    Refused(String),
    /// A resource deleted (by this batch or before).
    Deleted,
    /// Nothing: neither in the batch nor in the vault.
    Missing,
}
