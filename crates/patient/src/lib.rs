//! medspace-patient: what a patient holds and checks.
//!
//! - [`Wallet`]: the patient's signing key and pseudonym, in a file only they can read. The
//!   ledger sees only the pseudonym, derived from the key.
//! - [`AuthCode`]: an authorization code the patient hands to an insurer or another hospital:
//!   16 Crockford base-32 characters (80 bits from the OS's CSPRNG), shown as
//!   `XXXX-XXXX-XXXX-XXXX` and as a QR code; only its salted hash goes on the ledger.
//! - [`verify_log`]: checks every entry of the patient's log against the state root that a
//!   finalized block header commits to.

use medspace_types::{Hash, Keypair, PatientId, PublicKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Errors of the patient's tools.
#[derive(Debug, thiserror::Error)]
pub enum PatientError {
    /// Reading or writing the wallet failed.
    #[error("wallet file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The wallet file does not parse.
    #[error("wallet file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Refusing to overwrite a wallet.
    #[error("wallet file {path} exists: refusing to overwrite a patient's key")]
    Exists {
        /// The file.
        path: String,
    },
    /// A code that is not 16 base-32 characters.
    #[error(
        "malformed authorization code: expected 16 characters of 0-9 and A-Z (without I, L, O, U)"
    )]
    BadCode,
    /// A QR image could not be made.
    #[error("cannot render qr code: {0}")]
    Qr(String),
}

/// A patient's wallet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Wallet {
    /// The secret key, hex.
    secret: String,
    /// The pseudonym the ledger knows.
    pub patient: PatientId,
    /// Hospitals that confirmed a link to this patient's records, with the patient's local id
    /// there (kept only here and in that hospital's vault).
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A hospital's confirmed link to the patient's local record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The hospital.
    pub member: String,
    /// The hospital node's API endpoint.
    pub endpoint: String,
}

impl Wallet {
    /// A new wallet with a fresh key.
    pub fn generate() -> Self {
        Self::from_key(&Keypair::generate(rand::rng()))
    }

    /// A wallet for an existing key (e.g. the devnet's deterministic patients).
    pub fn from_key(key: &Keypair) -> Self {
        Self {
            secret: key.secret_hex(),
            patient: PatientId::from_key(&key.public()),
            links: Vec::new(),
        }
    }

    /// The signing key.
    pub fn key(&self) -> Result<Keypair, PatientError> {
        Keypair::from_secret_hex(&self.secret).map_err(|e| PatientError::Malformed {
            path: "-".into(),
            reason: e.to_string(),
        })
    }

    /// The public key.
    pub fn public(&self) -> Result<PublicKey, PatientError> {
        Ok(self.key()?.public())
    }

    /// Writes a new wallet file, readable only by its owner; never overwrites.
    pub fn create(&self, path: &Path) -> Result<(), PatientError> {
        let io = |source| PatientError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PatientError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                io(e)
            }
        })?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| PatientError::Malformed {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::io::Write::write_all(&mut f, &json).map_err(io)
    }

    /// Saves changes (links) to an existing wallet file, atomically.
    pub fn save(&self, path: &Path) -> Result<(), PatientError> {
        let io = |source| PatientError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| PatientError::Malformed {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a wallet file and checks that its pseudonym matches its key.
    pub fn load(path: &Path) -> Result<Self, PatientError> {
        let bytes = std::fs::read(path).map_err(|source| PatientError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let w: Wallet = serde_json::from_slice(&bytes).map_err(|e| PatientError::Malformed {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let key = w.key().map_err(|_| PatientError::Malformed {
            path: path.display().to_string(),
            reason: "bad secret key".into(),
        })?;
        if PatientId::from_key(&key.public()) != w.patient {
            return Err(PatientError::Malformed {
                path: path.display().to_string(),
                reason: "pseudonym does not match the key".into(),
            });
        }
        Ok(w)
    }
}

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An authorization code.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCode(String);

impl std::fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCode(..)")
    }
}

impl AuthCode {
    /// A fresh code: 80 bits from the operating system's CSPRNG.
    pub fn generate() -> Self {
        use rand::Rng as _;
        let mut bytes = [0u8; 10];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_entropy(&bytes)
    }

    fn from_entropy(bytes: &[u8; 10]) -> Self {
        let mut acc: u128 = 0;
        for b in bytes {
            acc = (acc << 8) | u128::from(*b);
        }
        let mut s = String::with_capacity(16);
        for i in (0..16).rev() {
            let idx = ((acc >> (i * 5)) & 31) as usize;
            s.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'0')));
        }
        Self(s)
    }

    /// Parses a code as typed by a person: case, dashes and spaces do not matter; the
    /// look-alikes `I`, `L` (one) and `O` (zero) are read as Crockford says.
    pub fn parse(s: &str) -> Result<Self, PatientError> {
        let mut out = String::with_capacity(16);
        for c in s.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            if !ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
                return Err(PatientError::BadCode);
            }
            out.push(c);
        }
        if out.len() != 16 {
            return Err(PatientError::BadCode);
        }
        Ok(Self(out))
    }

    /// The canonical form, `XXXX-XXXX-XXXX-XXXX`.
    pub fn display(&self) -> String {
        let b = self.0.as_bytes();
        b.chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The hash the ledger stores for this code of `patient`.
    pub fn hash(&self, patient: &PatientId) -> Hash {
        medspace_types::code_hash(patient, &self.0)
    }

    /// The code as a QR image (SVG), to show on a phone.
    pub fn qr_svg(&self, grant: &str) -> Result<String, PatientError> {
        let payload = format!("medspace:grant={grant};code={}", self.display());
        let code =
            qrcode::QrCode::new(payload.as_bytes()).map_err(|e| PatientError::Qr(e.to_string()))?;
        Ok(code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(240, 240)
            .build())
    }
}

