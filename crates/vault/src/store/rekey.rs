//! Re-encryption of a vault under a fresh data key, and conversion of a vault written
//! unencrypted by an earlier version.
//!
//! Both write a complete copy of the committed vault under the new keys into
//! `<node>/vault.rekey-tmp/`, sync it, rename it to `vault.rekey` (complete), then swap:
//! `vault` → `vault.old`, `vault.rekey` → `vault`, and remove `vault.old`. The original
//! resources and indexes are copied as their (compressed) plaintext, resealed; the Parquet
//! files are decrypted and re-encrypted batch by batch; the manifest is rewritten. The
//! pseudonym key is kept, so the patients' ledger pseudonyms do not change.
//!
//! [`recover`] finishes or discards an interrupted run: a `vault.rekey-tmp` is incomplete and
//! removed; a `vault.rekey` beside a `vault` had not been swapped in and is removed (the old
//! vault and passphrase stay valid); a `vault.rekey` without a `vault` is renamed into place;
//! a `vault.old` beside a `vault` is removed. The writer's lock is held throughout; nodes that
//! read the vault should be stopped while it runs.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use medspace_seal::{KdfParams, Passphrase};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::manifest::{Manifest, sync_dir, write_manifest};
use super::{Vault, identity, vault_dir};
use crate::at_rest::{self, VaultKey};
use crate::cdm::schema;
use crate::error::VaultError;

const TMP: &str = "vault.rekey-tmp";
const DONE: &str = "vault.rekey";
const OLD: &str = "vault.old";

/// Finishes or discards an interrupted re-encryption of the vault of `node_dir` (see the
/// module's documentation). Runs when a writer opens the vault.
pub(super) fn recover(node_dir: &Path) -> Result<(), VaultError> {
    let vault = vault_dir(node_dir);
    let done = node_dir.join(DONE);
    if done.exists() && !vault.exists() {
        match fs::rename(&done, &vault) {
            Ok(()) => sync_dir(node_dir)?,
            // Another opener finished it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VaultError::io(&vault)(e)),
        }
    }
    Ok(())
}

/// Removes what an interrupted re-encryption left beside a complete vault. Called with the
/// vault's lock held, so no other re-encryption is running.
pub(super) fn remove_leftovers(node_dir: &Path) -> Result<(), VaultError> {
    for name in [TMP, DONE, OLD] {
        let p = node_dir.join(name);
        if p.exists() {
            tracing::warn!(dir = name, "vault.rekey.remove_leftover");
            fs::remove_dir_all(&p).map_err(VaultError::io(&p))?;
        }
    }
    Ok(())
}

/// Where the copy reads from.
enum Source<'a> {
    Sealed(&'a VaultKey),
    Plain,
}

impl Source<'_> {
    fn reader(&self, root: &Path, path: &Path) -> Result<Box<dyn Read>, VaultError> {
        Ok(match self {
            Source::Sealed(key) => Box::new(at_rest::open_sealed(key, root, path)?),
            Source::Plain => Box::new(std::io::BufReader::new(
                File::open(path).map_err(VaultError::io(path))?,
            )),
        })
    }

    fn manifest(&self, root: &Path) -> Result<Manifest, VaultError> {
        match self {
            Source::Sealed(key) => super::read_manifest(root, key),
            Source::Plain => {
                let path = root.join("manifest.json");
                match fs::read(&path) {
                    Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| VaultError::Corrupt {
                        path,
                        reason: e.to_string(),
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
                    Err(e) => Err(VaultError::Io { path, source: e }),
                }
            }
        }
    }
}

/// Copies a sealed or plain file into the new vault, sealed under the new key.
fn reseal(
    src: &Source<'_>,
    old_root: &Path,
    new_key: &VaultKey,
    new_root: &Path,
    rel: &Path,
) -> Result<(), VaultError> {
    let from = old_root.join(rel);
    let to = new_root.join(rel);
    let mut r = src.reader(old_root, &from)?;
    let mut w = at_rest::create_sealed(new_key, new_root, &to)?;
    std::io::copy(&mut r, &mut w).map_err(|e| VaultError::from_io(&from, e))?;
    at_rest::finish_sealed(&to, w)
}

/// Rewrites a CDM Parquet file under the new key.
fn recrypt_parquet(
    src: &Source<'_>,
    old_root: &Path,
    new_key: &VaultKey,
    new_root: &Path,
    rel: &Path,
    table: &str,
) -> Result<(), VaultError> {
    let from = old_root.join(rel);
    let to = new_root.join(rel);
    let err = |e: parquet::errors::ParquetError| VaultError::storage(table)(e.to_string());
    let mut options = ArrowReaderOptions::new();
    if let Source::Sealed(key) = src {
        let props = key
            .parquet_decryption(&at_rest::rel_path(old_root, &from), table)
            .map_err(err)?;
        options = options.with_file_decryption_properties(props);
    }
    let file = File::open(&from).map_err(VaultError::io(&from))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(err)?
        .build()
        .map_err(err)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(256 * 1024))
        .with_file_encryption_properties(
            new_key.parquet_encryption(&at_rest::rel_path(new_root, &to), table)?,
        )
        .build();
    let out = File::create(&to).map_err(VaultError::io(&to))?;
    let mut w = ArrowWriter::try_new(out, schema(table), Some(props)).map_err(err)?;
    for batch in reader {
        let batch = batch.map_err(|e| VaultError::storage(table)(e.to_string()))?;
        w.write(&batch).map_err(err)?;
    }
    let f = w.into_inner().map_err(err)?;
    f.sync_all().map_err(VaultError::io(&to))
}

