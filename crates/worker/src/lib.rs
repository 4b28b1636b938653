//! medspace-worker: the services inside a data holder's node, as protocols over traits — no
//! vault, no DataFusion, no sockets of their own.
//!
//! - [`compute`]: the compute service. It follows the blocks its node commits; for every job of
//!   its contracts its [`compute::DataPlane`] computes the site's noised vector once (the
//!   hospital's vault in a node, `medspace-compute`), and it takes part in the job's
//!   aggregation round ([`round`], double-masked secure aggregation with the round's sets fixed
//!   on the ledger). The contract's first data holder aggregates: it collects the dealings and
//!   masked vectors over a [`transport::Transport`], closes the round on the ledger, collects
//!   the reveals, unmasks only the sum, suppresses small cells and posts the result's hash.
//! - [`records`]: record sharing. A grantee redeems a patient's authorization code and receives
//!   exactly the granted FHIR resources once the access is recorded on the ledger; a patient
//!   downloads their own record.
//! - [`submit`]: the node key's one nonce sequence, shared by both services.
//! - [`wire`], [`store`], [`http`]: the signed messages, the per-job files, the routes.
//!
//! Both services are generic over a commonware runtime (its clock, its spawner, its randomness):
//! the node runs them on its tokio runtime, the simulations on the deterministic one.

pub mod compute;
pub mod config;
mod http;
pub mod records;
pub mod releases;
pub mod round;
pub mod store;
pub mod submit;
pub mod transport;
pub mod wire;

use commonware_runtime::{Clock, Spawner};
use compute::{Actor, DataPlane, Mailbox};
use config::Prepared;
use medspace_ledger::Ledger;
use rand_core::CryptoRng;
use records::{RecordSharing, RecordSource};
use std::sync::Arc;
use store::Store;
use submit::Submitter;
use tokio::sync::watch;
use transport::Transport;

/// Errors of the worker (lowercase, naming what and which value).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A file could not be read or written.
    #[error("io error on {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The node config does not parse.
    #[error("bad worker config {path}: {error}")]
    Config {
        /// The config file.
        path: String,
        /// Why.
        error: String,
    },
    /// A key, setting or record is not what it must be.
    #[error("invalid {what}: {error}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        error: String,
    },
    /// A round step failed.
    #[error("round: {0}")]
    Round(String),
    /// The ledger refused or lost the worker's transaction.
    #[error("ledger: {0}")]
    Ledger(String),
}

impl From<medspace_state::TxError> for WorkerError {
    fn from(e: medspace_state::TxError) -> Self {
        Self::Ledger(e.to_string())
    }
}

/// Requests per second one key may make to the worker's routes (the rounds' long-polls
/// included), and its burst.
pub const PER_KEY_PER_SEC: u32 = 100;
/// See [`PER_KEY_PER_SEC`].
pub const PER_KEY_BURST: u32 = 400;

/// `fut`'s output if it completes within `limit` of `clock`'s time, `None` otherwise (the
/// runtime's own `timeout` needs a `'static` future; the protocol's borrow their task).
pub async fn within<E: Clock, T>(
    clock: &E,
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let fut = std::pin::pin!(fut);
    let sleep = std::pin::pin!(clock.sleep(limit));
    match futures::future::select(fut, sleep).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// Wall-clock milliseconds since the epoch, for signed HTTP requests only (the protocol runs
/// on the runtime's clock).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A running worker: the compute actor, record sharing and their routes.
pub struct Worker {
    compute: Mailbox,
    actor: commonware_runtime::Handle<()>,
    heights: watch::Sender<u64>,
    router: axum::Router,
}

impl Worker {
    /// Starts the services on `ctx`'s runtime: the compute actor over `transport` and `plane`,
    /// record sharing over `source`.
    pub fn start<E, L, T, P, R>(
        ctx: E,
        p: Prepared,
        ledger: Arc<L>,
        transport: T,
        plane: Arc<P>,
        source: Arc<R>,
    ) -> Result<Self, WorkerError>
    where
        E: Spawner + Clock + CryptoRng,
        L: Ledger,
        T: Transport,
        P: DataPlane,
        R: RecordSource,
    {
        let store = Store::open(&p.store_dir)?;
        let (heights, rx) = watch::channel(ledger.snapshot().height);
        let submitter = Arc::new(Submitter::new(
            ledger.clone(),
            p.key.clone(),
            p.chain_id.clone(),
            rx,
        ));
        let (actor, compute) = Actor::new(
            ctx.child("worker"),
            compute::Config {
                member: p.member.clone(),
                key: p.key.clone(),
                agreement: p.secret.clone(),
                ledger: ledger.clone(),
                plane,
                store: store.clone(),
                submitter: submitter.clone(),
                step_timeout: p.share_timeout,
                mailbox_size: 1024,
            },
            transport,
        );
        let actor = actor.start();
        let records = Arc::new(RecordSharing::new(
            ctx.child("records"),
            p.member.clone(),
            ledger.clone(),
            source,
            submitter,
            store.clone(),
        ));
        let router = http::router(Arc::new(http::Routes {
            me: p.member.clone(),
            ledger,
            compute: compute.clone(),
            records,
            store,
            replays: medspace_api::auth::ReplayGuard::default(),
            per_key: medspace_api::limit::KeyLimiter::new(PER_KEY_PER_SEC, PER_KEY_BURST),
        }));
        tracing::info!(member = %p.member, "worker.start: following committed jobs");
        Ok(Self {
            compute,
            actor,
            heights,
            router,
        })
    }

    /// Tells the services that the node committed a block at `height`.
    pub fn on_block(&self, height: u64) {
        self.heights.send_replace(height);
        self.compute.committed(height);
    }

    /// Stops the compute service and every task it started (its site computations and
    /// aggregations), as a node that goes down stops them; its files stay for a restart.
    pub fn stop(self) {
        self.actor.abort();
    }

    /// The compute service's mailbox (the simulations' transport delivers to it).
    pub fn mailbox(&self) -> &Mailbox {
        &self.compute
    }

    /// The services' HTTP routes, to merge into the node's API.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }
}
