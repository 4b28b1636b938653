//! Compute jobs under an active contract: a job runs only the computation its contract
//! approved; epsilon is reserved at submission (at least some, at most the policy's per-job
//! cap) on the contract and on every dataset the contract names (each dataset has a lifetime
//! budget across all contracts) — the job's per-site epsilon times its number of sites, what
//! a patient treated at every site can lose ([`person_epsilon`]); the job's aggregator closes its secure aggregation round (the
//! sets every site reveals for) and posts the result with each survivor's signed contribution;
//! the whole reservation is charged, to the contract and to the datasets, once the round is
//! closed, and released when it never was.

use super::{Created, Receipt, Signer, derive_id, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    pub(super) fn submit_job(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &SubmitJob,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "submit_job")?;
        let mut c = self
            .contract(p.contract)?
            .ok_or_else(|| not_found("contract", p.contract))?;
        if c.requester != user.id {
            return Err(forbidden(format!(
                "only the contract holder `{}` may submit jobs under {}",
                c.requester, c.id
            )));
        }
        if c.status != ContractStatus::Active {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: c.status.as_str(),
                need: "active",
            });
        }
        if ctx.time_ms >= c.expiry_ms {
            return Err(TxError::Expired {
                what: "contract",
                id: c.id.to_string(),
                expiry_ms: c.expiry_ms,
                now_ms: ctx.time_ms,
            });
        }
        if c.mode != Mode::Compute {
            return Err(TxError::OutOfScope {
                reason: format!("contract {} is for {}, not compute jobs", c.id, c.mode),
            });
        }
        if computation_hash(p.computation.as_bytes()) != c.computation_hash {
            return Err(TxError::OutOfScope {
                reason: format!(
                    "the job's computation is not the one contract {} approved",
                    c.id
                ),
            });
        }
        let policy = self.policy()?;
        if p.epsilon == 0 {
            return Err(invalid(
                "epsilon",
                "a job must reserve some epsilon (its noise is calibrated to it)",
            ));
        }
        // What a person present at every site of the job can lose: each site counts them in
        // its own noised release, so the sites' releases compose.
        let sites = c.owners.len().max(1) as u64;
        let charge = person_epsilon(p.epsilon, &c).ok_or_else(|| {
            invalid(
                "epsilon",
                format!("{} micro-epsilon x {sites} sites overflows", p.epsilon),
            )
        })?;
        if charge > policy.max_job_epsilon_micro {
            return Err(invalid(
                "epsilon",
                format!(
                    "{} micro-epsilon per site x {sites} sites = {charge} (what a patient treated at every site can lose) exceeds the policy's per-job cap of {} micro-epsilon",
                    p.epsilon, policy.max_job_epsilon_micro
                ),
            ));
        }
        if charge > c.epsilon_left() {
            return Err(TxError::BudgetExceeded {
                contract: c.id.to_string(),
                budget: c.epsilon_budget,
                spent: c.epsilon_spent,
                reserved: c.epsilon_reserved,
                requested: charge,
            });
        }
        let window = scheduled_window(&c, p, ctx)?;
        self.reserve_datasets(&c, charge, policy.dataset_epsilon_micro)?;
        let id = JobId(derive_id(b"job", key, nonce));
        if self.job(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "job",
                id: id.to_string(),
            });
        }
        // INVARIANT: charge <= epsilon_left(), checked above, so the reservation stays within
        // the budget (or adds 0 when spent and reserved already exhaust it).
        c.epsilon_reserved += charge;
        if window.is_some() {
            c.windows_run += 1;
        }
        self.put(&keys::contract(c.id), &c)?;
        let job = JobRecord {
            id,
            contract: c.id,
            submitter: user.id,
            computation: p.computation.clone(),
            epsilon_reserved: p.epsilon,
            status: JobStatus::Submitted,
            submitted_height: ctx.height,
            submitted_ms: ctx.time_ms,
            result: None,
            round: None,
            window,
        };
        self.put(&keys::job(id), &job)?;
        Ok(Receipt::created("submit_job", Created::Job(id)))
    }

    /// The job, its contract, and the check that `signer` is the job's aggregator (the
    /// contract's first data holder, by its node key: the member key is refused, a round is
    /// node work) and the job still waits for a result.
    fn job_for_aggregator(
        &self,
        signer: Signer,
        kind: &'static str,
        id: JobId,
    ) -> Result<(JobRecord, ContractRecord, MemberId), TxError> {
        let Signer::Node(poster) = signer else {
            return Err(TxError::WrongSigner {
                kind,
                need: "the job's aggregator's node key",
                have: signer.describe(),
            });
        };
        let job = self.job(id)?.ok_or_else(|| not_found("job", id))?;
        if job.status != JobStatus::Submitted {
            return Err(forbidden(format!("job {} already has a result", job.id)));
        }
        let c = self
            .contract(job.contract)?
            .ok_or_else(|| not_found("contract", job.contract))?;
        let aggregator = c
            .owners
            .iter()
            .next()
            .cloned()
            .ok_or_else(|| forbidden(format!("contract {} has no data holder", c.id)))?;
        if poster.member.id != aggregator {
            return Err(forbidden(format!(
                "only the aggregator `{aggregator}` of job {} may do this, not `{}`",
                job.id, poster.member.id
            )));
        }
        if c.status != ContractStatus::Active {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: c.status.as_str(),
                need: "active",
            });
        }
        Ok((job, c, aggregator))
    }

    pub(super) fn close_round(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &CloseRound,
    ) -> Result<Receipt, TxError> {
        let (mut job, mut c, _) = self.job_for_aggregator(signer, "close_round", p.job)?;
        if job.round.is_some() {
            return Err(forbidden(format!(
                "the round of job {} is closed already",
                job.id
            )));
        }
        let owners: Vec<&MemberId> = c.owners.iter().collect();
        let sharers = in_owner_order(&owners, p.sharers.as_slice(), "sharers")?;
        let survivors = in_owner_order(&owners, p.survivors.as_slice(), "survivors")?;
        if !survivors.iter().all(|s| sharers.contains(s)) {
            return Err(invalid("survivors", "a survivor did not deal"));
        }
        let need = crate::policy::round_threshold(owners.len());
        if survivors.len() < need {
            return Err(invalid(
                "survivors",
                format!(
                    "{} survivors, the threshold is {need} of {} sites",
                    survivors.len(),
                    owners.len()
                ),
            ));
        }
        job.round = Some(RoundRecord {
            sharers: p.sharers.clone(),
            survivors: p.survivors.clone(),
            height: ctx.height,
        });
        // From here on the sites reveal: the reservation is as good as spent.
        c.epsilon_closed = c
            .epsilon_closed
            .saturating_add(person_epsilon(job.epsilon_reserved, &c).unwrap_or(u64::MAX));
        self.put(&keys::contract(c.id), &c)?;
        self.put(&keys::job(job.id), &job)?;
        Ok(Receipt::new("close_round"))
    }

    pub(super) fn post_result(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &PostResult,
    ) -> Result<Receipt, TxError> {
        let (mut job, mut c, aggregator) = self.job_for_aggregator(signer, "post_result", p.job)?;
        // What is charged is decided here, not by the poster: once the round is closed the
        // sites have revealed, so anything may have been released and the whole reservation
        // is spent; before, nothing was released and nothing is spent.
        // The post states the per-site epsilon the sites released under (the job's, once its
        // round is closed; 0 before); the ledger charges that times the job's sites, what a
        // patient treated at every site can lose (see `person_epsilon`).
        let released = match &job.round {
            Some(_) => job.epsilon_reserved,
            None => 0,
        };
        if p.epsilon_spent != released {
            return Err(invalid(
                "epsilon_spent",
                format!(
                    "the sites released under {released} micro-epsilon each (the job's epsilon once its round is closed, 0 before); the post says {}",
                    p.epsilon_spent
                ),
            ));
        }
        let reserved = person_epsilon(job.epsilon_reserved, &c).unwrap_or(u64::MAX);
        let charged = person_epsilon(released, &c).unwrap_or(u64::MAX);
        if c.epsilon_spent.saturating_add(charged) > c.epsilon_budget {
            return Err(TxError::BudgetExceeded {
                contract: c.id.to_string(),
                budget: c.epsilon_budget,
                spent: c.epsilon_spent,
                reserved: c.epsilon_reserved,
                requested: charged,
            });
        }
        let contributions = self.check_contributions(&job, p.contributions.as_slice())?;
        // INVARIANT: epsilon_spent + charged <= epsilon_budget, checked above without saturation
        // (charged is this job's reservation, taken within epsilon_left()).
        c.epsilon_spent += charged;
        c.epsilon_reserved = c.epsilon_reserved.saturating_sub(reserved);
        c.epsilon_closed = c.epsilon_closed.saturating_sub(charged);
        self.settle_datasets(&c, reserved, charged)?;
        add_contributions(&mut c, &contributions)?;
        job.status = JobStatus::Done;
        job.result = Some(JobResult {
            result_hash: p.result_hash,
            epsilon_spent: charged,
            contributions: List::new(contributions)
                .map_err(|e| invalid("contributions", e.to_string()))?,
            posted_by: aggregator,
            height: ctx.height,
        });
        self.put(&keys::contract(c.id), &c)?;
        self.put(&keys::job(job.id), &job)?;
        Ok(Receipt::new("post_result"))
    }

    /// A result's contributions: none (nothing released), or exactly one per survivor of the
    /// closed round, in order, each signed by its site's current node key (a member key's
    /// signature is refused: contributions are node work).
    fn check_contributions(
        &self,
        job: &JobRecord,
        contributions: &[SignedContribution],
    ) -> Result<Vec<Contribution>, TxError> {
        if contributions.is_empty() {
            return Ok(Vec::new());
        }
        let Some(round) = &job.round else {
            return Err(invalid(
                "contributions",
                "a result with contributions needs its round closed first",
            ));
        };
        let members: Vec<&MemberId> = contributions.iter().map(|c| &c.member).collect();
        let survivors: Vec<&MemberId> = round.survivors.iter().collect();
        if members != survivors {
            return Err(invalid(
                "contributions",
                "the contributors must be exactly the round's survivors, in order",
            ));
        }
        let mut out = Vec::with_capacity(contributions.len());
        for sc in contributions {
            let rec = self
                .member(&sc.member)?
                .ok_or_else(|| not_found("member", &sc.member))?;
            if !sc.verify(job.id, &rec.member.node_key) {
                return Err(invalid(
                    "contributions",
                    format!(
                        "the contribution of `{}` is not signed by its node key",
                        sc.member
                    ),
                ));
            }
            out.push(sc.unsigned());
        }
        Ok(out)
    }
}

