//! medspace-worker: the compute worker inside a data holder's node.
//!
//! The worker follows the blocks its node commits. For every job whose contract lists this
//! node's member among the data holders it plans the job from the ledger *as of the job's
//! block* (contract active and not expired, fields in scope, only patients whose consent allows
//! the purpose — [`medspace_compute::plan_job`]), runs the compiled query in the hospital's own
//! vault, adds its own discrete-Laplace noise and masks the vector with pairwise X25519 masks
//! ([`medspace_compute::federated::site_share`]). Only that signed, masked [`wire::Share`]
//! leaves the node, and only to the job's aggregator.
//!
//! The aggregator is the contract's first data holder. Its worker fetches every other site's
//! share over a signed node-to-node request (long-poll, with a deadline); a site that refuses
//! or does not answer in time is dropped, and the survivors reveal their net masks with the
//! dropped sites ([`wire::Reveal`], one dropped set per job and site, so masks can never be
//! peeled off one by one). It sums, suppresses small cells, keeps the released
//! [`wire::ResultDoc`], and posts `PostResult` (result hash, epsilon spent, contributing
//! sites and their cohort sizes) with the member's key through its own validator. The result
//! itself is served only to the job's submitter, on a request signed by their ledger key.
//!
//! The same node serves record sharing ([`records`]): a grantee redeems a patient's
//! authorization code and receives exactly the granted FHIR resources, once the access is
//! recorded on the ledger with the member's key (the worker's one nonce sequence).
//!
//! Masking is defence in depth: each site's noise alone makes its share ε-differentially
//! private, so even an aggregator that learned one site's unmasked vector would learn it only
//! under the job's privacy guarantee.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
mod http;
pub mod records;
pub mod store;
pub mod wire;

use config::Prepared;
use medspace_compute::federated::{self, FederatedError, Protection, SiteJob, SiteKeys};
use medspace_compute::{Links, plan_job};
use medspace_state::State;
use medspace_state::records::{ContractRecord, JobRecord, JobStatus};
use medspace_types::{Contribution, JobId, List, MemberId, Payload, PostResult, SignedTx};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use wire::{ResultCell, ResultDoc, Reveal, Share};
use x25519_dalek::PublicKey as XPublic;

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
    /// The job cannot run at this site (the ledger does not allow it, or computing failed).
    #[error("{0}")]
    Federated(#[from] FederatedError),
    /// The patient links could not be read.
    #[error("patient links: {0}")]
    Links(#[from] medspace_compute::links::LinkError),
    /// Another site did not deliver what the protocol needs.
    #[error("site {member}: {error}")]
    Peer {
        /// The site.
        member: String,
        /// Why.
        error: String,
    },
    /// The ledger refused or lost the worker's transaction.
    #[error("ledger: {0}")]
    Ledger(String),
}

impl From<medspace_state::TxError> for WorkerError {
    fn from(e: medspace_state::TxError) -> Self {
        Self::Ledger(e.to_string())
    }
}

/// A transaction's fate as the worker's node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxState {
    /// Waiting to be proposed.
    Pending,
    /// In a finalized block, applied (`Ok`) or refused by the state machine.
    Final(Result<(), String>),
    /// Refused at proposal: it will never be in a block.
    Dropped(String),
    /// Not known to the node.
    Unknown,
}

/// What the worker needs from the node it runs in.
pub trait Ledger: Send + Sync + 'static {
    /// The committed state and its height.
    fn snapshot(&self) -> (State, u64);
    /// Admits a signed transaction to the node's mempool; returns its id.
    fn submit(&self, tx: SignedTx) -> Result<[u8; 32], String>;
    /// What became of a submitted transaction.
    fn tx_state(&self, id: &[u8; 32]) -> TxState;
}

/// The site that aggregates a contract's jobs: its first data holder.
pub fn aggregator(contract: &ContractRecord) -> Option<&MemberId> {
    contract.owners.iter().next()
}

/// How long the poster waits for its `PostResult` to be finalized before trying again.
const POST_WAIT: Duration = Duration::from_secs(30);
/// Attempts at posting one result.
const POST_ATTEMPTS: usize = 5;

