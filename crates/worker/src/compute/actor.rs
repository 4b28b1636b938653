//! The compute actor's loop: one message at a time, so every once-only rule of the round (one
//! computed vector and one set of secrets per job, one `U1` per job) is a read and a write with
//! nothing in between.

use super::aggregate::Aggregation;
use super::ingress::{Mailbox, Message, Reply};
use super::model::{SiteStep, answer_step};
use super::{Config, DataPlane, ModelRows};
use crate::round::{Job, RoundError};
use crate::store::{MaskCommitment, SiteRecord, StepRecord};
use crate::transport::{PeerError, Transport};
use crate::wire::{
    DealingMsg, Hex, MaskRequest, MaskedMsg, OpenAnswer, OpenAsk, PsiAnswer, PsiAsk, RevealMsg,
    StepMsg, StepRequest, SumsMsg,
};
use futures::StreamExt as _;
use futures::channel::mpsc;
use medspace_ledger::Ledger;
use medspace_privacy::secagg::{HeldShare, SiteSecrets};
use medspace_state::records::JobStatus;
use medspace_types::{Hash, JobId, MemberId};
use rand_core::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The compute service's actor.
pub struct Actor<E, L, T, P> {
    ctx: E,
    cfg: Arc<Config<L, P>>,
    transport: T,
    mailbox: mpsc::Receiver<Message>,
    me: Mailbox,
    /// Jobs whose vector the data plane is computing.
    computing: BTreeSet<JobId>,
    /// Dealing requests waiting for the vector.
    waiting_dealing: BTreeMap<JobId, Vec<(MemberId, Reply<DealingMsg>)>>,
    /// Reveal requests waiting for the ledger to close the round.
    waiting_reveal: Vec<(JobId, MemberId, Reply<RevealMsg>)>,
    /// Step requests waiting for the ledger to fix a model job's set (or for its rows).
    waiting_step: Vec<(MemberId, StepRequest, Reply<StepMsg>)>,
    /// The rows of the model jobs this site takes part in, in memory only, while they run.
    models: BTreeMap<JobId, Arc<ModelRows>>,
    /// Jobs this node is aggregating.
    aggregating: BTreeSet<JobId>,
    /// Failed aggregation attempts per job (a job is retried on later blocks a few times).
    attempts: BTreeMap<JobId, u32>,
    /// This site's answers to later sites' count-once sets, by (job, receiver): `None` while
    /// computing. In memory only (after a restart the same set is answered again).
    psi: BTreeMap<(JobId, MemberId), PsiServed>,
    /// Count-once sets waiting for their answer.
    waiting_psi: Vec<(JobId, MemberId, Reply<PsiAnswer>)>,
    /// This site's blinded set per running job, shared by its answers.
    senders: Arc<super::once::Senders>,
    /// The vertical studies this site is the insurer of, in memory only.
    holders: Arc<super::vertical::Holders>,
    /// The vertical studies whose sums this site (their insurer) opened.
    opened: BTreeSet<JobId>,
    /// This site's signed sums of the vertical studies it is a hospital of (or why not).
    sums: BTreeMap<JobId, Result<SumsMsg, String>>,
    /// Sums requests waiting for them.
    waiting_sums: Vec<(JobId, MemberId, Reply<SumsMsg>)>,
}

/// A count-once set this site answers: the set's hash and, once computed, the answer.
type PsiServed = (Hash, Option<Result<PsiAnswer, String>>);

/// Aggregation attempts of one job before the node gives up on it (each attempt posts a
/// failure result when the round cannot complete; only a ledger that keeps refusing or losing
/// the post makes an attempt fail).
const MAX_ATTEMPTS: u32 = 3;

fn refused<T>(e: impl std::fmt::Display) -> Result<T, PeerError> {
    Err(PeerError::Refused(e.to_string()))
}