impl State {
    /// Reserves `epsilon` on every dataset `c` names, refusing if any dataset's lifetime
    /// budget (`budget`) would be exceeded.
    fn reserve_datasets(
        &mut self,
        c: &ContractRecord,
        epsilon: u64,
        budget: u64,
    ) -> Result<(), TxError> {
        for d in c.datasets() {
            let mut acc = self.dataset_epsilon(&d)?;
            let used = acc.spent.saturating_add(acc.reserved);
            if used.saturating_add(epsilon) > budget {
                return Err(TxError::DatasetBudgetExceeded {
                    dataset: d.to_string(),
                    budget,
                    spent: acc.spent,
                    reserved: acc.reserved,
                    requested: epsilon,
                });
            }
            // INVARIANT: used + epsilon <= budget, checked above.
            acc.reserved += epsilon;
            self.put(&keys::dataset_epsilon(&d), &acc)?;
        }
        Ok(())
    }

    /// A job's reservation of `reserved` on every dataset of `c` ends: `charged` of it (the
    /// whole reservation once the round closed, 0 before) becomes spent, the rest is released.
    fn settle_datasets(
        &mut self,
        c: &ContractRecord,
        reserved: u64,
        charged: u64,
    ) -> Result<(), TxError> {
        for d in c.datasets() {
            let mut acc = self.dataset_epsilon(&d)?;
            acc.reserved = acc.reserved.saturating_sub(reserved);
            acc.spent = acc.spent.saturating_add(charged);
            self.put(&keys::dataset_epsilon(&d), &acc)?;
        }
        Ok(())
    }

