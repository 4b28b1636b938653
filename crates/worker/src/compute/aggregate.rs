//! The aggregator's side of a round, as one task per job: collect the dealings (→ `U1`), the
//! masked vectors (→ `U2`), close the round on the ledger, collect the reveals, unmask, release
//! and post. Every wait is bounded by the runtime's clock; a site that does not answer in time
//! is dropped. What was collected is kept on disk, so a restarted aggregator continues the same
//! round instead of starting another.

use super::ingress::Mailbox;
use super::model::{check_step, family, open_sum, result};
use super::{Config, DataPlane};
use crate::WorkerError;
use crate::round::{Job, RoundError};
use crate::store::Collected;
use crate::transport::{PeerError, Transport, ask_until};
use crate::wire::{
    DealingMsg, MaskRequest, MaskedMsg, ResultCell, ResultDoc, RevealMsg, StepMsg, StepRequest,
};
use commonware_runtime::Clock;
use futures::future::join_all;
use medspace_ledger::Ledger;
use medspace_privacy::glm::{self, Progress, Stats};
use medspace_privacy::query::ModelSpec;
use medspace_privacy::release::{Protection, group_label, release_totals};
use medspace_privacy::secagg::{Dealing, Revealed};
use medspace_state::records::JobStatus;
use medspace_types::{CloseRound, JobId, List, MemberId, Payload, PostResult, SignedContribution};
use std::sync::Arc;
use std::time::Duration;

/// One job's aggregation.
pub struct Aggregation<L, T, P> {
    /// The service.
    pub cfg: Arc<Config<L, P>>,
    /// The way to the other sites.
    pub transport: T,
    /// This node's own site.
    pub me: Mailbox,
    /// The job.
    pub job: JobId,
}

impl<L: Ledger, T: Transport, P: DataPlane> Aggregation<L, T, P> {
    /// `site`'s dealing: from this node's own site through its mailbox, from another over
    /// the transport (the same for the mask and reveal steps below).
    async fn dealing_of(&self, site: &MemberId, wait: Duration) -> Result<DealingMsg, PeerError> {
        if *site == self.cfg.member {
            self.me.dealing(self.job, site.clone()).await
        } else {
            self.transport.dealing(site, self.job, wait).await
        }
    }

    async fn masked_of(&self, site: &MemberId, req: MaskRequest) -> Result<MaskedMsg, PeerError> {
        if *site == self.cfg.member {
            self.me.mask(req, site.clone()).await
        } else {
            self.transport.mask(site, req).await
        }
    }

    async fn reveal_of(&self, site: &MemberId, wait: Duration) -> Result<RevealMsg, PeerError> {
        if *site == self.cfg.member {
            self.me.reveal(self.job, site.clone()).await
        } else {
            self.transport.reveal(site, self.job, wait).await
        }
    }

    pub(crate) fn job(&self) -> Result<Job, WorkerError> {
        Job::from_ledger(&self.cfg.ledger.snapshot().state, self.job)
            .map_err(|e| WorkerError::Round(e.to_string()))
    }

