//! The compute service as a protocol, under commonware's deterministic runtime: three hospitals'
//! workers (the real actors, stores and round) over a simulated transport with scripted delays
//! and failures, an in-process ledger sealing a block every 50 ms of simulated time, and a
//! scripted data plane whose vectors are known, so every released total can be checked exactly.
//!
//! Each scenario runs on many seeds; a seed fixes message timings, so a failure names a seed
//! that reproduces it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use commonware_runtime::{Clock, Runner as _, Spawner, Supervisor as _, deterministic};
use medspace_consortium::{Consortium, GENESIS_MS};
use medspace_ledger::{Ledger, Snapshot, SubmitError, TxStatus, execute_block};
use medspace_privacy::secagg::SiteSecrets;
use medspace_state::State;
use medspace_state::records::JobStatus;
use medspace_types::*;
use medspace_worker::Worker;
use medspace_worker::compute::{
    DataPlane, JoinInput, Mailbox, ModelRows, PlaneRefusal, SiteVector,
};
use medspace_worker::config::Prepared;
use medspace_worker::records::RecordSource;
use medspace_worker::round::Job;
use medspace_worker::transport::{PeerError, Transport};
use medspace_worker::wire::{
    DealingMsg, MaskRequest, MaskedMsg, OpenAnswer, OpenAsk, PsiAnswer, PsiAsk, ResultDoc,
    RevealMsg, StepMsg, StepRequest,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SEEDS: u64 = 50;
const BLOCK_MS: u64 = 50;
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
const SPEC: &str =
    r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;

// ---------------------------------------------------------------------------------------------
// The in-process ledger.

struct LedgerInner {
    state: State,
    height: u64,
    time_ms: u64,
    pending: Vec<SignedTx>,
    status: HashMap<Hash, TxStatus>,
}

struct SimLedger {
    inner: Mutex<LedgerInner>,
    /// Transaction kinds this ledger refuses at admission (a scripted "never final").
    refused_kinds: Mutex<Vec<&'static str>>,
}

impl SimLedger {
    fn new(genesis: &Genesis) -> Self {
        Self {
            inner: Mutex::new(LedgerInner {
                state: State::genesis(genesis).unwrap(),
                height: 0,
                time_ms: genesis.time_ms,
                pending: Vec::new(),
                status: HashMap::new(),
            }),
            refused_kinds: Mutex::new(Vec::new()),
        }
    }

    /// Seals the pending transactions into the next block; its height.
    fn seal(&self) -> u64 {
        let mut g = self.inner.lock().unwrap();
        g.height += 1;
        g.time_ms += BLOCK_MS;
        let txs: Vec<Bytes> = std::mem::take(&mut g.pending)
            .iter()
            .map(SignedTx::to_bytes)
            .collect();
        let (h, t) = (g.height, g.time_ms);
        let outcomes = execute_block(&mut g.state, h, t, &txs);
        for (id, outcome) in outcomes {
            let status = match outcome {
                Ok(r) => TxStatus::Finalized {
                    height: h,
                    receipt: Some(r),
                },
                Err(e) => TxStatus::Refused {
                    height: h,
                    reason: e.to_string(),
                },
            };
            g.status.insert(Hash(id), status);
        }
        h
    }

    fn state(&self) -> State {
        self.inner.lock().unwrap().state.clone()
    }
}

impl Ledger for SimLedger {
    fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock().unwrap();
        Snapshot {
            state: g.state.clone(),
            height: g.height,
            time_ms: g.time_ms,
            anchor: None,
        }
    }

    fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let mut g = self.inner.lock().unwrap();
        if !tx.verify_signature() {
            return Err(SubmitError::Invalid("bad signature".into()));
        }
        let kind = tx.body.payload.kind();
        if self.refused_kinds.lock().unwrap().contains(&kind) {
            return Err(SubmitError::Invalid(format!("{kind} refused (scripted)")));
        }
        g.state
            .check_admission(&tx)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let id = tx.id();
        if g.status.contains_key(&id) {
            return Err(SubmitError::Duplicate(id));
        }
        g.status.insert(id, TxStatus::Pending);
        g.pending.push(tx);
        Ok(id)
    }

    fn tx_status(&self, id: &Hash) -> TxStatus {
        self.inner
            .lock()
            .unwrap()
            .status
            .get(id)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated transport.

/// How a site's node behaves on the network.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    /// Answers after a latency drawn per request (ms range).
    Normal,
    /// Never answers (requests hang).
    Silent,
    /// Answers only after this delay.
    Late(Duration),
    /// Refuses connections (a node that is down).
    Down,
}

#[derive(Default)]
struct Net {
    mailboxes: BTreeMap<MemberId, Mailbox>,
    links: BTreeMap<MemberId, Link>,
}

#[derive(Clone)]
struct SimTransport {
    clock: Arc<deterministic::Context>,
    rng: Arc<Mutex<rand_chacha::ChaCha20Rng>>,
    me: MemberId,
    net: Arc<Mutex<Net>>,
}

impl SimTransport {
    /// The target's mailbox after the link's delay, or why not.
    async fn reach(&self, to: &MemberId) -> Result<Mailbox, PeerError> {
        let (link, mailbox) = {
            let net = self.net.lock().unwrap();
            (
                net.links.get(to).copied().unwrap_or(Link::Normal),
                net.mailboxes.get(to).cloned(),
            )
        };
        match link {
            Link::Silent => futures::future::pending().await,
            Link::Down => return Err(PeerError::Unreachable("connection refused".into())),
            Link::Late(d) => self.clock.sleep(d).await,
            Link::Normal => {
                let ms = 1 + (self.rng.lock().unwrap().next_u64() % 40);
                self.clock.sleep(Duration::from_millis(ms)).await;
            }
        }
        mailbox.ok_or_else(|| PeerError::Unreachable(format!("no node for {to}")))
    }

    async fn bounded<T>(
        &self,
        wait: Duration,
        fut: impl std::future::Future<Output = Result<T, PeerError>>,
    ) -> Result<T, PeerError> {
        match medspace_worker::within(self.clock.as_ref(), wait.max(Duration::from_millis(1)), fut)
            .await
        {
            Some(r) => r,
            None => Err(PeerError::NotReady),
        }
    }
}

use rand_core::Rng as _;

