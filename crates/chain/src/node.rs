//! Running a node on the tokio runtime with real TCP p2p (commonware `lookup` network):
//! [`run_node`] / [`start_node`] run one validator from its config.
//!
//! The consortium's files are made and read elsewhere and re-exported here, where callers have
//! always found them: the genesis file and the consortium spec in [`crate::genesis`], a node's
//! TOML configuration and key file in [`crate::config`].

use crate::{
    Application,
    config::io,
    engine::{self, Channels, Handle, PublicKey, channel},
    follow::{HeaderCheck, HttpSource, RequestSigner},
    mempool::MempoolLimits,
};
pub use crate::{
    config::{
        ConsensusSection, HttpSection, KEY_PASSPHRASE_ENV, KEY_ROLE, MempoolSection, NodeConfig,
        NodeError, NodeSection, P2pSection, load_key,
    },
    genesis::{ConsortiumSpec, Genesis, GenesisValidator, SpecNode, init_consortium},
};
use commonware_cryptography::{ChaCha20Poly1305, ed25519};
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Supervisor as _};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use std::{sync::Arc, time::Duration};

/// Fetches what a validator joining by state sync starts from ([`engine::StateSync`]):
/// `source`'s checkpoint of its committed state and the certified header of the checkpoint's
/// height, checked as the engine will check them — the certificate is a quorum certificate of
/// the genesis validators over the header, and the checkpoint restores `app` (holding the
/// genesis state) to exactly that header's state. The checkpoint is restored as it arrives
/// ([`Application::restoring`]): its header first, to learn its height and fetch that height's
/// certified header, then each chunk into the restore, so the node never holds it whole.
/// A checkpoint longer than `max_bytes` is refused as soon as it is, and what it wrote cut.
/// Returns the sync (its state [`engine::SyncedState::Restored`]) and the application
/// restored at it, to start the engine with.
pub async fn fetch_state_sync<A: Application>(
    genesis: &Genesis,
    source: &HttpSource,
    app: &A,
    max_bytes: u64,
) -> Result<(engine::StateSync, A), String> {
    let mut stream = source
        .open_checkpoint()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the peer keeps no checkpoints")?;
    let mut head = Vec::new();
    while head.len() < app.checkpoint_header_len().max(1) {
        let chunk = stream
            .chunk()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the peer's checkpoint ends inside its header")?;
        head.extend_from_slice(&chunk);
    }
    let height = app
        .checkpoint_height(&head)
        .ok_or("the peer's checkpoint does not decode")?;
    let raw = source
        .fetch_header(height, 0)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the peer has no certified header at height={height}"))?;
    let check = HeaderCheck::new(genesis).map_err(|e| e.to_string())?;
    let (header, finalization) = check
        .verify_certified(height, &raw)
        .map_err(|e| e.to_string())?;
    let refused = |reason: String| format!("checkpoint refused at height={height}: {reason}");
    let mut restoring = app
        .restoring(height, header.time_ms, header.state_root)
        .map_err(refused)?;
    // The header first, then each chunk as it comes; dropped unfinished (an error, the cap),
    // the restore cuts what it wrote.
    let mut piece = bytes::Bytes::from(head);
    let mut received = 0u64;
    loop {
        // INVARIANT: a chunk's length fits u64.
        received = received.saturating_add(piece.len() as u64);
        if received > max_bytes {
            return Err(refused(format!(
                "longer than this node's limit of {max_bytes} bytes ([consensus] sync_max_checkpoint_bytes)"
            )));
        }
        restoring.feed(&piece).map_err(refused)?;
        match stream.chunk().await.map_err(|e| e.to_string())? {
            Some(next) => piece = next,
            None => break,
        }
    }
    let restored = restoring.finish().map_err(refused)?;
    tracing::info!(
        height,
        bytes = received,
        "chain.node.sync: checkpoint restored as it arrived"
    );
    Ok((
        engine::StateSync {
            checkpoint: engine::SyncedState::Restored,
            header,
            finalization,
        },
        restored,
    ))
}

/// Whether this node's storage holds a chain of its own (either archive layout).
fn has_chain(config: &NodeConfig) -> bool {
    let storage = config.node.data_dir.join("storage");
    let prefix = format!("medspace-{}", config.node.name);
    [
        "finalized-blocks-metadata",
        "finalized-blocks-pruned-key",
        "simplex",
    ]
    .iter()
    .any(|p| storage.join(format!("{prefix}-{p}")).exists())
}

/// The genesis validator `[consensus] sync_from` names: refused, before anything is opened or
/// written, when it names no genesis validator or this node itself.
fn sync_peer<'g>(
    config: &NodeConfig,
    genesis: &'g Genesis,
    peer: &str,
) -> Result<&'g crate::genesis::GenesisValidator, NodeError> {
    let failed = |reason: String| NodeError::StateSync {
        peer: peer.to_string(),
        reason,
    };
    if peer == config.node.name {
        return Err(failed(
            "a validator cannot sync from itself: name another genesis validator".into(),
        ));
    }
    genesis
        .validators
        .iter()
        .find(|v| v.name == peer)
        .ok_or_else(|| {
            let names: Vec<&str> = genesis.validators.iter().map(|v| v.name.as_str()).collect();
            failed(format!(
                "not a validator of the genesis (its validators: {})",
                names.join(", ")
            ))
        })
}