    /// Runs the round to a posted result (or a posted failure).
    pub async fn run<E: Clock>(&self, clock: &E) -> Result<(), WorkerError> {
        let job = match Job::from_ledger(&self.cfg.ledger.snapshot().state, self.job) {
            Ok(job) => job,
            Err(RoundError::Computation(why)) => return self.unrunnable(clock, &why).await,
            Err(e) => return Err(WorkerError::Round(e.to_string())),
        };
        if job.record.status != JobStatus::Submitted {
            return Ok(());
        }
        let store = &self.cfg.store;
        // A result released before a restart is posted as it was, never recomputed.
        if let Some(bytes) = store.result(self.job)? {
            let doc: ResultDoc =
                serde_json::from_slice(&bytes).map_err(|e| WorkerError::Invalid {
                    what: "stored result",
                    error: e.to_string(),
                })?;
            return self.post(clock, &doc, &bytes).await;
        }
        // A vertical study runs its own protocol (`super::vertical`).
        if let medspace_privacy::query::Aggregate::Claims(c) = &job.spec.aggregate {
            let c = c.clone();
            return self.run_vertical(clock, &job, &c).await;
        }
        let mut collected = store.collected(self.job)?.unwrap_or_default();
        if collected.dealings.is_empty() {
            collected = self.collect_dealings(clock, &job).await;
            store.put_collected(self.job, &collected)?;
        }
        let u1 = self.dealers(&job, &collected)?;
        if u1.len() < job.round.threshold {
            return self
                .fail(
                    clock,
                    &job,
                    &collected,
                    "fewer sites dealt than the threshold",
                )
                .await;
        }
        if let Some(model) = super::model::model_of(&job) {
            // The dealers are the sites that take part; the ledger fixes them for every step.
            let model = model.clone();
            let u = match &job.record.round {
                Some(round) => {
                    job.ledger_sets(round)
                        .map_err(|e| WorkerError::Round(e.to_string()))?
                        .1
                }
                None => {
                    self.close(clock, &job, &u1, &u1).await?;
                    u1
                }
            };
            let job = self.job()?;
            return self.run_model(clock, &job, &model, collected, &u).await;
        }
        if collected.masked.is_empty() && job.record.round.is_none() {
            let (masked, dropped) = self
                .collect_masked(clock, &job, &collected.dealings, &u1)
                .await;
            collected.masked = masked;
            collected.dropped.extend(dropped);
            store.put_collected(self.job, &collected)?;
        }
        let u2 = self.survivors(&job, &collected, &u1)?;
        if u2.len() < job.round.threshold {
            return self
                .fail(
                    clock,
                    &job,
                    &collected,
                    "fewer masked vectors than the threshold",
                )
                .await;
        }
        self.close(clock, &job, &u1, &u2).await?;
        let reveals = self.collect_reveals(clock, &job, &u2).await;
        let dealings = self.dealings(&job, &collected)?;
        let masked: Vec<(usize, Vec<u64>)> = collected
            .masked
            .iter()
            .filter_map(|m| {
                job.index(&m.body.member)
                    .map(|i| (i, m.body.masked.clone()))
            })
            .collect();
        let totals = match job.unmask(&u1, &u2, &dealings, &masked, &reveals) {
            Ok((totals, cheaters)) => {
                for c in &cheaters {
                    collected.dropped.push((
                        c.to_string(),
                        "revealed a share that fails its dealer's commitment".into(),
                    ));
                }
                totals
            }
            Err(e) => {
                let why = format!("unmasking failed: {e}");
                return self.fail(clock, &job, &collected, &why).await;
            }
        };
        let doc = self.release(&job, &collected, &totals)?;
        self.release_doc(clock, &doc).await
    }

    /// Keeps the released result (the first kept is the one posted) and posts its hash.
    pub(crate) async fn release_doc<E: Clock>(
        &self,
        clock: &E,
        doc: &ResultDoc,
    ) -> Result<(), WorkerError> {
        let bytes = serde_json::to_vec(doc).map_err(|e| WorkerError::Invalid {
            what: "result",
            error: e.to_string(),
        })?;
        let bytes = self.cfg.store.put_result(self.job, &bytes)?;
        let kept: ResultDoc = serde_json::from_slice(&bytes).map_err(|e| WorkerError::Invalid {
            what: "stored result",
            error: e.to_string(),
        })?;
        self.post(clock, &kept, &bytes).await
    }

    /// Every holder's dealing, in parallel, until the step deadline.
    async fn collect_dealings<E: Clock>(&self, clock: &E, job: &Job) -> Collected {
        // The sites match their patients before they compute (count once): their dealings
        // come that much later on large hospitals.
        let allowance = super::once::allowance(&self.cfg.ledger.snapshot().state, job);
        let deadline = clock.current() + self.cfg.step_timeout + allowance;
        let asks = job.owners.iter().map(|owner| async move {
            let answer = ask_until(clock, deadline, |wait| self.dealing_of(owner, wait)).await;
            (owner.clone(), answer)
        });
        let mut out = Collected::default();
        for (owner, answer) in join_all(asks).await {
            match answer
                .map_err(|e| e.to_string())
                .and_then(|d| job.check_dealing(&d).map(|_| d).map_err(|e| e.to_string()))
            {
                Ok(d) => out.dealings.push(d),
                Err(why) => out.dropped.push((owner.to_string(), why)),
            }
        }
        out
    }

    fn dealers(&self, job: &Job, c: &Collected) -> Result<Vec<usize>, WorkerError> {
        let mut u1 = Vec::new();
        for d in &c.dealings {
            let (i, _) = job
                .check_dealing(d)
                .map_err(|e| WorkerError::Round(e.to_string()))?;
            u1.push(i);
        }
        u1.sort_unstable();
        u1.dedup();
        Ok(u1)
    }

