//! A node's TOML configuration ([`NodeConfig`] and its `#[serde(default)]` sections), validated
//! once at load, the node's key file ([`load_key`], [`NodeConfig::load_node_key`]), and the
//! errors of loading a node's files ([`NodeError`]).
//!
//! The key file is a sealed key file ([`medspace_seal::SealedKey`], role [`KEY_ROLE`]) opened
//! with the passphrase in `[node] key_passphrase_file`, else in the environment variable
//! [`KEY_PASSPHRASE_ENV`]. A plain key file (hex) loads only with `allow_plain_key = true`.

use crate::{block::BlockLimits, engine::EngineError, mempool::MempoolLimits};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::ed25519;
use medspace_seal::{PassphraseSource, SealError, Unlock};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Errors loading configuration or starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// File could not be read or written.
    #[error("io error: path={path} error={error}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        error: String,
    },
    /// File content is invalid.
    #[error("invalid {what}: path={path} error={error}")]
    Invalid {
        /// Kind of file.
        what: &'static str,
        /// The file.
        path: String,
        /// Cause.
        error: String,
    },
    /// A key file did not open: wrong passphrase, altered, plain where plain is not allowed,
    /// or no passphrase given.
    #[error("key file {path}: {source}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        source: SealError,
    },
    /// Engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The state sync this node's config asks for could not be fetched or did not check (and
    /// `sync_fallback_genesis` is off).
    #[error("state sync from peer=`{peer}` failed: {reason}")]
    StateSync {
        /// The peer validator's name.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// The role of a node's ledger key in a sealed key file.
pub const KEY_ROLE: &str = "ledger-ed25519";
/// The environment variable the key file's passphrase may come from.
pub const KEY_PASSPHRASE_ENV: &str = "MEDSPACE_KEY_PASSPHRASE";

/// An I/O error on `path`.
pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

/// `[node]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeSection {
    /// Node name.
    pub name: String,
    /// Data directory (storage, keys).
    pub data_dir: PathBuf,
    /// The node's ledger key: a sealed key file (or, with `allow_plain_key`, hex).
    pub key_file: PathBuf,
    /// A file holding the key file's passphrase (else [`KEY_PASSPHRASE_ENV`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Whether a plain (unencrypted, hex) key file may be loaded.
    pub allow_plain_key: bool,
    /// Genesis JSON.
    pub genesis_file: PathBuf,
    /// Tokio worker threads.
    pub worker_threads: usize,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "node".into(),
            data_dir: PathBuf::from("data"),
            key_file: PathBuf::from("node.key"),
            key_passphrase_file: None,
            allow_plain_key: false,
            genesis_file: PathBuf::from("genesis.json"),
            worker_threads: 2,
        }
    }
}

/// `[p2p]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct P2pSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Maximum message size in bytes.
    pub max_message_size: u32,
    /// Per-channel message rate (messages per second per peer).
    pub rate_per_second: u32,
    /// How many messages one peer may send on one channel at once, above the rate. The network
    /// preallocates an inbound slot for each (peers × burst per channel, plus the outbound
    /// router's sum of them), so this bounds a node's baseline memory: at a burst equal to
    /// the rate (10,000) the slots alone took about 900 MB per node.
    pub burst: u32,
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_message_size: 8 * 1024 * 1024,
            rate_per_second: 10_000,
            burst: 256,
        }
    }
}

/// `[http]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Maximum request body in bytes.
    pub body_limit: usize,
    /// Transaction submissions per second accepted by this node.
    pub submit_rate_per_second: u32,
    /// The node's TLS private key (PEM), for the certificate the genesis pins for it.
    pub tls_key_file: PathBuf,
    /// Serve plain HTTP when the genesis pins no certificate for this node (a development
    /// network only). Without it such a node refuses to start. It never
    /// turns TLS off for a node whose certificate is pinned.
    pub allow_plain: bool,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7500)),
            body_limit: 128 * 1024,
            submit_rate_per_second: 20_000,
            tls_key_file: PathBuf::from(crate::certs::KEY_FILE),
            allow_plain: false,
        }
    }
}

