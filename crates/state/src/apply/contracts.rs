//! Data-use contracts: requests with their fee in escrow, the approvals their level needs,
//! approval, rejection, termination and refunds.
//!
//! A request is classified by everything it touches: the level of each field (the consortium's
//! classification, or the owner's published level if higher) and, for a compute request, the
//! level of its query — the fields it reads and the codes it filters on (a sensitive code makes
//! it L4, with the regulator's approval and only opted-in patients). The contract keeps the hash
//! of its computation: jobs run that computation only. A study is registered by the first
//! contract naming it and belongs to that requesting institution.

use super::{Created, Event, Receipt, Signer, derive_id, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::policy::{may_request, own_data_only, quality_flags, required_approvals};
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::query;
use medspace_types::*;
use std::collections::BTreeMap;

impl State {
    pub(super) fn user_signer(signer: Signer, kind: &'static str) -> Result<UserRecord, TxError> {
        match signer {
            Signer::User(u) => Ok(u),
            other => Err(TxError::WrongSigner {
                kind,
                need: "a registered user",
                have: other.describe(),
            }),
        }
    }

    pub(super) fn submit_request(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &SubmitRequest,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "submit_request")?;
        let kind = self.active_member(&user.member)?.member.kind;
        check_requester(&user, kind, p.purpose)?;
        self.check_no_overdue(&user.member, ctx.time_ms)?;
        let policy = self.policy()?;
        check_request_terms(&policy, ctx, p)?;
        let (mut level, mut owners) = self.request_scope(p)?;
        if own_data_only(p.purpose, kind) && owners.iter().any(|o| *o != user.member) {
            return Err(forbidden(format!(
                "{} by a hospital covers only its own data, not that of {}",
                p.purpose,
                owners
                    .iter()
                    .filter(|o| **o != user.member)
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if p.mode == Mode::Compute {
            let (spec, validated) = query::parse_bytes(p.computation.as_bytes())
                .map_err(|e| invalid("computation", e.to_string()))?;
            level = level.max(query::level(&spec, &validated, &policy.classification));
            check_public_health(&spec, p, owners.len(), policy.max_job_epsilon_micro)?;
            if let query::Aggregate::Claims(_) = &spec.aggregate {
                owners = self.claims_study_sites(owners)?;
            }
        }
        self.escrow_fee(&user.member, p.fee)?;
        let id = ContractId(derive_id(b"contract", key, nonce));
        if self.contract(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "contract",
                id: id.to_string(),
            });
        }
        if let Some(study) = &p.study {
            self.claim_study(study, &user.member, id, ctx)?;
        }
        let mut approvals = required_approvals(&policy, level, &owners);
        if p.mode == Mode::OpenPool {
            steward_of_each(&mut approvals, &owners);
        }
        // Data below the consortium's quality floor: every reviewer sees the failing checks,
        // and the owners of that data review it (even a request that needs nobody else).
        let mut described: BTreeMap<DatasetId, (MemberId, DatasetDescription)> = BTreeMap::new();
        for f in &p.fields {
            if !described.contains_key(&f.dataset)
                && let Some(d) = self.dataset(&f.dataset)?
            {
                described.insert(f.dataset.clone(), (d.owner, d.description));
            }
        }
        let quality = quality_flags(
            policy.quality_floors.as_slice(),
            p.purpose,
            level,
            p.fields.as_slice(),
            |f| described.get(&f.dataset).map(|(_, d)| d),
        );
        let flagged_owners: Vec<MemberId> = owners
            .iter()
            .filter(|o| {
                quality.iter().any(|q| {
                    described
                        .get(&q.dataset)
                        .is_some_and(|(owner, _)| owner == *o)
                })
            })
            .cloned()
            .collect();
        steward_of_each(&mut approvals, &flagged_owners);
        let status = if approvals.is_empty() {
            ContractStatus::Active
        } else {
            ContractStatus::Pending
        };
        let to_list = |e: TypeError| invalid("contract", e.to_string());
        let rec = ContractRecord {
            id,
            requester: user.id.clone(),
            requester_member: user.member.clone(),
            purpose: p.purpose,
            mode: p.mode,
            study: p.study.clone(),
            fields: p.fields.clone(),
            computation: p.computation.clone(),
            computation_hash: computation_hash(p.computation.as_bytes()),
            level,
            owners: List::new(owners).map_err(to_list)?,
            approvals: List::new(approvals).map_err(to_list)?,
            status,
            expiry_ms: p.expiry_ms,
            epsilon_budget: p.epsilon_budget,
            epsilon_spent: 0,
            epsilon_reserved: 0,
            epsilon_closed: 0,
            escrow: p.fee,
            contributions: List::default(),
            settled: false,
            submitted_height: ctx.height,
            closing_reason: Text::default(),
            ended_ms: 0,
            quality: List::new(quality).map_err(to_list)?,
            windows_run: 0,
        };
        self.put(&keys::contract(id), &rec)?;
        let mut receipt = Receipt::created("submit_request", Created::Contract(id));
        if status == ContractStatus::Active {
            receipt.events.push(Event::ContractActivated(id));
        }
        Ok(receipt)
    }

    /// The level of a request (the highest of its fields': the consortium's classification, or
    /// the owner's if it published the field higher) and the members whose data it touches,
    /// sorted; every field must exist in a dataset of an active member.
    fn request_scope(&self, p: &SubmitRequest) -> Result<(Level, Vec<MemberId>), TxError> {
        let classification = self.policy()?.classification;
        let mut level = Level::L1;
        let mut owners: Vec<MemberId> = Vec::new();
        for f in &p.fields {
            let ds = self
                .dataset(&f.dataset)?
                .ok_or_else(|| not_found("dataset", &f.dataset))?;
            let l = ds
                .description
                .field_level(f.table.as_str(), f.field.as_str())
                .ok_or_else(|| TxError::OutOfScope {
                    reason: format!(
                        "field `{}.{}` is not in dataset `{}`",
                        f.table, f.field, f.dataset
                    ),
                })?;
            self.active_member(&ds.owner)?;
            // The open pool holds de-identified releases only, and a release is only ever
            // requested from it: its fields are L1 by the figures it was published with, not by
            // the classification of the columns it was derived from.
            match (p.mode == Mode::OpenPool, &ds.release) {
                (true, Some(r)) => {
                    if !r.purposes.iter().any(|x| *x == p.purpose) {
                        return Err(TxError::OutOfScope {
                            reason: format!(
                                "release `{}` holds persons who consented to {}, not to {}",
                                f.dataset,
                                r.purposes
                                    .iter()
                                    .map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                p.purpose
                            ),
                        });
                    }
                    level = level.max(l)
                }
                (false, None) => {
                    level = level
                        .max(l)
                        .max(classification.field_level(f.table.as_str(), f.field.as_str()))
                }
                (true, None) => {
                    return Err(TxError::OutOfScope {
                        reason: format!(
                            "`{}` is not a de-identified release: the open pool holds releases only",
                            f.dataset
                        ),
                    });
                }
                (false, Some(_)) => {
                    return Err(TxError::OutOfScope {
                        reason: format!(
                            "`{}` is a release of the open pool: request it in open-pool mode",
                            f.dataset
                        ),
                    });
                }
            }
            if !owners.contains(&ds.owner) {
                owners.push(ds.owner.clone());
            }
        }
        owners.sort();
        Ok((level, owners))
    }

    /// The data holders of a vertical study ([`query::ClaimsSpec`]) in the order its protocol
    /// runs: one or more hospitals (the clinical side, first: the first one aggregates, each
    /// counts a patient an earlier one holds there), then exactly one insurer (the claims side,
    /// last: it opens only the total of every hospital's sums).
    fn claims_study_sites(&self, owners: Vec<MemberId>) -> Result<Vec<MemberId>, TxError> {
        let mut clinical = Vec::new();
        let mut claims = Vec::new();
        for o in owners {
            match self.active_member(&o)?.member.kind {
                MemberKind::Insurer => claims.push(o),
                MemberKind::Hospital => clinical.push(o),
                other => {
                    return Err(invalid(
                        "computation",
                        format!(
                            "a vertical study joins hospitals' data with an insurer's claims; `{o}` is a {other}"
                        ),
                    ));
                }
            }
        }
        match claims.as_slice() {
            [insurer] if !clinical.is_empty() => {
                clinical.push(insurer.clone());
                Ok(clinical)
            }
            _ => Err(invalid(
                "computation",
                format!(
                    "a vertical study covers one or more hospitals and exactly one insurer, not {} hospital(s) and {} insurer(s)",
                    clinical.len(),
                    claims.len()
                ),
            )),
        }
    }

    /// Registers `study` for `member` (whose contract `contract` names it first), or checks that
    /// it is already `member`'s: a contract cannot name another institution's study and so
    /// inherit the study-specific consents its patients gave.
    fn claim_study(
        &mut self,
        study: &StudyId,
        member: &MemberId,
        contract: ContractId,
        ctx: &BlockContext,
    ) -> Result<(), TxError> {
        match self.study(study)? {
            Some(s) if s.owner != *member => Err(forbidden(format!(
                "study `{study}` belongs to `{}`",
                s.owner
            ))),
            Some(_) => Ok(()),
            None => self.put(
                &keys::study(study),
                &StudyRecord {
                    id: study.clone(),
                    owner: member.clone(),
                    first_contract: contract,
                    height: ctx.height,
                },
            ),
        }
    }

    /// Moves a request's fee from the requester's institution into escrow (the contract
    /// record holds it).
    fn escrow_fee(&mut self, member: &MemberId, fee: u64) -> Result<(), TxError> {
        let balance = self.balance(member)?;
        if balance < fee {
            return Err(TxError::InsufficientBalance {
                member: member.to_string(),
                balance,
                needed: fee,
            });
        }
        // INVARIANT: balance >= fee, checked above.
        self.put(&keys::balance(member), &(balance - fee))
    }

    fn reviewable(&self, id: ContractId, ctx: &BlockContext) -> Result<ContractRecord, TxError> {
        let c = self
            .contract(id)?
            .ok_or_else(|| not_found("contract", id))?;
        if c.status != ContractStatus::Pending {
            return Err(TxError::ContractState {
                id: id.to_string(),
                status: c.status_at(ctx.time_ms),
                need: "pending",
            });
        }
        if ctx.time_ms >= c.expiry_ms {
            return Err(TxError::Expired {
                what: "contract",
                id: id.to_string(),
                expiry_ms: c.expiry_ms,
                now_ms: ctx.time_ms,
            });
        }
        Ok(c)
    }

    /// The index of the first open approval slot `user` may fill.
    fn approval_slot(
        &self,
        c: &ContractRecord,
        user: &UserRecord,
    ) -> Result<Option<usize>, TxError> {
        let kind = self.active_member(&user.member)?.member.kind;
        Ok(c.approvals.iter().position(|a| {
            crate::policy::may_fill(a, user.role, &user.member, kind, &c.requester_member)
        }))
    }

    pub(super) fn approve(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Approve,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "approve")?;
        let mut c = self.reviewable(p.contract, ctx)?;
        if c.requester == user.id {
            return Err(forbidden("a requester cannot approve their own request"));
        }
        if c.approvals.iter().any(|a| a.by.as_ref() == Some(&user.id)) {
            return Err(forbidden(format!(
                "user `{}` already approved {}",
                user.id, c.id
            )));
        }
        let Some(slot) = self.approval_slot(&c, &user)? else {
            let need: Vec<String> = c
                .missing_approvals()
                .map(|a| match &a.member {
                    Some(m) => format!("{}@{}", a.role, m),
                    None => a.role.to_string(),
                })
                .collect();
            return Err(TxError::WrongRole {
                kind: "approve",
                have: user.role,
                need: need.join("|"),
            });
        };
        if let Some(a) = c.approvals.as_mut_slice().get_mut(slot) {
            a.by = Some(user.id.clone());
        }
        let mut receipt = Receipt::new("approve");
        if c.missing_approvals().next().is_none() {
            c.status = ContractStatus::Active;
            receipt.events.push(Event::ContractActivated(c.id));
        }
        self.put(&keys::contract(c.id), &c)?;
        Ok(receipt)
    }

    pub(super) fn reject(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Reject,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "reject")?;
        let mut c = self.reviewable(p.contract, ctx)?;
        if p.reason.as_str().trim().is_empty() {
            return Err(invalid("reason", "a rejection must say why"));
        }
        if self.approval_slot(&c, &user)?.is_none() {
            return Err(TxError::WrongRole {
                kind: "reject",
                have: user.role,
                need: "a reviewer whose approval is still missing".into(),
            });
        }
        c.status = ContractStatus::Rejected;
        c.closing_reason = p.reason.clone();
        // The fee goes back: nothing was computed.
        self.refund(&mut c)?;
        self.put(&keys::contract(c.id), &c)?;
        let mut receipt = Receipt::new("reject");
        receipt.events.push(Event::ContractRejected(c.id));
        Ok(receipt)
    }

    pub(super) fn refund(&mut self, c: &mut ContractRecord) -> Result<(), TxError> {
        let bal = self.balance(&c.requester_member)?;
        self.put(
            &keys::balance(&c.requester_member),
            &bal.saturating_add(c.escrow),
        )?;
        c.escrow = 0;
        c.settled = true;
        Ok(())
    }

    pub(super) fn terminate(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Terminate,
    ) -> Result<Receipt, TxError> {
        let mut c = self
            .contract(p.contract)?
            .ok_or_else(|| not_found("contract", p.contract))?;
        let allowed = match &signer {
            Signer::User(u) => {
                u.id == c.requester
                    || (u.role == Role::Steward && c.owners.iter().any(|o| *o == u.member))
                    || (u.role == Role::Auditor
                        && self
                            .member(&u.member)?
                            .is_some_and(|m| m.member.kind == MemberKind::Regulator))
            }
            Signer::Member(m) => c.owners.iter().any(|o| *o == m.member.id),
            _ => false,
        };
        if !allowed {
            return Err(TxError::WrongSigner {
                kind: "terminate",
                need: "the requester, a data owner's steward, or the regulator",
                have: signer.describe(),
            });
        }
        if !matches!(c.status, ContractStatus::Pending | ContractStatus::Active) {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: c.status.as_str(),
                need: "pending or active",
            });
        }
        c.status = ContractStatus::Terminated;
        c.ended_ms = ctx.time_ms;
        c.closing_reason = p.reason.clone();
        self.end_reservations(&mut c)?;
        self.put(&keys::contract(c.id), &c)?;
        Ok(Receipt::new("terminate"))
    }
}

