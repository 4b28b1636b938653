//! The sealed key file: one secret sealed under a passphrase.
//!
//! ```json
//! {
//!   "format": "medspace-sealed-key",
//!   "version": 1,
//!   "role": "ledger-ed25519",
//!   "kdf": { "algorithm": "argon2id", "m_kib": 65536, "t": 2, "p": 1, "salt": "<16 bytes hex>" },
//!   "cipher": "xchacha20poly1305",
//!   "nonce": "<24 bytes hex>",
//!   "sealed": "<ciphertext and 16-byte tag, hex>"
//! }
//! ```
//! The key-encryption key is argon2id(passphrase, salt, parameters). The associated data is
//! every other field (format, version, role, parameters, salt, cipher), so a file cannot be
//! passed off as another role's or with weaker parameters. A wrong passphrase and an altered
//! file both fail the same way ([`SealError::WrongPassphrase`]).
//!
//! A *plain* key file is the secret in hex on one line (what earlier versions wrote); it is read
//! only where the caller allows it ([`Unlock::allow_plain`]).

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SealError;
use crate::file::write_private;
use crate::kdf::{KdfParams, Passphrase};

const FORMAT: &str = "medspace-sealed-key";
const VERSION: u32 = 1;
const CIPHER: &str = "xchacha20poly1305";
const ALGORITHM: &str = "argon2id";

/// The `kdf` object of a key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfRecord {
    algorithm: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

/// A secret sealed under a passphrase, as stored in a key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    format: String,
    version: u32,
    role: String,
    kdf: KdfRecord,
    cipher: String,
    nonce: String,
    sealed: String,
}

impl SealedKey {
    /// Seals `secret` for `role` under `passphrase` (fresh salt and nonce).
    pub fn seal(
        secret: &[u8],
        role: &str,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<SealedKey, SealError> {
        let salt: [u8; 16] = rand::random();
        let nonce: [u8; 24] = rand::random();
        let mut key = SealedKey {
            format: FORMAT.into(),
            version: VERSION,
            role: role.into(),
            kdf: KdfRecord {
                algorithm: ALGORITHM.into(),
                m_kib: params.m_kib,
                t: params.t,
                p: params.p,
                salt: hex::encode(salt),
            },
            cipher: CIPHER.into(),
            nonce: hex::encode(nonce),
            sealed: String::new(),
        };
        let kek = params.derive(passphrase, &salt)?;
        let aead = XChaCha20Poly1305::new((&*kek).into());
        let aad = key.associated_data();
        let ct = aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Kdf("sealing failed".into()))?;
        key.sealed = hex::encode(ct);
        Ok(key)
    }

    /// The role the file names.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The argon2id parameters the file was sealed with.
    pub fn params(&self) -> KdfParams {
        KdfParams {
            m_kib: self.kdf.m_kib,
            t: self.kdf.t,
            p: self.kdf.p,
        }
    }

    /// Everything but the nonce and the ciphertext, as associated data.
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "{}|v{}|{}|{}|m={}|t={}|p={}|{}|{}",
            self.format,
            self.version,
            self.role,
            self.kdf.algorithm,
            self.kdf.m_kib,
            self.kdf.t,
            self.kdf.p,
            self.kdf.salt,
            self.cipher
        )
        .into_bytes()
    }

    fn check_shape(&self) -> Result<(), SealError> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(SealError::Format(format!(
                "format={} version={}",
                self.format, self.version
            )));
        }
        if self.cipher != CIPHER || self.kdf.algorithm != ALGORITHM {
            return Err(SealError::Format(format!(
                "cipher={} kdf={}",
                self.cipher, self.kdf.algorithm
            )));
        }
        Ok(())
    }

    /// Opens the secret, checking that the file is for `role`.
    pub fn open(
        &self,
        role: &str,
        passphrase: &Passphrase,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.check_shape()?;
        if self.role != role {
            return Err(SealError::Role {
                expected: role.into(),
                found: self.role.clone(),
            });
        }
        let bad = |what: &str| SealError::Format(format!("{what} is not hex of the right length"));
        let salt = hex::decode(&self.kdf.salt).map_err(|_| bad("salt"))?;
        if salt.len() < 8 {
            return Err(bad("salt"));
        }
        let nonce: [u8; 24] = hex::decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("nonce"))?;
        let ct = hex::decode(&self.sealed).map_err(|_| bad("sealed"))?;
        let kek = self.params().derive(passphrase, &salt)?;
        let aead = XChaCha20Poly1305::new((&*kek).into());
        let aad = self.associated_data();
        aead.decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::WrongPassphrase)
    }

    /// The same secret sealed under a new passphrase (and parameters): opens with `old`, seals
    /// with `new`. Fails, changing nothing, if `old` is wrong.
    pub fn rewrap(
        &self,
        old: &Passphrase,
        new: &Passphrase,
        params: KdfParams,
    ) -> Result<SealedKey, SealError> {
        let secret = self.open(&self.role, old)?;
        SealedKey::seal(&secret, &self.role, new, params)
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Parses a key file's text as a sealed key.
    pub fn from_json(bytes: &[u8]) -> Result<SealedKey, SealError> {
        serde_json::from_slice(bytes).map_err(|e| SealError::Format(e.to_string()))
    }

    /// Reads a sealed key file.
    pub fn read(path: &Path) -> Result<SealedKey, SealError> {
        let bytes = std::fs::read(path).map_err(SealError::io(path))?;
        SealedKey::from_json(&bytes)
    }

    /// Writes the sealed key to `path`: a new owner-only file, or (`replace`) atomically over
    /// an existing one.
    pub fn write(&self, path: &Path, replace: bool) -> Result<(), SealError> {
        write_private(path, self.to_json().as_bytes(), replace)
    }
}