    fn dealings(&self, job: &Job, c: &Collected) -> Result<Vec<(usize, Dealing)>, WorkerError> {
        c.dealings
            .iter()
            .map(|d| {
                job.check_dealing(d)
                    .map_err(|e| WorkerError::Round(e.to_string()))
            })
            .collect()
    }

    /// Every dealer's masked vector for `U1`, in parallel, until the step deadline.
    async fn collect_masked<E: Clock>(
        &self,
        clock: &E,
        job: &Job,
        dealings: &[DealingMsg],
        u1: &[usize],
    ) -> (Vec<MaskedMsg>, Vec<(String, String)>) {
        let deadline = clock.current() + self.cfg.step_timeout;
        let mut ordered: Vec<DealingMsg> = dealings.to_vec();
        ordered.sort_by_key(|d| job.index(&d.body.member));
        let request = MaskRequest {
            job: self.job,
            dealings: ordered,
        };
        let asks = u1.iter().filter_map(|i| job.owners.get(*i)).map(|owner| {
            let request = request.clone();
            async move {
                let answer =
                    ask_until(clock, deadline, |_| self.masked_of(owner, request.clone())).await;
                (owner.clone(), answer)
            }
        });
        let (mut masked, mut dropped) = (Vec::new(), Vec::new());
        for (owner, answer) in join_all(asks).await {
            match answer.map_err(|e| e.to_string()).and_then(|m| {
                job.check_masked(&m, u1)
                    .map(|_| m)
                    .map_err(|e| e.to_string())
            }) {
                Ok(m) => masked.push(m),
                Err(why) => dropped.push((owner.to_string(), why)),
            }
        }
        masked.sort_by_key(|m| job.index(&m.body.member));
        (masked, dropped)
    }

    fn survivors(&self, job: &Job, c: &Collected, u1: &[usize]) -> Result<Vec<usize>, WorkerError> {
        if let Some(round) = &job.record.round {
            // Closed before a restart: the ledger's sets are the round's.
            let (_, u2) = job
                .ledger_sets(round)
                .map_err(|e| WorkerError::Round(e.to_string()))?;
            return Ok(u2);
        }
        let mut u2 = Vec::new();
        for m in &c.masked {
            let i = job
                .check_masked(m, u1)
                .map_err(|e| WorkerError::Round(e.to_string()))?;
            u2.push(i);
        }
        u2.sort_unstable();
        u2.dedup();
        Ok(u2)
    }

    /// Posts `CloseRound(U1, U2)` and waits until it is final (the first close of a job wins).
    pub(crate) async fn close<E: Clock>(
        &self,
        clock: &E,
        job: &Job,
        u1: &[usize],
        u2: &[usize],
    ) -> Result<(), WorkerError> {
        let names = |set: &[usize]| -> Result<List<MemberId, 64>, WorkerError> {
            List::new(
                set.iter()
                    .filter_map(|i| job.owners.get(*i).cloned())
                    .collect(),
            )
            .map_err(|e| WorkerError::Invalid {
                what: "round sets",
                error: e.to_string(),
            })
        };
        let payload = Payload::CloseRound(CloseRound {
            job: self.job,
            sharers: names(u1)?,
            survivors: names(u2)?,
        });
        let id = self.job;
        self.cfg
            .submitter
            .submit_and_wait(
                clock,
                payload,
                &move |state| matches!(state.job(id), Ok(Some(j)) if j.round.is_none()),
            )
            .await?;
        let closed = self.job()?;
        let round = closed
            .record
            .round
            .ok_or_else(|| WorkerError::Ledger("the round was not closed".into()))?;
        let (l1, l2) = job
            .ledger_sets(&round)
            .map_err(|e| WorkerError::Round(e.to_string()))?;
        if l1 != u1 || l2 != u2 {
            return Err(WorkerError::Round(
                "the ledger closed the round with other sets".into(),
            ));
        }
        Ok(())
    }

