//! Running a node on the tokio runtime with real TCP p2p (commonware `lookup` network):
//! consortium spec → keys + genesis + one TOML config per node ([`init_consortium`]), and
//! [`run_node`] / [`start_node`] to run one validator from its config.

use crate::{
    Application,
    block::BlockLimits,
    engine::{self, Channels, Handle, PublicKey, channel},
    mempool::MempoolLimits,
};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519};
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Supervisor as _};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
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
    Engine(#[from] engine::EngineError),
}

fn io(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

/// One member of a consortium spec.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpecNode {
    /// Node name (institution), used for file names.
    pub name: String,
    /// Whether it votes.
    #[serde(default = "yes")]
    pub validator: bool,
    /// P2P address other nodes dial.
    pub p2p: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
}

fn yes() -> bool {
    true
}

/// Input of [`init_consortium`] (TOML or JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConsortiumSpec {
    /// Chain id.
    pub chain_id: String,
    /// Nodes.
    pub nodes: Vec<SpecNode>,
    /// Initial members, users and policy, interpreted by the application.
    #[serde(default)]
    pub app: serde_json::Value,
}

/// A validator in the genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenesisValidator {
    /// Name.
    pub name: String,
    /// Hex ed25519 public key.
    pub public_key: String,
    /// P2P address.
    pub p2p: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
}

/// The genesis file (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Genesis {
    /// Chain id.
    pub chain_id: String,
    /// Validators.
    pub validators: Vec<GenesisValidator>,
    /// Observers (follow the chain; do not vote).
    #[serde(default)]
    pub observers: Vec<GenesisValidator>,
    /// Opaque application genesis (members, users, policy).
    #[serde(default)]
    pub app: serde_json::Value,
}

impl Genesis {
    /// Loads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let g: Genesis = serde_json::from_str(&text).map_err(|e| NodeError::Invalid {
            what: "genesis",
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        if g.validators.is_empty() {
            return Err(NodeError::Invalid {
                what: "genesis",
                path: path.display().to_string(),
                error: "no validators".into(),
            });
        }
        for v in &g.validators {
            parse_public_key(&v.public_key).map_err(|error| NodeError::Invalid {
                what: "genesis",
                path: path.display().to_string(),
                error,
            })?;
        }
        Ok(g)
    }

    /// Validator public keys in file order.
    pub fn validator_keys(&self) -> Result<Vec<PublicKey>, String> {
        self.validators
            .iter()
            .map(|v| parse_public_key(&v.public_key))
            .collect()
    }
}

fn parse_public_key(hex_key: &str) -> Result<PublicKey, String> {
    let bytes =
        hex::decode(hex_key).map_err(|_| format!("public key is not hex: key={hex_key}"))?;
    PublicKey::decode(bytes::Bytes::from(bytes))
        .map_err(|_| format!("bad ed25519 public key: key={hex_key}"))
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
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7500)),
            body_limit: 128 * 1024,
            submit_rate_per_second: 20_000,
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

impl NodeConfig {
    /// Parses and validates a TOML config. Relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, String> {
        let mut c: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for p in [
            &mut c.node.data_dir,
            &mut c.node.key_file,
            &mut c.node.genesis_file,
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
        Self::from_toml(&text, base).map_err(|error| NodeError::Invalid {
            what: "node config",
            path: path.display().to_string(),
            error,
        })
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.consensus;
        if c.leader_timeout_ms == 0 || c.certification_timeout_ms <= c.leader_timeout_ms {
            return Err(format!(
                "consensus timeouts: need 0 < leader_timeout_ms < certification_timeout_ms, got leader_timeout_ms={} certification_timeout_ms={}",
                c.leader_timeout_ms, c.certification_timeout_ms
            ));
        }
        if c.timeout_retry_ms == 0 || c.fetch_timeout_ms == 0 {
            return Err("consensus: timeout_retry_ms and fetch_timeout_ms must be > 0".into());
        }
        if c.max_block_txs == 0 || c.max_tx_bytes == 0 || c.max_block_bytes < c.max_tx_bytes {
            return Err(format!(
                "consensus limits: max_block_txs={} max_tx_bytes={} max_block_bytes={}",
                c.max_block_txs, c.max_tx_bytes, c.max_block_bytes
            ));
        }
        if (self.p2p.max_message_size as usize) < c.max_block_bytes.saturating_add(64 * 1024) {
            return Err(format!(
                "p2p.max_message_size={} must exceed consensus.max_block_bytes={} plus overhead",
                self.p2p.max_message_size, c.max_block_bytes
            ));
        }
        if self.p2p.rate_per_second == 0 || self.http.submit_rate_per_second == 0 {
            return Err("rates must be > 0".into());
        }
        if self.mempool.max_txs == 0 || self.node.worker_threads == 0 {
            return Err("mempool.max_txs and node.worker_threads must be > 0".into());
        }
        Ok(())
    }

