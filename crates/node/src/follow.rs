//! Following the ledger without voting: a [`Follower`] holds the state rebuilt from finalized
//! blocks it verified itself (finality certificate of the genesis validators, parent links,
//! re-execution to the root in each header), with each transaction's receipt.
//!
//! Two users: the observer node ([`run_observer`]: a regulator's node that follows the
//! validators over HTTP, keeps every verified block in its own log, and serves the same read API
//! with proofs), and clients such as `medspace demo` that want the state they act on to be the
//! verified one, not a validator's word.

use crate::{Recent, execute_block};
use medspace_chain::follow::{BlockLog, ChainCheck, FollowError, HttpSource};
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_state::{Receipt, State};
use medspace_types::{Genesis, Hash, SignedTx};
use std::sync::{Arc, RwLock};

/// How many transaction outcomes a follower remembers (oldest forgotten first).
const OUTCOMES_KEPT: usize = 200_000;

/// One transaction's outcome as the follower executed it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The block that carried it.
    pub height: u64,
    /// Its receipt, or why the state machine refused it.
    pub result: Result<Receipt, String>,
}

/// The state of the ledger rebuilt from verified finalized blocks.
pub struct Follower {
    check: ChainCheck,
    state: State,
    time_ms: u64,
    outcomes: Recent<Outcome>,
}

impl Follower {
    /// A follower at genesis (the application genesis is the chain genesis' `app`).
    pub fn new(genesis: &ChainGenesis) -> Result<Self, FollowError> {
        let app: Genesis = serde_json::from_value(genesis.app.clone())
            .map_err(|e| FollowError::Genesis(format!("application genesis: {e}")))?;
        let state = State::genesis(&app).map_err(|e| FollowError::Genesis(e.to_string()))?;
        let check = ChainCheck::new(genesis, state.root().0)?;
        Ok(Self {
            check,
            state,
            time_ms: app.time_ms,
            outcomes: Recent::new(OUTCOMES_KEPT),
        })
    }

    /// Verifies and applies the next finalized block (in the wire form of
    /// `medspace_chain::follow::encode_finalized`). On error nothing changes.
    pub fn apply(&mut self, raw: &[u8]) -> Result<Vec<([u8; 32], Outcome)>, FollowError> {
        let h = self.check.height() + 1;
        let (block, fin) = self.check.decode(h, raw)?;
        self.check.check(&block, &fin)?;
        let mut next = self.state.clone();
        let results = execute_block(&mut next, h, block.header.time_ms, &block.txs);
        if next.root().0 != block.header.state_root {
            return Err(FollowError::Invalid {
                height: h,
                reason: format!(
                    "re-execution gives a different state root: header={} computed={}",
                    hex::encode(block.header.state_root),
                    next.root()
                ),
            });
        }
        self.state = next;
        self.time_ms = block.header.time_ms;
        self.check.advance(&block);
        let out: Vec<([u8; 32], Outcome)> = results
            .into_iter()
            .map(|(id, result)| (id, Outcome { height: h, result }))
            .collect();
        for (id, o) in &out {
            self.outcomes.insert(*id, o.clone());
        }
        Ok(out)
    }

    /// The verified state after the last applied block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.check.height()
    }

    /// Time of the last applied block (genesis time before the first).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// A transaction's outcome, if the follower executed it (and still remembers it).
    pub fn outcome(&self, id: &[u8; 32]) -> Option<&Outcome> {
        self.outcomes.get(id)
    }

    /// Digest of the last applied block (its state root is [`Follower::state`]'s).
    pub fn last_digest(&self) -> String {
        self.check.last_digest().to_string()
    }

    /// Fetches and applies blocks from `source` until `height` is reached; `progress` is
    /// called after each block with its outcomes. Waits at the validators for blocks not yet
    /// finalized.
    pub async fn sync_to(
        &mut self,
        source: &HttpSource,
        height: u64,
        mut progress: impl FnMut(&[([u8; 32], Outcome)]),
    ) -> Result<(), FollowError> {
        while self.height() < height {
            let next = self.height() + 1;
            if let Some(raw) = source.fetch(next, 2_000).await? {
                let out = self.apply(&raw)?;
                progress(&out);
            }
        }
        Ok(())
    }
}