/// `[consensus]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsensusSection {
    /// Leader timeout in ms.
    pub leader_timeout_ms: u64,
    /// Certification timeout in ms.
    pub certification_timeout_ms: u64,
    /// Nullify retry in ms.
    pub timeout_retry_ms: u64,
    /// Fetch timeout in ms.
    pub fetch_timeout_ms: u64,
    /// Maximum clock drift accepted for a proposal, in ms.
    pub max_future_ms: u64,
    /// Maximum transactions per block.
    pub max_block_txs: usize,
    /// Maximum transaction size.
    pub max_tx_bytes: usize,
    /// Maximum block payload size.
    pub max_block_bytes: usize,
    /// Write a checkpoint of the committed state every this many finalized blocks, so that a
    /// restart replays only the blocks after it (0: never; a restart replays from genesis).
    pub checkpoint_every: u64,
    /// Prune finalized blocks and certificates below the older of the two kept checkpoints
    /// (`false`, the default: keep the whole chain, so this node serves every block to
    /// followers that verify from genesis and `audit verify` re-verifies all of it). Chooses the
    /// storage layout for the life of the node's storage; needs `checkpoint_every > 0`.
    pub prune: bool,
    /// Join by state sync: the name of a genesis validator whose checkpoint this validator
    /// starts from instead of fetching every block from genesis (reached at its API with the
    /// certificate the genesis pins). The checkpoint's certificate and records are checked
    /// against the genesis validators before anything is written. Used when this node's storage
    /// is empty or behind the checkpoint; a node with a chain of its own starts without it if
    /// the peer cannot be reached.
    pub sync_from: Option<String>,
    /// With `sync_from`, a node with no chain of its own whose peer cannot be reached or
    /// serves a checkpoint that does not check syncs from genesis instead of refusing to start
    /// (`false`, the default: it refuses).
    pub sync_fallback_genesis: bool,
    /// The most bytes of a peer's checkpoint a state sync takes (64 GiB by default). The
    /// checkpoint is built into the state store as it arrives and checked against the
    /// certified root only at its end, so without a cap a dishonest peer could stream records
    /// until the disk is full; past it the sync is refused and what it wrote is cut.
    pub sync_max_checkpoint_bytes: u64,
}

/// [`ConsensusSection::sync_max_checkpoint_bytes`] by default: 64 GiB, eight times a
/// checkpoint of 10 million patients with three consents each.
pub const SYNC_MAX_CHECKPOINT_BYTES: u64 = 64 << 30;

impl Default for ConsensusSection {
    fn default() -> Self {
        let limits = BlockLimits::default();
        Self {
            leader_timeout_ms: 1_000,
            certification_timeout_ms: 2_000,
            timeout_retry_ms: 5_000,
            fetch_timeout_ms: 2_000,
            max_future_ms: 5_000,
            max_block_txs: limits.max_txs,
            max_tx_bytes: limits.max_tx_bytes,
            max_block_bytes: limits.max_block_bytes,
            checkpoint_every: 256,
            prune: false,
            sync_from: None,
            sync_fallback_genesis: false,
            sync_max_checkpoint_bytes: SYNC_MAX_CHECKPOINT_BYTES,
        }
    }
}

/// `[mempool]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MempoolSection {
    /// Maximum pending transactions.
    pub max_txs: usize,
    /// Maximum pending bytes.
    pub max_bytes: usize,
}

impl Default for MempoolSection {
    fn default() -> Self {
        let l = MempoolLimits::default();
        Self {
            max_txs: l.max_txs,
            max_bytes: l.max_bytes,
        }
    }
}

/// A node's TOML configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeConfig {
    /// Identity and files.
    pub node: NodeSection,
    /// P2P.
    pub p2p: P2pSection,
    /// HTTP API.
    pub http: HttpSection,
    /// Consensus.
    pub consensus: ConsensusSection,
    /// Mempool.
    pub mempool: MempoolSection,
}