impl Transport for SimTransport {
    fn dealing(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<DealingMsg, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(wait, mb.dealing(job, this.me.clone())).await
        }
    }

    fn mask(
        &self,
        to: &MemberId,
        req: MaskRequest,
    ) -> impl std::future::Future<Output = Result<MaskedMsg, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            mb.mask(req, this.me.clone()).await
        }
    }

    fn reveal(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<RevealMsg, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(wait, mb.reveal(job, this.me.clone())).await
        }
    }

    fn step(
        &self,
        to: &MemberId,
        req: StepRequest,
    ) -> impl std::future::Future<Output = Result<StepMsg, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(Duration::from_secs(30), mb.step(req, this.me.clone()))
                .await
        }
    }

    fn psi(
        &self,
        to: &MemberId,
        ask: PsiAsk,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<PsiAnswer, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(wait, mb.psi(ask, this.me.clone())).await
        }
    }

    fn sums(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl std::future::Future<Output = Result<medspace_worker::wire::SumsMsg, PeerError>> + Send
    {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(wait, mb.sums(job, this.me.clone())).await
        }
    }

    fn open(
        &self,
        to: &MemberId,
        ask: OpenAsk,
    ) -> impl std::future::Future<Output = Result<OpenAnswer, PeerError>> + Send {
        let (this, to) = (self.clone(), to.clone());
        async move {
            let mb = this.reach(&to).await?;
            this.bounded(Duration::from_secs(30), mb.open(ask, this.me.clone()))
                .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted data plane: site `i` contributes `100·(i+1) + 10·cell` to every cell.

struct FakePlane {
    site: usize,
    /// The site's patients' pseudonyms, in the count-once scenarios: cell 0 then counts those
    /// not left to an earlier site.
    patients: Option<Vec<PatientId>>,
    /// The site's input to a vertical study, in those scenarios.
    join: Option<JoinInput>,
}

/// Patient `i`'s pseudonym in the count-once scenarios.
fn pseudonym(i: u32) -> PatientId {
    PatientId(Hash::of(&[b"sim-patient", &i.to_be_bytes()]).0)
}

/// Site `i`'s patients in the count-once scenarios: a holds 0..40, b 30..70, c 0..10 and
/// 60..90 (90 persons, 30 of them held twice).
fn site_patients(site: usize) -> Vec<PatientId> {
    let range: Vec<u32> = match site {
        0 => (0..40).collect(),
        1 => (30..70).collect(),
        _ => (0..10).chain(60..90).collect(),
    };
    range.into_iter().map(pseudonym).collect()
}

fn fake_vector(site: usize, len: usize) -> Vec<i64> {
    (0..len)
        .map(|c| 100 * (site as i64 + 1) + 10 * c as i64)
        .collect()
}

impl DataPlane for FakePlane {
    fn site_vector(
        &self,
        state: &State,
        job: JobId,
        _member: &MemberId,
        leave_out: &BTreeSet<PatientId>,
    ) -> Result<SiteVector, PlaneRefusal> {
        let j = Job::from_ledger(state, job).map_err(|e| PlaneRefusal(e.to_string()))?;
        let mut values = fake_vector(self.site, j.layout_len());
        if let Some(patients) = &self.patients {
            values[0] = patients.iter().filter(|p| !leave_out.contains(p)).count() as i64;
        }
        Ok(SiteVector {
            values,
            cohort: 40 + self.site as u64,
        })
    }

    fn job_patients(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
    ) -> Result<Option<Vec<PatientId>>, PlaneRefusal> {
        Ok(self.patients.clone())
    }

    fn model_rows(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
        _leave_out: &BTreeSet<PatientId>,
    ) -> Result<ModelRows, PlaneRefusal> {
        Ok(fake_rows(self.site))
    }

    fn join_input(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
    ) -> Result<JoinInput, PlaneRefusal> {
        self.join
            .clone()
            .ok_or_else(|| PlaneRefusal("no vertical input here".into()))
    }
}

/// Site `i`'s rows of a model `y ~ age`: 60 persons, a deterministic mix of outcomes.
fn fake_rows(site: usize) -> ModelRows {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..60 {
        let age = 20.0 + ((r * 7 + site * 13) % 60) as f64;
        x.extend([1.0, age]);
        y.push(f64::from((r * 5 + site * 3 + age as usize) % 9 < 4));
    }
    ModelRows {
        p: 2,
        x,
        y,
        offset: None,
        cohort: 60,
    }
}

struct NoRecords;

impl RecordSource for NoRecords {
    fn patient_bundle(&self, _: &PatientId) -> Result<Option<serde_json::Value>, PlaneRefusal> {
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// The consortium, its contract and job.

struct World {
    ctx: deterministic::Context,
    seed: u64,
    c: Consortium,
    ledger: Arc<SimLedger>,
    net: Arc<Mutex<Net>>,
    dir: PathBuf,
    workers: Arc<Mutex<BTreeMap<MemberId, Worker>>>,
}

fn member(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

impl World {
    fn new(ctx: deterministic::Context, seed: u64, name: &str) -> Self {
        let c = Consortium::default_devnet(1, GENESIS_MS).unwrap();
        let ledger = Arc::new(SimLedger::new(&c.genesis));
        let dir = std::env::temp_dir().join(format!(
            "medspace-worker-sim-{name}-{seed}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let world = Self {
            ctx,
            seed,
            c,
            ledger,
            net: Arc::new(Mutex::new(Net::default())),
            dir,
            workers: Arc::new(Mutex::new(BTreeMap::new())),
        };
        world.start_blocks();
        world
    }

    /// Seals a block every 50 ms and tells every running worker.
    fn start_blocks(&self) {
        let (ledger, workers) = (self.ledger.clone(), self.workers.clone());
        self.ctx.child("blocks").spawn(move |ctx| async move {
            loop {
                ctx.sleep(Duration::from_millis(BLOCK_MS)).await;
                let h = ledger.seal();
                for w in workers.lock().unwrap().values() {
                    w.on_block(h);
                }
            }
        });
    }

    /// Starts (or restarts, over the same files) a hospital's worker.
    fn start_worker(&self, name: &str) {
        self.start_worker_with(name, false);
    }

    /// [`World::start_worker`]; with `patients`, its plane holds [`site_patients`].
    fn start_worker_with(&self, name: &str, patients: bool) {
        let site = medspace_consortium::HOSPITALS
            .iter()
            .position(|h| *h == name)
            .unwrap();
        self.start_plane(
            name,
            FakePlane {
                site,
                patients: patients.then(|| site_patients(site)),
                join: None,
            },
        );
    }

    /// Starts `name`'s worker over `plane`.
    fn start_plane(&self, name: &str, plane: FakePlane) {
        let m = member(name);
        let site = plane.site;
        let p = Prepared {
            member: m.clone(),
            key: self.c.node_key(name).unwrap().clone(),
            secret: self.c.agreement(name),
            vault_dir: self.dir.join(name),
            store_dir: self.dir.join(name).join("worker"),
            peers: BTreeMap::new(),
            share_timeout: STEP_TIMEOUT,
            chain_id: self.c.genesis.chain_id.clone(),
        };
        let transport = SimTransport {
            clock: Arc::new(self.ctx.child("transport")),
            rng: Arc::new(Mutex::new(rand_core::SeedableRng::seed_from_u64(
                self.seed ^ site as u64,
            ))),
            me: m.clone(),
            net: self.net.clone(),
        };
        let w = Worker::start(
            self.ctx.child("worker"),
            p,
            self.ledger.clone(),
            transport,
            Arc::new(plane),
            Arc::new(NoRecords),
        )
        .unwrap();
        self.net
            .lock()
            .unwrap()
            .mailboxes
            .insert(m.clone(), w.mailbox().clone());
        self.workers.lock().unwrap().insert(m, w);
    }

    /// Stops a hospital's worker and every task it started (its files stay).
    fn stop_worker(&self, name: &str) {
        let m = member(name);
        self.net.lock().unwrap().mailboxes.remove(&m);
        if let Some(w) = self.workers.lock().unwrap().remove(&m) {
            w.stop();
        }
    }

    fn link(&self, name: &str, link: Link) {
        self.net.lock().unwrap().links.insert(member(name), link);
    }

    fn submit(&self, key: &Keypair, payload: Payload) {
        let state = self.ledger.state();
        let pending = self
            .ledger
            .inner
            .lock()
            .unwrap()
            .pending
            .iter()
            .filter(|t| t.body.signer == key.public())
            .count() as u64;
        let nonce = state.next_nonce(&key.public()).unwrap() + pending;
        let tx = SignedTx::new(&self.c.genesis.chain_id, key, nonce, payload);
        self.ledger.submit(tx).unwrap();
    }

    async fn next_block(&self) {
        self.ctx.sleep(Duration::from_millis(BLOCK_MS + 1)).await;
    }

    /// Catalog, an L2 research contract over the three hospitals approved by their stewards,
    /// and a job; returns the job.
    async fn contract_and_job(&self) -> JobId {
        self.contract_and_job_for(SPEC).await
    }

    /// [`World::contract_and_job`] for another computation.
    async fn contract_and_job_for(&self, spec: &str) -> JobId {
        self.contract_and_job_over(spec, &medspace_consortium::HOSPITALS)
            .await
    }

    /// [`World::contract_and_job_for`] over the data of `holders`.
    async fn contract_and_job_over(&self, spec: &str, holders: &[&str]) -> JobId {
        for h in holders {
            self.submit(
                self.c.user_key(&format!("{h}.steward")).unwrap(),
                Payload::PublishDataset(PublishDataset {
                    dataset: person_dataset(h),
                }),
            );
        }
        self.next_block().await;
        let researcher = self.c.user_key("research-1.researcher").unwrap();
        let fields: Vec<FieldRef> = holders
            .iter()
            .flat_map(|h| {
                ["person_id", "gender_source_value"].map(|f| FieldRef {
                    dataset: DatasetId::new(&format!("{h}.cdm")).unwrap(),
                    table: Text::new("person").unwrap(),
                    field: Text::new(f).unwrap(),
                })
            })
            .collect();
        self.submit(
            researcher,
            Payload::SubmitRequest(SubmitRequest {
                purpose: Purpose::Research,
                mode: Mode::Compute,
                study: None,
                fields: List::new(fields).unwrap(),
                computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
                expiry_ms: GENESIS_MS + 90 * 86_400_000,
                epsilon_budget: 1_000_000,
                fee: 0,
            }),
        );
        self.next_block().await;
        let contract = self.ledger.state().contracts().unwrap()[0].id;
        for h in holders {
            self.submit(
                self.c.user_key(&format!("{h}.steward")).unwrap(),
                Payload::Approve(Approve { contract }),
            );
        }
        // A higher level (a vertical study reads L3 amounts) needs the committees too.
        let record = self.ledger.state().contract(contract).unwrap().unwrap();
        for slot in record.approvals.iter() {
            let committee = match slot.role {
                Role::DataCommittee => "hospital-a.data-committee",
                Role::EthicsCommittee => "hospital-b.ethics-committee",
                _ => continue,
            };
            self.submit(
                self.c.user_key(committee).unwrap(),
                Payload::Approve(Approve { contract }),
            );
        }
        self.next_block().await;
        self.submit(
            researcher,
            Payload::SubmitJob(SubmitJob {
                contract,
                computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
                epsilon: 100_000,
            }),
        );
        self.next_block().await;
        let jobs = self.ledger.state().jobs().unwrap();
        assert_eq!(
            jobs.len(),
            1,
            "the job is on the ledger; its contract: {:?}; refused: {:?}",
            self.ledger
                .state()
                .contracts()
                .unwrap()
                .first()
                .map(|c| (c.status, c.approvals.clone())),
            self.ledger
                .inner
                .lock()
                .unwrap()
                .status
                .values()
                .filter(|s| matches!(s, TxStatus::Refused { .. }))
                .collect::<Vec<_>>()
        );
        jobs[0].id
    }

    /// Waits (simulated time) until the job has a result on the ledger.
    async fn result(&self, job: JobId, within: Duration) -> medspace_state::records::JobResult {
        let start = self.ctx.current();
        loop {
            if let Some(r) = self.ledger.state().job(job).unwrap().and_then(|j| j.result) {
                return r;
            }
            if self.ctx.current().duration_since(start).unwrap() >= within {
                let job = self.ledger.state().job(job).unwrap();
                let collected = medspace_worker::store::Store::open(
                    &self.dir.join("hospital-a").join("worker"),
                )
                .unwrap()
                .collected(job.as_ref().unwrap().id)
                .unwrap();
                panic!(
                    "no result within {within:?}: job {job:?}, aggregator collected {collected:?}"
                );
            }
            self.next_block().await;
        }
    }

    /// The aggregator's released result, checked against the hash on the ledger.
    fn released(&self, job: JobId, posted: &medspace_state::records::JobResult) -> ResultDoc {
        let store =
            medspace_worker::store::Store::open(&self.dir.join("hospital-a").join("worker"))
                .unwrap();
        let bytes = store
            .result(job)
            .unwrap()
            .expect("the aggregator kept its result");
        assert_eq!(
            medspace_worker::wire::result_hash(&bytes),
            posted.result_hash
        );
        serde_json::from_slice(&bytes).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn person_dataset(h: &str) -> DatasetDescription {
    let field = |name: &str| FieldDesc {
        name: Text::new(name).unwrap(),
        level: Level::L2,
        missing_ppm: 0,
        invalid_ppm: 0,
    };
    DatasetDescription {
        id: DatasetId::new(&format!("{h}.cdm")).unwrap(),
        title: Text::new(format!("{h} common data model")).unwrap(),
        version: 1,
        tables: List::new(vec![TableDesc {
            name: Text::new("person").unwrap(),
            rows: 100,
            duplicate_ppm: 0,
            implausible_ppm: 0,
            fields: List::new(vec![field("person_id"), field("gender_source_value")]).unwrap(),
        }])
        .unwrap(),
        content_hash: Hash::of(&[h.as_bytes()]),
    }
}

/// The exact totals of the sites in `sites` (indices) for the spec's layout.
fn expected(sites: &[usize]) -> Vec<Option<i64>> {
    let (spec, _) = medspace_privacy::query::parse(SPEC).unwrap();
    let len = medspace_privacy::release::layout_len(&spec);
    (0..len)
        .map(|c| Some(sites.iter().map(|s| fake_vector(*s, len)[c]).sum()))
        .collect()
}

fn cells(doc: &ResultDoc) -> Vec<Option<i64>> {
    doc.cells.iter().map(|c| c.n).collect()
}

fn runner(seed: u64) -> deterministic::Runner {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    )
}

/// Runs one seed of a scenario; returns what the test compares across runs.
fn run_job(seed: u64, name: &'static str, setup: fn(&World)) -> (ResultDoc, Hash) {
    runner(seed).start(|ctx| async move {
        let w = World::new(ctx, seed, name);
        for h in medspace_consortium::HOSPITALS {
            w.start_worker(h);
        }
        setup(&w);
        let job = w.contract_and_job().await;
        let posted = w.result(job, Duration::from_secs(60)).await;
        let doc = w.released(job, &posted);
        let record = w.ledger.state().job(job).unwrap().unwrap();
        assert_eq!(record.status, JobStatus::Done);
        (doc, w.ledger.state().root())
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

#[test]
fn a_three_site_job_releases_the_exact_sum_on_every_seed() {
    for seed in 0..SEEDS {
        let (doc, root) = run_job(seed, "all", |_| {});
        assert_eq!(cells(&doc), expected(&[0, 1, 2]), "seed {seed}");
        assert_eq!(doc.contributions.len(), 3, "seed {seed}");
        // These planes know no pseudonyms: the result says who was not matched with whom.
        let pair = |a: &str, b: &str| (member(a), member(b));
        assert_eq!(
            doc.not_counted_once,
            vec![
                pair("hospital-b", "hospital-a"),
                pair("hospital-c", "hospital-a"),
                pair("hospital-c", "hospital-b")
            ],
            "seed {seed}"
        );
        assert!(doc.dropped.is_empty(), "seed {seed}: {:?}", doc.dropped);
        if seed < 3 {
            // Same seed, same run: the released bytes and the ledger's root.
            let (again, again_root) = run_job(seed, "again", |_| {});
            assert_eq!(again, doc, "seed {seed}");
            assert_eq!(again_root, root, "seed {seed}");
        }
    }
}

/// Site `site`'s blinded set as a later site would send it, with `n` pseudonyms.
fn psi_ask(job: JobId, first: u32, n: u32, seed: u64) -> PsiAsk {
    let ids = medspace_worker::compute::once::identifiers(
        job,
        &(first..first + n).map(pseudonym).collect::<Vec<_>>(),
    );
    let mut rng = rand_chacha_rng(seed);
    let (_, request) = medspace_privacy::psi::Receiver::new(
        &mut rng,
        &ids,
        medspace_privacy::psi::Mode::Linked,
        1,
    )
    .unwrap();
    PsiAsk {
        job,
        request: medspace_worker::wire::Hex(request.to_bytes().unwrap()),
    }
}

#[test]
fn patients_held_by_several_sites_count_once_on_every_seed() {
    for seed in 0..3 {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "once");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker_with(h, true);
            }
            let job = w.contract_and_job().await;
            let posted = w.result(job, Duration::from_secs(60)).await;
            let doc = w.released(job, &posted);
            // 120 records of 90 persons: each counts once (a keeps its 40, b the 30 a does
            // not hold, c the 20 neither holds).
            let mut want = expected(&[0, 1, 2]);
            want[0] = Some(90);
            assert_eq!(cells(&doc), want, "seed {seed}");
            assert!(doc.dropped.is_empty(), "seed {seed}: {:?}", doc.dropped);
            // Every site's dealing names the earlier sites it matched: the result says so.
            assert!(doc.not_counted_once.is_empty(), "seed {seed}");
        });
    }
}

#[test]
fn a_count_once_set_is_refused_when_stuffed_sent_twice_or_sent_backwards() {
    runner(7).start(|ctx| async move {
        let w = World::new(ctx, 7, "once-refused");
        // b is down for the whole job: c cannot learn whom b holds, and b contributes nothing.
        w.start_worker_with("hospital-a", true);
        w.start_worker_with("hospital-c", true);
        let job = w.contract_and_job().await;
        let mailbox = |name: &str| w.net.lock().unwrap().mailboxes[&member(name)].clone();
        let (a, c) = (mailbox("hospital-a"), mailbox("hospital-c"));
        // More elements than the catalog of the sender publishes persons (100): refused.
        let stuffed = a.psi(psi_ask(job, 0, 101, 1), member("hospital-b")).await;
        assert!(
            matches!(&stuffed, Err(PeerError::Refused(why)) if why.contains("publishes 100 persons")),
            "{stuffed:?}"
        );
        // Only a later site sends an earlier one its set.
        let backwards = c.psi(psi_ask(job, 0, 5, 2), member("hospital-a")).await;
        assert!(
            matches!(&backwards, Err(PeerError::Forbidden(_))),
            "{backwards:?}"
        );
        // One set per site and job: b's first is answered, another one refused.
        let first = a.psi(psi_ask(job, 30, 40, 3), member("hospital-b")).await;
        assert!(first.is_ok(), "{first:?}");
        let again = a.psi(psi_ask(job, 0, 40, 4), member("hospital-b")).await;
        assert!(
            matches!(&again, Err(PeerError::Refused(why)) if why.contains("already sent another set")),
            "{again:?}"
        );
        let posted = w.result(job, Duration::from_secs(120)).await;
        let doc = w.released(job, &posted);
        // a keeps its 40; c leaves a's 10 out and keeps the 10 it shares with b, which did
        // not contribute: 70 persons, each once.
        assert_eq!(cells(&doc)[0], Some(70));
        assert_eq!(doc.dropped.len(), 1, "{:?}", doc.dropped);
        assert!(doc.not_counted_once.is_empty(), "{:?}", doc.not_counted_once);
    });
}

#[test]
fn a_site_that_never_answers_is_dropped_and_the_others_are_released() {
    for seed in 0..SEEDS {
        let (doc, _) = run_job(seed, "silent", |w| w.link("hospital-c", Link::Silent));
        assert_eq!(cells(&doc), expected(&[0, 1]), "seed {seed}");
        let dropped: Vec<&str> = doc.dropped.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(dropped, vec!["hospital-c"], "seed {seed}");
    }
}

#[test]
fn a_site_that_answers_late_is_dropped() {
    for seed in 0..SEEDS {
        let (doc, _) = run_job(seed, "late", |w| {
            w.link("hospital-b", Link::Late(STEP_TIMEOUT * 2))
        });
        assert_eq!(cells(&doc), expected(&[0, 2]), "seed {seed}");
        assert_eq!(doc.contributions.len(), 2, "seed {seed}");
    }
}

#[test]
fn a_site_down_during_the_whole_round_is_dropped() {
    for seed in 0..SEEDS / 5 {
        let (doc, _) = run_job(seed, "down", |w| w.link("hospital-b", Link::Down));
        assert_eq!(cells(&doc), expected(&[0, 2]), "seed {seed}");
    }
}

/// A site restarts after it answered its masked vector and before the reveal: it reveals for
/// the same round from its files, with the same secrets and vector (never fresh noise).
#[test]
fn a_site_restarting_between_mask_and_reveal_serves_the_same_round() {
    for seed in 0..SEEDS {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx.child("world"), seed, "restart");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker(h);
            }
            let job = w.contract_and_job().await;
            let b_store =
                medspace_worker::store::Store::open(&w.dir.join("hospital-b").join("worker"))
                    .unwrap();
            // Wait until hospital-b committed its masked vector, then crash it.
            loop {
                if b_store.commitment(job).unwrap().is_some() {
                    break;
                }
                ctx.sleep(Duration::from_millis(5)).await;
            }
            let before = (b_store.site(job).unwrap(), b_store.commitment(job).unwrap());
            assert!(
                w.ledger.state().job(job).unwrap().unwrap().round.is_none(),
                "seed {seed}: the crash comes before the round is closed"
            );
            w.stop_worker("hospital-b");
            w.link("hospital-b", Link::Down);
            ctx.sleep(Duration::from_millis(300)).await;
            w.start_worker("hospital-b");
            w.link("hospital-b", Link::Normal);
            let posted = w.result(job, Duration::from_secs(60)).await;
            let doc = w.released(job, &posted);
            assert_eq!(cells(&doc), expected(&[0, 1, 2]), "seed {seed}");
            let after = (b_store.site(job).unwrap(), b_store.commitment(job).unwrap());
            assert_eq!(
                before, after,
                "seed {seed}: the restarted site kept its round"
            );
        });
    }
}

/// Two mask requests for the same job with different dealer sets reach a site at once: it
/// masks for exactly one of them, ever.
#[test]
fn concurrent_mask_requests_for_two_dealer_sets_exactly_one_wins() {
    for seed in 0..SEEDS {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx.child("world"), seed, "race");
            // Only hospital-b runs a worker; the test plays the aggregator hospital-a.
            w.start_worker("hospital-b");
            let job = w.contract_and_job().await;
            let a = member("hospital-a");
            let b_mailbox = w.net.lock().unwrap().mailboxes[&member("hospital-b")].clone();
            let state = w.ledger.state();
            let j = Job::from_ledger(&state, job).unwrap();
            let deal = |name: &str, seed: u64| {
                let secrets = SiteSecrets::random(rand_chacha_rng(seed));
                j.dealing(
                    &member(name),
                    w.c.node_key(name).unwrap(),
                    &w.c.agreement(name),
                    &secrets,
                )
                .unwrap()
            };
            let b_dealing = b_mailbox.dealing(job, a.clone()).await.unwrap();
            let one = MaskRequest {
                job,
                dealings: vec![deal("hospital-a", seed), b_dealing.clone()],
            };
            let two = MaskRequest {
                job,
                dealings: vec![b_dealing.clone(), deal("hospital-c", seed)],
            };
            let (r1, r2) = futures::join!(
                b_mailbox.mask(one.clone(), a.clone()),
                b_mailbox.mask(two.clone(), a.clone())
            );
            assert_eq!(
                u8::from(r1.is_ok()) + u8::from(r2.is_ok()),
                1,
                "seed {seed}: {r1:?} {r2:?}"
            );
            let (won, lost) = if r1.is_ok() { (one, two) } else { (two, one) };
            // The winner is answered again, identically; the loser is refused again.
            assert_eq!(
                b_mailbox.mask(won, a.clone()).await.unwrap(),
                r1.clone().or(r2.clone()).unwrap()
            );
            assert!(matches!(
                b_mailbox.mask(lost, a.clone()).await,
                Err(PeerError::Refused(_))
            ));
            // A caller that is not the job's aggregator gets nothing.
            assert!(matches!(
                b_mailbox.dealing(job, member("hospital-c")).await,
                Err(PeerError::Forbidden(_))
            ));
        });
    }
}