    fn block_limits(&self) -> BlockLimits {
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

fn write_new(path: &Path, content: &str) -> Result<(), NodeError> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(content.as_bytes()).map_err(|e| io(path, e))
}

/// Writes `<out>/genesis.json`, and for each node `<out>/<name>/node.key` and
/// `<out>/<name>/node.toml`. Refuses to overwrite existing files. Returns the config paths.
pub fn init_consortium(spec: &ConsortiumSpec, out_dir: &Path) -> Result<Vec<PathBuf>, NodeError> {
    let invalid = |error: String| NodeError::Invalid {
        what: "consortium spec",
        path: out_dir.display().to_string(),
        error,
    };
    if spec.nodes.iter().filter(|n| n.validator).count() == 0 {
        return Err(invalid("no validators".into()));
    }
    let mut names = std::collections::HashSet::new();
    for n in &spec.nodes {
        if n.name.is_empty()
            || !n
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!("bad node name: name={}", n.name)));
        }
        if !names.insert(n.name.clone()) {
            return Err(invalid(format!("duplicate node name: name={}", n.name)));
        }
    }
    let genesis_path = out_dir.join("genesis.json");
    if genesis_path.exists() {
        return Err(io(&genesis_path, "already exists"));
    }
    let mut rng = rand::rng();
    let mut keys = Vec::new();
    for _ in &spec.nodes {
        let mut seed = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut seed);
        let key = ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(&seed))
            .map_err(|e| invalid(format!("key generation failed: {e}")))?;
        keys.push(key);
    }
    let entry = |n: &SpecNode, k: &ed25519::PrivateKey| GenesisValidator {
        name: n.name.clone(),
        public_key: hex::encode(k.public_key().encode()),
        p2p: n.p2p,
        http: n.http,
    };
    let genesis = Genesis {
        chain_id: spec.chain_id.clone(),
        validators: spec
            .nodes
            .iter()
            .zip(&keys)
            .filter(|(n, _)| n.validator)
            .map(|(n, k)| entry(n, k))
            .collect(),
        observers: spec
            .nodes
            .iter()
            .zip(&keys)
            .filter(|(n, _)| !n.validator)
            .map(|(n, k)| entry(n, k))
            .collect(),
        app: spec.app.clone(),
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let text = serde_json::to_string_pretty(&genesis).map_err(|e| invalid(e.to_string()))?;
    write_new(&genesis_path, &text)?;
    let mut configs = Vec::new();
    for (n, k) in spec.nodes.iter().zip(&keys) {
        let dir = out_dir.join(&n.name);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_new(&dir.join("node.key"), &hex::encode(k.encode()))?;
        let config = NodeConfig {
            node: NodeSection {
                name: n.name.clone(),
                data_dir: PathBuf::from("data"),
                key_file: PathBuf::from("node.key"),
                genesis_file: PathBuf::from("../genesis.json"),
                ..NodeSection::default()
            },
            p2p: P2pSection {
                listen: n.p2p,
                ..P2pSection::default()
            },
            http: HttpSection {
                listen: n.http,
                ..HttpSection::default()
            },
            ..NodeConfig::default()
        };
        let text = toml::to_string_pretty(&config).map_err(|e| invalid(e.to_string()))?;
        let path = dir.join("node.toml");
        write_new(&path, &text)?;
        configs.push(path);
    }
    Ok(configs)
}