    /// A contract ends (terminated, or settled after it ended) with jobs still waiting for
    /// their results: nothing can be posted under it any more. What jobs with a closed round
    /// reserved may have been released, so it is charged (to the contract and its datasets);
    /// the rest is released.
    pub(super) fn end_reservations(&mut self, c: &mut ContractRecord) -> Result<(), TxError> {
        if c.epsilon_reserved > 0 {
            let closed = c.epsilon_closed.min(c.epsilon_reserved);
            self.settle_datasets(c, c.epsilon_reserved, closed)?;
            c.epsilon_spent = c.epsilon_spent.saturating_add(closed);
        }
        c.epsilon_reserved = 0;
        c.epsilon_closed = 0;
        Ok(())
    }
}

/// `set` as a strictly increasing selection of `owners`.
fn in_owner_order<'a>(
    owners: &[&MemberId],
    set: &'a [MemberId],
    field: &'static str,
) -> Result<Vec<&'a MemberId>, TxError> {
    let mut last: Option<usize> = None;
    for m in set {
        let i = owners
            .iter()
            .position(|o| *o == m)
            .ok_or_else(|| invalid(field, format!("`{m}` holds no data of the contract")))?;
        if last.is_some_and(|l| l >= i) {
            return Err(invalid(
                field,
                "members out of the contract's order or repeated",
            ));
        }
        last = Some(i);
    }
    Ok(set.iter().collect())
}