    /// Every survivor's reveal, in parallel, until the step deadline.
    async fn collect_reveals<E: Clock>(&self, clock: &E, job: &Job, u2: &[usize]) -> Vec<Revealed> {
        let deadline = clock.current() + self.cfg.step_timeout;
        let asks = u2
            .iter()
            .filter_map(|i| job.owners.get(*i))
            .map(|owner| async move {
                let answer = ask_until(clock, deadline, |wait| self.reveal_of(owner, wait)).await;
                (owner.clone(), answer)
            });
        let mut out = Vec::new();
        for (owner, answer) in join_all(asks).await {
            match answer {
                Ok(msg) => match job.check_reveal(&msg, u2) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        tracing::warn!(job = %self.job, site = %owner, error = %e, "worker.aggregate: reveal rejected")
                    }
                },
                Err(e) => {
                    tracing::warn!(job = %self.job, site = %owner, error = %e, "worker.aggregate: no reveal")
                }
            }
        }
        out
    }

    fn release(&self, job: &Job, c: &Collected, totals: &[i64]) -> Result<ResultDoc, WorkerError> {
        use medspace_privacy::query::Aggregate;
        match &job.spec.aggregate {
            Aggregate::DrugSafety(d) => {
                let mut doc = self.doc(job, c, Vec::new(), true);
                doc.drug_safety = Some(
                    super::health::drug_safety_result(d, totals, job.k)
                        .map_err(WorkerError::Round)?,
                );
                return Ok(doc);
            }
            Aggregate::Overlap(o) => {
                let mut doc = self.doc(job, c, Vec::new(), true);
                let unmatched = doc.not_counted_once.clone();
                let pairs = super::once::overlap_pairs(job.owners.len());
                if totals.len() != pairs.len() {
                    return Err(WorkerError::Round(format!(
                        "{} overlap values, not {} pairs",
                        totals.len(),
                        pairs.len()
                    )));
                }
                let mut released = Vec::with_capacity(pairs.len());
                for ((i, j), v) in pairs.iter().zip(totals) {
                    let (Some(a), Some(b)) = (job.owners.get(*i), job.owners.get(*j)) else {
                        continue;
                    };
                    let measured = !unmatched.contains(&(b.clone(), a.clone()));
                    let value = if measured {
                        medspace_privacy::dp::suppress_small(*v, job.k)
                    } else {
                        None
                    };
                    released.push((a.clone(), b.clone(), value));
                }
                doc.overlap = Some(crate::wire::OverlapResult {
                    dp: o.dp,
                    pairs: released,
                });
                // The pairs themselves say which were matched.
                doc.not_counted_once.clear();
                return Ok(doc);
            }
            Aggregate::Surveillance(s) => {
                let window = job.record.window.ok_or_else(|| {
                    WorkerError::Round("the ledger gave the job no surveillance window".into())
                })?;
                let mut doc = self.doc(job, c, Vec::new(), true);
                doc.surveillance = Some(
                    super::health::surveillance_result(s, window, totals, job.k)
                        .map_err(WorkerError::Round)?,
                );
                return Ok(doc);
            }
            _ => {}
        }
        let cells = release_totals(&job.spec, totals, Protection::Full { k: job.k })
            .map_err(|e| WorkerError::Round(e.to_string()))?
            .iter()
            .map(|cell| ResultCell {
                group: group_label(&cell.group),
                n: cell.n,
                mean: cell.mean,
            })
            .collect();
        let mut doc = self.doc(job, c, cells, true);
        if let medspace_privacy::query::Aggregate::Survival(s) = &job.spec.aggregate {
            doc.survival = Some(
                super::model::survival_result(&job.spec, s, totals, job.k)
                    .map_err(WorkerError::Round)?,
            );
        }
        Ok(doc)
    }

    pub(crate) fn doc(
        &self,
        job: &Job,
        c: &Collected,
        cells: Vec<ResultCell>,
        released: bool,
    ) -> ResultDoc {
        let contributions: Vec<(MemberId, u64)> = if released {
            c.masked
                .iter()
                .map(|m| (m.body.member.clone(), m.body.cohort))
                .collect()
        } else {
            Vec::new()
        };
        let contributors: Vec<MemberId> = contributions.iter().map(|(m, _)| m.clone()).collect();
        let mut dropped: Vec<(MemberId, String)> = c
            .dropped
            .iter()
            .filter_map(|(m, why)| MemberId::new(m).ok().map(|m| (m, why.clone())))
            .collect();
        dropped.sort_by_key(|(m, _)| job.index(m));
        ResultDoc {
            version: 2,
            job: self.job,
            contract: job.record.contract,
            aggregator: self.cfg.member.clone(),
            k: job.k,
            epsilon_micro: job.record.epsilon_reserved,
            cells,
            contributions,
            dropped,
            failure: None,
            model: None,
            survival: None,
            drug_safety: None,
            surveillance: None,
            vertical: None,
            overlap: None,
            not_counted_once: not_counted_once(job, &c.dealings, &contributors),
        }
    }

    /// Posts that nothing was released: every cell empty, the reasons kept.
    pub(crate) async fn fail<E: Clock>(
        &self,
        clock: &E,
        job: &Job,
        c: &Collected,
        why: &str,
    ) -> Result<(), WorkerError> {
        let cells = medspace_privacy::query::groups(&job.spec)
            .iter()
            .map(|g| ResultCell {
                group: group_label(g),
                n: None,
                mean: None,
            })
            .collect();
        let mut doc = self.doc(job, c, cells, false);
        doc.failure = Some(why.to_string());
        let bytes = serde_json::to_vec(&doc).map_err(|e| WorkerError::Invalid {
            what: "result",
            error: e.to_string(),
        })?;
        let bytes = self.cfg.store.put_result(self.job, &bytes)?;
        self.post(clock, &doc, &bytes).await?;
        Err(WorkerError::Round(why.to_string()))
    }

    /// The survivors' signed contributions, from their masked vectors (each site signed its own
    /// with its node key; the aggregator only forwards them).
    fn contributions(&self, doc: &ResultDoc) -> Result<Vec<SignedContribution>, WorkerError> {
        if doc.contributions.is_empty() {
            return Ok(Vec::new());
        }
        let collected = self.cfg.store.collected(self.job)?.unwrap_or_default();
        if !collected.contributions.is_empty() {
            return Ok(collected.contributions);
        }
        doc.contributions
            .iter()
            .map(|(member, _)| {
                collected
                    .masked
                    .iter()
                    .find(|m| m.body.member == *member)
                    .map(|m| m.body.contribution.clone())
                    .ok_or_else(|| {
                        WorkerError::Round(format!("no signed contribution of {member}"))
                    })
            })
            .collect()
    }

    /// A job whose computation is not a query this round can run: nothing is computed or
    /// released; the result says why and gives the reservation back.
    async fn unrunnable<E: Clock>(&self, clock: &E, why: &str) -> Result<(), WorkerError> {
        let state = self.cfg.ledger.snapshot().state;
        let Some(record) = state.job(self.job)? else {
            return Ok(());
        };
        if record.status != JobStatus::Submitted {
            return Ok(());
        }
        let doc = ResultDoc {
            version: 2,
            job: self.job,
            contract: record.contract,
            aggregator: self.cfg.member.clone(),
            k: state.policy()?.min_cell_k,
            epsilon_micro: record.epsilon_reserved,
            cells: Vec::new(),
            contributions: Vec::new(),
            dropped: Vec::new(),
            failure: Some(format!("the job cannot run: {why}")),
            model: None,
            survival: None,
            drug_safety: None,
            surveillance: None,
            vertical: None,
            overlap: None,
            not_counted_once: Vec::new(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| WorkerError::Invalid {
            what: "result",
            error: e.to_string(),
        })?;
        let bytes = self.cfg.store.put_result(self.job, &bytes)?;
        self.post(clock, &doc, &bytes).await?;
        Err(WorkerError::Round(format!("the job cannot run: {why}")))
    }

    /// Posts the result's hash with the node key and waits until it is final.
    async fn post<E: Clock>(
        &self,
        clock: &E,
        doc: &ResultDoc,
        bytes: &[u8],
    ) -> Result<(), WorkerError> {
        let contributions = self.contributions(doc)?;
        let payload = Payload::PostResult(PostResult {
            job: doc.job,
            result_hash: crate::wire::result_hash(bytes),
            epsilon_spent: if self.job()?.record.round.is_some() {
                doc.epsilon_micro
            } else {
                0
            },
            contributions: List::new(contributions).map_err(|e| WorkerError::Invalid {
                what: "contributions",
                error: e.to_string(),
            })?,
        });
        let job = doc.job;
        self.cfg
            .submitter
            .submit_and_wait(clock, payload, &move |state| {
                matches!(state.job(job), Ok(Some(j)) if j.status == JobStatus::Submitted)
            })
            .await
    }
}

