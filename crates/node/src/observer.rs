//! The observer node: a regulator's node that follows the validators over HTTP, verifies every
//! block (finality certificate of the genesis validators, parent link, re-execution to the
//! header's root), keeps every verified block in its own log, and serves the ledger-read API
//! with proofs from the state it verified ([`medspace_ledger::FollowerView`]).

use medspace_chain::follow::{
    BlockLog, ChainCheck, FollowError, HttpSource, encode_certified_header,
};
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_ledger::{Follower, FollowerView};
use medspace_state::trie::disk::{Committed, NodeStore};
use std::sync::{Arc, RwLock};

/// Where an observer keeps its verified state on disk (`[state] store = "disk"`, the default):
/// the store's directory, its node cache and how often it is written.
#[derive(Clone, Debug)]
pub struct StateStore {
    /// The store's directory (`<data_dir>/state`).
    pub dir: std::path::PathBuf,
    /// Its node cache, bytes: what bounds the state's memory.
    pub cache_bytes: usize,
    /// Write it every this many blocks (at the first certified height past a multiple).
    pub every: u64,
}

/// The `[observer]` section of an observer's config: the node key of its member, with which
/// it asks the validators for blocks (they serve whole blocks to the consortium's members, and
/// a member's node key reads for its member). Never the member key: that stays with the CLI.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserverSection {
    /// The member's node key: a sealed key file opened with the node's key passphrase
    /// (relative to the config's directory).
    pub node_key_file: std::path::PathBuf,
}

#[derive(serde::Deserialize)]
struct FileWithObserver {
    observer: Option<ObserverSection>,
}