/// A running worker: its thread follows committed blocks; [`Worker::router`] serves its
/// node-to-node and requester routes.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    p: Prepared,
    ledger: Arc<dyn Ledger>,
    store: Store,
    /// Last committed height told by the node, and its condition variable (worker threads).
    height: Mutex<u64>,
    height_cv: Condvar,
    /// Bumped whenever a block commits or a share is computed or refused (HTTP long-polls).
    changed: tokio::sync::watch::Sender<u64>,
    /// Jobs this site refused, with why (kept in memory; recomputed after a restart).
    refused: Mutex<HashMap<JobId, String>>,
    /// Jobs this site is aggregating or has aggregated since start.
    aggregating: Mutex<HashSet<JobId>>,
    /// The next nonce this member's key signs with: transactions are pipelined (several in
    /// flight, consecutive nonces); a nonce whose transaction never entered the chain is
    /// handed out again.
    nonce: Mutex<Option<u64>>,
    /// Replay, guessing and concurrency guards of record redemption.
    guards: records::Guards,
    /// The node's async runtime, for outbound requests.
    rt: tokio::runtime::Handle,
    http: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Worker {
    /// Starts the worker's thread. Must be called from within the node's tokio runtime, which
    /// carries the worker's outbound requests.
    pub fn start(p: Prepared, ledger: Arc<dyn Ledger>) -> Result<Self, WorkerError> {
        let store = Store::open(&p.store_dir)?;
        let rt = tokio::runtime::Handle::try_current().map_err(|e| WorkerError::Invalid {
            what: "runtime",
            error: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| WorkerError::Invalid {
                what: "http client",
                error: e.to_string(),
            })?;
        let (_, height) = ledger.snapshot();
        let (changed, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            p,
            ledger,
            store,
            height: Mutex::new(height),
            height_cv: Condvar::new(),
            changed,
            refused: Mutex::new(HashMap::new()),
            aggregating: Mutex::new(HashSet::new()),
            nonce: Mutex::new(None),
            guards: records::Guards::default(),
            rt,
            http,
        });
        let w = inner.clone();
        std::thread::Builder::new()
            .name("medspace-worker".into())
            .spawn(move || w.follow())
            .map_err(|e| WorkerError::Io {
                path: "worker thread".into(),
                error: e.to_string(),
            })?;
        tracing::info!(member = %inner.p.member, "worker.start: following committed jobs");
        Ok(Self { inner })
    }

    /// Tells the worker that the node committed a block at `height`.
    pub fn on_block(&self, height: u64) {
        *lock(&self.inner.height) = height;
        self.inner.height_cv.notify_all();
        self.inner.changed.send_modify(|v| *v += 1);
    }

    /// The worker's HTTP routes, to merge into the node's API.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }
}

impl Inner {
    /// Blocks until the committed height is above `seen` (or `timeout` passes); returns it.
    fn wait_height_above(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = lock(&self.height);
        let (guard, _) = self
            .height_cv
            .wait_timeout_while(guard, timeout, |h| *h <= seen)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    }