/// Adds each of `owners`' steward to the approvals, once: an open-pool request needs them (the
/// owner decides who receives a copy of its release, and so who must attest its
/// destruction), and so does a request over data below the quality floor.
fn steward_of_each(approvals: &mut Vec<RequiredApproval>, owners: &[MemberId]) {
    for owner in owners {
        let has = approvals
            .iter()
            .any(|a| a.role == Role::Steward && a.member.as_ref() == Some(owner));
        if !has {
            approvals.push(RequiredApproval {
                role: Role::Steward,
                member: Some(owner.clone()),
                by: None,
            });
        }
    }
}

/// Whether the user's role, at an institution of `kind`, may ask for a contract of this purpose.
fn check_requester(user: &UserRecord, kind: MemberKind, purpose: Purpose) -> Result<(), TxError> {
    if may_request(purpose, user.role, kind) {
        return Ok(());
    }
    let need = crate::policy::requesters(purpose)
        .iter()
        .map(|(role, kinds)| {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            format!("{role}@{}", kinds.join("/"))
        })
        .collect::<Vec<_>>()
        .join("|");
    Err(TxError::WrongRole {
        kind: "submit_request",
        have: user.role,
        need: if need.is_empty() {
            "none".into()
        } else {
            format!("{need} (the signer is at a {kind})")
        },
    })
}