impl<E, L, T, P> Actor<E, L, T, P>
where
    E: commonware_runtime::Spawner + commonware_runtime::Clock + CryptoRng,
    L: Ledger,
    T: Transport,
    P: DataPlane,
{
    /// An actor and its mailbox.
    pub fn new(ctx: E, cfg: Config<L, P>, transport: T) -> (Self, Mailbox) {
        let (tx, rx) = mpsc::channel(cfg.mailbox_size.max(16));
        let mailbox = Mailbox::new(tx);
        (
            Self {
                ctx,
                cfg: Arc::new(cfg),
                transport,
                mailbox: rx,
                me: mailbox.clone(),
                computing: BTreeSet::new(),
                waiting_dealing: BTreeMap::new(),
                waiting_reveal: Vec::new(),
                waiting_step: Vec::new(),
                models: BTreeMap::new(),
                aggregating: BTreeSet::new(),
                attempts: BTreeMap::new(),
                psi: BTreeMap::new(),
                waiting_psi: Vec::new(),
                senders: Arc::default(),
                holders: Arc::default(),
                opened: BTreeSet::new(),
                sums: BTreeMap::new(),
                waiting_sums: Vec::new(),
            },
            mailbox,
        )
    }

    /// Runs the actor until its mailbox closes.
    pub fn start(self) -> commonware_runtime::Handle<()> {
        let ctx = self.ctx.child("compute");
        // Everything the actor spawns (a site's computation, an aggregation) runs under the
        // actor's own task, so stopping the actor stops them all.
        ctx.spawn(move |ctx| {
            let mut actor = self;
            actor.ctx = ctx;
            actor.run()
        })
    }

    async fn run(mut self) {
        // Start from what is already committed (a restart resumes its jobs).
        let height = self.cfg.ledger.snapshot().height;
        self.on_committed(height);
        while let Some(msg) = self.mailbox.next().await {
            match msg {
                Message::Committed { height } => self.on_committed(height),
                Message::Computed {
                    job,
                    outcome,
                    counted_once_with,
                } => self.on_computed(job, outcome, counted_once_with),
                Message::Modeled {
                    job,
                    outcome,
                    counted_once_with,
                } => self.on_modeled(job, outcome, counted_once_with),
                Message::Step {
                    caller,
                    request,
                    reply,
                } => self.on_step(caller, request, reply),
                Message::Dealing { job, caller, reply } => self.on_dealing(job, caller, reply),
                Message::Psi { caller, ask, reply } => self.on_psi(caller, ask, reply),
                Message::PsiAnswered {
                    job,
                    caller,
                    outcome,
                } => self.on_psi_answered(job, caller, outcome),
                Message::Mask {
                    caller,
                    request,
                    reply,
                } => {
                    let answer = self.on_mask(&caller, &request);
                    let _ = reply.send(answer);
                }
                Message::Reveal { job, caller, reply } => self.on_reveal(job, caller, reply),
                Message::Summed { job, outcome } => self.on_summed(job, outcome),
                Message::Sums { job, caller, reply } => self.on_sums(job, caller, reply),
                Message::Open { caller, ask, reply } => self.on_open(caller, ask, reply),
                Message::Aggregated { job, outcome } => {
                    self.aggregating.remove(&job);
                    match outcome {
                        Ok(()) => tracing::info!(job = %job, "worker.aggregate: result posted"),
                        Err(e) => {
                            tracing::warn!(job = %job, error = %e, "worker.aggregate: no result")
                        }
                    }
                }
            }
        }
    }

    /// On a committed block: start computing this site's vector of every new job of its
    /// contracts, aggregate the jobs it aggregates, answer reveals the block made possible.
    fn on_committed(&mut self, _height: u64) {
        let snap = self.cfg.ledger.snapshot();
        let jobs = match snap.state.jobs() {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "worker.follow: cannot list jobs");
                return;
            }
        };
        for rec in jobs.iter().filter(|j| j.status == JobStatus::Submitted) {
            let Ok(Some(contract)) = snap.state.contract(rec.contract) else {
                continue;
            };
            if !contract.owners.iter().any(|o| *o == self.cfg.member) {
                continue;
            }
            // A vertical study's hospitals compute their sums in the join; its insurer answers.
            match Job::from_ledger(&snap.state, rec.id) {
                Ok(j) if super::vertical::study(&j).is_some() => {
                    if super::vertical::hospitals(&j).contains(&self.cfg.member) {
                        self.ensure_summing(rec.id);
                    }
                }
                _ => self.ensure_computing(rec.id),
            }
            if crate::round::aggregator(&contract) == Some(&self.cfg.member)
                && self.attempts.get(&rec.id).copied().unwrap_or(0) < MAX_ATTEMPTS
                && self.aggregating.insert(rec.id)
            {
                *self.attempts.entry(rec.id).or_insert(0) += 1;
                self.spawn_aggregation(rec.id);
            }
        }
        // A model's rows and the count-once answers leave memory when their job has ended.
        let running = |job: &JobId| {
            jobs.iter()
                .any(|j| j.id == *job && j.status == JobStatus::Submitted)
        };
        self.models.retain(|job, _| running(job));
        self.psi.retain(|(job, _), _| running(job));
        self.sums.retain(|job, _| running(job));
        self.opened.retain(|job| running(job));
        if let Ok(mut h) = self.holders.lock() {
            h.retain(|job, _| running(job));
        }
        if let Ok(mut s) = self.senders.lock() {
            s.retain(|job, _| running(job));
        }
        let waiting = std::mem::take(&mut self.waiting_reveal);
        for (job, caller, reply) in waiting {
            self.on_reveal(job, caller, reply);
        }
        let waiting = std::mem::take(&mut self.waiting_step);
        for (caller, req, reply) in waiting {
            self.on_step(caller, req, reply);
        }
        self.waiting_dealing.retain(|_, w| {
            w.retain(|(_, r)| !r.is_canceled());
            !w.is_empty()
        });
    }

    fn ensure_computing(&mut self, job: JobId) {
        // Rows in memory, a computation under way, or a refusal: nothing to start.
        let store = &self.cfg.store;
        if self.models.contains_key(&job)
            || self.computing.contains(&job)
            || matches!(store.refusal(job), Ok(Some(_)))
        {
            return;
        }
        // A model's rows are never written (after a restart they are read again); a query's
        // vector is computed once and kept.
        let model = self.is_model(job);
        if !model && matches!(store.site(job), Ok(Some(_))) {
            return;
        }
        self.computing.insert(job);
        let cfg = self.cfg.clone();
        let me = self.me.clone();
        let transport = self.transport.clone();
        self.ctx
            .child("site")
            .shared(true)
            .spawn(move |mut ctx| async move {
                // The patients an earlier site also holds count there, not here.
                let matched = super::once::leave_out(&mut ctx, &cfg, &transport, job).await;
                let (leave_out, counted_once_with) = (matched.leave_out, matched.with);
                let (shared, offered) = (matched.shared, matched.offered);
                let state = cfg.ledger.snapshot().state;
                let overlap = Job::from_ledger(&state, job).ok().filter(|j| {
                    matches!(
                        j.spec.aggregate,
                        medspace_privacy::query::Aggregate::Overlap(_)
                    )
                });
                let msg = if model {
                    let outcome = cfg
                        .plane
                        .model_rows(&state, job, &cfg.member, &leave_out)
                        .map(Arc::new)
                        .map_err(|e| e.to_string());
                    Message::Modeled {
                        job,
                        outcome,
                        counted_once_with,
                    }
                } else if let Some(j) = overlap {
                    // An overlap's vector is the intersection sizes themselves.
                    let matched = super::once::Matched {
                        leave_out,
                        with: counted_once_with.clone(),
                        shared,
                        offered,
                    };
                    let outcome = super::once::overlap_vector(&cfg, &state, &j, &matched, &mut ctx);
                    Message::Computed {
                        job,
                        outcome,
                        counted_once_with,
                    }
                } else {
                    let outcome = cfg
                        .plane
                        .site_vector(&state, job, &cfg.member, &leave_out)
                        .map_err(|e| e.to_string());
                    Message::Computed {
                        job,
                        outcome,
                        counted_once_with,
                    }
                };
                me.send(msg).await;
            });
    }

    fn spawn_aggregation(&self, job: JobId) {
        let agg = Aggregation {
            cfg: self.cfg.clone(),
            transport: self.transport.clone(),
            me: self.me.clone(),
            job,
        };
        let me = self.me.clone();
        // A vertical study's aggregator reads its own cohort (blocking work) in its task.
        let vertical = super::vertical::is_vertical(&self.cfg.ledger.snapshot().state, job);
        self.ctx
            .child("aggregate")
            .shared(vertical)
            .spawn(move |ctx| async move {
                let outcome = agg.run(&ctx).await.map_err(|e| e.to_string());
                me.send(Message::Aggregated { job, outcome }).await;
            });
    }

    fn on_computed(
        &mut self,
        job: JobId,
        outcome: Result<super::SiteVector, String>,
        counted_once_with: Vec<MemberId>,
    ) {
        self.computing.remove(&job);
        let stored = match outcome {
            Ok(v) => {
                let secrets = SiteSecrets::random(&mut self.ctx);
                self.cfg
                    .store
                    .put_site(
                        job,
                        &SiteRecord {
                            secrets: Hex(secrets.to_bytes()),
                            vector: v.values,
                            cohort: v.cohort,
                            counted_once_with,
                        },
                    )
                    .map(|_| ())
            }
            Err(reason) => {
                tracing::warn!(job = %job, reason = %reason, "worker.share: refused");
                self.cfg.store.put_refusal(job, &reason).map(|_| ())
            }
        };
        if let Err(e) = stored {
            tracing::error!(job = %job, error = %e, "worker.share: cannot keep");
        }
        for (caller, reply) in self.waiting_dealing.remove(&job).unwrap_or_default() {
            self.on_dealing(job, caller, reply);
        }
    }

    /// Whether `job`'s computation is a model.
    fn is_model(&self, job: JobId) -> bool {
        let state = self.cfg.ledger.snapshot().state;
        matches!(state.job(job), Ok(Some(rec)) if matches!(
            medspace_privacy::query::parse_bytes(rec.computation.as_bytes()),
            Ok((spec, _)) if matches!(spec.aggregate, medspace_privacy::query::Aggregate::Model(_))
        ))
    }

    fn on_modeled(
        &mut self,
        job: JobId,
        outcome: Result<Arc<ModelRows>, String>,
        counted_once_with: Vec<MemberId>,
    ) {
        self.computing.remove(&job);
        let stored = match outcome {
            Ok(rows) => {
                // The dealing says the site takes part; its secrets are drawn once, ever.
                let secrets = SiteSecrets::random(&mut self.ctx);
                let kept = self.cfg.store.put_site(
                    job,
                    &SiteRecord {
                        secrets: Hex(secrets.to_bytes()),
                        vector: Vec::new(),
                        cohort: rows.cohort,
                        counted_once_with,
                    },
                );
                self.models.insert(job, rows);
                kept.map(|_| ())
            }
            Err(reason) => {
                tracing::warn!(job = %job, reason = %reason, "worker.model: refused");
                self.cfg.store.put_refusal(job, &reason).map(|_| ())
            }
        };
        if let Err(e) = stored {
            tracing::error!(job = %job, error = %e, "worker.model: cannot keep");
        }
        for (caller, reply) in self.waiting_dealing.remove(&job).unwrap_or_default() {
            self.on_dealing(job, caller, reply);
        }
        let waiting = std::mem::take(&mut self.waiting_step);
        for (caller, req, reply) in waiting {
            self.on_step(caller, req, reply);
        }
    }

    fn on_step(&mut self, caller: MemberId, req: StepRequest, reply: Reply<StepMsg>) {
        let answer = (|| {
            let j = self.job_for(req.job, &caller)?;
            self.site(req.job)?;
            let Some(rows) = self.models.get(&req.job).cloned() else {
                return Err(PeerError::NotReady);
            };
            let store = &self.cfg.store;
            let last = store
                .step(req.job)
                .map_err(|e| PeerError::Refused(e.to_string()))?;
            let site = SiteStep {
                me: &self.cfg.member,
                key: &self.cfg.key,
                secret: &self.cfg.agreement,
                rows: &rows,
                last: last.as_ref(),
            };
            match answer_step(&j, &site, &req, &mut self.ctx) {
                Ok(Some(msg)) => {
                    if last.as_ref().map(|l| &l.answer) != Some(&msg) {
                        store
                            .put_step(
                                req.job,
                                &StepRecord {
                                    iteration: req.iteration,
                                    answer: msg.clone(),
                                },
                            )
                            .map_err(|e| PeerError::Refused(e.to_string()))?;
                    }
                    Ok(msg)
                }
                Ok(None) => Err(PeerError::NotReady),
                Err(why) => {
                    tracing::warn!(job = %req.job, error = %why, "worker.model: step refused");
                    Err(PeerError::Refused(why))
                }
            }
        })();
        match answer {
            Err(PeerError::NotReady) if !reply.is_canceled() => {
                self.waiting_step.push((caller, req, reply));
            }
            other => {
                let _ = reply.send(other);
            }
        }
    }

    /// The job from the ledger, and a refusal unless `caller` is its aggregator.
    fn job_for(&self, job: JobId, caller: &MemberId) -> Result<Job, PeerError> {
        let snap = self.cfg.ledger.snapshot();
        let j = match Job::from_ledger(&snap.state, job) {
            Ok(j) => j,
            Err(RoundError::UnknownJob(_)) => return Err(PeerError::NotReady),
            Err(e) => return refused(e),
        };
        if j.index(&self.cfg.member).is_none() {
            return refused(format!("{} holds no data of {job}", self.cfg.member));
        }
        if j.aggregator() != Some(caller) {
            return Err(PeerError::Forbidden(format!(
                "only the aggregator of {job} may ask, not {caller}"
            )));
        }
        Ok(j)
    }

    fn site(&self, job: JobId) -> Result<Option<(SiteRecord, SiteSecrets)>, PeerError> {
        if let Some(reason) = self
            .cfg
            .store
            .refusal(job)
            .map_err(|e| PeerError::Refused(e.to_string()))?
        {
            return refused(format!("this site does not take part: {reason}"));
        }
        match self
            .cfg
            .store
            .site(job)
            .map_err(|e| PeerError::Refused(e.to_string()))?
        {
            None => Ok(None),
            Some(rec) => {
                let secrets = SiteSecrets::from_bytes(&rec.secrets.0)
                    .ok_or_else(|| PeerError::Refused("stored secrets are damaged".into()))?;
                Ok(Some((rec, secrets)))
            }
        }
    }

    fn on_dealing(&mut self, job: JobId, caller: MemberId, reply: Reply<DealingMsg>) {
        let answer = (|| {
            let j = self.job_for(job, &caller)?;
            let Some((rec, secrets)) = self.site(job)? else {
                return Err(PeerError::NotReady);
            };
            j.dealing_counted_once(
                &self.cfg.member,
                &self.cfg.key,
                &self.cfg.agreement,
                &secrets,
                rec.counted_once_with,
            )
            .or_else(refused)
        })();
        match answer {
            Err(PeerError::NotReady) if !reply.is_canceled() => {
                self.waiting_dealing
                    .entry(job)
                    .or_default()
                    .push((caller, reply));
            }
            other => {
                let _ = reply.send(other);
            }
        }
    }

    fn on_mask(&mut self, caller: &MemberId, req: &MaskRequest) -> Result<MaskedMsg, PeerError> {
        let j = self.job_for(req.job, caller)?;
        let Some((rec, secrets)) = self.site(req.job)? else {
            return Err(PeerError::NotReady);
        };
        let store = &self.cfg.store;
        let kept = store
            .commitment(req.job)
            .map_err(|e| PeerError::Refused(e.to_string()))?;
        let (u1, held, answer) = j
            .accept_mask(
                &self.cfg.member,
                &self.cfg.key,
                &self.cfg.agreement,
                &secrets,
                &rec.vector,
                rec.cohort,
                req,
            )
            .or_else(refused)?;
        if let Some(kept) = kept {
            // One U1 per job, ever: the same request gets the same answer, another is refused.
            if kept.u1 == u1 {
                return Ok(kept.answer);
            }
            return refused(format!(
                "this site already masked {} for other dealers",
                req.job
            ));
        }
        let commitment = MaskCommitment {
            u1,
            held: held.iter().map(|(d, s)| (*d, Hex(s.to_bytes()))).collect(),
            answer,
        };
        let kept = store
            .put_commitment(req.job, &commitment)
            .map_err(|e| PeerError::Refused(e.to_string()))?;
        Ok(kept.answer)
    }

    fn on_reveal(&mut self, job: JobId, caller: MemberId, reply: Reply<RevealMsg>) {
        let answer = (|| {
            let j = self.job_for(job, &caller)?;
            let Some(c) = self
                .cfg
                .store
                .commitment(job)
                .map_err(|e| PeerError::Refused(e.to_string()))?
            else {
                return refused(format!("this site sent no masked vector for {job}"));
            };
            let Some(round) = j.record.round.clone() else {
                return Err(PeerError::NotReady);
            };
            let held: Vec<(usize, HeldShare)> = c
                .held
                .iter()
                .filter_map(|(d, h)| HeldShare::from_bytes(&h.0).map(|s| (*d, s)))
                .collect();
            j.reveal(&self.cfg.member, &self.cfg.key, &c.u1, &held, &round)
                .map_err(|e| {
                    tracing::warn!(job = %job, error = %e, "worker.reveal: refused");
                    PeerError::Refused(e.to_string())
                })
        })();
        match answer {
            Err(PeerError::NotReady) if !reply.is_canceled() => {
                self.waiting_reveal.push((job, caller, reply));
            }
            other => {
                let _ = reply.send(other);
            }
        }
    }

    /// A later site's count-once set: checked ([`super::once::check_request`]), its hash kept
    /// (one set per site and job, ever), answered once computed.
    fn on_psi(&mut self, caller: MemberId, ask: PsiAsk, reply: Reply<PsiAnswer>) {
        let job = ask.job;
        let key = (job, caller.clone());
        let hash = super::once::request_hash(&ask.request.0);
        if let Some((kept, done)) = self.psi.get(&key) {
            match done {
                _ if *kept != hash => {
                    let _ = reply.send(refused(format!(
                        "{caller} already sent another set for {job}: one set per site and job"
                    )));
                }
                Some(answer) => {
                    let _ = reply.send(answer.clone().or_else(refused));
                }
                None => self.waiting_psi.push((job, caller, reply)),
            }
            return;
        }
        let checked = (|| {
            let state = self.cfg.ledger.snapshot().state;
            let j = match Job::from_ledger(&state, job) {
                Ok(j) => j,
                Err(RoundError::UnknownJob(_)) => return Err(PeerError::NotReady),
                Err(e) => return refused(e),
            };
            let request = if super::vertical::insurer(&j) == Some(&self.cfg.member) {
                super::vertical::check_join(&state, &j, &self.cfg.member, &caller, &ask)?
            } else {
                super::once::check_request(&state, &j, &self.cfg.member, &caller, &ask)?
            };
            let index = j.index(&caller).unwrap_or(usize::MAX);
            let kept = self
                .cfg
                .store
                .put_psi_request(job, index, &hash)
                .map_err(|e| PeerError::Refused(e.to_string()))?;
            if kept != hash {
                return refused(format!(
                    "{caller} already sent another set for {job}: one set per site and job"
                ));
            }
            Ok(request)
        })();
        let request = match checked {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(job = %job, caller = %caller, error = %e, "worker.once: set refused");
                let _ = reply.send(Err(e));
                return;
            }
        };
        tracing::info!(job = %job, caller = %caller, elements = request.points.len(), "worker.once: answering a set");
        self.psi.insert(key, (hash, None));
        self.waiting_psi.push((job, caller.clone(), reply));
        let cfg = self.cfg.clone();
        let me = self.me.clone();
        let senders = self.senders.clone();
        let holders = self.holders.clone();
        self.ctx
            .child("once")
            .shared(true)
            .spawn(move |mut ctx| async move {
                let state = cfg.ledger.snapshot().state;
                let vertical = Job::from_ledger(&state, job)
                    .ok()
                    .filter(|j| super::vertical::insurer(j) == Some(&cfg.member));
                let outcome = match vertical {
                    // The insurer of a vertical study answers with its encrypted values.
                    Some(j) => super::vertical::answer(
                        &*cfg.plane,
                        &holders,
                        &state,
                        &j,
                        &cfg.member,
                        &request,
                        &mut ctx,
                    ),
                    None => super::once::answer(
                        &*cfg.plane,
                        &senders,
                        &state,
                        job,
                        &cfg.member,
                        &request,
                        &mut ctx,
                    ),
                };
                me.send(Message::PsiAnswered {
                    job,
                    caller,
                    outcome,
                })
                .await;
            });
    }

    /// A vertical study's aggregator asks this site (its insurer) to open the total of every
    /// hospital's sums: once per job, once the ledger closed its round with every site.
    fn on_open(&mut self, caller: MemberId, ask: OpenAsk, reply: Reply<OpenAnswer>) {
        let job = ask.job;
        let state = self.cfg.ledger.snapshot().state;
        let j = match Job::from_ledger(&state, job) {
            Ok(j) => j,
            Err(RoundError::UnknownJob(_)) => {
                let _ = reply.send(Err(PeerError::NotReady));
                return;
            }
            Err(e) => {
                let _ = reply.send(refused(e));
                return;
            }
        };
        let total = match super::vertical::check_open(&j, &self.cfg.member, &caller, &ask) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if self.opened.contains(&job) {
            let _ = reply.send(refused(format!("the sums of {job} were already opened")));
            return;
        }
        let holder = self.holders.lock().ok().and_then(|h| h.get(&job).cloned());
        let Some(holder) = holder else {
            let _ = reply.send(refused(format!(
                "{job} was not joined here (or this node restarted since)"
            )));
            return;
        };
        self.opened.insert(job);
        tracing::info!(job = %job, cells = total.groups, "worker.vertical: opening the total");
        let cfg = self.cfg.clone();
        self.ctx
            .child("open")
            .shared(true)
            .spawn(move |mut ctx| async move {
                let answer =
                    super::vertical::open(&holder, &j, &cfg.member, &cfg.key, &total, &mut ctx);
                let _ = reply.send(answer.or_else(refused));
            });
    }

    /// Starts this hospital's sums of a vertical study, once: it matches its patients with the
    /// earlier hospitals, joins with the insurer and signs.
    fn ensure_summing(&mut self, job: JobId) {
        if self.sums.contains_key(&job) || self.computing.contains(&job) {
            return;
        }
        self.computing.insert(job);
        let cfg = self.cfg.clone();
        let me = self.me.clone();
        let transport = self.transport.clone();
        self.ctx
            .child("sums")
            .shared(true)
            .spawn(move |mut ctx| async move {
                let matched = super::once::leave_out(&mut ctx, &cfg, &transport, job).await;
                let outcome = super::vertical::site_sums(
                    &mut ctx,
                    &cfg,
                    &transport,
                    job,
                    &matched.leave_out,
                    matched.with,
                )
                .await;
                me.send(Message::Summed { job, outcome }).await;
            });
    }

    fn on_summed(&mut self, job: JobId, outcome: Result<SumsMsg, String>) {
        self.computing.remove(&job);
        if let Err(e) = &outcome {
            tracing::warn!(job = %job, error = %e, "worker.vertical: no sums");
        }
        let waiting = std::mem::take(&mut self.waiting_sums);
        for (j, c, reply) in waiting {
            if j == job {
                let _ = reply.send(outcome.clone().or_else(refused));
            } else if !reply.is_canceled() {
                self.waiting_sums.push((j, c, reply));
            }
        }
        self.sums.insert(job, outcome);
    }

    /// The aggregator of a vertical study asks for this hospital's sums (answered once made).
    fn on_sums(&mut self, job: JobId, caller: MemberId, reply: Reply<SumsMsg>) {
        let state = self.cfg.ledger.snapshot().state;
        match Job::from_ledger(&state, job) {
            Err(RoundError::UnknownJob(_)) => {
                let _ = reply.send(Err(PeerError::NotReady));
            }
            Err(e) => {
                let _ = reply.send(refused(e));
            }
            Ok(j) if j.aggregator() != Some(&caller) => {
                let _ = reply.send(Err(PeerError::Forbidden(format!(
                    "only the aggregator of {job} collects its sums, not {caller}"
                ))));
            }
            Ok(j) if super::vertical::study(&j).is_none() => {
                let _ = reply.send(refused(format!("{job} is not a vertical study")));
            }
            Ok(j) if !super::vertical::hospitals(&j).contains(&self.cfg.member) => {
                let _ = reply.send(refused(format!(
                    "{} is no hospital of {job}",
                    self.cfg.member
                )));
            }
            Ok(_) => match self.sums.get(&job) {
                Some(done) => {
                    let _ = reply.send(done.clone().or_else(refused));
                }
                None => {
                    self.ensure_summing(job);
                    self.waiting_sums.push((job, caller, reply));
                }
            },
        }
    }

    fn on_psi_answered(
        &mut self,
        job: JobId,
        caller: MemberId,
        outcome: Result<PsiAnswer, String>,
    ) {
        if let Err(e) = &outcome {
            tracing::warn!(job = %job, caller = %caller, error = %e, "worker.once: no answer");
        }
        let waiting = std::mem::take(&mut self.waiting_psi);
        for (j, c, reply) in waiting {
            if j == job && c == caller {
                let _ = reply.send(outcome.clone().or_else(refused));
            } else if !reply.is_canceled() {
                self.waiting_psi.push((j, c, reply));
            }
        }
        if let Some((_, done)) = self.psi.get_mut(&(job, caller)) {
            *done = Some(outcome);
        }
    }
}
