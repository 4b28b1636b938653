//! What a worker may compute for a job, decided from the ledger as of the job's block.

use crate::links::Links;
use medspace_state::records::{ContractRecord, ContractStatus, JobRecord, JobStatus};
use medspace_state::{State, TxError};
use medspace_types::{FieldRef, JobId, MemberId, Mode, PatientId, computation_hash};
use std::collections::BTreeSet;

/// Why a worker will not run a job (nothing is computed, nothing leaves).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The job is not on the ledger.
    #[error("job not found: id={0}")]
    UnknownJob(String),
    /// The job already has a result.
    #[error("job {0} already has a result")]
    Done(String),
    /// The contract is not (or no longer) active.
    #[error("contract {id} is {status}: no computation")]
    ContractNotActive {
        /// The contract.
        id: String,
        /// Its status.
        status: String,
    },
    /// The contract had expired when the job was submitted.
    #[error("contract {id} expired at {expiry_ms} before the job at {submitted_ms}")]
    Expired {
        /// The contract.
        id: String,
        /// Its expiry.
        expiry_ms: u64,
        /// The job's block time.
        submitted_ms: u64,
    },
    /// This institution holds no data in the contract's scope.
    #[error("member `{member}` holds no data of contract {id}")]
    NotAnOwner {
        /// This institution.
        member: String,
        /// The contract.
        id: String,
    },
    /// The job reads a field the contract does not cover.
    #[error("out of scope: field `{0}` is not approved by the contract")]
    OutOfScope(String),
    /// The job's computation is not the one its contract approved.
    #[error("job {job} runs a computation contract {contract} did not approve")]
    NotApproved {
        /// The job.
        job: String,
        /// The contract.
        contract: String,
    },
    /// Not a compute contract.
    #[error("contract {id} is for {mode}, not compute jobs")]
    WrongMode {
        /// The contract.
        id: String,
        /// Its mode.
        mode: String,
    },
    /// The ledger could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] TxError),
    /// The job's computation is not a valid query.
    #[error("computation: {0}")]
    Query(#[from] medspace_privacy::QueryError),
    /// The institution is not a member.
    #[error("not a member: {0}")]
    NotAMember(String),
}

/// Whether `member` is the claims side of a vertical study (an insurer).
pub fn claims_side(state: &State, member: &MemberId) -> Result<bool, PlanError> {
    let m = state
        .member(member)?
        .ok_or_else(|| PlanError::NotAMember(member.to_string()))?;
    Ok(m.member.kind == medspace_types::MemberKind::Insurer)
}

/// What `member` reads of `spec`: everything the spec reads, but for a vertical study only its
/// own side's fields (the insurer's claims; a hospital's cohort, as a count of it would read,
/// and the comparison).
pub fn side_reads(
    state: &State,
    spec: &medspace_privacy::query::QuerySpec,
    member: &MemberId,
) -> Result<Vec<(&'static str, &'static str)>, PlanError> {
    use medspace_privacy::query::{Aggregate, ClaimsSpec, QuerySpec, validate};
    let Aggregate::Claims(c) = &spec.aggregate else {
        return Ok(validate(spec)?.reads);
    };
    if claims_side(state, member)? {
        return Ok(ClaimsSpec::claims_reads());
    }
    let cohort = QuerySpec {
        aggregate: Aggregate::Count,
        ..spec.clone()
    };
    let mut reads = validate(&cohort)?.reads;
    reads.extend(c.clinical_reads());
    Ok(reads)
}

/// Fewer linked patients than this are judged on one thread (a thread costs more).
const PLAN_PART_MIN: usize = 50_000;

/// A job this worker may run, and on whom.
#[derive(Clone, Debug)]
pub struct JobPlan {
    /// The job.
    pub job: JobRecord,
    /// Its contract.
    pub contract: ContractRecord,
    /// Local `person_id`s whose consent allows the job, as of its block.
    pub cohort: BTreeSet<i64>,
    /// Linked patients left out for want of consent (a count only).
    pub excluded: usize,
}

