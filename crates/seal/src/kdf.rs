//! Passphrases, where they come from, and argon2id turning one into a 256-bit key.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::SealError;

/// A passphrase, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Passphrase {
    /// A passphrase from its text. An empty passphrase is refused.
    pub fn new(text: impl Into<String>) -> Result<Passphrase, SealError> {
        let text = Zeroizing::new(text.into());
        if text.is_empty() {
            return Err(SealError::Kdf("empty passphrase".into()));
        }
        Ok(Passphrase(text))
    }

    /// Reads a passphrase file: its text without the trailing line break. On Unix a file that
    /// its group or others may read or write is refused ([`SealError::Exposed`]), as ssh does
    /// with private keys: `chmod 600` it.
    pub fn from_file(path: &Path) -> Result<Passphrase, SealError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(SealError::io(path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(SealError::Exposed(path.display().to_string()));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(SealError::io(path))?);
        Passphrase::new(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// A fresh random passphrase (32 bytes of randomness as hex), for generated deployments
    /// such as the devnet.
    pub fn generate() -> Passphrase {
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        Passphrase(Zeroizing::new(hex::encode(bytes.as_slice())))
    }

    /// The passphrase's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Writes the passphrase to a new owner-only file (see [`crate::write_private`]).
    pub fn write_new(&self, path: &Path) -> Result<(), SealError> {
        crate::file::write_private(path, format!("{}\n", self.0.as_str()).as_bytes(), false)
    }
}

/// Where a passphrase comes from: a file named in a config, else an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassphraseSource {
    /// A passphrase file (one line), if the config names one.
    pub file: Option<PathBuf>,
    /// The environment variable consulted when no file is named.
    pub env: Option<String>,
}

impl PassphraseSource {
    /// The passphrase, if either source gives one: the file when named (an unreadable file is
    /// an error), else a non-empty environment variable, else `None`.
    pub fn resolve(&self) -> Result<Option<Passphrase>, SealError> {
        if let Some(file) = &self.file {
            return Passphrase::from_file(file).map(Some);
        }
        if let Some(var) = &self.env
            && let Ok(text) = std::env::var(var)
            && !text.is_empty()
        {
            return Passphrase::new(text).map(Some);
        }
        Ok(None)
    }
}

/// Argon2id parameters, recorded beside everything sealed with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 2 passes, 1 lane. About 60–100 ms on one core of a current
    /// machine (measured by `medspace vault rewrap`'s timing and the seal crate's tests): paid
    /// once when a node starts or a vault is opened, never per file.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 2,
        p: 1,
    };

    /// The smallest parameters argon2 accepts; for tests only, where the cost of the real ones
    /// would dominate.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    /// Largest memory a file may ask for (1 GiB): a doctored file cannot make us allocate more.
    const MAX_M_KIB: u32 = 1 << 20;
    const MAX_T: u32 = 64;
    const MAX_P: u32 = 16;

    fn argon2(&self) -> Result<argon2::Argon2<'static>, SealError> {
        if self.m_kib > Self::MAX_M_KIB || self.t > Self::MAX_T || self.p > Self::MAX_P {
            return Err(SealError::Kdf(format!(
                "parameters out of range: m_kib={} t={} p={}",
                self.m_kib, self.t, self.p
            )));
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| SealError::Kdf(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Derives a 256-bit key from a passphrase and a salt.
    pub fn derive(
        &self,
        passphrase: &Passphrase,
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.argon2()?
            .hash_password_into(passphrase.expose(), salt, out.as_mut_slice())
            .map_err(|e| SealError::Kdf(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_passphrase_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pass");
        Passphrase::new("s3cret").unwrap().write_new(&path).unwrap();
        assert_eq!(Passphrase::from_file(&path).unwrap().expose(), b"s3cret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(SealError::Exposed(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Passphrase::from_file(&path).is_ok());
    }

    #[test]
    fn same_inputs_same_key_and_any_change_changes_it() {
        let p = Passphrase::new("correct horse").unwrap();
        let k = KdfParams::INSECURE_FAST;
        let a = k.derive(&p, b"0123456789abcdef").unwrap();
        assert_eq!(*a, *k.derive(&p, b"0123456789abcdef").unwrap());
        assert_ne!(*a, *k.derive(&p, b"0123456789abcdeF").unwrap());
        let q = Passphrase::new("correct horsf").unwrap();
        assert_ne!(*a, *k.derive(&q, b"0123456789abcdef").unwrap());
        let huge = KdfParams {
            m_kib: u32::MAX,
            ..k
        };
        assert!(matches!(
            huge.derive(&p, b"0123456789abcdef"),
            Err(SealError::Kdf(_))
        ));
        assert!(Passphrase::new("").is_err());
        assert_eq!(format!("{p:?}"), "Passphrase(..)");
    }

    #[test]
    fn source_prefers_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        crate::write_private(&file, b"from-file\n", false).unwrap();
        let s = PassphraseSource {
            file: Some(file),
            env: Some("MEDSPACE_SEAL_TEST_UNSET_VARIABLE".into()),
        };
        assert_eq!(s.resolve().unwrap().unwrap().expose(), b"from-file");
        let none = PassphraseSource {
            file: None,
            env: Some("MEDSPACE_SEAL_TEST_UNSET_VARIABLE".into()),
        };
        assert!(none.resolve().unwrap().is_none());
        let missing = PassphraseSource {
            file: Some(dir.path().join("absent")),
            env: None,
        };
        assert!(matches!(missing.resolve(), Err(SealError::Io { .. })));
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// Prints how long one unlock with the default parameters takes (run with `--ignored
    /// --nocapture` in a release build to choose the parameters).
    #[test]
    #[ignore]
    fn default_params_cost() {
        let p = Passphrase::generate();
        let t = std::time::Instant::now();
        for _ in 0..5 {
            KdfParams::DEFAULT.derive(&p, b"0123456789abcdef").unwrap();
        }
        println!(
            "argon2id default: {:.1} ms per derivation",
            t.elapsed().as_secs_f64() * 200.0
        );
    }
}