/// Adds a result's record counts to the contract's per-member totals (the basis of the fee
/// split at settlement).
fn add_contributions(
    c: &mut ContractRecord,
    contributions: &[Contribution],
) -> Result<(), TxError> {
    for contribution in contributions {
        match c
            .contributions
            .as_mut_slice()
            .iter_mut()
            .find(|x| x.member == contribution.member)
        {
            Some(x) => x.records = x.records.saturating_add(contribution.records),
            None => c
                .contributions
                .push(contribution.clone())
                .map_err(|e| invalid("contributions", e.to_string()))?,
        }
    }
    Ok(())
}

/// The epsilon a job of `per_site` micro-epsilon costs a person under contract `c`: every
/// site the contract names releases its own noised counts of its patients, so a patient
/// treated at all of them is counted — and loses `per_site` — once per site. The ledger cannot
/// tell who is at several sites (counting them once needs cross-site linkage), so it charges
/// the worst case: `per_site` times the number of sites. `None` on overflow.
pub fn person_epsilon(per_site: u64, c: &ContractRecord) -> Option<u64> {
    per_site.checked_mul(c.owners.len().max(1) as u64)
}

/// The window a surveillance contract's next job computes, by the ledger's schedule: the
/// windows run in order, each once, only after the window's last day has ended in block time
/// (so every site counts the same complete window), at most as many as the definition covers,
/// each reserving exactly the approved per-window epsilon. `None` for any other computation.
fn scheduled_window(
    c: &ContractRecord,
    p: &SubmitJob,
    ctx: &BlockContext,
) -> Result<Option<u32>, TxError> {
    let Ok((spec, _)) = medspace_types::query::parse_bytes(p.computation.as_bytes()) else {
        return Ok(None);
    };
    let medspace_types::query::Aggregate::Surveillance(s) = &spec.aggregate else {
        return Ok(None);
    };
    let w = c.windows_run;
    if w >= s.windows {
        return Err(TxError::OutOfScope {
            reason: format!(
                "contract {} has run all {} windows of its surveillance definition",
                c.id, s.windows
            ),
        });
    }
    if p.epsilon != s.epsilon_micro() {
        return Err(invalid(
            "epsilon",
            format!(
                "a surveillance window reserves the approved {} micro-epsilon, not {}",
                s.epsilon_micro(),
                p.epsilon
            ),
        ));
    }
    let end = s
        .window_end_ms(w)
        .map_err(|e| invalid("computation", e.to_string()))?;
    if ctx.time_ms < end {
        return Err(TxError::OutOfScope {
            reason: format!(
                "window {w} of contract {} ends at {end} ms (block time {}): it runs once it is complete",
                c.id, ctx.time_ms
            ),
        });
    }
    Ok(Some(w))
}
