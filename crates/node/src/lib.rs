//! medspace-node: one institution's node, assembled from its config, loaded once.
//!
//! A **validator** (named among the genesis validators) runs the consortium chain replicating
//! the ledger ([`medspace_ledger::LedgerApp`]), the chain's transaction and block API, the
//! ledger-read API with proofs ([`medspace_api`]) and — with a `[worker]` section — the data
//! holder's services ([`medspace_worker`]: the compute service over its vault's data plane
//! and record sharing, `medspace-compute`), all on one runtime. An **observer** (named among
//! the observers) follows the validators, verifying every block, and serves the same read API
//! ([`observer`]).

pub mod consortium;
pub mod observer;
pub mod relay;

use medspace_chain::node::{Genesis, NodeConfig};
use medspace_ledger::LedgerApp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The chain's config, genesis or runtime failed.
    #[error(transparent)]
    Chain(#[from] medspace_chain::node::NodeError),
    /// The application genesis is not valid.
    #[error(transparent)]
    Ledger(#[from] medspace_ledger::LedgerError),
    /// The worker's section or keys are not valid.
    #[error(transparent)]
    Worker(#[from] medspace_worker::WorkerError),
    /// The observer failed.
    #[error(transparent)]
    Observer(#[from] observer::ObserverError),
    /// The vault did not open (no or wrong passphrase, damaged key file).
    #[error("vault: {0}")]
    Vault(#[from] medspace_vault::VaultError),
    /// The `[vault]` section is not valid.
    #[error("invalid [vault] section in {path}: {error}")]
    VaultSection {
        /// The config file.
        path: String,
        /// Why.
        error: String,
    },
    /// No passphrase for a node's vault where one was looked for.
    #[error(
        "no vault passphrase for {node}: set {env} or name a passphrase file in its node.toml ([vault] passphrase_file)"
    )]
    NoVaultPassphrase {
        /// The node directory.
        node: String,
        /// The environment variable looked at.
        env: &'static str,
    },
    /// The genesis file could not be read for the console.
    #[error("genesis file {path}: {error}")]
    Genesis {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The node's name is in neither list of the genesis.
    #[error("node name={name} is neither a validator nor an observer in {genesis}")]
    Unknown {
        /// The node's name.
        name: String,
        /// The genesis file.
        genesis: String,
    },
}

/// The node's worker, from the `[worker]` section of its config (if any): keys loaded and
/// checked against the genesis before the chain starts.
fn prepare_worker(
    config: &Path,
    cfg: &NodeConfig,
    genesis: &Genesis,
) -> Result<Option<medspace_worker::config::Prepared>, NodeError> {
    let Some(section) = medspace_worker::config::load_section(config)? else {
        return Ok(None);
    };
    let app = LedgerApp::from_chain_genesis(&genesis.app)?;
    let peers = genesis
        .validators
        .iter()
        .chain(&genesis.observers)
        .map(|v| (v.name.clone(), medspace_chain::tls::node_url(v)))
        .collect();
    Ok(Some(medspace_worker::config::prepare(
        &section,
        app.state(),
        &genesis.chain_id,
        &peers,
        &cfg.node.data_dir.join("worker"),
        &cfg.key_unlock()?,
    )?))
}

/// The `[vault]` section of a node's config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultSection {
    /// A file holding the vault's passphrase (else [`medspace_vault::at_rest::PASSPHRASE_ENV`]).
    passphrase_file: Option<PathBuf>,
    /// The hospital's Ballista scheduler (`df://host:port`) that runs the vault's queries;
    /// none: they run in the node's process.
    scheduler: Option<String>,
}

/// Where a node (validator or observer) keeps its committed ledger state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum StateStore {
    /// In `<data_dir>/state`, written with each finalized block; memory bounded by the cache.
    #[default]
    Disk,
    /// Whole in memory, rebuilt at each start from the newest checkpoint and the blocks after.
    Memory,
}

/// The `[state]` section of a node's config (validator or observer).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StateSection {
    /// Where the committed state lives.
    store: StateStore,
    /// The on-disk state's node cache, MiB: what bounds the state's memory.
    cache_mib: usize,
    /// Write the committed state to disk every this many finalized blocks.
    commit_every: u64,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            store: StateStore::Disk,
            cache_mib: DEFAULT_STATE_CACHE_MIB,
            commit_every: DEFAULT_STATE_COMMIT_EVERY,
        }
    }
}

/// The default node cache of a validator's on-disk state.
pub const DEFAULT_STATE_CACHE_MIB: usize = 64;
/// By default a validator writes its state every this many finalized blocks (the top of the
/// trie, which every block rewrites, is then written once for all of them).
pub const DEFAULT_STATE_COMMIT_EVERY: u64 = 8;

#[derive(serde::Deserialize)]
struct Sections {
    vault: Option<VaultSection>,
    state: Option<StateSection>,
}

