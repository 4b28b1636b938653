//! Phase 1 of an ingest: each resource read is checked, deduplicated within the batch and
//! appended to the new segment's resources file; its references are noted for the checks of
//! phase 2 (see `finish`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};

use medspace_seal::SealWriter;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::Vault;
use super::options::{IngestOptions, IngestReport, InputError, updatable};
use super::resources::RESOURCES_FILE;
use crate::error::VaultError;
use crate::fhir::{self, BadReason, Position, RefTarget};

/// A resource admitted to the batch (before reference checks).
pub(super) struct Pending {
    pub(super) key: String,
    pub(super) line: u32,
    pub(super) hash: [u8; 16],
    pub(super) file: u32,
    pub(super) pos: Position,
    /// References not (yet) resolvable inside the batch when the resource was read: checked
    /// against the whole batch and the vault at the end.
    pub(super) forward: Vec<(String, RefTarget)>,
    /// Batch resources this one refers to that were already read (compact: no strings).
    pub(super) deps: Vec<u32>,
    pub(super) compartment: Option<RefTarget>,
    pub(super) dead: bool,
    /// Rejected (an error was reported): resources referring to it dangle.
    pub(super) bad: bool,
}

/// One batch being written into a new segment.
pub(super) struct Batch<'o> {
    pub(super) opts: &'o IngestOptions,
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) files: Vec<PathBuf>,
    pub(super) out: Option<zstd::Encoder<'static, SealWriter<BufWriter<File>>>>,
    pub(super) pending: Vec<Pending>,
    pub(super) by_key: HashMap<String, usize>,
    pub(super) by_id: HashMap<String, String>,
    pub(super) report: IngestReport,
    pub(super) started: Instant,
    pub(super) bar: ProgressBar,
}

impl<'o> Batch<'o> {
    pub(super) fn start(vault: &Vault, opts: &'o IngestOptions) -> Result<Batch<'o>, VaultError> {
        let name = vault.manifest.next_segment_name();
        let dir = vault.segment_dir(&name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(VaultError::io(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(VaultError::io(&dir))?;
        let path = dir.join(RESOURCES_FILE);
        let sealed = crate::at_rest::create_sealed(&vault.key, &vault.root, &path)?;
        let enc = zstd::Encoder::new(sealed, 1).map_err(|e| VaultError::from_io(&path, e))?;
        let bar = if opts.progress {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {pos} resources ({per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message("reading");
            b
        } else {
            ProgressBar::hidden()
        };
        Ok(Batch {
            opts,
            name,
            dir,
            files: Vec::new(),
            out: Some(enc),
            pending: Vec::new(),
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            report: IngestReport::default(),
            started: Instant::now(),
            bar,
        })
    }

    /// Adds an input file (or the name of an in-memory source); returns its number.
    pub(super) fn add_file(&mut self, file: PathBuf) -> usize {
        self.files.push(file);
        self.files.len() - 1
    }

    pub(super) fn error(&mut self, file: usize, pos: Position, reason: BadReason) {
        let file = self.files.get(file).cloned().unwrap_or_default();
        tracing::debug!(file = %file.display(), position = %pos, reason = %reason, "vault.ingest.reject");
        self.report.errors.push(InputError {
            file,
            position: pos,
            reason,
        });
    }

    /// Phase 1: check one resource, deduplicate, append it to the new segment.
    pub(super) fn admit(
        &mut self,
        file: usize,
        pos: Position,
        item: fhir::Item,
    ) -> Result<(), VaultError> {
        self.report.read += 1;
        self.bar.inc(1);
        let v = match item {
            Ok(v) => v,
            Err(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
        };
        let (rtype, id) = match fhir::check_resource(&v) {
            Ok((t, i)) => (t.to_string(), i.to_string()),
            Err(reason) => {
                self.error(file, pos, reason);
                return Ok(());
            }
        };
        let key = format!("{rtype}/{id}");
        // serde_json's Map is ordered by key: this is a canonical form for hashing and storage.
        let bytes = serde_json::to_vec(&v).map_err(|e| VaultError::Corrupt {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let digest = Sha256::digest(&bytes);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        let existing = self
            .by_key
            .get(&key)
            .and_then(|i| self.pending.get(*i))
            .map(|p| p.hash);
        // Resolution of this check against the vault happens in `finish` (it needs the vault).
        if let Some(h) = existing {
            if h == hash {
                self.report.unchanged += 1;
                return Ok(());
            }
            if !updatable(&rtype) {
                self.error(file, pos, BadReason::Conflict);
                return Ok(());
            }
            // A later version in the same batch replaces the earlier one.
            if let Some(old) = self.by_key.get(&key).and_then(|i| self.pending.get_mut(*i)) {
                old.dead = true;
            }
            self.report.updated += 1;
        }
        let line = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        if let Some(out) = self.out.as_mut() {
            out.write_all(&bytes)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(VaultError::io(&self.dir))?;
        }
        let mut forward = Vec::new();
        let mut deps = Vec::new();
        for (field, t) in fhir::references(&v) {
            let local = match &t {
                RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| format!("{ty}/{id}")),
                RefTarget::Typed(ty, id) => Some(format!("{ty}/{id}")),
                RefTarget::Unresolvable => None,
            };
            match local.and_then(|k| self.by_key.get(&k)) {
                Some(i) => deps.push(u32::try_from(*i).unwrap_or(u32::MAX)),
                None => forward.push((field, t)),
            }
        }
        let compartment = if rtype == "Patient" {
            None
        } else {
            fhir::compartment_ref(&v)
        };
        self.by_id.insert(id, rtype);
        self.by_key.insert(key.clone(), self.pending.len());
        self.pending.push(Pending {
            key,
            line,
            hash,
            file: u32::try_from(file).unwrap_or(u32::MAX),
            pos,
            forward,
            deps,
            compartment,
            dead: false,
            bad: false,
        });
        Ok(())
    }

    pub(super) fn resolve_batch(&self, vault: &Vault, t: &RefTarget) -> Option<String> {
        let local = match t {
            RefTarget::AnyType(id) => self.by_id.get(id).map(|ty| format!("{ty}/{id}")),
            RefTarget::Typed(ty, id) => {
                Some(format!("{ty}/{id}")).filter(|k| self.by_key.contains_key(k))
            }
            RefTarget::Unresolvable => None,
        };
        match local {
            Some(k)
                if self
                    .by_key
                    .get(&k)
                    .and_then(|i| self.pending.get(*i))
                    .is_some_and(|p| !p.dead) =>
            {
                Some(k)
            }
            _ => vault.resolve_key(t),
        }
    }
}
