//! Encryption at rest of a vault: its keys, its sealed files, its encrypted Parquet.
//!
//! * `vault.key` — a sealed key file ([`medspace_seal::SealedKey`], role `medspace-vault-keys`)
//!   holding 64 random bytes: the **data key** (every file of the vault is sealed under keys
//!   derived from it) and the **pseudonym key** (the HMAC key of the patients' ledger
//!   pseudonyms, which must outlive any change of data key). The key-encryption key is
//!   argon2id of the passphrase, computed once per open ([`VaultKey::unlock`]), never per file.
//! * `key.check` — a small sealed file that tells a wrong key from a damaged vault before
//!   anything is read or written.
//! * The manifest, each segment's index and original resources are sealed streams
//!   ([`medspace_seal::stream`]) under the *files* subkey, the file's path inside the vault
//!   bound as associated data (a file moved or swapped does not open).
//! * The CDM tables are Parquet with modular encryption: footer and every column encrypted
//!   (AES-GCM), each with its own key derived from the data key, the file's path inside the
//!   vault and the column's name. DataFusion reads them through [`VaultDecryption`], an
//!   encryption factory that derives the keys from the path of the file it opens.
//!
//! New vaults are always encrypted. A vault written by an earlier version (plain files and a
//! plain `secret.key`) is refused with [`VaultError::NotEncrypted`]; `medspace vault encrypt`
//! converts it ([`crate::store::Vault::encrypt_plain`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::common::config::EncryptionFactoryOptions;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::object_store::path::Path as StorePath;
use medspace_seal::{DataKey, KdfParams, OpenReader, Passphrase, SealError, SealWriter, SealedKey};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;
use zeroize::Zeroizing;

use crate::error::VaultError;
use medspace_types::cdm::columns;

/// The vault's sealed key file, inside the vault directory.
pub const KEY_FILE: &str = "vault.key";
/// The sealed check file, inside the vault directory.
pub const CHECK_FILE: &str = "key.check";
/// The pseudonym key file of vaults written before encryption at rest.
pub(crate) const PLAIN_KEY_FILE: &str = "secret.key";
const KEY_ROLE: &str = "medspace-vault-keys";
const CHECK_TEXT: &[u8] = b"medspace vault v1";
/// The environment variable a vault's passphrase may come from.
pub const PASSPHRASE_ENV: &str = "MEDSPACE_VAULT_PASSPHRASE";

/// A vault's unlocked keys. Cloning is cheap; keys are wiped when dropped and never printed.
#[derive(Clone)]
pub struct VaultKey {
    data: DataKey,
    pseudonym: DataKey,
    files: DataKey,
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKey(..)")
    }
}

/// `<node>/vault`: the vault directory of a node directory.
pub fn vault_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("vault")
}

fn key_path(node_dir: &Path) -> PathBuf {
    vault_dir(node_dir).join(KEY_FILE)
}

impl VaultKey {
    fn from_parts(data: DataKey, pseudonym: DataKey) -> VaultKey {
        let files = data.derive("medspace/vault/v1/files");
        VaultKey {
            data,
            pseudonym,
            files,
        }
    }

    fn secret(&self) -> Zeroizing<Vec<u8>> {
        let mut s = Zeroizing::new(Vec::with_capacity(64));
        s.extend_from_slice(self.data.expose());
        s.extend_from_slice(self.pseudonym.expose());
        s
    }

    fn from_secret(path: &Path, s: &[u8]) -> Result<VaultKey, VaultError> {
        let (Some(data), Some(pseudonym)) = (
            s.get(..32).and_then(DataKey::from_slice),
            s.get(32..64).and_then(DataKey::from_slice),
        ) else {
            return Err(VaultError::Corrupt {
                path: path.to_path_buf(),
                reason: "vault key file holds a secret of the wrong length".into(),
            });
        };
        Ok(VaultKey::from_parts(data, pseudonym))
    }