/// Decides whether `member` may run `job` and on which of its linked patients: the job must
/// run the computation its contract approved, under an active compute contract naming this
/// member, reading only fields the contract covers here. `fields` are the
/// fields the job's computation reads (from its query specification): each must be covered by
/// the contract for this member's datasets.
pub fn plan_job(
    state: &State,
    job: JobId,
    member: &MemberId,
    links: &Links,
    fields: &[(String, String)],
) -> Result<JobPlan, PlanError> {
    let job = state
        .job(job)?
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    if job.status != JobStatus::Submitted {
        return Err(PlanError::Done(job.id.to_string()));
    }
    let contract = state
        .contract(job.contract)?
        .ok_or_else(|| PlanError::UnknownJob(job.contract.to_string()))?;
    if contract.status != ContractStatus::Active {
        return Err(PlanError::ContractNotActive {
            id: contract.id.to_string(),
            status: contract.status.to_string(),
        });
    }
    if job.submitted_ms >= contract.expiry_ms {
        return Err(PlanError::Expired {
            id: contract.id.to_string(),
            expiry_ms: contract.expiry_ms,
            submitted_ms: job.submitted_ms,
        });
    }
    if contract.mode != Mode::Compute {
        return Err(PlanError::WrongMode {
            id: contract.id.to_string(),
            mode: contract.mode.to_string(),
        });
    }
    // Defence in depth: the ledger refuses such a job; a site never runs one either.
    if computation_hash(job.computation.as_bytes()) != contract.computation_hash {
        return Err(PlanError::NotApproved {
            job: job.id.to_string(),
            contract: contract.id.to_string(),
        });
    }
    if !contract.owners.iter().any(|o| o == member) {
        return Err(PlanError::NotAnOwner {
            member: member.to_string(),
            id: contract.id.to_string(),
        });
    }
    let mine: Vec<&FieldRef> = contract
        .fields
        .iter()
        .filter(|f| {
            state
                .dataset(&f.dataset)
                .ok()
                .flatten()
                .is_some_and(|d| d.owner == *member)
        })
        .collect();
    let covered = |table: &str, field: &str| {
        mine.iter()
            .any(|f| f.table.as_str() == table && f.field.as_str() == field)
    };
    for (table, field) in fields {
        // Every table's `person_id` is the same pseudonymous join key: covered by
        // `person.person_id`.
        let join_key = field == "person_id" && covered("person", "person_id");
        if !join_key && !covered(table, field) {
            return Err(PlanError::OutOfScope(format!("{table}.{field}")));
        }
    }
    // One policy read per part, the consent table read in key order (pseudonym order), the
    // sorted patients split across the machine's cores (the state is read-only here).
    // Pseudonyms held by value, so the sort compares them in place.
    let mut linked: Vec<(PatientId, i64)> = links.iter().map(|(p, id)| (*id, p)).collect();
    linked.sort_unstable();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let part = linked.len().div_ceil(cores).max(PLAN_PART_MIN);
    let judge = |chunk: &[(PatientId, i64)]| {
        state.consents_allow(
            chunk.iter().map(|(p, _)| p),
            contract.purpose,
            contract.study.as_ref(),
            contract.level,
            job.submitted_height,
            medspace_state::CONSENT_BATCH,
        )
    };
    let parts: Vec<Result<Vec<bool>, TxError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = linked
            .chunks(part)
            .map(|chunk| scope.spawn(move || judge(chunk)))
            .collect();
        handles
            .into_iter()
            // Judging never panics (library code has no panics); if a thread did, the plan
            // fails rather than guess at its part.
            .map(|h| h.join().unwrap_or(Err(TxError::Corrupt { table: 0 })))
            .collect()
    });
    let mut allowed = Vec::with_capacity(linked.len());
    for part in parts {
        allowed.extend(part?);
    }
    let mut cohort = Vec::with_capacity(linked.len());
    let mut excluded = 0;
    for ((_, person), allow) in linked.iter().zip(allowed) {
        if allow {
            cohort.push(*person);
        } else {
            excluded += 1;
        }
    }
    // Collected from a vector: sorted once and built in bulk.
    let cohort: BTreeSet<i64> = cohort.into_iter().collect();
    Ok(JobPlan {
        job,
        contract,
        cohort,
        excluded,
    })
}