fn rand_chacha_rng(seed: u64) -> impl rand_core::CryptoRng {
    use rand_core::SeedableRng as _;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// A dishonest aggregator receives every masked vector, then closes the round claiming that
/// hospital-c dropped, to have c's pairwise masks revealed. hospital-c, which did answer,
/// refuses to reveal anything; hospital-b reveals c's bundle key but never c's self mask; with
/// everything the aggregator then holds, c's vector stays masked.
#[test]
fn an_aggregator_calling_a_received_site_dropped_learns_nothing_of_it() {
    for seed in 0..SEEDS {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx.child("world"), seed, "liar");
            w.start_worker("hospital-b");
            w.start_worker("hospital-c");
            let job = w.contract_and_job().await;
            let a = member("hospital-a");
            let mailbox = |n: &str| w.net.lock().unwrap().mailboxes[&member(n)].clone();
            let j = Job::from_ledger(&w.ledger.state(), job).unwrap();
            // The aggregator's own site, played by the test.
            let a_secrets = SiteSecrets::random(rand_chacha_rng(seed));
            let a_key = w.c.node_key("hospital-a").unwrap().clone();
            let a_x = w.c.agreement("hospital-a");
            let dealings = vec![
                j.dealing(&a, &a_key, &a_x, &a_secrets).unwrap(),
                mailbox("hospital-b").dealing(job, a.clone()).await.unwrap(),
                mailbox("hospital-c").dealing(job, a.clone()).await.unwrap(),
            ];
            let req = MaskRequest { job, dealings };
            let (a_u1, a_held, y_a) = j
                .accept_mask(
                    &a,
                    &a_key,
                    &a_x,
                    &a_secrets,
                    &fake_vector(0, j.layout_len()),
                    40,
                    &req,
                )
                .unwrap();
            let y_b = mailbox("hospital-b")
                .mask(req.clone(), a.clone())
                .await
                .unwrap();
            let y_c = mailbox("hospital-c")
                .mask(req.clone(), a.clone())
                .await
                .unwrap();
            // The lie, on the ledger: c "dropped".
            let names = |v: &[&str]| List::new(v.iter().map(|n| member(n)).collect()).unwrap();
            w.submit(
                &a_key,
                Payload::CloseRound(CloseRound {
                    job,
                    sharers: names(&["hospital-a", "hospital-b", "hospital-c"]),
                    survivors: names(&["hospital-a", "hospital-b"]),
                }),
            );
            w.next_block().await;
            let round = w
                .ledger
                .state()
                .job(job)
                .unwrap()
                .unwrap()
                .round
                .expect("closed");
            let c_reveal = mailbox("hospital-c").reveal(job, a.clone()).await;
            assert!(
                matches!(&c_reveal, Err(PeerError::Refused(why)) if why.contains("dropped")),
                "seed {seed}: {c_reveal:?}"
            );
            let b_reveal = mailbox("hospital-b").reveal(job, a.clone()).await.unwrap();
            let a_reveal = j.reveal(&a, &a_key, &a_u1, &a_held, &round).unwrap();
            for r in [&a_reveal, &b_reveal] {
                assert!(
                    r.body
                        .self_shares
                        .iter()
                        .all(|(m, _)| m.as_str() != "hospital-c"),
                    "seed {seed}: nobody reveals c's self mask"
                );
            }
            // Everything the aggregator holds unmasks the sum of a and b, not c's vector.
            let u2 = vec![0usize, 1];
            let reveals = vec![
                j.check_reveal(&a_reveal, &u2).unwrap(),
                j.check_reveal(&b_reveal, &u2).unwrap(),
            ];
            let checked: Vec<(usize, medspace_privacy::secagg::Dealing)> = req
                .dealings
                .iter()
                .map(|d| j.check_dealing(d).unwrap())
                .collect();
            // What the shares open is the sum over {a, b} — which the lie got anyway — and
            // c's masked vector is not in it.
            let masked = vec![
                (0usize, y_a.body.masked.clone()),
                (1, y_b.body.masked.clone()),
            ];
            let (totals, cheaters) = j
                .unmask(&[0, 1, 2], &u2, &checked, &masked, &reveals)
                .unwrap();
            assert!(cheaters.is_empty());
            let len = j.layout_len();
            let ab: Vec<i64> = (0..len)
                .map(|i| fake_vector(0, len)[i] + fake_vector(1, len)[i])
                .collect();
            assert_eq!(totals, ab, "seed {seed}");
            assert_ne!(
                y_c.body
                    .masked
                    .iter()
                    .map(|v| *v as i64)
                    .collect::<Vec<_>>(),
                fake_vector(2, len)
            );
        });
    }
}