/// A model's job, after the ledger fixed its set ([`super::model`]).
impl<L: Ledger, T: Transport, P: DataPlane> Aggregation<L, T, P> {
    async fn step_of(&self, site: &MemberId, req: StepRequest) -> Result<StepMsg, PeerError> {
        if *site == self.cfg.member {
            self.me.step(req, site.clone()).await
        } else {
            self.transport.step(site, req).await
        }
    }

    /// Runs a model's job from its fixed set `u` (site indices) to a posted result or failure.
    pub(crate) async fn run_model<E: Clock>(
        &self,
        clock: &E,
        job: &Job,
        m: &ModelSpec,
        mut collected: Collected,
        u: &[usize],
    ) -> Result<(), WorkerError> {
        let p = m.covariates.len() + 1;
        let fam = family(m.family);
        // A restarted aggregator continues from the iterations it kept.
        let mut history: Vec<Vec<StepMsg>> = collected.steps.clone();
        let mut irls = match super::model::replay(job, m, u, &history) {
            Ok(irls) => irls,
            Err(e) => {
                let why = format!("the kept iterations do not replay: {e}");
                return self.fail(clock, job, &collected, &why).await;
            }
        };
        let sites: Vec<MemberId> = u
            .iter()
            .filter_map(|i| job.owners.get(*i).cloned())
            .collect();
        loop {
            let req = StepRequest {
                job: self.job,
                iteration: irls.iteration(),
                beta: irls.beta().to_vec(),
                history: history.clone(),
            };
            let deadline = clock.current() + self.cfg.step_timeout;
            let asks = sites.iter().map(|site| {
                let req = req.clone();
                async move {
                    let answer =
                        ask_until(clock, deadline, |_| self.step_of(site, req.clone())).await;
                    (site.clone(), answer)
                }
            });
            let mut answers = Vec::with_capacity(sites.len());
            for (site, answer) in join_all(asks).await {
                let msg = match answer
                    .map_err(|e| e.to_string())
                    .and_then(|msg| check_step(job, &msg, &req, p).map(|()| msg))
                {
                    Ok(msg) => msg,
                    Err(why) => {
                        collected.dropped.push((site.to_string(), why.clone()));
                        let why =
                            format!("{site} did not answer iteration {}: {why}", req.iteration);
                        return self.fail(clock, job, &collected, &why).await;
                    }
                };
                answers.push(msg);
            }
            let stats: Stats = match open_sum(&answers, p) {
                Ok(s) => s,
                Err(e) => {
                    let why = format!("the summed statistics do not decode: {e}");
                    return self.fail(clock, job, &collected, &why).await;
                }
            };
            let contributions: Vec<_> = answers
                .iter()
                .map(|a| a.body.contribution.clone())
                .collect();
            history.push(answers);
            match irls.update(&stats) {
                Ok(Progress::Continue) => {
                    collected.steps.clone_from(&history);
                    self.cfg.store.put_collected(self.job, &collected)?;
                    continue;
                }
                Ok(Progress::Converged) => {
                    let fit = match glm::summarize(fam, &m.terms(), &irls, &stats) {
                        // A private fit ran on the standardized scale (see the sites' steps).
                        Ok(fit) if m.dp => glm::unscale(fit, &super::model::dp_bounds(m).0),
                        Ok(fit) => fit,
                        Err(e) => {
                            let why = format!("the fit cannot be summarized: {e}");
                            return self.fail(clock, job, &collected, &why).await;
                        }
                    };
                    collected.contributions = contributions;
                    self.cfg.store.put_collected(self.job, &collected)?;
                    let mut doc = self.doc(job, &collected, Vec::new(), true);
                    doc.contributions = collected
                        .contributions
                        .iter()
                        .map(|c| (c.member.clone(), c.records))
                        .collect();
                    let contributors: Vec<MemberId> =
                        doc.contributions.iter().map(|(m, _)| m.clone()).collect();
                    doc.not_counted_once =
                        not_counted_once(job, &collected.dealings, &contributors);
                    doc.model = Some(result(m, &fit));
                    return self.release_doc(clock, &doc).await;
                }
                Err(e) => {
                    let why = format!("the fit stopped at iteration {}: {e}", irls.iteration());
                    return self.fail(clock, job, &collected, &why).await;
                }
            }
        }
    }
}

/// The pairs of contributing sites (later, earlier) whose patients were not matched: the later
/// one's dealing does not name the earlier one among those it matched its patients with.
fn not_counted_once(
    job: &Job,
    dealings: &[DealingMsg],
    contributors: &[MemberId],
) -> Vec<(MemberId, MemberId)> {
    let mut sites: Vec<&MemberId> = contributors.iter().collect();
    sites.sort_by_key(|m| job.index(m));
    let mut out = Vec::new();
    for (k, later) in sites.iter().enumerate() {
        let matched = dealings
            .iter()
            .find(|d| d.body.member == **later)
            .map(|d| d.body.counted_once_with.as_slice())
            .unwrap_or_default();
        for earlier in sites.iter().take(k) {
            if !matched.contains(earlier) {
                out.push(((*later).clone(), (*earlier).clone()));
            }
        }
    }
    out
}