/// Why a node config is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML of a node config's shape.
    #[error("not a node config: {0}")]
    Shape(#[from] toml::de::Error),
    /// A value out of its range, or two values that do not fit together.
    #[error("{0}")]
    Range(String),
}

impl NodeConfig {
    /// Parses and validates a TOML config. Relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut c: NodeConfig = toml::from_str(text)?;
        for p in [
            &mut c.node.data_dir,
            &mut c.node.key_file,
            &mut c.node.genesis_file,
            &mut c.http.tls_key_file,
        ]
        .into_iter()
        .chain(c.node.key_passphrase_file.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Loads a TOML config file.
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| NodeError::Invalid {
            what: "node config",
            path: path.display().to_string(),
            error: e.to_string(),
        })
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |s: String| Err(ConfigError::Range(s));
        let c = &self.consensus;
        if c.leader_timeout_ms == 0 || c.certification_timeout_ms <= c.leader_timeout_ms {
            return range(format!(
                "consensus timeouts: need 0 < leader_timeout_ms < certification_timeout_ms, got leader_timeout_ms={} certification_timeout_ms={}",
                c.leader_timeout_ms, c.certification_timeout_ms
            ));
        }
        if c.timeout_retry_ms == 0 || c.fetch_timeout_ms == 0 {
            return range("consensus: timeout_retry_ms and fetch_timeout_ms must be > 0".into());
        }
        if c.max_block_txs == 0 || c.max_tx_bytes == 0 || c.max_block_bytes < c.max_tx_bytes {
            return range(format!(
                "consensus limits: max_block_txs={} max_tx_bytes={} max_block_bytes={}",
                c.max_block_txs, c.max_tx_bytes, c.max_block_bytes
            ));
        }
        if (self.p2p.max_message_size as usize) < c.max_block_bytes.saturating_add(64 * 1024) {
            return range(format!(
                "p2p.max_message_size={} must exceed consensus.max_block_bytes={} plus overhead",
                self.p2p.max_message_size, c.max_block_bytes
            ));
        }
        if self.p2p.rate_per_second == 0
            || self.p2p.burst == 0
            || self.http.submit_rate_per_second == 0
        {
            return range("rates and p2p.burst must be > 0".into());
        }
        if self.mempool.max_txs == 0 || self.node.worker_threads == 0 {
            return range("mempool.max_txs and node.worker_threads must be > 0".into());
        }
        if c.prune && c.checkpoint_every == 0 {
            return range("consensus.prune needs consensus.checkpoint_every > 0".into());
        }
        Ok(())
    }

    /// How this node's key file opens: the passphrase from `key_passphrase_file` or the
    /// environment, and whether a plain key file is allowed.
    pub fn key_unlock(&self) -> Result<Unlock, NodeError> {
        let source = PassphraseSource {
            file: self.node.key_passphrase_file.clone(),
            env: Some(KEY_PASSPHRASE_ENV.into()),
        };
        let passphrase = source.resolve().map_err(|source| NodeError::Key {
            path: self.node.key_file.display().to_string(),
            source,
        })?;
        Ok(Unlock {
            passphrase,
            allow_plain: self.node.allow_plain_key,
        })
    }

    /// Loads this node's ledger key (see [`NodeConfig::key_unlock`]).
    pub fn load_node_key(&self) -> Result<ed25519::PrivateKey, NodeError> {
        load_key(&self.node.key_file, &self.key_unlock()?)
    }

    /// The block limits of the `[consensus]` section.
    pub(crate) fn block_limits(&self) -> BlockLimits {
        BlockLimits {
            max_txs: self.consensus.max_block_txs,
            max_tx_bytes: self.consensus.max_tx_bytes,
            max_block_bytes: self.consensus.max_block_bytes,
        }
    }
}