    /// Creates the keys of a new vault in `node_dir`: a random data key and pseudonym key,
    /// sealed under `passphrase` into `vault.key` (owner-only), and the check file. Refuses if
    /// the vault already has a key file or holds plain files of an earlier version.
    pub fn create(
        node_dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<VaultKey, VaultError> {
        let root = vault_dir(node_dir);
        if root.join(PLAIN_KEY_FILE).exists() || root.join("manifest.json").exists() {
            return Err(VaultError::NotEncrypted(root));
        }
        let key = VaultKey::from_parts(DataKey::generate(), DataKey::generate());
        key.install(&root, passphrase, params, false)?;
        Ok(key)
    }

    /// [`VaultKey::create`] with a given pseudonym key: for tests that pin pseudonyms.
    #[doc(hidden)]
    pub fn create_with_pseudonym_key(
        node_dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
        pseudonym: [u8; 32],
    ) -> Result<VaultKey, VaultError> {
        let root = vault_dir(node_dir);
        let key = VaultKey::for_plain(pseudonym);
        key.install(&root, passphrase, params, false)?;
        Ok(key)
    }

    /// The plaintext of a sealed file of the vault of `node_dir` (for inspection and tests).
    #[doc(hidden)]
    pub fn read_vault_file(
        &self,
        node_dir: &Path,
        path: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        read_sealed(self, &vault_dir(node_dir), path)
    }

    /// Writes this key's key file and check file into the vault directory `root`.
    pub(crate) fn install(
        &self,
        root: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
        replace: bool,
    ) -> Result<(), VaultError> {
        std::fs::create_dir_all(root).map_err(VaultError::io(root))?;
        let sealed = SealedKey::seal(&self.secret(), KEY_ROLE, passphrase, params)
            .map_err(|e| VaultError::from_seal(&root.join(KEY_FILE), e))?;
        let check = root.join(CHECK_FILE);
        write_sealed(self, root, &check, CHECK_TEXT)?;
        sealed
            .write(&root.join(KEY_FILE), replace)
            .map_err(|e| VaultError::from_seal(&root.join(KEY_FILE), e))
    }

    /// Unlocks the vault of `node_dir` with its passphrase (one argon2id derivation), and
    /// checks the keys against the vault. A wrong passphrase is
    /// [`VaultError::WrongPassphrase`] and changes nothing.
    pub fn unlock(node_dir: &Path, passphrase: &Passphrase) -> Result<VaultKey, VaultError> {
        let root = vault_dir(node_dir);
        let path = root.join(KEY_FILE);
        if !path.exists() {
            if root.join(PLAIN_KEY_FILE).exists() || root.join("manifest.json").exists() {
                return Err(VaultError::NotEncrypted(root));
            }
            return Err(VaultError::NoKey(path));
        }
        let sealed = SealedKey::read(&path).map_err(|e| VaultError::from_seal(&path, e))?;
        let secret = sealed
            .open(KEY_ROLE, passphrase)
            .map_err(|e| VaultError::from_seal(&path, e))?;
        let key = VaultKey::from_secret(&path, &secret)?;
        key.check(&root)?;
        Ok(key)
    }

    /// Unlocks the vault of `node_dir`, creating its keys first if it has none.
    pub fn unlock_or_create(
        node_dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<VaultKey, VaultError> {
        if key_path(node_dir).exists() {
            VaultKey::unlock(node_dir, passphrase)
        } else {
            VaultKey::create(node_dir, passphrase, params)
        }
    }

    /// Re-wraps the vault's keys under a new passphrase (and parameters): the data stays as
    /// it is, only `vault.key` is replaced (atomically). Fails, changing nothing, if `old` is
    /// wrong.
    pub fn rewrap(
        node_dir: &Path,
        old: &Passphrase,
        new: &Passphrase,
        params: KdfParams,
    ) -> Result<(), VaultError> {
        let path = key_path(node_dir);
        let sealed = SealedKey::read(&path).map_err(|e| VaultError::from_seal(&path, e))?;
        let rewrapped = sealed
            .rewrap(old, new, params)
            .map_err(|e| VaultError::from_seal(&path, e))?;
        rewrapped
            .write(&path, true)
            .map_err(|e| VaultError::from_seal(&path, e))
    }

    /// The same pseudonym key with a fresh data key (for re-encryption).
    pub(crate) fn with_new_data_key(&self) -> VaultKey {
        VaultKey::from_parts(DataKey::generate(), self.pseudonym.clone())
    }

    /// The keys of a vault being converted from plain files: a fresh data key and the
    /// vault's existing pseudonym key.
    pub(crate) fn for_plain(pseudonym: [u8; 32]) -> VaultKey {
        VaultKey::from_parts(DataKey::generate(), DataKey::from_bytes(pseudonym))
    }

    /// Checks the keys against the vault at `root` (its check file).
    pub(crate) fn check(&self, root: &Path) -> Result<(), VaultError> {
        let path = root.join(CHECK_FILE);
        match read_sealed(self, root, &path) {
            Ok(text) if text.as_slice() == CHECK_TEXT => Ok(()),
            Ok(_) | Err(VaultError::Tampered(_)) => Err(VaultError::WrongKey(root.to_path_buf())),
            Err(e) => Err(e),
        }
    }

    /// Seals a file of the node that holds patient data outside the vault (the patient
    /// links) under a subkey of the vault's data key; `role` names the file (it is bound as
    /// associated data).
    pub fn seal_node_file(&self, role: &str, bytes: &[u8]) -> Vec<u8> {
        medspace_seal::seal_bytes(
            &self.node_files(),
            &format!("medspace/node/v1|{role}"),
            bytes,
        )
    }

    /// Opens a file sealed by [`VaultKey::seal_node_file`] for the same `role`.
    pub fn open_node_file(
        &self,
        role: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        medspace_seal::open_bytes(
            &self.node_files(),
            &format!("medspace/node/v1|{role}"),
            sealed,
        )
    }

    /// Derived from the pseudonym key, not the data key: node files live outside the vault,
    /// so re-encrypting the vault under a new data key leaves them readable. (HKDF's label is
    /// domain-separated from the pseudonyms' HMAC messages, which start with
    /// `medspace-pseudonym-v1|`.)
    fn node_files(&self) -> DataKey {
        self.pseudonym.derive("medspace/vault/v1/node-files")
    }

    /// The key of the vault's sealed files.
    pub(crate) fn files(&self) -> &DataKey {
        &self.files
    }

    /// The secret of the hospital's de-identified releases (their per-release pseudonyms and
    /// date shifts): derived from the pseudonym key, so it lasts as long as the vault's
    /// pseudonyms, and never leaves the node.
    pub fn release_secret(&self) -> [u8; 32] {
        *self
            .pseudonym
            .derive("medspace/vault/v1/open-pool-releases")
            .expose()
    }

    /// The HMAC key of ledger pseudonyms.
    pub(crate) fn pseudonym_key(&self) -> &[u8; 32] {
        self.pseudonym.expose()
    }

    /// The AES-256 key of `what` (`footer` or `col|<name>`) of the Parquet file at `rel`
    /// (its path inside the vault).
    fn parquet_key(&self, rel: &str, what: &str) -> Vec<u8> {
        self.data
            .derive(&format!("medspace/vault/v1/parquet|{rel}|{what}"))
            .expose()
            .to_vec()
    }

    /// Encryption of a CDM table's Parquet file at `rel`: encrypted footer, every column
    /// under its own key.
    pub(crate) fn parquet_encryption(
        &self,
        rel: &str,
        table: &str,
    ) -> Result<Arc<FileEncryptionProperties>, VaultError> {
        let mut b = FileEncryptionProperties::builder(self.parquet_key(rel, "footer"));
        for c in columns(table) {
            b = b.with_column_key(c.name, self.parquet_key(rel, &format!("col|{}", c.name)));
        }
        b.build()
            .map_err(|e| VaultError::storage(table)(e.to_string()))
    }

    /// Decryption of a CDM table's Parquet file at `rel`.
    pub(crate) fn parquet_decryption(
        &self,
        rel: &str,
        table: &str,
    ) -> Result<Arc<FileDecryptionProperties>, parquet::errors::ParquetError> {
        let mut b = FileDecryptionProperties::builder(self.parquet_key(rel, "footer"));
        for c in columns(table) {
            b = b.with_column_key(c.name, self.parquet_key(rel, &format!("col|{}", c.name)));
        }
        b.build()
    }
}

/// Writes a file owner-only (0600) and atomically: temporary file, sync, rename.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    medspace_seal::write_private(path, bytes, true).map_err(|e| match e {
        SealError::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    })
}