/// One verified entry of a patient's log.
#[derive(Clone, Debug)]
pub struct VerifiedEntry {
    /// The entry.
    pub entry: medspace_state::records::LogEntry,
    /// Its proof's length.
    pub proof_steps: usize,
}

/// Why a log did not verify.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An entry's proof does not match the root.
    #[error("log entry {index} fails its proof: {source}")]
    Proof {
        /// Its position.
        index: usize,
        /// The proof error.
        source: medspace_state::trie::ProofError,
    },
    /// An entry's key is not in this patient's log.
    #[error("log entry {index} is not in this patient's log")]
    Foreign {
        /// Its position.
        index: usize,
    },
    /// An entry does not decode.
    #[error("log entry {index} does not decode")]
    Decode {
        /// Its position.
        index: usize,
    },
}

/// A log entry as the API returns it: key, canonical value and proof.
#[derive(Clone, Debug, Deserialize)]
pub struct WireEntry {
    /// Hex key.
    pub key: String,
    /// Hex canonical value.
    pub value: String,
    /// Inclusion proof.
    pub proof: medspace_state::trie::Proof,
}

/// Verifies every entry of `patient`'s log against `root` (which the caller has checked against
/// a finalized block header): each key must be in this patient's log, each proof must hold.
pub fn verify_log(
    patient: &PatientId,
    root: &Hash,
    entries: &[WireEntry],
) -> Result<Vec<VerifiedEntry>, LogError> {
    use commonware_codec::DecodeExt as _;
    let prefix = medspace_state::records::keys::patient_log_of(patient);
    let mut out = Vec::with_capacity(entries.len());
    for (index, e) in entries.iter().enumerate() {
        let key = hex::decode(&e.key).map_err(|_| LogError::Decode { index })?;
        let value = hex::decode(&e.value).map_err(|_| LogError::Decode { index })?;
        if !key.starts_with(&prefix) {
            return Err(LogError::Foreign { index });
        }
        e.proof
            .verify(root, &key, &value)
            .map_err(|source| LogError::Proof { index, source })?;
        let entry = medspace_state::records::LogEntry::decode(value)
            .map_err(|_| LogError::Decode { index })?;
        out.push(VerifiedEntry {
            entry,
            proof_steps: e.proof.path.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_normalize() {
        let c = AuthCode::generate();
        let shown = c.display();
        assert_eq!(shown.len(), 19);
        assert_eq!(AuthCode::parse(&shown).unwrap(), c);
        assert_eq!(
            AuthCode::parse(&shown.to_lowercase().replace('-', " ")).unwrap(),
            c
        );
        assert!(AuthCode::parse("ABCD").is_err());
        assert!(
            AuthCode::parse("ABCD-EFGH-JKMN-PQRU").is_err(),
            "U is not in the alphabet"
        );
        assert_eq!(
            AuthCode::parse("OOOO-IIII-LLLL-0000").unwrap().display(),
            "0000-1111-1111-0000"
        );
        let p = PatientId([7; 32]);
        assert_eq!(c.hash(&p), AuthCode::parse(&shown).unwrap().hash(&p));
        assert_ne!(c.hash(&p), c.hash(&PatientId([8; 32])));
        assert!(c.qr_svg("g-1").unwrap().starts_with("<?xml"));
    }

    #[test]
    fn two_codes_differ() {
        assert_ne!(AuthCode::generate(), AuthCode::generate());
    }

    #[test]
    fn wallet_round_trips_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("medspace-wallet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.json");
        let w = Wallet::generate();
        w.create(&path).unwrap();
        assert!(matches!(
            Wallet::generate().create(&path),
            Err(PatientError::Exists { .. })
        ));
        let back = Wallet::load(&path).unwrap();
        assert_eq!(back.patient, w.patient);
        std::fs::write(&path, b"{}").unwrap();
        assert!(Wallet::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