/// GET `path` on `name`'s worker routes, signed by `key` for that node; the status and body.
async fn get_signed(w: &World, name: &str, path: &str, key: &Keypair) -> (u16, Vec<u8>) {
    use tower::ServiceExt as _;
    let router = w.workers.lock().unwrap()[&member(name)].router();
    let auth = medspace_api::auth::Request {
        method: "GET",
        path_and_query: path,
        audience: name,
        body: b"",
    }
    .sign(key);
    let req = axum::http::Request::get(path)
        .header("authorization", auth)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

#[test]
fn a_result_leaves_the_aggregator_only_once_the_ledger_holds_it_and_only_to_the_submitter() {
    runner(7).start(|ctx| async move {
        let w = World::new(ctx, 7, "unposted");
        for h in medspace_consortium::HOSPITALS {
            w.start_worker(h);
        }
        // The ledger never takes the aggregator's result (as when the contract is terminated
        // after the sites computed): the aggregator holds the bytes, the ledger nothing.
        w.ledger.refused_kinds.lock().unwrap().push("post_result");
        let job = w.contract_and_job().await;
        let store =
            medspace_worker::store::Store::open(&w.dir.join("hospital-a").join("worker")).unwrap();
        let mut waited = 0;
        while store.result(job).unwrap().is_none() {
            assert!(waited < 1200, "the aggregator never computed the result");
            w.next_block().await;
            waited += 1;
        }
        let kept = store.result(job).unwrap().unwrap();
        let path = format!("/v1/worker/jobs/{job}/result");
        let researcher = w.c.user_key("research-1.researcher").unwrap().clone();
        let (status, body) = get_signed(&w, "hospital-a", &path, &researcher).await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        assert!(
            !body
                .windows(kept.len().min(32))
                .any(|x| x == &kept[..kept.len().min(32)]),
            "the unposted result left the aggregator"
        );
        assert!(w.ledger.state().job(job).unwrap().unwrap().result.is_none());

        // Once posted (the ledger takes it again; the aggregator, restarted, posts what it
        // kept), the submitter gets exactly the bytes whose hash is on the ledger...
        w.ledger.refused_kinds.lock().unwrap().clear();
        w.stop_worker("hospital-a");
        w.start_worker("hospital-a");
        let posted = w.result(job, Duration::from_secs(120)).await;
        let (status, body) = get_signed(&w, "hospital-a", &path, &researcher).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            medspace_worker::wire::result_hash(&body),
            posted.result_hash
        );
        // ...and nobody else: not another member's user, not a steward of a site.
        for other in ["hospital-b.steward", "hospital-a.steward"] {
            let key = w.c.user_key(other).unwrap().clone();
            let (status, body) = get_signed(&w, "hospital-a", &path, &key).await;
            assert_eq!(status, 403, "{other}: {}", String::from_utf8_lossy(&body));
        }
    });
}