/// The state sync `[consensus] sync_from` asks for, if any: fetched and checked. A node with a
/// chain of its own starts without it when it fails; a node with none refuses to start unless
/// `sync_fallback_genesis` lets it sync from genesis.
async fn configured_state_sync<A: Application>(
    config: &NodeConfig,
    genesis: &Genesis,
    request_signer: Option<Arc<dyn RequestSigner>>,
    app: &A,
) -> Result<Option<(engine::StateSync, A)>, NodeError> {
    let Some(peer) = &config.consensus.sync_from else {
        return Ok(None);
    };
    let failed = |reason: String| NodeError::StateSync {
        peer: peer.clone(),
        reason,
    };
    let entry = sync_peer(config, genesis, peer)?;
    // The peer is reached as every node reaches it: over TLS with the certificate the genesis
    // pins for it (plain HTTP only where the genesis pins none).
    let client =
        crate::tls::client(genesis, Duration::from_secs(60)).map_err(|e| failed(e.to_string()))?;
    let mut source = HttpSource::with_client(
        client,
        vec![(entry.name.clone(), crate::tls::node_url(entry))],
    );
    if let Some(signer) = request_signer {
        source = source.signed_by(signer);
    }
    match fetch_state_sync(
        genesis,
        &source,
        app,
        config.consensus.sync_max_checkpoint_bytes,
    )
    .await
    {
        Ok(synced) => {
            tracing::info!(%peer, height = synced.0.header.height, "chain.node.sync: checkpoint fetched and checked");
            Ok(Some(synced))
        }
        Err(reason) if has_chain(config) => {
            tracing::warn!(%peer, %reason, "chain.node.sync: no state sync, starting from own storage");
            Ok(None)
        }
        Err(reason) if config.consensus.sync_fallback_genesis => {
            tracing::warn!(%peer, %reason, "chain.node.sync: no state sync, syncing from genesis");
            Ok(None)
        }
        Err(reason) => Err(failed(reason)),
    }
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
    start_node_syncing(context, config, genesis, signer, app, None).await
}

/// [`start_node`], joining by state sync when `[consensus] sync_from` names a peer validator
/// (its requests signed by `request_signer`, when the peer's API gates chain reads).
pub async fn start_node_syncing<A: Application>(
    context: commonware_runtime::tokio::Context,
    config: &NodeConfig,
    genesis: &Genesis,
    signer: ed25519::PrivateKey,
    app: A,
    request_signer: Option<Arc<dyn RequestSigner>>,
) -> Result<Handle<A>, NodeError> {
    let (state_sync, app) =
        match configured_state_sync(config, genesis, request_signer, &app).await? {
            Some((sync, restored)) => (Some(sync), restored),
            None => (None, app),
        };
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
    )
    .allow_burst(std::num::NonZeroU32::new(config.p2p.burst).unwrap_or(NZU32!(256)));
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
        checkpoint_every: c.checkpoint_every,
        state_sync,
        prune: c.prune,
    };
    Ok(engine::start(context.child("engine"), engine_config, app, channels).await?)
}

/// What the application adds to a validator's HTTP API: its routes (state records, inclusion
/// proofs, services) and the gate deciding who reads the chain.
pub struct Services {
    /// Routes merged into the API.
    pub routes: axum::Router,
    /// Who may read blocks and headers.
    pub gate: std::sync::Arc<dyn crate::api::ReadGate>,
}

/// Runs one validator until the process is stopped: loads key and genesis, opens storage under
/// `data_dir`, starts the engine and serves the HTTP API on `http.listen` — over TLS with the
/// certificate the genesis pins for the node ([`crate::tls::for_node`]; a node with none
/// refuses to start unless its config allows plain HTTP). `make_app` builds the genesis
/// application state from the genesis file; `services` receives the engine handle and returns
/// the application's routes and read gate ([`Services`]). `request_signer` makes, from the
/// node's validator key, what signs its state-sync requests to its `sync_from` peer (`None`:
/// they go unsigned).
pub fn run_node<A, E, F, S, X>(
    config: NodeConfig,
    request_signer: S,
    make_app: F,
    extra_routes: X,
) -> Result<(), NodeError>
where
    A: Application,
    E: std::fmt::Display,
    F: FnOnce(&Genesis) -> Result<A, E> + Send + 'static,
    S: FnOnce(&ed25519::PrivateKey) -> Option<Arc<dyn RequestSigner>>,
    X: FnOnce(commonware_runtime::tokio::Context, Handle<A>) -> Services + Send + 'static,
{
    let genesis = Genesis::load(&config.node.genesis_file)?;
    if let Some(peer) = &config.consensus.sync_from {
        sync_peer(&config, &genesis, peer)?;
    }
    let tls = crate::tls::for_node(&config, &genesis)?;
    let signer = config.load_node_key()?;
    let request_signer = request_signer(&signer);
    let app = make_app(&genesis).map_err(|e| NodeError::Invalid {
        what: "application genesis",
        path: config.node.genesis_file.display().to_string(),
        error: e.to_string(),
    })?;
    std::fs::create_dir_all(&config.node.data_dir).map_err(|e| io(&config.node.data_dir, e))?;
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new()
            .with_worker_threads(config.node.worker_threads)
            .with_storage_directory(config.node.data_dir.join("storage")),
    );
    runner.start(|context| async move {
        let metrics_context = context.child("metrics");
        let services_context = context.child("services");
        let handle = start_node_syncing(
            context.child("node"),
            &config,
            &genesis,
            signer,
            app,
            request_signer,
        )
        .await?;
        tracing::info!(name = %config.node.name, http = %config.http.listen, "chain.node.run: started");
        let services = extra_routes(services_context, handle.clone());
        let router = crate::api::router(
            handle,
            crate::api::ApiLimits {
                body_limit: config.http.body_limit,
                submit_per_second: config.http.submit_rate_per_second,
            },
            move || commonware_runtime::Metrics::encode(&metrics_context),
            services.routes,
            services.gate,
        );
        crate::tls::serve(config.http.listen, router, tls)
            .await
            .map_err(|e| NodeError::Io {
                path: config.http.listen.to_string(),
                error: e.to_string(),
            })
    })
}