/// The path of `path` inside the vault at `root`, with `/` separators: what binds a sealed
/// file to its place.
pub(crate) fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The role (associated data) of the vault file at `rel`.
pub(crate) fn role(rel: &str) -> String {
    format!("medspace/vault/v1|{rel}")
}

/// Creates a sealed file at `path` inside the vault at `root`.
pub(crate) fn create_sealed(
    key: &VaultKey,
    root: &Path,
    path: &Path,
) -> Result<SealWriter<BufWriter<File>>, VaultError> {
    let file = File::create(path).map_err(VaultError::io(path))?;
    SealWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        &key.files,
        &role(&rel_path(root, path)),
    )
    .map_err(|e| VaultError::from_io(path, e))
}

/// Finishes a sealed file and syncs it.
pub(crate) fn finish_sealed(path: &Path, w: SealWriter<BufWriter<File>>) -> Result<(), VaultError> {
    let buf = w.finish().map_err(|e| VaultError::from_io(path, e))?;
    let f = buf
        .into_inner()
        .map_err(|e| VaultError::io(path)(e.into_error()))?;
    f.sync_all().map_err(VaultError::io(path))
}

/// Opens a sealed file at `path` inside the vault at `root` for reading.
pub(crate) fn open_sealed(
    key: &VaultKey,
    root: &Path,
    path: &Path,
) -> Result<OpenReader<BufReader<File>>, VaultError> {
    let file = File::open(path).map_err(VaultError::io(path))?;
    OpenReader::new(
        BufReader::with_capacity(1 << 20, file),
        &key.files,
        &role(&rel_path(root, path)),
    )
    .map_err(|e| VaultError::from_io(path, e))
}