/// The request's terms within the policy: a lifetime and a budget the policy allows, at least
/// one field.
fn check_request_terms(
    policy: &Policy,
    ctx: &BlockContext,
    p: &SubmitRequest,
) -> Result<(), TxError> {
    if p.expiry_ms <= ctx.time_ms {
        return Err(TxError::Expired {
            what: "request",
            id: "new".into(),
            expiry_ms: p.expiry_ms,
            now_ms: ctx.time_ms,
        });
    }
    // INVARIANT: expiry_ms > time_ms, checked above.
    let lifetime = p.expiry_ms - ctx.time_ms;
    if lifetime > policy.max_contract_ms {
        return Err(invalid(
            "expiry_ms",
            format!(
                "lifetime {} ms exceeds the policy's {} ms",
                lifetime, policy.max_contract_ms
            ),
        ));
    }
    if p.epsilon_budget > policy.max_epsilon_micro {
        return Err(invalid(
            "epsilon_budget",
            format!(
                "{} exceeds the policy's {} micro-epsilon",
                p.epsilon_budget, policy.max_epsilon_micro
            ),
        ));
    }
    if p.fields.is_empty() {
        return Err(invalid("fields", "a request must name at least one field"));
    }
    Ok(())
}

/// The public-health computations' own terms: drug safety only under its purpose; a standing
/// surveillance definition only for public health, with a budget that covers every window it
/// schedules at every site (the per-window epsilon is part of what the reviewers approve).
fn check_public_health(
    spec: &query::QuerySpec,
    p: &SubmitRequest,
    owners: usize,
    job_cap: u64,
) -> Result<(), TxError> {
    match &spec.aggregate {
        query::Aggregate::DrugSafety(_) if p.purpose != Purpose::DrugSafety => Err(invalid(
            "computation",
            format!(
                "a drug-safety computation is for drug_safety, not {}",
                p.purpose
            ),
        )),
        query::Aggregate::Surveillance(_) if p.purpose != Purpose::PublicHealth => Err(invalid(
            "computation",
            format!(
                "a surveillance definition is for public_health, not {}",
                p.purpose
            ),
        )),
        query::Aggregate::Surveillance(s) => {
            // Each window is a job: its charge (the per-window epsilon at every site) must fit
            // the policy's per-job cap, or no window could ever run.
            let window = s.epsilon_micro().saturating_mul(owners.max(1) as u64);
            if window > job_cap {
                return Err(invalid(
                    "computation",
                    format!(
                        "a window's {} micro-epsilon x {owners} sites = {window} exceeds the policy's per-job cap of {job_cap}",
                        s.epsilon_micro()
                    ),
                ));
            }
            let need = s
                .epsilon_micro()
                .checked_mul(u64::from(s.windows))
                .and_then(|e| e.checked_mul(owners.max(1) as u64))
                .ok_or_else(|| invalid("epsilon_budget", "the schedule's epsilon overflows"))?;
            if p.epsilon_budget < need {
                return Err(invalid(
                    "epsilon_budget",
                    format!(
                        "{} windows x {} micro-epsilon x {owners} sites need a budget of {need} micro-epsilon, not {}",
                        s.windows,
                        s.epsilon_micro(),
                        p.epsilon_budget
                    ),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