/// The node key named by the `[observer]` section of the config at `path`, opened with
/// `unlock` (the node's key passphrase).
pub fn node_key(
    path: &std::path::Path,
    unlock: &medspace_seal::Unlock,
) -> Result<medspace_types::Keypair, ObserverError> {
    let io = |what: &std::path::Path, e: &dyn std::fmt::Display| ObserverError::Io {
        what: what.display().to_string(),
        error: e.to_string(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| io(path, &e))?;
    let file: FileWithObserver = toml::from_str(&text).map_err(|e| io(path, &e))?;
    let section = file.observer.ok_or_else(|| {
        io(
            path,
            &"an observer reads the validators' blocks with its member's node key: add an [observer] section with node_key_file",
        )
    })?;
    let key_path = path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(&section.node_key_file);
    medspace_worker::config::load_node_key(&key_path, unlock).map_err(|e| io(&key_path, &e))
}

/// Errors of an observer node.
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    /// The chain could not be followed.
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// The block log could not be used.
    #[error(transparent)]
    Log(#[from] medspace_chain::follow::LogError),
    /// The logged chain no longer verifies.
    #[error("stored block at height={height} no longer verifies: {reason}")]
    Stored {
        /// Height of the stored block.
        height: u64,
        /// Why.
        reason: String,
    },
    /// Files or sockets.
    #[error("{what}: {error}")]
    Io {
        /// What failed.
        what: String,
        /// The cause.
        error: String,
    },
}

/// Runs an observer node until the process stops: replays and re-verifies its block log, then
/// follows the validators' finalized blocks over HTTPS (their certificates pinned in the
/// genesis), verifying each (certificate, links, re-execution) before appending it to the log,
/// and serves the ledger-read API with proofs on `http.listen`, over TLS with the certificate
/// the genesis pins for the observer ([`medspace_chain::tls::for_node`]).
pub fn run(
    config: &medspace_chain::node::NodeConfig,
    genesis: &ChainGenesis,
    node_key: medspace_types::Keypair,
    stored: Option<StateStore>,
) -> Result<(), ObserverError> {
    let io = |what: &str, e: &dyn std::fmt::Display| ObserverError::Io {
        what: what.to_string(),
        error: e.to_string(),
    };
    std::fs::create_dir_all(&config.node.data_dir)
        .map_err(|e| io(&config.node.data_dir.display().to_string(), &e))?;
    let (mut log, entries) = BlockLog::open(
        &config
            .node
            .data_dir
            .join(medspace_chain::audit::OBSERVED_LOG),
    )?;
    let checkpoint_path = config.node.data_dir.join(CHECKPOINT_FILE);
    let mut store = None;
    let mut follower = None;
    if let Some(s) = &stored {
        let (opened, committed) = NodeStore::open(&s.dir, s.cache_bytes)
            .map_err(|e| io(&s.dir.display().to_string(), &e))?;
        follower = committed.and_then(|c| from_store(genesis, &entries, c));
        store = Some(opened);
    }
    let started = if follower.is_some() {
        "store"
    } else if stored.is_some() {
        "genesis"
    } else {
        "checkpoint"
    };
    let mut follower = match follower {
        Some(f) => f,
        None if stored.is_some() => Follower::new(genesis)?,
        None => restore(genesis, &entries, &checkpoint_path)?,
    };
    let from = follower.height();
    for (i, raw) in entries
        .iter()
        .enumerate()
        .skip(usize::try_from(from).unwrap_or(0))
    {
        follower.apply(raw).map_err(|e| ObserverError::Stored {
            height: i as u64 + 1,
            reason: e.to_string(),
        })?;
    }
    tracing::info!(
        name = %config.node.name,
        height = follower.height(),
        checkpoint = from,
        started,
        "node.observer: replayed block log"
    );
    let every = config.consensus.checkpoint_every;
    let follower = Arc::new(RwLock::new(follower));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.node.worker_threads)
        .enable_all()
        .build()
        .map_err(|e| io("tokio runtime", &e))?;
    let tls = medspace_chain::tls::for_node(config, genesis).map_err(|e| io("tls", &e))?;
    let source = HttpSource::from_genesis(genesis)?
        .signed_by(Arc::new(medspace_api::gate::KeySigner(node_key)));
    let listen = config.http.listen;
    let shared = follower.clone();
    let api = medspace_api::Config::new(config.node.name.clone());
    let genesis_file =
        std::fs::read(&config.node.genesis_file).map_err(|e| io("genesis file", &e))?;
    let console = medspace_console::router(genesis_file, &config.node.name);
    let validators = crate::validator_urls(genesis);
    let probe_client = medspace_chain::tls::client(genesis, std::time::Duration::from_secs(5))
        .map_err(|e| io("tls client", &e))?;
    let me = config.node.name.clone();
    runtime.block_on(async move {
        let view = Arc::new(FollowerView::new(shared.clone()));
        let watch = crate::consortium::router(
            view.clone(),
            Arc::new(medspace_api::gate::ChainGate::new(view.clone(), me.clone())),
            probe_client,
            me,
            validators,
        );
        let router = medspace_api::router(view, api).merge(console).merge(watch);
        let server = tokio::spawn(async move { medspace_chain::tls::serve(listen, router, tls).await });
        let mut backoff_ms = 100u64;
        loop {
            if server.is_finished() {
                return match server.await {
                    Ok(Err(e)) => Err(io(&format!("http {listen}"), &e)),
                    Ok(Ok(())) => Ok(()),
                    Err(e) => Err(io(&format!("http {listen}"), &e)),
                };
            }
            let next = shared
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next_height();
            let fetched = source.fetch(next, 5_000).await;
            let applied = match fetched {
                Ok(Some(raw)) => {
                    let mut f = shared
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let before = f.height();
                    match f.apply_entry(&raw) {
                        Ok(applied) => {
                            // A block without a certificate of its own waits (in the follower)
                            // for the certified one that links back to it; then both are final
                            // and logged, in order.
                            let appended = applied
                                .entries
                                .iter()
                                .try_for_each(|e| log.append(e))
                                .map(|()| true)
                                .map_err(ObserverError::from);
                            let next = f.height();
                            let due = |every: u64| every > 0 && (before + 1..=next).any(|h| h.is_multiple_of(every));
                            if let (Some(store), Some(s)) = (store.as_mut(), &stored)
                                && appended.is_ok()
                                && due(s.every)
                            {
                                // Written after the log, so the store never runs ahead of it;
                                // a failure only means the next restart replays more.
                                if let Err(e) = f.persist(store) {
                                    tracing::warn!(height = next, error = %e, "node.observer: state store not written");
                                }
                            }
                            if appended.is_ok() && stored.is_none() && due(every) {
                                let (state, time) = (f.state().clone(), f.time_ms());
                                let path = checkpoint_path.clone();
                                // Encoded and written off the follow loop; a failure only
                                // means the next restart replays more.
                                tokio::task::spawn_blocking(move || {
                                    let written = write_atomically(&path, |file| {
                                        medspace_state::checkpoint::write_to(&state, next, time, file)
                                            .map(|_| ())
                                            .map_err(std::io::Error::other)
                                    });
                                    if let Err(e) = written {
                                        tracing::warn!(height = next, error = %e, "node.observer: checkpoint not written");
                                    }
                                });
                            }
                            appended
                        }
                        Err(e) => {
                            // A validator served something that does not verify: never store
                            // it, ask the others.
                            tracing::warn!(height = next, error = %e, "node.observer: block rejected");
                            source.skip();
                            Ok(false)
                        }
                    }
                }
                Ok(None) => Ok(false),
                Err(e) => {
                    tracing::warn!(height = next, error = %e, "node.observer: validators unreachable");
                    Ok(false)
                }
            };
            match applied? {
                true => backoff_ms = 100,
                false => {
                    tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(2_000);
                }
            }
        }
    })
}