/// Reads a whole sealed file.
pub(crate) fn read_sealed(
    key: &VaultKey,
    root: &Path,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut r = open_sealed(key, root, path)?;
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out)
        .map_err(|e| VaultError::from_io(path, e))?;
    Ok(out)
}

/// Writes and syncs a whole sealed file.
pub(crate) fn write_sealed(
    key: &VaultKey,
    root: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), VaultError> {
    let mut w = create_sealed(key, root, path)?;
    w.write_all(bytes)
        .map_err(|e| VaultError::from_io(path, e))?;
    finish_sealed(path, w)
}

/// The name of the encryption factory registered in every vault session.
pub const FACTORY_ID: &str = "medspace-vault";

/// DataFusion's way into the vaults' encrypted Parquet: for each file it opens, the keys of
/// the vault the file belongs to, derived for that file's path.
#[derive(Debug)]
pub(crate) struct VaultDecryption {
    /// (the vault's root as an object-store path, its keys).
    vaults: Vec<(String, VaultKey)>,
}

impl VaultDecryption {
    /// A factory over vaults given by their canonical root directories.
    pub(crate) fn new(vaults: Vec<(PathBuf, VaultKey)>) -> Result<VaultDecryption, VaultError> {
        let mut out = Vec::with_capacity(vaults.len());
        for (root, key) in vaults {
            let url = ListingTableUrl::parse(root.to_string_lossy().as_ref())?;
            out.push((url.prefix().as_ref().trim_end_matches('/').to_string(), key));
        }
        Ok(VaultDecryption { vaults: out })
    }
}

#[async_trait::async_trait]
impl EncryptionFactory for VaultDecryption {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &datafusion::arrow::datatypes::SchemaRef,
        _file_path: &StorePath,
    ) -> datafusion::error::Result<Option<Arc<FileEncryptionProperties>>> {
        // Sessions only read; the vault writes its files itself.
        Err(DataFusionError::Execution(
            "vault sessions are read-only".into(),
        ))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &StorePath,
    ) -> datafusion::error::Result<Option<Arc<FileDecryptionProperties>>> {
        let p = file_path.as_ref();
        for (prefix, key) in &self.vaults {
            let Some(rel) = p
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            else {
                continue;
            };
            let table = rel
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".parquet"))
                .unwrap_or("");
            let props = key
                .parquet_decryption(rel, table)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(props));
        }
        Err(DataFusionError::Execution(
            "a Parquet file outside the session's vaults".into(),
        ))
    }
}