/// Writes the whole committed vault at `old_root` into `new_root` under `new_key`.
fn copy_vault(
    src: &Source<'_>,
    old_root: &Path,
    new_key: &VaultKey,
    new_root: &Path,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<(), VaultError> {
    let manifest = src.manifest(old_root)?;
    new_key.install(new_root, passphrase, params, false)?;
    for seg in &manifest.segments {
        let seg_rel = PathBuf::from("segments").join(&seg.name);
        let dir = new_root.join(&seg_rel);
        fs::create_dir_all(dir.join("cdm")).map_err(VaultError::io(&dir))?;
        reseal(
            src,
            old_root,
            new_key,
            new_root,
            &seg_rel.join("index.jsonl"),
        )?;
        reseal(
            src,
            old_root,
            new_key,
            new_root,
            &seg_rel.join(super::resources::RESOURCES_FILE),
        )?;
        for (table, rows) in &seg.tables {
            if *rows == 0 {
                continue;
            }
            let rel = seg_rel.join("cdm").join(format!("{table}.parquet"));
            if old_root.join(&rel).exists() {
                recrypt_parquet(src, old_root, new_key, new_root, &rel, table)?;
            }
        }
        sync_dir(&dir.join("cdm"))?;
        sync_dir(&dir)?;
    }
    fs::create_dir_all(new_root.join("segments")).map_err(VaultError::io(new_root))?;
    sync_dir(&new_root.join("segments"))?;
    let mut m = manifest;
    m.format = super::manifest::FORMAT;
    write_manifest(new_root, new_key, &m)?;
    sync_dir(new_root)
}

/// Copies, then swaps the copy in (see the module's documentation).
fn rekey(
    node_dir: &Path,
    src: &Source<'_>,
    new_key: &VaultKey,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<(), VaultError> {
    let old_root = vault_dir(node_dir);
    let tmp = node_dir.join(TMP);
    let done = node_dir.join(DONE);
    let old = node_dir.join(OLD);
    fs::create_dir_all(&tmp).map_err(VaultError::io(&tmp))?;
    copy_vault(src, &old_root, new_key, &tmp, passphrase, params)?;
    fs::rename(&tmp, &done).map_err(VaultError::io(&done))?;
    sync_dir(node_dir)?;
    fs::rename(&old_root, &old).map_err(VaultError::io(&old))?;
    fs::rename(&done, &old_root).map_err(VaultError::io(&old_root))?;
    sync_dir(node_dir)?;
    fs::remove_dir_all(&old).map_err(VaultError::io(&old))?;
    tracing::info!("vault.rekey.done");
    Ok(())
}

impl Vault {
    /// Re-encrypts the vault of `node_dir` (unlocked with `key`) under a fresh data key, sealed
    /// with `passphrase` (which may be the old one). Every file is rewritten; the pseudonym
    /// key, the patients' pseudonyms and the logical content (and so
    /// [`crate::catalog::content_hash`]) stay the same. Returns the new keys. Stop the node
    /// that reads the vault first.
    pub fn reencrypt(
        node_dir: &Path,
        key: &VaultKey,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<VaultKey, VaultError> {
        let vault = Vault::open(node_dir, key)?;
        let new_key = key.with_new_data_key();
        rekey(node_dir, &Source::Sealed(key), &new_key, passphrase, params)?;
        drop(vault);
        Ok(new_key)
    }

    /// Converts a vault written unencrypted by an earlier version into an encrypted one
    /// sealed with `passphrase`, keeping its pseudonym key. Returns the new keys.
    pub fn encrypt_plain(
        node_dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<VaultKey, VaultError> {
        let root = vault_dir(node_dir);
        if root.join(at_rest::KEY_FILE).exists() {
            return Err(VaultError::Corrupt {
                path: root,
                reason: "the vault is already encrypted".into(),
            });
        }
        let lock = Vault::lock(&root)?;
        let pseudonym = identity::read_plain_key(&root)?
            .ok_or_else(|| VaultError::NoKey(root.join(at_rest::PLAIN_KEY_FILE)))?;
        let new_key = VaultKey::for_plain(pseudonym);
        rekey(node_dir, &Source::Plain, &new_key, passphrase, params)?;
        drop(lock);
        Ok(new_key)
    }
}