/// The read API's view of an observer: its verified state. Observers take no transactions.
struct ObserverLedger {
    follower: Arc<RwLock<Follower>>,
}

impl medspace_api::Ledger for ObserverLedger {
    fn snapshot(&self) -> medspace_api::Snapshot {
        let f = self
            .follower
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let height = f.height();
        let anchor = match height {
            0 => serde_json::Value::Null,
            _ => serde_json::json!({
                "block": { "height": height, "digest": f.last_digest(), "state_root": f.state().root() },
                "finality": "verified by this observer against the genesis validators; certificate in GET /v1/blocks/{height}/raw at any validator",
            }),
        };
        medspace_api::Snapshot {
            state: f.state().clone(),
            height,
            time_ms: f.time_ms(),
            anchor,
        }
    }

    fn submit(&self, _tx: SignedTx) -> Result<Hash, medspace_api::SubmitError> {
        Err(medspace_api::SubmitError::Invalid(
            "this node is an observer and takes no transactions: submit to a validator".into(),
        ))
    }

    fn tx_status(&self, id: &Hash) -> medspace_api::TxStatus {
        let f = self
            .follower
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match f.outcome(&id.0) {
            Some(Outcome {
                height,
                result: Ok(r),
            }) => medspace_api::TxStatus::Finalized {
                height: *height,
                receipt: serde_json::to_value(r).unwrap_or_default(),
            },
            Some(Outcome {
                height,
                result: Err(reason),
            }) => medspace_api::TxStatus::Refused {
                height: *height,
                reason: reason.clone(),
            },
            None => medspace_api::TxStatus::Unknown,
        }
    }
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
/// follows the validators' finalized blocks over HTTP, verifying each (certificate, links,
/// re-execution) before appending it to the log, and serves the ledger-read API with proofs on
/// `http.listen`.
pub fn run_observer(
    config: &medspace_chain::node::NodeConfig,
    genesis: &ChainGenesis,
) -> Result<(), ObserverError> {
    let io = |what: &str, e: &dyn std::fmt::Display| ObserverError::Io {
        what: what.to_string(),
        error: e.to_string(),
    };
    std::fs::create_dir_all(&config.node.data_dir)
        .map_err(|e| io(&config.node.data_dir.display().to_string(), &e))?;
    let mut follower = Follower::new(genesis)?;
    let (mut log, entries) = BlockLog::open(
        &config
            .node
            .data_dir
            .join(medspace_chain::audit::OBSERVED_LOG),
    )?;
    for (i, raw) in entries.iter().enumerate() {
        follower.apply(raw).map_err(|e| ObserverError::Stored {
            height: i as u64 + 1,
            reason: e.to_string(),
        })?;
    }
    tracing::info!(
        name = %config.node.name,
        height = follower.height(),
        "node.observer: replayed block log"
    );
    let follower = Arc::new(RwLock::new(follower));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.node.worker_threads)
        .enable_all()
        .build()
        .map_err(|e| io("tokio runtime", &e))?;
    let source = HttpSource::from_genesis(genesis);
    let listen = config.http.listen;
    let shared = follower.clone();
    runtime.block_on(async move {
        let router = medspace_api::router(
            Arc::new(ObserverLedger {
                follower: shared.clone(),
            }),
            medspace_api::Limits::default(),
        );
        let server = tokio::spawn(async move { medspace_chain::api::serve(listen, router).await });
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
                .height()
                + 1;
            let fetched = source.fetch(next, 5_000).await;
            let applied = match fetched {
                Ok(Some(raw)) => {
                    let mut f = shared
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match f.apply(&raw) {
                        Ok(_) => log.append(&raw).map(|()| true).map_err(ObserverError::from),
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