/// The sections of the config at `config` that the node reads beside the chain's.
fn sections(config: &Path) -> Result<Sections, NodeError> {
    let text = std::fs::read_to_string(config).map_err(|e| NodeError::VaultSection {
        path: config.display().to_string(),
        error: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| NodeError::VaultSection {
        path: config.display().to_string(),
        error: e.to_string(),
    })
}

/// The `[vault]` section of the config at `config` (an empty one when it has none).
fn vault_section(config: &Path) -> Result<VaultSection, NodeError> {
    Ok(sections(config)?.vault.unwrap_or_default())
}

/// Where the vault's queries run, per the config at `config`: its `[vault] scheduler`, else
/// the node's own process.
pub fn vault_engine(config: &Path) -> Result<medspace_cluster::Engine, NodeError> {
    let section = vault_section(config)?;
    medspace_cluster::Engine::from_setting(section.scheduler.as_deref()).map_err(|e| {
        NodeError::VaultSection {
            path: config.display().to_string(),
            error: e.to_string(),
        }
    })
}

/// Where the vault's passphrase comes from, per the config at `config`: its `[vault]
/// passphrase_file` (relative to the config's directory), else the environment.
pub fn vault_passphrase_source(
    config: &Path,
) -> Result<medspace_vault::seal::PassphraseSource, NodeError> {
    let base = config.parent().unwrap_or(Path::new("."));
    let section = vault_section(config)?;
    Ok(medspace_vault::seal::PassphraseSource {
        file: section.passphrase_file.map(|p| base.join(p)),
        env: Some(medspace_vault::at_rest::PASSPHRASE_ENV.into()),
    })
}

/// The passphrase of the vault in `node_dir`: from `file` when given, else from where
/// `<node_dir>/node.toml` says (its `[vault] passphrase_file`, else the environment), else (no
/// config) from `$MEDSPACE_VAULT_PASSPHRASE`. A missing one is an error naming both places.
pub fn vault_passphrase(
    node_dir: &Path,
    file: Option<&Path>,
) -> Result<medspace_vault::seal::Passphrase, NodeError> {
    let config = node_dir.join("node.toml");
    let source = match file {
        Some(f) => medspace_vault::seal::PassphraseSource {
            file: Some(f.to_path_buf()),
            env: None,
        },
        None if config.exists() => vault_passphrase_source(&config)?,
        None => medspace_vault::seal::PassphraseSource {
            file: None,
            env: Some(medspace_vault::at_rest::PASSPHRASE_ENV.into()),
        },
    };
    let bad = |error: String| NodeError::VaultSection {
        path: config.display().to_string(),
        error,
    };
    source
        .resolve()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| NodeError::NoVaultPassphrase {
            node: node_dir.display().to_string(),
            env: medspace_vault::at_rest::PASSPHRASE_ENV,
        })
}

/// Unlocks (creating on first start) the vault of a worker's node, once, with the passphrase
/// its config names.
fn unlock_vault(config: &Path, vault_dir: &Path) -> Result<medspace_vault::VaultKey, NodeError> {
    let passphrase = vault_passphrase_source(config)?
        .resolve()
        .map_err(|e| NodeError::VaultSection {
            path: config.display().to_string(),
            error: e.to_string(),
        })?
        .ok_or(medspace_vault::VaultError::NoPassphrase {
            env: medspace_vault::at_rest::PASSPHRASE_ENV,
        })?;
    Ok(medspace_vault::VaultKey::unlock_or_create(
        vault_dir,
        &passphrase,
        medspace_vault::seal::KdfParams::DEFAULT,
    )?)
}