/// What kind of key file a file is.
#[derive(Clone, Debug)]
pub enum KeyFileKind {
    /// A sealed key file.
    Sealed(SealedKey),
    /// A plain key file: the secret's bytes (decoded from hex).
    Plain(Zeroizing<Vec<u8>>),
}

impl KeyFileKind {
    /// Tells a sealed key file (JSON of our format) from a plain one (hex on one line).
    pub fn parse(bytes: &[u8]) -> Result<KeyFileKind, SealError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.first() == Some(&b'{') {
            return SealedKey::from_json(trimmed).map(KeyFileKind::Sealed);
        }
        let text = std::str::from_utf8(trimmed)
            .map_err(|_| SealError::Format("neither a sealed key file nor hex".into()))?;
        hex::decode(text)
            .map(|b| KeyFileKind::Plain(Zeroizing::new(b)))
            .map_err(|_| SealError::Format("neither a sealed key file nor hex".into()))
    }
}

/// How to open a key file: with a passphrase, and whether a plain key file is acceptable.
#[derive(Clone, Debug, Default)]
pub struct Unlock {
    /// The passphrase for sealed key files.
    pub passphrase: Option<Passphrase>,
    /// Whether a plain (unencrypted, hex) key file may be read.
    pub allow_plain: bool,
}

/// Reads the secret of a key file for `role`: a sealed file with the passphrase, a plain one
/// only if allowed. The errors name the file, never the secret.
pub fn read_secret(
    path: &Path,
    role: &str,
    unlock: &Unlock,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(SealError::io(path))?);
    match KeyFileKind::parse(&bytes)? {
        KeyFileKind::Sealed(k) => match &unlock.passphrase {
            Some(p) => k.open(role, p),
            None => Err(SealError::NoPassphrase(path.display().to_string())),
        },
        KeyFileKind::Plain(secret) if unlock.allow_plain => Ok(secret),
        KeyFileKind::Plain(_) => Err(SealError::PlainRefused(path.display().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s).unwrap()
    }

    #[test]
    fn round_trip_wrong_passphrase_role_and_rewrap() {
        let k =
            SealedKey::seal(b"secret-bytes", "r", &pass("a"), KdfParams::INSECURE_FAST).unwrap();
        let text = k.to_json();
        assert!(!text.contains(&hex::encode(b"secret-bytes")));
        let back = SealedKey::from_json(text.as_bytes()).unwrap();
        assert_eq!(
            back.open("r", &pass("a")).unwrap().as_slice(),
            b"secret-bytes"
        );
        assert!(matches!(
            back.open("r", &pass("b")),
            Err(SealError::WrongPassphrase)
        ));
        assert!(matches!(
            back.open("other", &pass("a")),
            Err(SealError::Role { .. })
        ));
        let re = back
            .rewrap(&pass("a"), &pass("b"), KdfParams::INSECURE_FAST)
            .unwrap();
        assert_eq!(
            re.open("r", &pass("b")).unwrap().as_slice(),
            b"secret-bytes"
        );
        assert!(matches!(
            re.open("r", &pass("a")),
            Err(SealError::WrongPassphrase)
        ));
        assert!(matches!(
            back.rewrap(&pass("wrong"), &pass("c"), KdfParams::INSECURE_FAST),
            Err(SealError::WrongPassphrase)
        ));
    }

    #[test]
    fn any_field_changed_fails() {
        let k = SealedKey::seal(b"s", "r", &pass("a"), KdfParams::INSECURE_FAST).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&k.to_json()).unwrap();
        v["kdf"]["t"] = serde_json::json!(2);
        let changed = SealedKey::from_json(v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            changed.open("r", &pass("a")),
            Err(SealError::WrongPassphrase)
        ));
        let mut v: serde_json::Value = serde_json::from_str(&k.to_json()).unwrap();
        v["role"] = serde_json::json!("x");
        let changed = SealedKey::from_json(v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            changed.open("x", &pass("a")),
            Err(SealError::WrongPassphrase)
        ));
        let mut v: serde_json::Value = serde_json::from_str(&k.to_json()).unwrap();
        v["version"] = serde_json::json!(2);
        let changed = SealedKey::from_json(v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            changed.open("r", &pass("a")),
            Err(SealError::Format(_))
        ));
    }

    #[test]
    fn plain_files_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.key");
        std::fs::write(&plain, "00ff\n").unwrap();
        let refuse = Unlock::default();
        assert!(matches!(
            read_secret(&plain, "r", &refuse),
            Err(SealError::PlainRefused(_))
        ));
        let allow = Unlock {
            passphrase: None,
            allow_plain: true,
        };
        assert_eq!(
            read_secret(&plain, "r", &allow).unwrap().as_slice(),
            &[0u8, 0xff]
        );
        let sealed = dir.path().join("sealed.key");
        SealedKey::seal(b"xy", "r", &pass("p"), KdfParams::INSECURE_FAST)
            .unwrap()
            .write(&sealed, false)
            .unwrap();
        assert!(matches!(
            read_secret(&sealed, "r", &allow),
            Err(SealError::NoPassphrase(_))
        ));
        let with = Unlock {
            passphrase: Some(pass("p")),
            allow_plain: false,
        };
        assert_eq!(read_secret(&sealed, "r", &with).unwrap().as_slice(), b"xy");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&sealed).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            SealedKey::seal(b"z", "r", &pass("p"), KdfParams::INSECURE_FAST)
                .unwrap()
                .write(&sealed, false),
            Err(SealError::Io { .. })
        ));
        std::fs::write(dir.path().join("junk.key"), "not a key").unwrap();
        assert!(matches!(
            read_secret(&dir.path().join("junk.key"), "r", &allow),
            Err(SealError::Format(_))
        ));
    }
}
