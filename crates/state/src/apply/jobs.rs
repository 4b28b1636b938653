//! Compute jobs under an active contract: epsilon reserved at submission, spent when a data
//! holder posts the result with each institution's contribution.

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
        if p.epsilon > c.epsilon_left() {
            return Err(TxError::BudgetExceeded {
                contract: c.id.to_string(),
                budget: c.epsilon_budget,
                spent: c.epsilon_spent,
                reserved: c.epsilon_reserved,
                requested: p.epsilon,
            });
        }
        let id = JobId(derive_id(b"job", key, nonce));
        if self.job(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "job",
                id: id.to_string(),
            });
        }
        // INVARIANT: p.epsilon <= epsilon_left(), checked above, so the reservation stays within
        // the budget (or adds 0 when spent and reserved already exhaust it).
        c.epsilon_reserved += p.epsilon;
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
        };
        self.put(&keys::job(id), &job)?;
        Ok(Receipt::created("submit_job", Created::Job(id)))
    }

    pub(super) fn post_result(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &PostResult,
    ) -> Result<Receipt, TxError> {
        let Signer::Member(poster) = signer else {
            return Err(TxError::WrongSigner {
                kind: "post_result",
                need: "a data-holding member's node key",
                have: signer.describe(),
            });
        };
        let mut job = self.job(p.job)?.ok_or_else(|| not_found("job", p.job))?;
        if job.status != JobStatus::Submitted {
            return Err(forbidden(format!("job {} already has a result", job.id)));
        }
        let mut c = self
            .contract(job.contract)?
            .ok_or_else(|| not_found("contract", job.contract))?;
        if !c.owners.iter().any(|o| *o == poster.member.id) {
            return Err(forbidden(format!(
                "member `{}` holds no data of contract {}",
                poster.member.id, c.id
            )));
        }
        if c.status != ContractStatus::Active {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: c.status.as_str(),
                need: "active",
            });
        }
        if p.epsilon_spent > job.epsilon_reserved
            || c.epsilon_spent.saturating_add(p.epsilon_spent) > c.epsilon_budget
        {
            return Err(TxError::BudgetExceeded {
                contract: c.id.to_string(),
                budget: c.epsilon_budget,
                spent: c.epsilon_spent,
                reserved: c.epsilon_reserved,
                requested: p.epsilon_spent,
            });
        }
        check_contributions(&c, p.contributions.as_slice())?;
        // INVARIANT: epsilon_spent + p.epsilon_spent <= epsilon_budget, checked above; the
        // saturating sum there cannot have saturated, since p.epsilon_spent is at most this job's
        // reservation and every reservation was taken within epsilon_left().
        c.epsilon_spent += p.epsilon_spent;
        c.epsilon_reserved = c.epsilon_reserved.saturating_sub(job.epsilon_reserved);
        add_contributions(&mut c, p.contributions.as_slice())?;
        job.status = JobStatus::Done;
        job.result = Some(JobResult {
            result_hash: p.result_hash,
            epsilon_spent: p.epsilon_spent,
            contributions: p.contributions.clone(),
            posted_by: poster.member.id.clone(),
            height: ctx.height,
        });
        self.put(&keys::contract(c.id), &c)?;
        self.put(&keys::job(job.id), &job)?;
        Ok(Receipt::new("post_result"))
    }
}

/// Every contributor of a result holds data of the contract, and is listed once.
fn check_contributions(c: &ContractRecord, contributions: &[Contribution]) -> Result<(), TxError> {
    let mut seen: Vec<&MemberId> = Vec::new();
    for contribution in contributions {
        if !c.owners.iter().any(|o| *o == contribution.member) {
            return Err(TxError::OutOfScope {
                reason: format!(
                    "contributor `{}` holds no data of contract {}",
                    contribution.member, c.id
                ),
            });
        }
        if seen.contains(&&contribution.member) {
            return Err(invalid(
                "contributions",
                format!("member `{}` listed twice", contribution.member),
            ));
        }
        seen.push(&contribution.member);
    }
    Ok(())
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
