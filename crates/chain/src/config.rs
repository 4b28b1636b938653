//! A node's TOML configuration ([`NodeConfig`] and its `#[serde(default)]` sections), validated
//! once at load, the node's key file ([`load_key`]), and the errors of loading a node's files
//! ([`NodeError`]).

use crate::{block::BlockLimits, engine::EngineError, mempool::MempoolLimits};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::ed25519;
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
    /// Engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// An I/O error on `path`.
pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

/// Writes `content` to a new file at `path` readable by its owner only (a key).
pub(crate) fn write_secret(path: &Path, content: &str) -> Result<(), NodeError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| io(path, e))?;
    f.write_all(content.as_bytes()).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// `[node]` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeSection {
    /// Node name.
    pub name: String,
    /// Data directory (storage, keys).
    pub data_dir: PathBuf,
    /// Hex private key file.
    pub key_file: PathBuf,
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
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            max_message_size: 8 * 1024 * 1024,
            rate_per_second: 10_000,
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
}

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
        ] {
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
        if self.p2p.rate_per_second == 0 || self.http.submit_rate_per_second == 0 {
            return range("rates must be > 0".into());
        }
        if self.mempool.max_txs == 0 || self.node.worker_threads == 0 {
            return range("mempool.max_txs and node.worker_threads must be > 0".into());
        }
        Ok(())
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

/// Reads a hex private key file.
pub fn load_key(path: &Path) -> Result<ed25519::PrivateKey, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|_| NodeError::Invalid {
        what: "key file",
        path: path.display().to_string(),
        error: "not hex".into(),
    })?;
    ed25519::PrivateKey::decode(bytes::Bytes::from(bytes)).map_err(|_| NodeError::Invalid {
        what: "key file",
        path: path.display().to_string(),
        error: "not an ed25519 private key".into(),
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
    }
}