/// Starts one validator on an existing tokio-runtime context: opens the lookup network to the
/// genesis validators and starts the engine. Returns the engine handle.
pub async fn start_node<A: Application>(
    context: commonware_runtime::tokio::Context,
    config: &NodeConfig,
    genesis: &Genesis,
    signer: ed25519::PrivateKey,
    app: A,
) -> Result<Handle<A>, NodeError> {
    let validators = genesis
        .validator_keys()
        .map_err(|error| NodeError::Invalid {
            what: "genesis",
            path: config.node.genesis_file.display().to_string(),
            error,
        })?;
    let mut p2p = lookup::Config::local(
        Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: signer.clone(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        ),
        genesis.chain_id.as_bytes(),
        config.p2p.listen,
        NZUsize!(validators.len() + genesis.observers.len() + 1),
        config.p2p.max_message_size,
        NZUsize!(4096),
    );
    p2p.dial_frequency = Duration::from_millis(200);
    p2p.peer_connection_cooldown = Duration::from_millis(250);
    let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p);
    let peers: Vec<(PublicKey, Address)> = genesis
        .validators
        .iter()
        .zip(&validators)
        .map(|(v, k)| (k.clone(), Address::from(v.p2p)))
        .collect();
    let peers = Map::try_from(peers).map_err(|e| NodeError::Invalid {
        what: "genesis",
        path: config.node.genesis_file.display().to_string(),
        error: format!("{e:?}"),
    })?;
    oracle.track(0, peers);
    let quota = Quota::per_second(
        std::num::NonZeroU32::new(config.p2p.rate_per_second).unwrap_or(NZU32!(10_000)),
    );
    let mut reg = |ch| network.register(ch, quota);
    let channels = Channels {
        votes: reg(channel::VOTES),
        certificates: reg(channel::CERTIFICATES),
        resolver: reg(channel::RESOLVER),
        backfill: reg(channel::BACKFILL),
        blocks: reg(channel::BLOCKS),
        txs: reg(channel::TXS),
    };
    network.start();
    let c = &config.consensus;
    let engine_config = engine::Config {
        chain_id: genesis.chain_id.clone(),
        signer,
        validators,
        partition_prefix: format!("medspace-{}", config.node.name),
        blocker: oracle.clone(),
        peer_provider: oracle,
        block_limits: config.block_limits(),
        mempool_limits: MempoolLimits {
            max_txs: config.mempool.max_txs,
            max_bytes: config.mempool.max_bytes,
        },
        max_future_ms: c.max_future_ms,
        leader_timeout: Duration::from_millis(c.leader_timeout_ms),
        certification_timeout: Duration::from_millis(c.certification_timeout_ms),
        timeout_retry: Duration::from_millis(c.timeout_retry_ms),
        fetch_timeout: Duration::from_millis(c.fetch_timeout_ms),
        mailbox_size: NZUsize!(4096),
    };
    Ok(engine::start(context.child("engine"), engine_config, app, channels).await?)
}

/// Runs one validator until the process is stopped: loads key and genesis, opens storage under
/// `data_dir`, starts the engine and serves the HTTP API on `http.listen`. `make_app` builds the
/// genesis application state from the genesis file; `extra_routes` receives the engine handle and
/// returns additional axum routes (state records, inclusion proofs) merged into the API.
pub fn run_node<A, F, X>(config: NodeConfig, make_app: F, extra_routes: X) -> Result<(), NodeError>
where
    A: Application,
    F: FnOnce(&Genesis) -> Result<A, String> + Send + 'static,
    X: FnOnce(Handle<A>) -> axum::Router + Send + 'static,
{
    let genesis = Genesis::load(&config.node.genesis_file)?;
    let signer = load_key(&config.node.key_file)?;
    let app = make_app(&genesis).map_err(|error| NodeError::Invalid {
        what: "application genesis",
        path: config.node.genesis_file.display().to_string(),
        error,
    })?;
    std::fs::create_dir_all(&config.node.data_dir).map_err(|e| io(&config.node.data_dir, e))?;
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new()
            .with_worker_threads(config.node.worker_threads)
            .with_storage_directory(config.node.data_dir.join("storage")),
    );
    runner.start(|context| async move {
        let metrics_context = context.child("metrics");
        let handle = start_node(context.child("node"), &config, &genesis, signer, app).await?;
        tracing::info!(name = %config.node.name, http = %config.http.listen, "chain.node.run: started");
        let router = crate::api::router(
            handle.clone(),
            crate::api::ApiLimits {
                body_limit: config.http.body_limit,
                submit_per_second: config.http.submit_rate_per_second,
            },
            move || commonware_runtime::Metrics::encode(&metrics_context),
            extra_routes(handle),
        );
        crate::api::serve(config.http.listen, router)
            .await
            .map_err(|e| NodeError::Io {
                path: config.http.listen.to_string(),
                error: e.to_string(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_loadable_files_and_refuses_overwrite() {
        let dir = std::env::temp_dir().join(format!("medspace-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = ConsortiumSpec {
            chain_id: "c".into(),
            nodes: (0..4)
                .map(|i| SpecNode {
                    name: format!("h{i}"),
                    validator: i < 3,
                    p2p: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                    http: SocketAddr::from(([127, 0, 0, 1], 8000 + i)),
                })
                .collect(),
            app: serde_json::json!({"policy": 1}),
        };
        let configs = init_consortium(&spec, &dir).unwrap();
        assert_eq!(configs.len(), 4);
        let c = NodeConfig::load(&configs[0]).unwrap();
        let g = Genesis::load(&c.node.genesis_file).unwrap();
        assert_eq!(g.validators.len(), 3);
        assert_eq!(g.observers.len(), 1);
        let k = load_key(&c.node.key_file).unwrap();
        assert_eq!(
            hex::encode(k.public_key().encode()),
            g.validators[0].public_key
        );
        assert!(init_consortium(&spec, &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

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
