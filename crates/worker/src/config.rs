//! The `[worker]` section of a node's TOML config, and the keys it names.
//!
//! ```toml
//! [worker]
//! member = "hospital-a"                  # the institution this node computes for
//! node_key_file = "member-node.key"      # the member's node key (sealed key file): signs the
//!                                        # round's messages, results and access records
//! agreement_key_file = "agreement.key"   # its X25519 secret (sealed key file): pairwise masks
//! vault_dir = "."                        # the vault and patient links (default: the node dir)
//! share_timeout_ms = 10000               # how long the aggregator waits for a site's share
//! [worker.peers]                         # member -> base url (default: genesis node of that name)
//! hospital-b = "https://hospital-b:7501"  # the name resolves to its genesis address
//! ```
//!
//! Both key files are sealed key files ([`medspace_seal::SealedKey`], roles [`NODE_KEY_ROLE`]
//! and [`AGREEMENT_KEY_ROLE`]) opened with the node's key passphrase (`[node]
//! key_passphrase_file`, else the environment); plain hex only where the node allows plain key
//! files (`[node] allow_plain_key`).
//!
//! The node never holds its member's **member key** (governance, users, catalog): that key is
//! the CLI's (`--key`, role [`MEMBER_KEY_ROLE`]). The node key can do node work only, and the
//! member key replaces it if the node is compromised.

use crate::WorkerError;
use medspace_state::State;
use medspace_types::{Keypair, MemberId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// The role of a member's ledger key (its member key) in a sealed key file.
pub const MEMBER_KEY_ROLE: &str = "member-ed25519";
/// The role of a member's node key in a sealed key file.
pub const NODE_KEY_ROLE: &str = "member-node-ed25519";
/// The usual file name of a member's node key in its node's directory.
pub const NODE_KEY_FILE: &str = "member-node.key";
/// The role of a member's X25519 agreement secret in a sealed key file.
pub const AGREEMENT_KEY_ROLE: &str = "agreement-x25519";

/// The `[worker]` section as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The member this node computes for.
    pub member: String,
    /// The member's node key (sealed key file): never the member key.
    pub node_key_file: PathBuf,
    /// The member's 32-byte X25519 secret (sealed key file).
    pub agreement_key_file: PathBuf,
    /// Directory of the vault and the patient links (default: the config's directory).
    #[serde(default)]
    pub vault_dir: Option<PathBuf>,
    /// Other members' worker base URLs (default: the genesis node with the member's name).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// How long the aggregator waits for each site's share before treating it as dropped.
    #[serde(default = "default_share_timeout_ms")]
    pub share_timeout_ms: u64,
}

fn default_share_timeout_ms() -> u64 {
    10_000
}

#[derive(Deserialize)]
struct FileWithWorker {
    worker: Option<WorkerSection>,
}