    /// The worker thread: on every committed block, computes this site's share of each new
    /// job of its contracts and starts aggregating the jobs it aggregates.
    fn follow(self: Arc<Self>) {
        let mut seen = 0;
        let mut first = true;
        loop {
            if !first {
                seen = self.wait_height_above(seen, Duration::from_secs(3600));
            }
            first = false;
            let (state, height) = self.ledger.snapshot();
            seen = seen.max(height);
            let jobs = match state.jobs() {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "worker.follow: cannot list jobs");
                    continue;
                }
            };
            for job in jobs.iter().filter(|j| j.status == JobStatus::Submitted) {
                let contract = match state.contract(job.contract) {
                    Ok(Some(c)) => c,
                    _ => continue,
                };
                if !contract.owners.iter().any(|o| *o == self.p.member) {
                    continue;
                }
                self.ensure_share(&state, job, &contract);
                if aggregator(&contract) == Some(&self.p.member)
                    && lock(&self.aggregating).insert(job.id)
                {
                    let me = self.clone();
                    let id = job.id;
                    let spawned = std::thread::Builder::new()
                        .name("medspace-aggregate".into())
                        .spawn(move || {
                            let t = Instant::now();
                            match me.aggregate(id) {
                                Ok(()) => tracing::info!(job = %id, ms = t.elapsed().as_millis() as u64, "worker.aggregate: result posted"),
                                Err(e) => tracing::error!(job = %id, error = %e, "worker.aggregate: no result"),
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "worker.follow: cannot start aggregation");
                        lock(&self.aggregating).remove(&job.id);
                    }
                }
            }
        }
    }

    fn has_share(&self, job: JobId) -> bool {
        lock(&self.refused).contains_key(&job) || matches!(self.store.share(job), Ok(Some(_)))
    }

    /// Computes and keeps this site's share of `job` unless it has one (or refused it).
    fn ensure_share(&self, state: &State, job: &JobRecord, contract: &ContractRecord) {
        if self.has_share(job.id) {
            return;
        }
        let t = Instant::now();
        match self
            .compute_share(state, job, contract)
            .and_then(|(share, timings)| {
                self.store.put_share(&share)?;
                Ok(timings)
            }) {
            Ok(timings) => tracing::info!(
                job = %job.id,
                local_ms = timings.local.as_millis() as u64,
                noise_us = timings.noise.as_micros() as u64,
                mask_us = timings.mask.as_micros() as u64,
                total_ms = t.elapsed().as_millis() as u64,
                "worker.share: computed"
            ),
            Err(e) => {
                tracing::warn!(job = %job.id, reason = %e, "worker.share: refused");
                lock(&self.refused).insert(job.id, e.to_string());
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Every data holder's X25519 key in the contract's owner order, and this site's place.
    fn masking_peers(
        &self,
        state: &State,
        contract: &ContractRecord,
    ) -> Result<(usize, Vec<XPublic>), WorkerError> {
        let mut peers = Vec::new();
        for owner in contract.owners.iter() {
            let rec = state.member(owner)?.ok_or_else(|| WorkerError::Peer {
                member: owner.to_string(),
                error: "not a member".into(),
            })?;
            peers.push(XPublic::from(rec.member.agreement_key.0));
        }
        let me = contract
            .owners
            .iter()
            .position(|o| *o == self.p.member)
            .ok_or_else(|| {
                WorkerError::Federated(FederatedError::Plan(
                    medspace_compute::PlanError::NotAnOwner {
                        member: self.p.member.to_string(),
                        id: contract.id.to_string(),
                    },
                ))
            })?;
        Ok((me, peers))
    }

    fn compute_share(
        &self,
        state: &State,
        job: &JobRecord,
        contract: &ContractRecord,
    ) -> Result<(Share, federated::SiteTimings), WorkerError> {
        let spec = federated::job_spec(state, job.id)?;
        let validated = medspace_privacy::query::validate(&spec).map_err(FederatedError::from)?;
        let reads: Vec<(String, String)> = validated
            .reads
            .iter()
            .map(|(t, f)| (t.to_string(), f.to_string()))
            .collect();
        let links = Links::load(&self.p.vault_dir)?;
        let plan = plan_job(state, job.id, &self.p.member, &links, &reads)
            .map_err(FederatedError::from)?;
        let (me, peers) = self.masking_peers(state, contract)?;
        let k = state.policy()?.min_cell_k;
        let site_job = SiteJob {
            job: job.id,
            spec: &spec,
            epsilon_micro: plan.job.epsilon_reserved,
            protection: Protection::Full { k },
        };
        let mut rng = medspace_privacy::dp::os_rng().map_err(FederatedError::from)?;
        let keys = SiteKeys {
            me,
            secret: &self.p.secret,
            peers: &peers,
        };
        let (masked, timings) =
            federated::site_share(&self.p.vault_dir, &plan.cohort, &site_job, &keys, &mut rng)?;
        Ok((
            Share::sign(
                &self.p.key,
                job.id,
                self.p.member.clone(),
                plan.cohort.len() as u64,
                masked,
            ),
            timings,
        ))
    }

    /// The reveal of this site's net mask with `dropped` for `job` (one dropped set per job:
    /// a second, different set is refused, so the masks cannot be peeled off one by one).
    fn reveal(&self, state: &State, job: JobId, dropped: &[MemberId]) -> Result<Reveal, String> {
        let rec = state
            .job(job)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job not found: id={job}"))?;
        let contract = state
            .contract(rec.contract)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("contract not found: id={}", rec.contract))?;
        let owners: Vec<&MemberId> = contract.owners.iter().collect();
        let mut idx = Vec::new();
        for d in dropped {
            match owners.iter().position(|o| *o == d) {
                Some(_) if *d == self.p.member => {
                    return Err(format!("site {d} cannot reveal its masks with itself"));
                }
                Some(i) => idx.push(i),
                None => return Err(format!("site {d} holds no data of {}", contract.id)),
            }
        }
        if idx.is_empty() {
            return Err("no dropped site named".into());
        }
        let share = self
            .store
            .share(job)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("this site has no share of {job} to reveal masks for"))?;
        self.store
            .claim_reveal(job, dropped)
            .map_err(|e| e.to_string())?;
        let (me, peers) = self
            .masking_peers(state, &contract)
            .map_err(|e| e.to_string())?;
        let values = medspace_privacy::secagg::unmask_dropped(
            &federated::job_binding(job),
            me,
            &self.p.secret,
            &peers,
            &idx,
            share.masked.len(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Reveal::sign(
            &self.p.key,
            job,
            self.p.member.clone(),
            dropped.to_vec(),
            values,
        ))
    }

    /// Aggregates `job`: collects the shares (and reveals for dropped sites), releases the
    /// result, keeps it and posts it on the ledger.
    fn aggregate(&self, job: JobId) -> Result<(), WorkerError> {
        let (state, _) = self.ledger.snapshot();
        let rec = state.job(job)?.ok_or_else(|| WorkerError::Invalid {
            what: "job",
            error: format!("not found: id={job}"),
        })?;
        if rec.status != JobStatus::Submitted {
            return Ok(());
        }
        let contract = state
            .contract(rec.contract)?
            .ok_or_else(|| WorkerError::Invalid {
                what: "contract",
                error: format!("not found: id={}", rec.contract),
            })?;
        // A result released before a restart is posted as it was, never recomputed.
        let bytes = match self.store.result(job)? {
            Some(b) => b,
            None => {
                let doc = self.release(&state, &rec, &contract)?;
                let bytes = serde_json::to_vec(&doc).map_err(|e| WorkerError::Invalid {
                    what: "result",
                    error: e.to_string(),
                })?;
                self.store.put_result(job, &bytes)?;
                bytes
            }
        };
        let doc: ResultDoc = serde_json::from_slice(&bytes).map_err(|e| WorkerError::Invalid {
            what: "stored result",
            error: e.to_string(),
        })?;
        self.post(&doc, wire::result_hash(&bytes))
    }

    fn release(
        &self,
        state: &State,
        job: &JobRecord,
        contract: &ContractRecord,
    ) -> Result<ResultDoc, WorkerError> {
        let spec = federated::job_spec(state, job.id)?;
        let k = state.policy()?.min_cell_k;
        let owners: Vec<MemberId> = contract.owners.iter().cloned().collect();
        let deadline = Instant::now() + self.p.share_timeout;
        let mut pending = Vec::new();
        for owner in &owners {
            if *owner == self.p.member {
                continue;
            }
            let fut = self.fetch_share(state, owner, job.id, deadline);
            pending.push((owner.clone(), self.rt.spawn(fut)));
        }
        let mut got: HashMap<MemberId, Share> = HashMap::new();
        let mut dropped: Vec<(MemberId, String)> = Vec::new();
        match self.store.share(job.id)? {
            Some(s) => {
                got.insert(self.p.member.clone(), s);
            }
            None => dropped.push((
                self.p.member.clone(),
                lock(&self.refused)
                    .get(&job.id)
                    .cloned()
                    .unwrap_or_else(|| "no share computed".into()),
            )),
        }
        for (owner, handle) in pending {
            match self.rt.block_on(handle) {
                Ok(Ok(share)) => {
                    got.insert(owner, share);
                }
                Ok(Err(why)) => dropped.push((owner, why)),
                Err(e) => dropped.push((owner, e.to_string())),
            }
        }
        let survivors: Vec<&MemberId> = owners.iter().filter(|o| got.contains_key(*o)).collect();
        let dropped_ids: Vec<MemberId> = owners
            .iter()
            .filter(|o| !got.contains_key(*o))
            .cloned()
            .collect();
        dropped.sort_by_key(|(m, _)| owners.iter().position(|o| o == m));
        let layout = medspace_privacy::query::groups(&spec).len();
        let cells = if survivors.is_empty() {
            // Nobody computed: nothing is released, and the ledger learns that no site
            // contributed (the job's reservation is returned).
            medspace_privacy::query::groups(&spec)
                .iter()
                .map(|g| ResultCell {
                    group: federated::group_label(g),
                    n: None,
                    mean: None,
                })
                .collect::<Vec<_>>()
        } else {
            let mut reveals = Vec::new();
            if !dropped_ids.is_empty() {
                for s in &survivors {
                    let reveal = if **s == self.p.member {
                        self.reveal(state, job.id, &dropped_ids).map_err(|error| {
                            WorkerError::Peer {
                                member: s.to_string(),
                                error,
                            }
                        })?
                    } else {
                        self.rt
                            .block_on(self.fetch_reveal(state, s, job.id, &dropped_ids))?
                    };
                    reveals.push(reveal.values);
                }
            }
            let shares: Vec<Vec<u64>> = survivors
                .iter()
                .filter_map(|s| got.get(*s).map(|x| x.masked.clone()))
                .collect();
            if shares.iter().any(|s| s.len() != layout * values_per(&spec)) {
                return Err(WorkerError::Invalid {
                    what: "shares",
                    error: "a share does not fit the query's layout".into(),
                });
            }
            federated::release(&spec, &shares, &reveals, Protection::Full { k })?
                .iter()
                .map(|c| ResultCell {
                    group: federated::group_label(&c.group),
                    n: c.n,
                    mean: c.mean,
                })
                .collect()
        };
        Ok(ResultDoc {
            version: 1,
            job: job.id,
            contract: contract.id,
            aggregator: self.p.member.clone(),
            k,
            epsilon_micro: job.epsilon_reserved,
            cells,
            contributions: survivors
                .iter()
                .filter_map(|s| got.get(*s).map(|x| ((*s).clone(), x.cohort)))
                .collect(),
            dropped,
        })
    }

    fn peer_url(&self, member: &MemberId) -> Result<&str, String> {
        self.p
            .peers
            .get(member)
            .map(String::as_str)
            .ok_or_else(|| format!("no worker address known for member={member}"))
    }

    fn signed_get(
        &self,
        url: &str,
        path_and_query: &str,
    ) -> impl std::future::Future<Output = Result<(u16, Vec<u8>), String>> + Send + 'static {
        let auth = medspace_api::auth::sign_request(
            &self.p.key,
            "GET",
            path_and_query,
            http::now_ms(),
            b"",
        );
        let req = self
            .http
            .get(format!("{url}{path_and_query}"))
            .header("authorization", auth);
        async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok((status, body.to_vec()))
        }
    }

    /// Long-polls `owner`'s worker for its share of `job` until `deadline`.
    fn fetch_share(
        &self,
        state: &State,
        owner: &MemberId,
        job: JobId,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Share, String>> + Send + 'static {
        let key = state
            .member(owner)
            .ok()
            .flatten()
            .map(|r| r.member.key)
            .ok_or_else(|| format!("member not found: member={owner}"));
        let url = self.peer_url(owner).map(str::to_string);
        let owner = owner.clone();
        let this = (self.p.key.clone(), self.http.clone());
        async move {
            let key = key?;
            let url = url?;
            let (signer, client) = this;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("no share before the deadline".into());
                }
                let wait = left.min(Duration::from_secs(5)).as_millis();
                let pq = format!("/v1/worker/jobs/{job}/share?wait_ms={wait}");
                let auth =
                    medspace_api::auth::sign_request(&signer, "GET", &pq, http::now_ms(), b"");
                let sent = client
                    .get(format!("{url}{pq}"))
                    .header("authorization", auth)
                    .timeout(left + Duration::from_secs(1))
                    .send()
                    .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(_) => {
                        // The site's node is down or restarting: try again until the deadline.
                        tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                        continue;
                    }
                };
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                match status {
                    200 => {
                        let share: Share = serde_json::from_slice(&body)
                            .map_err(|e| format!("malformed share: {e}"))?;
                        if share.job != job || share.member != owner || !share.verify(&key) {
                            return Err("share not signed by the site for this job".into());
                        }
                        return Ok(share);
                    }
                    202 => continue,
                    _ => return Err(http::error_text(status, &body)),
                }
            }
        }
    }

    async fn fetch_reveal(
        &self,
        state: &State,
        owner: &MemberId,
        job: JobId,
        dropped: &[MemberId],
    ) -> Result<Reveal, WorkerError> {
        let peer = |error: String| WorkerError::Peer {
            member: owner.to_string(),
            error,
        };
        let key = state
            .member(owner)?
            .map(|r| r.member.key)
            .ok_or_else(|| peer("not a member".into()))?;
        let url = self.peer_url(owner).map_err(peer)?.to_string();
        let names: Vec<&str> = dropped.iter().map(MemberId::as_str).collect();
        let pq = format!("/v1/worker/jobs/{job}/reveal?dropped={}", names.join(","));
        let (status, body) = self.signed_get(&url, &pq).await.map_err(peer)?;
        if status != 200 {
            return Err(peer(http::error_text(status, &body)));
        }
        let reveal: Reveal =
            serde_json::from_slice(&body).map_err(|e| peer(format!("malformed reveal: {e}")))?;
        if reveal.job != job
            || reveal.member != *owner
            || reveal.dropped != dropped
            || !reveal.verify(&key)
        {
            return Err(peer(
                "reveal not signed by the site for this request".into(),
            ));
        }
        Ok(reveal)
    }

    /// Posts the result with this member's key and waits until it is final.
    fn post(&self, doc: &ResultDoc, result_hash: medspace_types::Hash) -> Result<(), WorkerError> {
        let contributions = doc
            .contributions
            .iter()
            .map(|(member, records)| Contribution {
                member: member.clone(),
                records: *records,
            })
            .collect::<Vec<_>>();
        let payload = Payload::PostResult(PostResult {
            job: doc.job,
            result_hash,
            epsilon_spent: if contributions.is_empty() {
                0
            } else {
                doc.epsilon_micro
            },
            contributions: List::new(contributions).map_err(|e| WorkerError::Invalid {
                what: "contributions",
                error: e.to_string(),
            })?,
        });
        let job = doc.job;
        self.submit_and_wait(payload, &|state: &State| {
            matches!(state.job(job), Ok(Some(j)) if j.status == JobStatus::Submitted)
        })
    }

    /// The next nonce for this member's key: the ledger's, or past the ones in flight.
    fn take_nonce(&self, state: &State) -> Result<u64, WorkerError> {
        let ledger_next = state.next_nonce(&self.p.key.public())?;
        let mut next = lock(&self.nonce);
        let n = next.map_or(ledger_next, |x| x.max(ledger_next));
        *next = Some(n + 1);
        Ok(n)
    }

    /// `nonce` was not consumed by the chain: the next transaction signs with it (those after
    /// it, if any are in flight, fail on their nonce and are signed again).
    fn give_back_nonce(&self, nonce: u64) {
        let mut next = lock(&self.nonce);
        if next.is_some_and(|x| x > nonce) {
            *next = Some(nonce);
        }
    }

    /// Signs `payload` with this member's key (pipelined nonces: several transactions may be
    /// in flight), submits it through the node's validator and waits until it is final: `Ok`
    /// once applied, the state machine's reason if refused. After a nonce race it is signed
    /// again with a fresh nonce, while `still_needed` holds.
    pub(crate) fn submit_and_wait(
        &self,
        payload: Payload,
        still_needed: &dyn Fn(&State) -> bool,
    ) -> Result<(), WorkerError> {
        let kind = payload.kind();
        let mut last = String::from("not attempted");
        for _ in 0..POST_ATTEMPTS {
            let (state, height) = self.ledger.snapshot();
            if !still_needed(&state) {
                return Ok(());
            }
            let nonce = self.take_nonce(&state)?;
            let tx = SignedTx::new(&self.p.chain_id, &self.p.key, nonce, payload.clone());
            let id = match self.ledger.submit(tx) {
                Ok(id) => id,
                Err(e) => {
                    self.give_back_nonce(nonce);
                    last = e;
                    self.wait_height_above(height, POST_WAIT);
                    continue;
                }
            };
            let started = Instant::now();
            let mut seen = height;
            loop {
                match self.ledger.tx_state(&id) {
                    TxState::Final(Ok(())) => return Ok(()),
                    TxState::Final(Err(reason)) => {
                        self.give_back_nonce(nonce);
                        // A predecessor's nonce went back: sign again after it.
                        if reason.contains("nonce") {
                            last = reason;
                            break;
                        }
                        return Err(WorkerError::Ledger(reason));
                    }
                    // Only a nonce race (a predecessor that never entered the chain, another
                    // user of this key) is worth signing again; any other refusal is the
                    // state machine's final word.
                    TxState::Dropped(reason) => {
                        self.give_back_nonce(nonce);
                        if reason.contains("nonce") {
                            last = reason;
                            break;
                        }
                        return Err(WorkerError::Ledger(reason));
                    }
                    TxState::Pending | TxState::Unknown => {}
                }
                if started.elapsed() > POST_WAIT {
                    return Err(WorkerError::Ledger(format!(
                        "{kind} not finalized within {}s",
                        POST_WAIT.as_secs()
                    )));
                }
                seen = self.wait_height_above(seen, Duration::from_secs(1));
            }
        }
        Err(WorkerError::Ledger(format!(
            "{kind} failed {POST_ATTEMPTS} times: {last}"
        )))
    }
}

fn values_per(spec: &medspace_privacy::query::QuerySpec) -> usize {
    match spec.aggregate {
        medspace_privacy::query::Aggregate::Count => 1,
        medspace_privacy::query::Aggregate::Mean(_) => 2,
    }
}