impl VaultError {
    /// A sealing error on `path` as a vault error.
    pub(crate) fn from_seal(path: &Path, e: SealError) -> VaultError {
        let path = path.to_path_buf();
        match e {
            SealError::WrongPassphrase => VaultError::WrongPassphrase(path),
            SealError::Tampered => VaultError::Tampered(path),
            SealError::Io { source, .. } => VaultError::Io { path, source },
            other => VaultError::Corrupt {
                path,
                reason: other.to_string(),
            },
        }
    }

    /// An I/O error on `path`, which may carry a sealing error from a sealed stream.
    pub(crate) fn from_io(path: &Path, e: std::io::Error) -> VaultError {
        match SealError::in_io(&e) {
            Some(SealError::Tampered) => VaultError::Tampered(path.to_path_buf()),
            Some(other) => VaultError::Corrupt {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
            None => VaultError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Int64Type, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// A person file written before `person.location_id` existed (its columns one fewer, each
    /// under its key) still reads: the new column is null, the other tables as they are.
    #[test]
    fn a_person_file_without_location_id_reads_it_as_null() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path();
        let key = VaultKey::unlock_or_create(
            node,
            &Passphrase::new("test passphrase").unwrap(),
            KdfParams::INSECURE_FAST,
        )
        .unwrap();
        let patient = serde_json::json!({"resourceType": "Patient", "id": "p1", "gender": "female",
            "address": [{"city": "Worcester", "state": "MA", "postalCode": "01545"}]});
        let mut vault = crate::Vault::open(node, &key).unwrap();
        let r = vault
            .ingest_values("t", vec![patient], &crate::IngestOptions::default())
            .unwrap();
        assert!(r.committed, "{:?}", r.errors);
        drop(vault);
        let root = crate::store::vault_dir(node);
        let manifest = crate::store::read_manifest(&root, &key).unwrap();
        let file = crate::store::segment_dir(&root, &manifest.segments[0].name)
            .join("cdm")
            .join("person.parquet");
        let rel = rel_path(&root, &file);
        // Read the current file, drop its last column, write it back as an earlier version did.
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            File::open(&file).unwrap(),
            ArrowReaderOptions::new()
                .with_file_decryption_properties(key.parquet_decryption(&rel, "person").unwrap()),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let old_columns = &columns("person")[..columns("person").len() - 1];
        assert_eq!(old_columns.last().unwrap().name, "ethnicity_source_value");
        let schema = Arc::new(Schema::new(
            batches[0].schema().fields()[..old_columns.len()].to_vec(),
        ));
        let mut enc = FileEncryptionProperties::builder(key.parquet_key(&rel, "footer"));
        for c in old_columns {
            enc = enc.with_column_key(c.name, key.parquet_key(&rel, &format!("col|{}", c.name)));
        }
        let props = parquet::file::properties::WriterProperties::builder()
            .with_file_encryption_properties(enc.build().unwrap())
            .build();
        let mut w = ArrowWriter::try_new(File::create(&file).unwrap(), schema.clone(), Some(props))
            .unwrap();
        for b in &batches {
            w.write(
                &b.project(&(0..old_columns.len()).collect::<Vec<_>>())
                    .unwrap(),
            )
            .unwrap();
        }
        w.close().unwrap();
        let ctx = crate::open_session(node, &key).unwrap();
        let rt = crate::runtime().unwrap();
        let out = rt
            .block_on(crate::sql(
                &ctx,
                "select p.person_id, p.location_id, p.gender_source_value, (select count(*) from location) from person p",
            ))
            .unwrap();
        assert_eq!(out[0].num_rows(), 1);
        assert_eq!(out[0].column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(out[0].column(1).is_null(0));
        assert_eq!(out[0].column(2).as_string::<i32>().value(0), "female");
        assert_eq!(out[0].column(3).as_primitive::<Int64Type>().value(0), 1);
    }
}