/// Runs a medspace node from its config file until the process stops.
pub fn run(config: &Path) -> Result<(), NodeError> {
    let cfg = NodeConfig::load(config)?;
    let genesis = Genesis::load(&cfg.node.genesis_file)?;
    let name = &cfg.node.name;
    let state = sections(config)?.state.unwrap_or_default();
    let state_dir = cfg.node.data_dir.join("state");
    if genesis.observers.iter().any(|o| &o.name == name) {
        let key = observer::node_key(config, &cfg.key_unlock()?)?;
        let stored = (state.store == StateStore::Disk).then(|| observer::StateStore {
            dir: state_dir,
            cache_bytes: state.cache_mib.saturating_mul(1 << 20),
            every: state.commit_every,
        });
        return Ok(observer::run(&cfg, &genesis, key, stored)?);
    }
    if !genesis.validators.iter().any(|v| &v.name == name) {
        return Err(NodeError::Unknown {
            name: name.clone(),
            genesis: cfg.node.genesis_file.display().to_string(),
        });
    }
    let worker = match prepare_worker(config, &cfg, &genesis)? {
        Some(p) => {
            let key = unlock_vault(config, &p.vault_dir)?;
            let engine = vault_engine(config)?;
            Some((p, key, engine))
        }
        None => None,
    };
    // The worker reaches the other nodes with the client that trusts the genesis certificates.
    let client = medspace_chain::tls::client(&genesis, WORKER_REQUEST_TIMEOUT).map_err(|e| {
        medspace_worker::WorkerError::Invalid {
            what: "transport",
            error: e.to_string(),
        }
    })?;
    let api = medspace_api::Config::new(name.clone());
    let member = name.clone();
    let validators = validator_urls(&genesis);
    let probe_client = client.clone();
    let console = console_router(&cfg.node.genesis_file, name)?.merge(relay::router(
        client.clone(),
        genesis
            .validators
            .iter()
            .chain(&genesis.observers)
            .map(|n| (n.name.clone(), medspace_chain::tls::node_url(n)))
            .collect(),
    ));
    // A validator joining by state sync reads its peer's checkpoint with its own validator key
    // (the peers' gates serve whole blocks to the genesis validators' keys).
    let validator_keys: Vec<medspace_types::PublicKey> = genesis
        .validator_keys()
        .map_err(|error| medspace_chain::node::NodeError::Invalid {
            what: "genesis validators",
            path: cfg.node.genesis_file.display().to_string(),
            error,
        })?
        .into_iter()
        .map(Into::into)
        .collect();
    medspace_chain::node::run_node(
        cfg,
        |key| {
            Some(Arc::new(medspace_api::gate::KeySigner(key.clone().into()))
                as Arc<dyn medspace_chain::follow::RequestSigner>)
        },
        move |g| {
            let app = LedgerApp::from_chain_genesis(&g.app)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(match state.store {
                StateStore::Disk => app
                    .with_store(&state_dir, state.cache_mib.saturating_mul(1 << 20))?
                    .store_every(state.commit_every),
                StateStore::Memory => app,
            })
        },
        move |ctx, handle| {
            let ledger = Arc::new(handle.clone());
            let watch = consortium::router(
                ledger.clone(),
                Arc::new(
                    medspace_api::gate::ChainGate::new(ledger.clone(), member.clone())
                        .with_validators(validator_keys.clone()),
                ),
                probe_client,
                member.clone(),
                validators,
            );
            let gate = Arc::new(
                medspace_api::gate::ChainGate::new(ledger.clone(), member)
                    .with_validators(validator_keys),
            );
            let mut router = medspace_api::read_router(ledger.clone(), api)
                .merge(console)
                .merge(watch);
            if let Some((p, key, engine)) = worker {
                match start_worker(ctx, p, (key, engine), ledger, client) {
                    Ok(w) => {
                        router = router.merge(w.router());
                        follow_blocks(handle, w);
                    }
                    Err(e) => tracing::error!(error = %e, "node.run: the worker did not start"),
                }
            }
            medspace_chain::node::Services {
                routes: router,
                gate,
            }
        },
    )?;
    Ok(())
}

/// The genesis validators, in order: name and API URL.
pub fn validator_urls(genesis: &Genesis) -> Vec<(String, String)> {
    genesis
        .validators
        .iter()
        .map(|v| (v.name.clone(), medspace_chain::tls::node_url(v)))
        .collect()
}

/// The console's routes (`medspace-console`), serving this node's genesis file byte for byte so
/// that the browser can check it against the hash pinned in the console's address.
pub fn console_router(genesis_file: &Path, member: &str) -> Result<axum::Router, NodeError> {
    let bytes = std::fs::read(genesis_file).map_err(|e| NodeError::Genesis {
        path: genesis_file.display().to_string(),
        error: e.to_string(),
    })?;
    Ok(medspace_console::router(bytes, member))
}

/// The longest a worker's request to another node may take.
const WORKER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the worker's services on the node's runtime, over its vault.
fn start_worker(
    ctx: commonware_runtime::tokio::Context,
    p: medspace_worker::config::Prepared,
    (key, engine): (medspace_vault::VaultKey, medspace_cluster::Engine),
    ledger: Arc<medspace_chain::engine::Handle<LedgerApp>>,
    client: reqwest::Client,
) -> Result<medspace_worker::Worker, medspace_worker::WorkerError> {
    let peers: BTreeMap<_, _> = p.peers.clone();
    let transport =
        medspace_worker::transport::HttpTransport::with_client(client, p.key.clone(), peers);
    let plane = Arc::new(medspace_compute::node::VaultPlane {
        dir: p.vault_dir.clone(),
        key: key.clone(),
        engine: engine.clone(),
    });
    let records = Arc::new(medspace_compute::node::VaultRecords {
        dir: p.vault_dir.clone(),
        key,
        engine,
    });
    medspace_worker::Worker::start(ctx, p, ledger, transport, plane, records)
}

/// Tells the worker of every block the node commits.
fn follow_blocks(handle: medspace_chain::engine::Handle<LedgerApp>, w: medspace_worker::Worker) {
    tokio::spawn(async move {
        let mut seen = handle.height();
        loop {
            handle.wait_for_height(seen + 1).await;
            let now = handle.height();
            if now <= seen {
                break; // the engine stopped
            }
            seen = now;
            w.on_block(now);
        }
    });
}