/// Sends `method path` with `body` to `name`'s worker routes carrying exactly `auth`; the
/// status and body.
async fn send_with(
    w: &World,
    name: &str,
    method: &str,
    path: &str,
    body: &[u8],
    auth: &str,
) -> (u16, String) {
    use tower::ServiceExt as _;
    let router = w.workers.lock().unwrap()[&member(name)].router();
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", auth)
        .body(axum::body::Body::from(body.to_vec()))
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_worker_route_accepts_a_signed_request_once_and_only_at_its_audience() {
    runner(11).start(|ctx| async move {
        let w = World::new(ctx, 11, "replay");
        for h in medspace_consortium::HOSPITALS {
            w.start_worker(h);
        }
        let job = w.contract_and_job().await;
        let node_b = w.c.node_key("hospital-b").unwrap().clone();
        let researcher = w.c.user_key("research-1.researcher").unwrap().clone();
        let patient_key = Keypair::from_seed(0x5eed);
        let routes: Vec<(&str, String, Vec<u8>, &Keypair)> = vec![
            (
                "GET",
                format!("/v1/worker/jobs/{job}/dealing"),
                vec![],
                &node_b,
            ),
            (
                "POST",
                format!("/v1/worker/jobs/{job}/mask"),
                b"{}".to_vec(),
                &node_b,
            ),
            (
                "GET",
                format!("/v1/worker/jobs/{job}/reveal"),
                vec![],
                &node_b,
            ),
            (
                "POST",
                format!("/v1/worker/jobs/{job}/step"),
                b"{}".to_vec(),
                &node_b,
            ),
            (
                "GET",
                format!("/v1/worker/jobs/{job}/sums"),
                vec![],
                &node_b,
            ),
            (
                "POST",
                format!("/v1/worker/jobs/{job}/open"),
                b"{}".to_vec(),
                &node_b,
            ),
            (
                "GET",
                format!("/v1/worker/jobs/{job}/result"),
                vec![],
                &researcher,
            ),
            (
                "GET",
                "/v1/records/export".to_string(),
                vec![],
                &patient_key,
            ),
            (
                "POST",
                "/v1/records/redeem".to_string(),
                b"{\"grant\":\"1\",\"code\":\"x\"}".to_vec(),
                &researcher,
            ),
            ("GET", "/v1/worker/vault".to_string(), vec![], &researcher),
            (
                "GET",
                "/v1/worker/vault/entry".to_string(),
                vec![],
                &researcher,
            ),
            (
                "POST",
                "/v1/worker/vault/lookup".to_string(),
                b"{\"patient_id\":\"abc\"}".to_vec(),
                &researcher,
            ),
            (
                "POST",
                "/v1/worker/releases/deliver".to_string(),
                b"{\"contract\":\"c-0000000000000001\",\"dataset\":\"hospital-a.open\"}".to_vec(),
                &researcher,
            ),
            (
                "GET",
                "/v1/worker/releases/hospital-a.open/files/person.csv".to_string(),
                vec![],
                &researcher,
            ),
            (
                "POST",
                "/v1/worker/releases/plan".to_string(),
                b"{\"spec\":{},\"purposes\":[\"research\"]}".to_vec(),
                &researcher,
            ),
        ];
        for (method, path, body, key) in &routes {
            let sign = |audience: &str| {
                medspace_api::auth::Request {
                    method,
                    path_and_query: path,
                    audience,
                    body,
                }
                .sign(key)
            };
            // The first use is judged on its merits (whatever the route answers), never as a
            // replay; the very same signed request again is refused as one.
            let auth = sign("hospital-a");
            let (first, said) = send_with(&w, "hospital-a", method, path, body, &auth).await;
            assert!(
                first != 401 && !said.contains("replayed"),
                "{method} {path}: the first use did not reach the route ({first}: {said})"
            );
            let (again, said) = send_with(&w, "hospital-a", method, path, body, &auth).await;
            assert_eq!(again, 401, "{method} {path} replayed: {said}");
            assert!(said.contains("replayed"), "{method} {path}: {said}");
            // The same signature re-encoded (upper-case hex) is the same request: refused.
            let (head, sig) = auth.rsplit_once("sig=").unwrap();
            let upper = format!("{head}sig={}", sig.to_uppercase());
            let (status, said) = send_with(&w, "hospital-a", method, path, body, &upper).await;
            assert_eq!(status, 401, "{method} {path} re-encoded: {said}");
            // A request signed for hospital-a, taken to hospital-b, is refused there.
            let fresh = sign("hospital-a");
            let (status, said) = send_with(&w, "hospital-b", method, path, body, &fresh).await;
            assert_eq!(status, 401, "{method} {path} at another node: {said}");
            assert!(said.contains("audience"), "{method} {path}: {said}");
        }
    });
}

/// Who calls a worker route, as far as its rules go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Caller {
    Unsigned,
    Outsider,
    /// The node key of a site of the job other than the node asked.
    SiteNode,
    /// The node key of the job's aggregator.
    AggregatorNode,
    /// A member key (of a site or not): it takes no part in a round.
    MemberKey,
    /// The job's submitter.
    Submitter,
    /// Another registered user.
    OtherUser,
    /// A steward of the node's own hospital.
    HomeSteward,
    /// The node's own hospital's member key.
    HomeMember,
}