/// Reads the optional `[worker]` section of the node config at `path` (other sections are the
/// chain's). Relative paths are resolved against the config's directory.
pub fn load_section(path: &Path) -> Result<Option<WorkerSection>, WorkerError> {
    let text = std::fs::read_to_string(path).map_err(|e| WorkerError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    let file: FileWithWorker = toml::from_str(&text).map_err(|e| WorkerError::Config {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(file.worker.map(|mut w| {
        for p in [&mut w.node_key_file, &mut w.agreement_key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        w.vault_dir = Some(match w.vault_dir.take() {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p,
            None => base.to_path_buf(),
        });
        w
    }))
}

/// A worker's settings with its keys loaded and checked against the ledger.
pub struct Prepared {
    /// The member.
    pub member: MemberId,
    /// Its node key.
    pub key: Keypair,
    /// Its X25519 secret.
    pub secret: StaticSecret,
    /// Vault and links.
    pub vault_dir: PathBuf,
    /// Where the worker keeps its shares and results.
    pub store_dir: PathBuf,
    /// Other members' worker base URLs.
    pub peers: BTreeMap<MemberId, String>,
    /// Aggregator's wait for a share.
    pub share_timeout: Duration,
    /// The chain id transactions are signed for.
    pub chain_id: medspace_types::Name,
}

/// The secret of a key file for `role` (sealed, or plain hex where `unlock` allows it).
fn read_key(
    path: &Path,
    role: &str,
    what: &'static str,
    unlock: &medspace_seal::Unlock,
) -> Result<zeroize::Zeroizing<Vec<u8>>, WorkerError> {
    medspace_seal::read_secret(path, role, unlock).map_err(|e| match e {
        medspace_seal::SealError::Io { source, .. } => WorkerError::Io {
            path: format!("{what} {}", path.display()),
            error: source.to_string(),
        },
        other => WorkerError::Invalid {
            what,
            error: format!("{other}: path={}", path.display()),
        },
    })
}

/// How the command line opens a member's, user's or node's key file: sealed under the
/// passphrase in `MEDSPACE_KEY_PASSPHRASE` when set, or plain hex.
pub fn cli_unlock() -> Result<medspace_seal::Unlock, WorkerError> {
    let passphrase = medspace_seal::PassphraseSource {
        file: None,
        env: Some(medspace_chain::node::KEY_PASSPHRASE_ENV.into()),
    }
    .resolve()
    .map_err(|e| WorkerError::Invalid {
        what: "key passphrase",
        error: e.to_string(),
    })?;
    Ok(medspace_seal::Unlock {
        passphrase,
        allow_plain: true,
    })
}

/// A member's ledger key from the key file at `path` (sealed, or plain where `unlock` allows).
pub fn load_member_key(
    path: &Path,
    unlock: &medspace_seal::Unlock,
) -> Result<Keypair, WorkerError> {
    let secret = read_key(path, MEMBER_KEY_ROLE, "member key file", unlock)?;
    let hex = zeroize::Zeroizing::new(hex::encode(secret.as_slice()));
    Keypair::from_secret_hex(&hex).map_err(|e| WorkerError::Invalid {
        what: "member key file",
        error: format!("{e}: path={}", path.display()),
    })
}

/// A member's node key from the key file at `path` (sealed, or plain where `unlock` allows).
pub fn load_node_key(path: &Path, unlock: &medspace_seal::Unlock) -> Result<Keypair, WorkerError> {
    let secret = read_key(path, NODE_KEY_ROLE, "node key file", unlock)?;
    let hex = zeroize::Zeroizing::new(hex::encode(secret.as_slice()));
    Keypair::from_secret_hex(&hex).map_err(|e| WorkerError::Invalid {
        what: "node key file",
        error: format!("{e}: path={}", path.display()),
    })
}

/// Loads the section's keys and checks them against `state` (the member exists, its current
/// node key and its registered agreement key are the ones in the files). `default_peers` maps member
/// names to URLs for members the section does not list; `store_dir` is the node's own;
/// `unlock` opens the key files.
pub fn prepare(
    section: &WorkerSection,
    state: &State,
    chain_id: &str,
    default_peers: &BTreeMap<String, String>,
    store_dir: &Path,
    unlock: &medspace_seal::Unlock,
) -> Result<Prepared, WorkerError> {
    let member = MemberId::new(&section.member).map_err(|e| WorkerError::Invalid {
        what: "worker member",
        error: format!("{e}: member={}", section.member),
    })?;
    let key = load_node_key(&section.node_key_file, unlock)?;
    let raw = read_key(
        &section.agreement_key_file,
        AGREEMENT_KEY_ROLE,
        "agreement key file",
        unlock,
    )?;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    if raw.len() != bytes.len() {
        return Err(WorkerError::Invalid {
            what: "agreement key file",
            error: format!(
                "expected a 32-byte secret: path={}",
                section.agreement_key_file.display()
            ),
        });
    }
    bytes.copy_from_slice(&raw);
    let secret = StaticSecret::from(*bytes);
    let record = state
        .member(&member)
        .map_err(|e| WorkerError::Invalid {
            what: "ledger",
            error: e.to_string(),
        })?
        .ok_or_else(|| WorkerError::Invalid {
            what: "worker member",
            error: format!("not a member of the consortium: member={member}"),
        })?;
    if record.member.node_key != key.public() {
        let error = if record.member.key == key.public() {
            format!(
                "the file holds {member}'s member key; a node runs with its node key only (the member key stays with the CLI)"
            )
        } else {
            format!(
                "the key is not {member}'s current node key: key={}",
                key.public().to_hex()
            )
        };
        return Err(WorkerError::Invalid {
            what: "node key file",
            error,
        });
    }
    if record.member.agreement_key.0 != XPublic::from(&secret).to_bytes() {
        return Err(WorkerError::Invalid {
            what: "agreement key file",
            error: format!("the secret does not match {member}'s registered agreement key"),
        });
    }
    let chain_id = medspace_types::Name::new(chain_id).map_err(|e| WorkerError::Invalid {
        what: "chain id",
        error: e.to_string(),
    })?;
    let mut peers = BTreeMap::new();
    for (name, url) in default_peers.iter().chain(&section.peers) {
        if let Ok(m) = MemberId::new(name) {
            peers.insert(m, url.trim_end_matches('/').to_string());
        }
    }
    Ok(Prepared {
        member,
        key,
        secret,
        vault_dir: section
            .vault_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".")),
        store_dir: store_dir.to_path_buf(),
        peers,
        share_timeout: Duration::from_millis(section.share_timeout_ms.max(1)),
        chain_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_parses_beside_other_sections_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[node]\nname = \"a\"\n[worker]\nmember = \"hospital-a\"\nnode_key_file = \"m.key\"\nagreement_key_file = \"/abs/x.key\"\n",
        )
        .unwrap();
        let w = load_section(&path).unwrap().unwrap();
        assert_eq!(w.node_key_file, dir.path().join("m.key"));
        assert_eq!(w.agreement_key_file, PathBuf::from("/abs/x.key"));
        assert_eq!(w.vault_dir.as_deref(), Some(dir.path()));
        assert_eq!(w.share_timeout_ms, 10_000);
        std::fs::write(&path, "[node]\nname = \"a\"\n").unwrap();
        assert!(load_section(&path).unwrap().is_none());
        std::fs::write(&path, "[worker]\nmember = \"a\"\nbogus = 1\n").unwrap();
        let err = load_section(&path).unwrap_err().to_string();
        assert!(err.contains("node.toml"), "{err}");
    }

    #[test]
    fn a_worker_starts_with_its_node_key_and_refuses_the_member_key() {
        use medspace_seal::{KdfParams, Passphrase, SealedKey, Unlock};
        let dir = tempfile::tempdir().unwrap();
        let c = medspace_consortium::Consortium::default_devnet(7, 0).unwrap();
        let state = State::genesis(&c.genesis).unwrap();
        let pass = Passphrase::generate();
        let seal = |file: &str, role: &str, secret: &[u8]| {
            let path = dir.path().join(file);
            SealedKey::seal(secret, role, &pass, KdfParams::INSECURE_FAST)
                .unwrap()
                .write(&path, false)
                .unwrap();
            path
        };
        let raw = |k: &Keypair| hex::decode(k.secret_hex()).unwrap();
        let agreement = seal(
            "agreement.key",
            AGREEMENT_KEY_ROLE,
            &c.agreement("hospital-a").to_bytes(),
        );
        let node = seal(
            "node.key",
            NODE_KEY_ROLE,
            &raw(c.node_key("hospital-a").unwrap()),
        );
        // The member key, sealed as if it were a node key: refused, saying why.
        let member = seal(
            "member-as-node.key",
            NODE_KEY_ROLE,
            &raw(c.member_key("hospital-a").unwrap()),
        );
        let section = |node_key_file: &Path| WorkerSection {
            member: "hospital-a".into(),
            node_key_file: node_key_file.to_path_buf(),
            agreement_key_file: agreement.clone(),
            vault_dir: None,
            peers: BTreeMap::new(),
            share_timeout_ms: 1_000,
        };
        let unlock = Unlock {
            passphrase: Some(pass.clone()),
            allow_plain: false,
        };
        let prepare_with = |file: &Path| {
            prepare(
                &section(file),
                &state,
                "medspace-devnet",
                &BTreeMap::new(),
                dir.path(),
                &unlock,
            )
        };
        let p = prepare_with(&node).unwrap();
        assert_eq!(p.key.public(), c.node_key("hospital-a").unwrap().public());
        let err = prepare_with(&member).err().unwrap().to_string();
        assert!(err.contains("member key"), "{err}");
        // A member key file (its own role) is not a node key file either.
        let member_file = seal(
            "member.key",
            MEMBER_KEY_ROLE,
            &raw(c.member_key("hospital-a").unwrap()),
        );
        assert!(prepare_with(&member_file).is_err());
    }
}