/// Reads a ledger key file: sealed (opened with the passphrase in `unlock`), or plain hex if
/// `unlock` allows it. A wrong passphrase is [`NodeError::Key`] with
/// [`SealError::WrongPassphrase`].
pub fn load_key(path: &Path, unlock: &Unlock) -> Result<ed25519::PrivateKey, NodeError> {
    let secret = medspace_seal::read_secret(path, KEY_ROLE, unlock).map_err(|e| match e {
        SealError::Io { source, .. } => io(path, source),
        SealError::Format(_) => NodeError::Invalid {
            what: "key file",
            path: path.display().to_string(),
            error: "neither a sealed key file nor hex".into(),
        },
        source => NodeError::Key {
            path: path.display().to_string(),
            source,
        },
    })?;
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(&secret)).map_err(|_| {
        NodeError::Invalid {
            what: "key file",
            path: path.display().to_string(),
            error: "not an ed25519 private key".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c = NodeConfig::from_toml("[node]\nname = \"a\"\n", Path::new("/x")).unwrap();
        assert_eq!(c.node.data_dir, PathBuf::from("/x/data"));
        assert!(
            NodeConfig::from_toml("[consensus]\nleader_timeout_ms = 0\n", Path::new("/x")).is_err()
        );
        assert!(NodeConfig::from_toml("[p2p]\nmax_message_size = 10\n", Path::new("/x")).is_err());
        assert!(NodeConfig::from_toml("nonsense = [", Path::new("/x")).is_err());
        let c = NodeConfig::from_toml("[node]\nkey_passphrase_file = \"p\"\n", Path::new("/x"))
            .unwrap();
        assert_eq!(c.node.key_passphrase_file, Some(PathBuf::from("/x/p")));
        assert!(!c.node.allow_plain_key);
    }

    #[test]
    fn key_files_sealed_plain_and_wrong_passphrase() {
        use commonware_cryptography::Signer as _;
        use medspace_seal::{KdfParams, Passphrase, SealedKey};
        let dir = std::env::temp_dir().join(format!("medspace-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = ed25519::PrivateKey::decode(bytes::Bytes::from_static(&[7u8; 32])).unwrap();
        let secret = commonware_codec::Encode::encode(&key).to_vec();
        let sealed_path = dir.join("sealed.key");
        let _ = std::fs::remove_file(&sealed_path);
        let pass = Passphrase::new("right").unwrap();
        SealedKey::seal(&secret, KEY_ROLE, &pass, KdfParams::INSECURE_FAST)
            .unwrap()
            .write(&sealed_path, false)
            .unwrap();
        let before = std::fs::read(&sealed_path).unwrap();
        let unlock = |p: Option<&str>, allow_plain| Unlock {
            passphrase: p.map(|p| Passphrase::new(p).unwrap()),
            allow_plain,
        };
        // No key bytes in the clear: neither raw nor hex (nor any 8-byte run of either).
        let contains = |needle: &[u8]| before.windows(needle.len()).any(|w| w == needle);
        let hex_secret = hex::encode(&secret);
        for i in 0..secret.len() - 8 {
            assert!(!contains(&secret[i..i + 8]));
            assert!(!contains(&hex_secret.as_bytes()[2 * i..2 * i + 16]));
        }
        let loaded = load_key(&sealed_path, &unlock(Some("right"), false)).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(
            load_key(&sealed_path, &unlock(Some("wrong"), false)),
            Err(NodeError::Key {
                source: SealError::WrongPassphrase,
                ..
            })
        ));
        assert!(matches!(
            load_key(&sealed_path, &unlock(None, true)),
            Err(NodeError::Key {
                source: SealError::NoPassphrase(_),
                ..
            })
        ));
        assert_eq!(
            std::fs::read(&sealed_path).unwrap(),
            before,
            "nothing changed"
        );
        let plain_path = dir.join("plain.key");
        std::fs::write(&plain_path, hex::encode(&secret)).unwrap();
        assert!(matches!(
            load_key(&plain_path, &unlock(Some("right"), false)),
            Err(NodeError::Key {
                source: SealError::PlainRefused(_),
                ..
            })
        ));
        assert_eq!(
            load_key(&plain_path, &unlock(None, true))
                .unwrap()
                .public_key(),
            key.public_key()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