#[test]
fn every_worker_route_answers_every_kind_of_caller_as_its_rule_says() {
    runner(13).start(|ctx| async move {
        let w = World::new(ctx, 13, "route-matrix");
        for h in medspace_consortium::HOSPITALS {
            w.start_worker(h);
        }
        let job = w.contract_and_job().await;
        let k =
            |f: Result<&Keypair, medspace_consortium::ConsortiumError>| Some(f.unwrap().clone());
        // The callers, asking hospital-b's node (a site; hospital-a aggregates).
        let callers: Vec<(&str, Option<Keypair>, Caller)> = vec![
            ("unsigned", None, Caller::Unsigned),
            (
                "an outsider",
                Some(Keypair::from_seed(0xbad)),
                Caller::Outsider,
            ),
            (
                "hospital-c's node key",
                k(w.c.node_key("hospital-c")),
                Caller::SiteNode,
            ),
            (
                "hospital-a's node key (the aggregator)",
                k(w.c.node_key("hospital-a")),
                Caller::AggregatorNode,
            ),
            (
                "hospital-a's member key",
                k(w.c.member_key("hospital-a")),
                Caller::MemberKey,
            ),
            (
                "hospital-c's member key",
                k(w.c.member_key("hospital-c")),
                Caller::MemberKey,
            ),
            (
                "the submitter",
                k(w.c.user_key("research-1.researcher")),
                Caller::Submitter,
            ),
            (
                "hospital-b's steward",
                k(w.c.user_key("hospital-b.steward")),
                Caller::HomeSteward,
            ),
            (
                "hospital-b's member key",
                k(w.c.member_key("hospital-b")),
                Caller::HomeMember,
            ),
            (
                "hospital-a's steward",
                k(w.c.user_key("hospital-a.steward")),
                Caller::OtherUser,
            ),
            (
                "the regulator's auditor",
                k(w.c.user_key("regulator.auditor")),
                Caller::OtherUser,
            ),
        ];
        // Each route with whom it serves (anyone else: 401 unsigned, 403 otherwise); a served
        // caller reaches the route's own answer (any status but 401 and 403).
        type Serves = fn(Caller) -> bool;
        let routes: Vec<(&str, String, Vec<u8>, Serves)> = vec![
            // Only the aggregator collects a site's dealing (and asks it to reveal, below);
            // the masked vectors are asked between the job's sites.
            (
                "GET",
                format!("/v1/worker/jobs/{job}/dealing"),
                vec![],
                |c| c == Caller::AggregatorNode,
            ),
            (
                "POST",
                format!("/v1/worker/jobs/{job}/mask"),
                b"{}".to_vec(),
                |c| matches!(c, Caller::SiteNode | Caller::AggregatorNode),
            ),
            // Only the aggregator asks a site to reveal.
            (
                "GET",
                format!("/v1/worker/jobs/{job}/reveal"),
                vec![],
                |c| c == Caller::AggregatorNode,
            ),
            // Only the aggregator asks a site for a model's step (this job is no model: the
            // aggregator's request reaches the site, which refuses it for that).
            (
                "POST",
                format!("/v1/worker/jobs/{job}/step"),
                serde_json::to_vec(&StepRequest {
                    job,
                    iteration: 0,
                    beta: vec![0.0, 0.0],
                    history: Vec::new(),
                })
                .unwrap(),
                |c| c == Caller::AggregatorNode,
            ),
            // Only a later site sends a site its count-once set (hospital-a is earlier; the
            // malformed set reaches hospital-c's route and is refused for that).
            (
                "POST",
                format!("/v1/worker/jobs/{job}/psi"),
                format!("{{\"job\":\"{job}\",\"request\":\"00\"}}").into_bytes(),
                |c| c == Caller::SiteNode,
            ),
            // Only the aggregator collects a hospital's sums of a vertical study and asks the
            // insurer to open them (this job is no vertical study: the aggregator's request
            // reaches the route, which refuses it for that).
            (
                "GET",
                format!("/v1/worker/jobs/{job}/sums?wait_ms=1000"),
                vec![],
                |c| c == Caller::AggregatorNode,
            ),
            (
                "POST",
                format!("/v1/worker/jobs/{job}/open"),
                format!("{{\"job\":\"{job}\",\"parts\":[]}}").into_bytes(),
                |c| c == Caller::AggregatorNode,
            ),
            // A result goes to the job's submitter only.
            (
                "GET",
                format!("/v1/worker/jobs/{job}/result"),
                vec![],
                |c| c == Caller::Submitter,
            ),
            // Any registered key may present a code; the grant decides.
            (
                "POST",
                "/v1/records/redeem".to_string(),
                b"{\"grant\":\"g-0000000000000001\",\"code\":\"x\"}".to_vec(),
                |c| !matches!(c, Caller::Unsigned | Caller::Outsider),
            ),
            // A patient's own export: no member, user or outsider.
            ("GET", "/v1/records/export".to_string(), vec![], |_| false),
            // The vault's own pages: the hospital's stewards and its member key only (this
            // simulated node holds no vault: they reach the route's "no vault" answer).
            ("GET", "/v1/worker/vault".to_string(), vec![], |c| {
                matches!(c, Caller::HomeSteward | Caller::HomeMember)
            }),
            ("GET", "/v1/worker/vault/entry".to_string(), vec![], |c| {
                matches!(c, Caller::HomeSteward | Caller::HomeMember)
            }),
            (
                "POST",
                "/v1/worker/vault/lookup".to_string(),
                b"{\"patient_id\":\"abc\"}".to_vec(),
                |c| matches!(c, Caller::HomeSteward | Caller::HomeMember),
            ),
            // The open pool: any registered institution's key may ask; its contract decides
            // (none here: the route's own "not found").
            (
                "POST",
                "/v1/worker/releases/deliver".to_string(),
                b"{\"contract\":\"c-0000000000000001\",\"dataset\":\"hospital-b.open\"}".to_vec(),
                |c| !matches!(c, Caller::Unsigned | Caller::Outsider),
            ),
            (
                "GET",
                "/v1/worker/releases/hospital-b.open/files/person.csv".to_string(),
                vec![],
                |c| !matches!(c, Caller::Unsigned | Caller::Outsider),
            ),
            // Building a release from the vault: the hospital's stewards and its member key
            // only (no vault here: they reach the route's "no vault" answer).
            (
                "POST",
                "/v1/worker/releases/plan".to_string(),
                b"{\"spec\":{},\"purposes\":[\"research\"]}".to_vec(),
                |c| matches!(c, Caller::HomeSteward | Caller::HomeMember),
            ),
        ];
        let mut cells = 0;
        let mut wrong = Vec::new();
        for (method, path, body, serves) in &routes {
            for (who, key, caller) in &callers {
                let auth = key.as_ref().map(|k| {
                    medspace_api::auth::Request {
                        method,
                        path_and_query: path,
                        audience: "hospital-b",
                        body,
                    }
                    .sign(k)
                });
                let (status, said) = send_with(
                    &w,
                    "hospital-b",
                    method,
                    path,
                    body,
                    auth.as_deref().unwrap_or(""),
                )
                .await;
                let ok = match (serves(*caller), caller) {
                    (true, _) => status != 401 && status != 403,
                    (false, Caller::Unsigned) => status == 401,
                    (false, _) => status == 403,
                };
                cells += 1;
                if !ok {
                    wrong.push(format!("{method} {path} by {who}: {status} {said}"));
                }
            }
        }
        // Bad input: a clear 400 to whom the route serves; a steward route refuses anyone else
        // before the body is read.
        let steward_b = w.c.user_key("hospital-b.steward").unwrap().clone();
        let steward_a = w.c.user_key("hospital-a.steward").unwrap().clone();
        let researcher = w.c.user_key("research-1.researcher").unwrap().clone();
        let lookup = "/v1/worker/vault/lookup";
        let plan = "/v1/worker/releases/plan";
        let deliver = "/v1/worker/releases/deliver";
        for (method, path, key, body, want) in [
            ("POST", lookup, &steward_b, &b"{\"id\":\"x\"}"[..], 400),
            (
                "POST",
                lookup,
                &steward_b,
                &b"{\"patient_id\":\"  \"}"[..],
                400,
            ),
            ("POST", lookup, &steward_b, &b"not json"[..], 400),
            ("POST", lookup, &steward_a, &b"not json"[..], 403),
            ("POST", plan, &steward_b, &b"not json"[..], 400),
            (
                "POST",
                plan,
                &steward_b,
                &b"{\"spec\":{},\"purposes\":[]}"[..],
                400,
            ),
            ("POST", plan, &steward_a, &b"not json"[..], 403),
            ("POST", deliver, &researcher, &b"not json"[..], 400),
            (
                "POST",
                deliver,
                &researcher,
                &b"{\"contract\":\"x\",\"dataset\":\"d\"}"[..],
                400,
            ),
            (
                "GET",
                "/v1/worker/releases/NOT%20AN%20ID/files/person.csv",
                &researcher,
                &b""[..],
                400,
            ),
        ] {
            let auth = medspace_api::auth::Request {
                method,
                path_and_query: path,
                audience: "hospital-b",
                body,
            }
            .sign(key);
            let (status, said) = send_with(&w, "hospital-b", method, path, body, &auth).await;
            if status != want {
                wrong.push(format!(
                    "{method} {path} {:?}: {status} (want {want}) {said}",
                    String::from_utf8_lossy(body)
                ));
            }
        }
        println!(
            "worker route authorization matrix: {} routes x {} callers = {cells} cells",
            routes.len(),
            callers.len()
        );
        assert!(
            wrong.is_empty(),
            "{} cells wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    });
}

// ---------------------------------------------------------------------------------------------
// A model's job: many masked steps over the set the ledger fixed.

const MODEL: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"model":{"family":"logistic","outcome":"female","covariates":["age"]}}}"#;

/// The pooled fit of the three sites' rows: what the federated fit must release.
fn pooled_fit() -> medspace_privacy::glm::Fit {
    let sites: Vec<ModelRows> = (0..3).map(fake_rows).collect();
    let x: Vec<f64> = sites.iter().flat_map(|s| s.x.clone()).collect();
    let y: Vec<f64> = sites.iter().flat_map(|s| s.y.clone()).collect();
    let rows = medspace_privacy::glm::Rows {
        p: 2,
        x: &x,
        y: &y,
        offset: None,
    };
    medspace_privacy::glm::fit_pooled(
        medspace_privacy::glm::Family::Logistic,
        &rows,
        &["intercept".into(), "age".into()],
        medspace_privacy::glm::Options::default(),
    )
    .unwrap()
}

#[test]
fn a_model_job_releases_the_pooled_fit_and_its_set_is_fixed_on_the_ledger() {
    for seed in 0..SEEDS / 5 {
        let want = pooled_fit();
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "model");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker(h);
            }
            let job = w.contract_and_job_for(MODEL).await;
            let posted = w.result(job, Duration::from_secs(120)).await;
            let doc = w.released(job, &posted);
            assert_eq!(doc.failure, None, "seed {seed}");
            let m = doc.model.expect("a model result");
            assert_eq!(m.n, 180);
            for (t, p) in m.terms.iter().zip(&want.terms) {
                assert!(
                    (t.coefficient - p.coefficient).abs() <= 1e-9 * p.coefficient.abs().max(1.0),
                    "seed {seed} {}: {} vs {}",
                    t.name,
                    t.coefficient,
                    p.coefficient
                );
                assert!((t.std_error - p.std_error).abs() <= 1e-9 * p.std_error);
            }
            let record = w.ledger.state().job(job).unwrap().unwrap();
            let round = record.round.unwrap();
            assert_eq!(round.sharers, round.survivors, "seed {seed}");
            assert_eq!(round.survivors.len(), 3);
            assert_eq!(posted.contributions.len(), 3, "seed {seed}");
        });
    }
}