/// The follower at the height `committed` (the observer's own state store) holds, if the
/// logged block at that height carries a certificate of the genesis validators whose state
/// root is the store's; otherwise (altered store, another chain's, beyond the log) none, and
/// the store is written over from the state replayed from genesis.
fn from_store(
    genesis: &ChainGenesis,
    entries: &[Vec<u8>],
    committed: Committed,
) -> Option<Follower> {
    let height = committed.height;
    let attempt = || -> Result<Follower, String> {
        let header = logged_header(genesis, entries, height)?;
        let state = medspace_state::State::from_store(committed).map_err(|e| e.to_string())?;
        Follower::from_state(genesis, state, &header, height).map_err(|e| e.to_string())
    };
    attempt()
        .inspect_err(|reason| {
            tracing::warn!(%reason, height, "node.observer: state store set aside, replaying from genesis");
        })
        .ok()
}

/// The certified header (`encode_certified_header`) of the block the log holds at `height`:
/// what a stored state or checkpoint of that height must match. The certificate is checked by
/// the follower that takes it; a block logged without one of its own does not serve.
fn logged_header(
    genesis: &ChainGenesis,
    entries: &[Vec<u8>],
    height: u64,
) -> Result<Vec<u8>, String> {
    let index =
        usize::try_from(height.checked_sub(1).ok_or("at genesis")?).map_err(|e| e.to_string())?;
    let raw = entries.get(index).ok_or("beyond the block log")?;
    let check = ChainCheck::new(genesis, [0; 32]).map_err(|e| e.to_string())?;
    let (block, fin) = check.decode_entry(height, raw).map_err(|e| e.to_string())?;
    let fin = fin.ok_or("the logged block at that height has no certificate of its own")?;
    Ok(encode_certified_header(&block.header, &fin))
}

/// The observer's checkpoint of its verified state, beside its block log.
pub const CHECKPOINT_FILE: &str = "observer.checkpoint";

/// The follower after the logged chain's checkpointed height, if the checkpoint file is the
/// state of the logged block at its height (its certificate checked against the genesis
/// validators, its records hashing to that block's root); otherwise (none, torn, stale, or
/// beyond the log) the follower at genesis. The log itself stays whole: the observer is an
/// archive, and `audit verify` still re-verifies it from genesis.
fn restore(
    genesis: &ChainGenesis,
    entries: &[Vec<u8>],
    path: &std::path::Path,
) -> Result<Follower, ObserverError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(Follower::new(genesis)?);
    };
    let attempt = || -> Result<Follower, String> {
        let height = medspace_state::checkpoint::summary(&bytes)
            .map_err(|e| e.to_string())?
            .height;
        let header = logged_header(genesis, entries, height)?;
        Follower::from_checkpoint(genesis, &bytes, &header).map_err(|e| e.to_string())
    };
    match attempt() {
        Ok(f) => Ok(f),
        Err(reason) => {
            tracing::warn!(%reason, "node.observer: checkpoint not used, replaying from genesis");
            Ok(Follower::new(genesis)?)
        }
    }
}

/// Writes to `path` what `write` writes (streamed: a checkpoint is never held whole) so that a
/// crash leaves either the old file or the new one: a temporary file beside it, synced,
/// renamed over it, and the directory synced.
fn write_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    write(&mut file)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