#[test]
fn an_aggregator_stopped_during_a_models_steps_continues_the_same_fit_after_its_restart() {
    let mut stopped = 0;
    for seed in 0..4 {
        let want = pooled_fit();
        stopped += runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "model-restart");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker(h);
            }
            let job = w.contract_and_job_for(MODEL).await;
            // Once the aggregator kept two iterations' answers, its node goes down (the
            // aggregation task with it) and comes back over the same files.
            let store =
                medspace_worker::store::Store::open(&w.dir.join("hospital-a").join("worker"))
                    .unwrap();
            let mut mid_fit = false;
            loop {
                if w.ledger.state().job(job).unwrap().unwrap().result.is_some() {
                    break;
                }
                if let Some(kept) = store.collected(job).unwrap().filter(|c| c.steps.len() >= 2) {
                    w.stop_worker("hospital-a");
                    // Down means down: nothing of its aggregation goes on meanwhile.
                    w.ctx.sleep(Duration::from_secs(1)).await;
                    assert!(
                        store.collected(job).unwrap() == Some(kept),
                        "seed {seed}: the stopped aggregator went on collecting"
                    );
                    assert!(w.ledger.state().job(job).unwrap().unwrap().result.is_none());
                    w.start_worker("hospital-a");
                    mid_fit = true;
                    break;
                }
                w.ctx.sleep(Duration::from_millis(5)).await;
            }
            let posted = w.result(job, Duration::from_secs(120)).await;
            let doc = w.released(job, &posted);
            assert_eq!(doc.failure, None, "seed {seed}");
            let m = doc.model.expect("a model result");
            assert_eq!(m.n, 180, "seed {seed}");
            for (t, p) in m.terms.iter().zip(&want.terms) {
                assert!(
                    (t.coefficient - p.coefficient).abs() <= 1e-9 * p.coefficient.abs().max(1.0),
                    "seed {seed} {}: {} vs {}",
                    t.name,
                    t.coefficient,
                    p.coefficient
                );
            }
            u32::from(mid_fit)
        });
    }
    assert!(
        stopped >= 2,
        "the aggregator was stopped mid-fit on {stopped} seeds only"
    );
}

#[test]
fn a_site_lost_during_a_models_steps_ends_the_job_with_the_reason() {
    for seed in 0..SEEDS / 5 {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "model-lost");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker(h);
            }
            let job = w.contract_and_job_for(MODEL).await;
            // Once the ledger fixed the set, hospital-c's node goes away.
            loop {
                if w.ledger.state().job(job).unwrap().unwrap().round.is_some() {
                    break;
                }
                w.next_block().await;
            }
            w.link("hospital-c", Link::Down);
            let posted = w.result(job, Duration::from_secs(120)).await;
            let doc = w.released(job, &posted);
            let why = doc.failure.expect("the job fails");
            assert!(
                why.contains("hospital-c did not answer iteration"),
                "seed {seed}: {why}"
            );
            assert!(doc.model.is_none(), "seed {seed}: nothing is released");
            assert!(posted.contributions.is_empty(), "seed {seed}");
            assert_eq!(
                w.ledger.state().job(job).unwrap().unwrap().status,
                JobStatus::Done
            );
        });
    }
}

#[test]
fn a_private_model_runs_every_approved_iteration_with_noised_statistics() {
    const PRIVATE: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"model":{"family":"logistic","outcome":"female","covariates":["age"],"max_iterations":6,"dp":true}}}"#;
    for seed in 0..3 {
        let exact = pooled_fit();
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "model-dp");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker(h);
            }
            let job = w.contract_and_job_for(PRIVATE).await;
            let posted = w.result(job, Duration::from_secs(120)).await;
            let doc = w.released(job, &posted);
            assert_eq!(doc.failure, None, "seed {seed}");
            let m = doc.model.expect("a model result");
            assert!(m.dp);
            // No convergence test on noisy sums: every approved iteration runs, and the
            // ledger charged the job's epsilon once for all of them.
            assert_eq!(m.iterations, 6, "seed {seed}");
            assert_ne!(m.terms[1].coefficient, exact.terms[1].coefficient);
            assert_eq!(posted.epsilon_spent, 3 * 100_000, "seed {seed}");
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A vertical study (hospitals' cohort joined with an insurer's claims) and an overlap job.

const VERTICAL_SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"group_by":["sex"],"aggregate":{"claims":{"days":365,"max_claims":50,"max_paid":100000,"compare":{"name":"diabetes","codes":["44054006"]},"dp":false}}}"#;

/// hospital-a's cohort: persons 0..100; hospital-b's: 80..100 (also at a) and 200..260;
/// person `i` in cell `i % 4`.
fn clinical_ids(site: usize) -> Vec<u32> {
    match site {
        0 => (0..100).collect(),
        _ => (80..100).chain(200..260).collect(),
    }
}

fn clinical_input(site: usize) -> JoinInput {
    let ids = clinical_ids(site);
    JoinInput::Clinical {
        patients: ids.iter().copied().map(pseudonym).collect(),
        cells: ids.iter().map(|i| i % 4).collect(),
    }
}

/// The insurer's members: persons 40..100 and 200..240 (patients of the hospitals) and
/// 1000..1040 (nobody's patients there); member `i` has `i % 7` claims paid `37·i`.
fn claims_member(i: u32) -> Vec<u64> {
    let (c, p) = (u64::from(i % 7), u64::from(37 * i));
    vec![1, c, c * c, p, p * p]
}

fn claims_input() -> JoinInput {
    let ids: Vec<u32> = (40..100).chain(200..240).chain(1000..1040).collect();
    JoinInput::Claims {
        patients: ids.iter().copied().map(pseudonym).collect(),
        values: ids.iter().copied().map(claims_member).collect(),
    }
}

/// The plain join: per cell, `[n, Σc, Σc², Σp, Σp²]` over the persons a hospital and the
/// insurer both hold, each once.
fn plain_join() -> Vec<[i64; 5]> {
    let mut out = vec![[0i64; 5]; 4];
    for i in (40..100u32).chain(200..240) {
        let cell = &mut out[(i % 4) as usize];
        for (k, v) in claims_member(i).iter().enumerate() {
            cell[k] += *v as i64;
        }
    }
    out
}

impl World {
    fn start_hospital_side(&self, name: &str, site: usize) {
        self.start_plane(
            name,
            FakePlane {
                site,
                patients: Some(clinical_ids(site).into_iter().map(pseudonym).collect()),
                join: Some(clinical_input(site)),
            },
        );
    }

    fn start_insurer(&self) {
        self.start_plane(
            "insurer-1",
            FakePlane {
                site: 3,
                patients: None,
                join: Some(claims_input()),
            },
        );
    }
}

#[test]
fn a_vertical_study_releases_the_plain_join_and_neither_side_sees_a_row() {
    for seed in 0..3 {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "vertical");
            w.start_hospital_side("hospital-a", 0);
            w.start_hospital_side("hospital-b", 1);
            w.start_insurer();
            let job = w
                .contract_and_job_over(VERTICAL_SPEC, &["insurer-1", "hospital-b", "hospital-a"])
                .await;
            // The ledger lists the hospitals first (a aggregates), the insurer last.
            let contract = w.ledger.state().contracts().unwrap()[0].clone();
            let owners: Vec<&str> = contract.owners.iter().map(|m| m.as_str()).collect();
            assert_eq!(owners, ["hospital-a", "hospital-b", "insurer-1"]);
            let posted = w.result(job, Duration::from_secs(60)).await;
            let doc = w.released(job, &posted);
            assert!(doc.failure.is_none(), "seed {seed}: {:?}", doc.failure);
            let v = doc.vertical.as_ref().expect("a vertical result");
            let want = plain_join();
            assert_eq!(v.cells.len(), 4);
            for (c, w5) in v.cells.iter().zip(&want) {
                let (label, cell) = (c.label(v.compare.as_deref()), &c.values);
                let n = w5[0] as f64;
                assert_eq!(cell.n, Some(w5[0]), "seed {seed} {label}");
                let mean = |s: i64| s as f64 / n;
                let sd = |s: i64, q: i64| ((q as f64 - (s as f64).powi(2) / n) / (n - 1.0)).sqrt();
                assert_eq!(cell.claims_mean, Some(mean(w5[1])), "{label}");
                assert_eq!(cell.paid_mean, Some(mean(w5[3])), "{label}");
                assert!((cell.claims_sd.unwrap() - sd(w5[1], w5[2])).abs() < 1e-9);
                assert!((cell.paid_sd.unwrap() - sd(w5[3], w5[4])).abs() < 1e-6);
            }
            assert_eq!(
                v.cells[0].label(v.compare.as_deref()),
                "female, with diabetes"
            );
            // b matched its patients with a: the 20 both hold count once, at a.
            assert!(
                doc.not_counted_once.is_empty(),
                "{:?}",
                doc.not_counted_once
            );
            // Every site's signed contribution; the round closed with all: epsilon charged.
            let record = w.ledger.state().job(job).unwrap().unwrap();
            assert_eq!(record.status, JobStatus::Done);
            let result = record.result.unwrap();
            let who: Vec<&str> = result
                .contributions
                .iter()
                .map(|c| c.member.as_str())
                .collect();
            assert_eq!(who, ["hospital-a", "hospital-b", "insurer-1"]);
            assert_eq!(result.epsilon_spent, 3 * record.epsilon_reserved);
        });
    }
}

#[test]
fn a_vertical_study_with_a_silent_hospital_opens_nothing_and_charges_nothing() {
    runner(5).start(|ctx| async move {
        let w = World::new(ctx, 5, "vertical-silent");
        w.start_hospital_side("hospital-a", 0);
        w.start_insurer();
        w.link("hospital-b", Link::Down);
        let job = w
            .contract_and_job_over(VERTICAL_SPEC, &["hospital-a", "hospital-b", "insurer-1"])
            .await;
        let posted = w.result(job, Duration::from_secs(300)).await;
        let doc = w.released(job, &posted);
        assert!(
            doc.failure
                .as_deref()
                .is_some_and(|f| f.contains("every hospital")),
            "{:?}",
            doc.failure
        );
        assert!(doc.vertical.is_none());
        assert_eq!(
            posted.epsilon_spent, 0,
            "nothing was opened: nothing is charged"
        );
    });
}

/// A hospital's blinded set of persons `ids` for a vertical job.
fn vertical_ask(job: JobId, ids: std::ops::Range<u32>, seed: u64) -> PsiAsk {
    let ids = medspace_worker::compute::vertical::identifiers(
        job,
        &ids.map(pseudonym).collect::<Vec<_>>(),
    );
    let mut rng = rand_chacha_rng(seed);
    let (_, request) = medspace_privacy::psi::Receiver::new(
        &mut rng,
        &ids,
        medspace_privacy::psi::Mode::Linked,
        1,
    )
    .unwrap();
    PsiAsk {
        job,
        request: medspace_worker::wire::Hex(request.to_bytes().unwrap()),
    }
}

/// `hospital`'s signed sums of its persons `ids` from the insurer's answer: persons 40..45 in
/// cell 1, everyone else in cell 0.
fn signed_sums(
    w: &World,
    job: JobId,
    hospital: &str,
    ids: std::ops::Range<u32>,
    answer: &PsiAnswer,
    seed: u64,
) -> medspace_worker::wire::SumsMsg {
    let cells: Vec<Option<u32>> = ids
        .clone()
        .map(|i| Some(u32::from((40..45).contains(&i))))
        .collect();
    let ids = medspace_worker::compute::vertical::identifiers(
        job,
        &ids.map(pseudonym).collect::<Vec<_>>(),
    );
    let mut rng = rand_chacha_rng(seed);
    let (receiver, _) = medspace_privacy::psi::Receiver::new(
        &mut rng,
        &ids,
        medspace_privacy::psi::Mode::Linked,
        1,
    )
    .unwrap();
    let offer = medspace_privacy::join::Offer::from_bytes(&answer.response.0).unwrap();
    let (_, sums) =
        medspace_privacy::join::sum_groups(&receiver, &offer, &cells, 4, &[], &mut rng).unwrap();
    let key = w.c.node_key(hospital).unwrap();
    let body = medspace_worker::wire::SumsBody {
        job,
        member: member(hospital),
        sums: medspace_worker::wire::Hex(sums.to_bytes().unwrap()),
        counted_once_with: Vec::new(),
        contribution: SignedContribution::sign(key, job, member(hospital), 10),
    };
    medspace_worker::wire::Signed::sign(key, medspace_worker::wire::SUMS_NAMESPACE, body).unwrap()
}

#[test]
fn an_insurer_answers_only_its_studys_hospitals_once_and_opens_only_the_total_of_a_closed_round_once()
 {
    runner(11).start(|ctx| async move {
        let w = World::new(ctx, 11, "vertical-refused");
        // Only the insurer runs: the cheats are tried at its mailbox directly.
        w.start_insurer();
        let job = w
            .contract_and_job_over(VERTICAL_SPEC, &["hospital-a", "hospital-b", "insurer-1"])
            .await;
        let insurer = w.net.lock().unwrap().mailboxes[&member("insurer-1")].clone();
        // A hospital outside the study is refused, and so is a stuffed set.
        let other = insurer.psi(vertical_ask(job, 0..10, 1), member("hospital-c")).await;
        assert!(matches!(&other, Err(PeerError::Forbidden(_))), "{other:?}");
        let stuffed = insurer.psi(vertical_ask(job, 0..101, 2), member("hospital-a")).await;
        assert!(
            matches!(&stuffed, Err(PeerError::Refused(why)) if why.contains("publishes 100 persons")),
            "{stuffed:?}"
        );
        // Each hospital's set is answered once (from one encrypted set); another set is refused.
        let a = insurer.psi(vertical_ask(job, 0..100, 3), member("hospital-a")).await.unwrap();
        let b = insurer.psi(vertical_ask(job, 200..260, 4), member("hospital-b")).await.unwrap();
        let again = insurer.psi(vertical_ask(job, 0..50, 5), member("hospital-a")).await;
        assert!(
            matches!(&again, Err(PeerError::Refused(why)) if why.contains("already sent another set")),
            "{again:?}"
        );
        let part_a = signed_sums(&w, job, "hospital-a", 0..100, &a, 3);
        let part_b = signed_sums(&w, job, "hospital-b", 200..260, &b, 4);
        let ask = |parts: Vec<medspace_worker::wire::SumsMsg>| OpenAsk { job, parts };
        // The round is not closed yet: nothing is opened.
        let early = insurer
            .open(ask(vec![part_a.clone(), part_b.clone()]), member("hospital-a"))
            .await;
        assert!(matches!(&early, Err(PeerError::NotReady)), "{early:?}");
        let node = w.c.node_key("hospital-a").unwrap().clone();
        let all = List::new(vec![
            member("hospital-a"),
            member("hospital-b"),
            member("insurer-1"),
        ])
        .unwrap();
        w.submit(
            &node,
            Payload::CloseRound(CloseRound {
                job,
                sharers: all.clone(),
                survivors: all,
            }),
        );
        w.next_block().await;
        // Only the aggregator asks; only every hospital's own signed part, in order.
        let stranger = insurer
            .open(ask(vec![part_a.clone(), part_b.clone()]), member("hospital-b"))
            .await;
        assert!(matches!(&stranger, Err(PeerError::Forbidden(_))), "{stranger:?}");
        for parts in [
            vec![part_b.clone()],
            vec![part_b.clone(), part_a.clone()],
            vec![part_a.clone(), part_a.clone()],
        ] {
            let refused = insurer.open(ask(parts), member("hospital-a")).await;
            assert!(matches!(&refused, Err(PeerError::Refused(_))), "{refused:?}");
        }
        let mut forged = part_b.clone();
        forged.body.sums = part_a.body.sums.clone();
        let refused = insurer
            .open(ask(vec![part_a.clone(), forged]), member("hospital-a"))
            .await;
        assert!(
            matches!(&refused, Err(PeerError::Refused(why)) if why.contains("not signed")),
            "{refused:?}"
        );
        // The total of both: a's 60 and b's 40 shared persons, 95 in cell 0; the 5 in cell 1
        // are fewer than k: that cell is not given out, not even to the aggregator.
        let opened = insurer
            .open(ask(vec![part_a.clone(), part_b.clone()]), member("hospital-a"))
            .await
            .unwrap();
        let shared: Vec<u32> = (45..100).chain(200..240).collect();
        assert_eq!(opened.values[0], shared.len() as i64);
        let claims: i64 = shared.iter().map(|i| i64::from(i % 7)).sum();
        assert_eq!(opened.values[1], claims);
        assert_eq!(opened.values.len(), 20);
        assert_eq!(&opened.values[5..10], &[0; 5], "a cell of 5 persons stays closed");
        let twice = insurer
            .open(ask(vec![part_a, part_b]), member("hospital-a"))
            .await;
        assert!(
            matches!(&twice, Err(PeerError::Refused(why)) if why.contains("already opened")),
            "{twice:?}"
        );
    });
}

const OVERLAP_SPEC: &str =
    r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"overlap":{"dp":false}}}"#;

#[test]
fn an_overlap_job_releases_each_pairs_intersection_size_on_every_seed() {
    for seed in 0..3 {
        runner(seed).start(|ctx| async move {
            let w = World::new(ctx, seed, "overlap");
            for h in medspace_consortium::HOSPITALS {
                w.start_worker_with(h, true);
            }
            let job = w.contract_and_job_for(OVERLAP_SPEC).await;
            let posted = w.result(job, Duration::from_secs(60)).await;
            let doc = w.released(job, &posted);
            let o = doc.overlap.as_ref().expect("an overlap result");
            // a 0..40, b 30..70, c 0..10 and 60..90: 10 shared by each pair.
            let pairs: Vec<(&str, &str, Option<i64>)> = o
                .pairs
                .iter()
                .map(|(a, b, n)| (a.as_str(), b.as_str(), *n))
                .collect();
            assert_eq!(
                pairs,
                [
                    ("hospital-a", "hospital-b", Some(10)),
                    ("hospital-a", "hospital-c", Some(10)),
                    ("hospital-b", "hospital-c", Some(10)),
                ],
                "seed {seed}"
            );
            assert_eq!(doc.contributions.len(), 3);
        });
    }
}
