//! The rules of every transaction kind: `apply(state, tx, block) -> Result<Receipt, TxError>`.
//!
//! Each transaction executes on an O(1) snapshot of the state and replaces it only on success,
//! so a refused transaction changes nothing — not a nonce, not the root.

use crate::error::{GenesisError, TxError};
use crate::policy::{ConsentView, consent_allows, requester_roles, required_approvals};
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use commonware_cryptography::{BatchEntry, BatchVerifier, ed25519};
use commonware_parallel::Sequential;
use medspace_types::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;

/// What a successful transaction created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    /// A patient's pseudonym.
    Patient(PatientId),
    /// A grant.
    Grant(GrantId),
    /// A contract.
    Contract(ContractId),
    /// A job.
    Job(JobId),
    /// An access record.
    Access(AccessId),
    /// A governance proposal.
    Proposal(ProposalId),
}

/// A consequence worth telling the submitter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The contract got its last approval (or needed none).
    ContractActivated(ContractId),
    /// A reviewer rejected the contract.
    ContractRejected(ContractId),
    /// A proposal reached the vote threshold and was carried out.
    ProposalPassed(ProposalId),
    /// A proposal can no longer pass.
    ProposalFailed(ProposalId),
    /// A contract's fee was paid out.
    Settled {
        /// The contract.
        contract: ContractId,
        /// Credits per member.
        payouts: Vec<(MemberId, u64)>,
    },
}

/// The outcome of an applied transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The transaction kind.
    pub kind: &'static str,
    /// What it created.
    pub created: Option<Created>,
    /// What followed from it.
    pub events: Vec<Event>,
}

impl Receipt {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            created: None,
            events: Vec::new(),
        }
    }
    fn created(kind: &'static str, c: Created) -> Self {
        Self {
            kind,
            created: Some(c),
            events: Vec::new(),
        }
    }
}

/// The resolved signer of a transaction.
enum Signer {
    Member(MemberRecord),
    User(UserRecord),
    Patient(PatientId),
    Unknown,
}

impl Signer {
    fn describe(&self) -> String {
        match self {
            Signer::Member(m) => format!("member `{}`", m.member.id),
            Signer::User(u) => format!("user `{}` ({})", u.id, u.role),
            Signer::Patient(_) => "a patient".into(),
            Signer::Unknown => "an unregistered key".into(),
        }
    }
}

/// Ids of created records: derived from the creating transaction, so a client knows them
/// before the block is final. A collision is refused, never overwritten.
fn derive_id(kind: &[u8], signer: &PublicKey, nonce: u64) -> u64 {
    let h = Hash::of(&[
        b"medspace/id/v1",
        kind,
        signer.as_ref(),
        &nonce.to_be_bytes(),
    ]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    u64::from_be_bytes(b)
}

fn forbidden(reason: impl Into<String>) -> TxError {
    TxError::Forbidden {
        reason: reason.into(),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn not_found(what: &'static str, id: impl ToString) -> TxError {
    TxError::NotFound {
        what,
        id: id.to_string(),
    }
}

impl State {
    /// Builds the first state from a genesis description.
    pub fn genesis(g: &Genesis) -> Result<State, GenesisError> {
        let err = |m: String| GenesisError::Invalid(m);
        let mut s = State::default();
        if g.members.is_empty() {
            return Err(err("no members".into()));
        }
        if g.policy.vote_den == 0 || g.policy.vote_num == 0 || g.policy.vote_num > g.policy.vote_den
        {
            return Err(err(format!(
                "vote threshold {}/{} is not a fraction in (0, 1]",
                g.policy.vote_num, g.policy.vote_den
            )));
        }
        let map = |e: TxError| err(e.to_string());
        s.put(&keys::chain_id(), &g.chain_id).map_err(map)?;
        s.chain_id = Some(std::sync::Arc::new(g.chain_id.clone()));
        s.put(&keys::policy(), &g.policy).map_err(map)?;
        for gm in &g.members {
            let m = &gm.member;
            if s.member(&m.id).map_err(map)?.is_some() {
                return Err(err(format!("duplicate member `{}`", m.id)));
            }
            if !m.key.is_valid() {
                return Err(err(format!(
                    "key of member `{}` is not a valid ed25519 key",
                    m.id
                )));
            }
            if s.key_record(&m.key).map_err(map)?.is_some() {
                return Err(err(format!("key of member `{}` used twice", m.id)));
            }
            s.put(
                &keys::member(&m.id),
                &MemberRecord {
                    member: m.clone(),
                    active: true,
                    joined_height: 0,
                },
            )
            .map_err(map)?;
            s.put(&keys::balance(&m.id), &gm.balance).map_err(map)?;
            s.put(
                &keys::principal(&m.key),
                &KeyRecord {
                    principal: Principal::Member(m.id.clone()),
                    retired: false,
                    nonce: 0,
                },
            )
            .map_err(map)?;
        }
        for u in &g.users {
            if s.member(&u.member).map_err(map)?.is_none() {
                return Err(err(format!(
                    "user `{}` of unknown member `{}`",
                    u.id, u.member
                )));
            }
            if u.role == Role::Patient {
                return Err(err(format!(
                    "user `{}`: patients register themselves",
                    u.id
                )));
            }
            if s.user(&u.id).map_err(map)?.is_some() {
                return Err(err(format!("duplicate user `{}`", u.id)));
            }
            if !u.key.is_valid() {
                return Err(err(format!(
                    "key of user `{}` is not a valid ed25519 key",
                    u.id
                )));
            }
            if s.key_record(&u.key).map_err(map)?.is_some() {
                return Err(err(format!("key of user `{}` used twice", u.id)));
            }
            s.put(
                &keys::user(&u.id),
                &UserRecord {
                    id: u.id.clone(),
                    member: u.member.clone(),
                    role: u.role,
                    key: u.key.clone(),
                },
            )
            .map_err(map)?;
            s.put(
                &keys::principal(&u.key),
                &KeyRecord {
                    principal: Principal::User(u.id.clone()),
                    retired: false,
                    nonce: 0,
                },
            )
            .map_err(map)?;
        }
        Ok(s)
    }

    /// Admission check for a mempool: decodes nothing, writes nothing. Checks the chain id, the
    /// signature, that the signer is known (or registering as a patient) and that the nonce is
    /// not already used.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxError> {
        self.check_envelope(tx)?;
        if !tx.verify_signature() {
            return Err(TxError::BadSignature {
                signer: tx.body.signer.to_hex(),
            });
        }
        self.check_admission(tx)
    }

    /// [`State::check_tx`] for a transaction whose signature the caller has verified (a node
    /// verifies the signatures of many transactions in one batch, see [`verify_signatures`]):
    /// the chain id, the signer and the nonce.
    pub fn check_admission(&self, tx: &SignedTx) -> Result<(), TxError> {
        self.check_envelope(tx)?;
        let next = self.next_nonce(&tx.body.signer)?;
        if tx.body.nonce < next {
            return Err(TxError::Nonce {
                signer: tx.body.signer.to_hex(),
                expected: next,
                got: tx.body.nonce,
            });
        }
        match self.key_record(&tx.body.signer)? {
            Some(k) if k.retired => Err(TxError::RetiredKey {
                key: tx.body.signer.to_hex(),
            }),
            Some(_) => Ok(()),
            None if matches!(tx.body.payload, Payload::RegisterPatient(_)) => Ok(()),
            None => Err(TxError::UnknownSigner {
                key: tx.body.signer.to_hex(),
            }),
        }
    }

    fn check_envelope(&self, tx: &SignedTx) -> Result<(), TxError> {
        if self.chain_id.as_deref() == Some(&tx.body.chain_id) {
            return Ok(());
        }
        let chain = self.chain_id()?;
        if tx.body.chain_id != chain {
            return Err(TxError::ChainId {
                expected: chain.to_string(),
                got: tx.body.chain_id.to_string(),
            });
        }
        Ok(())
    }

    /// Applies one transaction, signature check included.
    pub fn apply(&mut self, tx: &SignedTx, ctx: &BlockContext) -> Result<Receipt, TxError> {
        if !tx.verify_signature() {
            return Err(TxError::BadSignature {
                signer: tx.body.signer.to_hex(),
            });
        }
        self.apply_verified(tx, ctx)
    }

    /// Applies a block's transactions in order. Signatures are checked in one batch (falling
    /// back to one by one if the batch fails, to find the bad ones). Returns one outcome per
    /// transaction; refused ones change nothing.
    pub fn apply_block(
        &mut self,
        ctx: &BlockContext,
        txs: &[SignedTx],
    ) -> Vec<Result<Receipt, TxError>> {
        self.apply_block_preverified(ctx, txs, &[])
    }

    /// [`State::apply_block`] where `preverified[i]` says that this node has already checked
    /// transaction `i`'s signature itself (at mempool admission): only the others are batch
    /// verified. The outcome is the same as `apply_block`'s — a node may skip only work whose
    /// answer it already has.
    pub fn apply_block_preverified(
        &mut self,
        ctx: &BlockContext,
        txs: &[SignedTx],
        preverified: &[bool],
    ) -> Vec<Result<Receipt, TxError>> {
        let known = |i: usize| preverified.get(i).copied().unwrap_or(false);
        let unknown: Vec<SignedTx> = txs
            .iter()
            .enumerate()
            .filter(|(i, _)| !known(*i))
            .map(|(_, t)| t.clone())
            .collect();
        let mut checked = verify_signatures(&unknown).into_iter();
        let valid: Vec<bool> = (0..txs.len())
            .map(|i| known(i) || checked.next().unwrap_or(false))
            .collect();
        txs.iter()
            .zip(valid)
            .map(|(tx, ok)| {
                if ok {
                    self.apply_verified(tx, ctx)
                } else {
                    Err(TxError::BadSignature {
                        signer: tx.body.signer.to_hex(),
                    })
                }
            })
            .collect()
    }

    /// Applies a transaction whose signature the caller has verified.
    pub fn apply_verified(
        &mut self,
        tx: &SignedTx,
        ctx: &BlockContext,
    ) -> Result<Receipt, TxError> {
        let mut next = self.clone();
        let receipt = next.execute(tx, ctx)?;
        *self = next;
        Ok(receipt)
    }

    fn execute(&mut self, tx: &SignedTx, ctx: &BlockContext) -> Result<Receipt, TxError> {
        self.check_envelope(tx)?;
        let key = &tx.body.signer;
        let record = self.key_record(key)?;
        let expected = record.as_ref().map_or(0, |r| r.nonce);
        if tx.body.nonce != expected {
            return Err(TxError::Nonce {
                signer: key.to_hex(),
                expected,
                got: tx.body.nonce,
            });
        }
        let signer = self.resolve_signer(key, record.as_ref())?;
        if matches!(signer, Signer::Unknown)
            && !matches!(tx.body.payload, Payload::RegisterPatient(_))
        {
            return Err(TxError::UnknownSigner { key: key.to_hex() });
        }
        if let Some(mut r) = record {
            // An unknown key (a patient registering) gets its record, with nonce 1, from the
            // handler.
            r.nonce = expected + 1;
            self.put(&keys::principal(key), &r)?;
        }
        let nonce = tx.body.nonce;
        match &tx.body.payload {
            Payload::AddMember(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::AddMember(p.clone()))
            }
            Payload::RemoveMember(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::RemoveMember(p.clone()))
            }
            Payload::UpdatePolicy(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::UpdatePolicy(p.clone()))
            }
            Payload::Vote(p) => self.vote(signer, ctx, p),
            Payload::RegisterUser(p) => self.register_user(signer, p),
            Payload::RotateKey(p) => self.rotate_key(signer, key, nonce, p),
            Payload::RegisterPatient(_) => self.register_patient(signer, key, ctx),
            Payload::PublishDataset(p) => self.publish_dataset(signer, ctx, p),
            Payload::SetConsent(p) => self.set_consent(
                signer,
                ctx,
                p.purpose,
                p.study.as_ref(),
                p.decision.into(),
                p.l4_opt_in,
            ),
            Payload::RevokeConsent(p) => self.revoke_consent(signer, ctx, p),
            Payload::IssueGrant(p) => self.issue_grant(signer, key, nonce, ctx, p),
            Payload::RevokeGrant(p) => self.revoke_grant(signer, ctx, p),
            Payload::SubmitRequest(p) => self.submit_request(signer, key, nonce, ctx, p),
            Payload::Approve(p) => self.approve(signer, ctx, p),
            Payload::Reject(p) => self.reject(signer, ctx, p),
            Payload::Terminate(p) => self.terminate(signer, p),
            Payload::SubmitJob(p) => self.submit_job(signer, key, nonce, ctx, p),
            Payload::PostResult(p) => self.post_result(signer, ctx, p),
            Payload::RecordAccess(p) => self.record_access(signer, key, nonce, ctx, p),
            Payload::AttestDestruction(p) => self.attest_destruction(signer, ctx, p),
            Payload::Settle(p) => self.settle(signer, ctx, p),
        }
    }

    fn resolve_signer(&self, key: &PublicKey, rec: Option<&KeyRecord>) -> Result<Signer, TxError> {
        let Some(rec) = rec else {
            return Ok(Signer::Unknown);
        };
        if rec.retired {
            return Err(TxError::RetiredKey { key: key.to_hex() });
        }
        match rec.principal.clone() {
            Principal::Member(id) => {
                let m = self.active_member(&id)?;
                Ok(Signer::Member(m))
            }
            Principal::User(id) => {
                let u = self.user(&id)?.ok_or_else(|| not_found("user", &id))?;
                self.active_member(&u.member)?;
                Ok(Signer::User(u))
            }
            Principal::Patient(id) => Ok(Signer::Patient(id)),
        }
    }

    fn active_member(&self, id: &MemberId) -> Result<MemberRecord, TxError> {
        match self.member(id)? {
            Some(m) if m.active => Ok(m),
            _ => Err(TxError::NotMember {
                member: id.to_string(),
            }),
        }
    }

    fn active_member_count(&self) -> Result<u64, TxError> {
        Ok(self.members()?.iter().filter(|m| m.active).count() as u64)
    }

    // ---- governance ----

    fn propose(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        action: GovAction,
    ) -> Result<Receipt, TxError> {
        let kind = match &action {
            GovAction::AddMember(_) => "add_member",
            GovAction::RemoveMember(_) => "remove_member",
            GovAction::UpdatePolicy(_) => "update_policy",
        };
        let Signer::Member(proposer) = signer else {
            return Err(TxError::WrongSigner {
                kind,
                need: "a member institution's key",
                have: signer.describe(),
            });
        };
        self.validate_action(&action)?;
        let id = ProposalId(derive_id(b"proposal", key, nonce));
        if self.proposal(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "proposal",
                id: id.to_string(),
            });
        }
        let mut rec = ProposalRecord {
            id,
            action,
            proposer: proposer.member.id.clone(),
            yes: List::default(),
            no: List::default(),
            status: ProposalStatus::Open,
            created_ms: ctx.time_ms,
        };
        rec.yes
            .push(proposer.member.id.clone())
            .map_err(|e| invalid("votes", e.to_string()))?;
        let mut receipt = Receipt::created(kind, Created::Proposal(id));
        self.tally(&mut rec, ctx, &mut receipt)?;
        self.put(&keys::proposal(id), &rec)?;
        Ok(receipt)
    }

    fn validate_action(&self, action: &GovAction) -> Result<(), TxError> {
        match action {
            GovAction::AddMember(a) => {
                if !a.member.key.is_valid() {
                    return Err(invalid("key", "not a valid ed25519 public key"));
                }
                if self.member(&a.member.id)?.is_some() {
                    return Err(TxError::AlreadyExists {
                        what: "member",
                        id: a.member.id.to_string(),
                    });
                }
                if self.key_record(&a.member.key)?.is_some() {
                    return Err(invalid("key", "already registered to another principal"));
                }
            }
            GovAction::RemoveMember(r) => {
                self.active_member(&r.member)?;
                if self.active_member_count()? <= 1 {
                    return Err(forbidden("cannot remove the last member"));
                }
            }
            GovAction::UpdatePolicy(p) => {
                let p = &p.policy;
                if p.vote_den == 0 || p.vote_num == 0 || p.vote_num > p.vote_den {
                    return Err(invalid(
                        "policy",
                        format!(
                            "vote threshold {}/{} is not a fraction in (0, 1]",
                            p.vote_num, p.vote_den
                        ),
                    ));
                }
                if u64::from(p.vote_num) * 2 <= u64::from(p.vote_den) {
                    return Err(invalid("policy", "vote threshold must be a majority"));
                }
            }
        }
        Ok(())
    }

    fn vote(&mut self, signer: Signer, ctx: &BlockContext, v: &Vote) -> Result<Receipt, TxError> {
        let Signer::Member(voter) = signer else {
            return Err(TxError::WrongSigner {
                kind: "vote",
                need: "a member institution's key",
                have: signer.describe(),
            });
        };
        let mut rec = self
            .proposal(v.proposal)?
            .ok_or_else(|| not_found("proposal", v.proposal))?;
        if rec.status != ProposalStatus::Open {
            return Err(forbidden(format!("proposal {} is {}", rec.id, rec.status)));
        }
        let ttl = self.policy()?.proposal_ttl_ms;
        let expiry = rec.created_ms.saturating_add(ttl);
        if ctx.time_ms >= expiry {
            return Err(TxError::Expired {
                what: "proposal",
                id: rec.id.to_string(),
                expiry_ms: expiry,
                now_ms: ctx.time_ms,
            });
        }
        let me = &voter.member.id;
        if rec.yes.iter().chain(rec.no.iter()).any(|m| m == me) {
            return Err(forbidden(format!(
                "member `{me}` already voted on {}",
                rec.id
            )));
        }
        let side = if v.approve { &mut rec.yes } else { &mut rec.no };
        side.push(me.clone())
            .map_err(|e| invalid("votes", e.to_string()))?;
        let mut receipt = Receipt::new("vote");
        self.tally(&mut rec, ctx, &mut receipt)?;
        self.put(&keys::proposal(rec.id), &rec)?;
        Ok(receipt)
    }

    /// Counts the votes of active members; carries the proposal out once it has 2/3 (policy).
    fn tally(
        &mut self,
        rec: &mut ProposalRecord,
        ctx: &BlockContext,
        receipt: &mut Receipt,
    ) -> Result<(), TxError> {
        let policy = self.policy()?;
        let members = self.members()?;
        let active = |id: &MemberId| members.iter().any(|m| m.active && &m.member.id == id);
        let n = members.iter().filter(|m| m.active).count() as u64;
        let yes = rec.yes.iter().filter(|m| active(m)).count() as u64;
        let no = rec.no.iter().filter(|m| active(m)).count() as u64;
        let (num, den) = (u64::from(policy.vote_num), u64::from(policy.vote_den));
        if yes * den >= n * num {
            self.carry_out(&rec.action, ctx)?;
            rec.status = ProposalStatus::Passed;
            receipt.events.push(Event::ProposalPassed(rec.id));
        } else if (n - no.min(n)) * den < n * num {
            rec.status = ProposalStatus::Failed;
            receipt.events.push(Event::ProposalFailed(rec.id));
        }
        Ok(())
    }

    fn carry_out(&mut self, action: &GovAction, ctx: &BlockContext) -> Result<(), TxError> {
        self.validate_action(action)?;
        match action {
            GovAction::AddMember(a) => {
                let m = &a.member;
                self.put(
                    &keys::member(&m.id),
                    &MemberRecord {
                        member: m.clone(),
                        active: true,
                        joined_height: ctx.height,
                    },
                )?;
                let bal = self.balance(&m.id)?;
                self.put(
                    &keys::balance(&m.id),
                    &(bal.saturating_add(a.initial_balance)),
                )?;
                self.put(
                    &keys::principal(&m.key),
                    &KeyRecord {
                        principal: Principal::Member(m.id.clone()),
                        retired: false,
                        nonce: 0,
                    },
                )?;
            }
            GovAction::RemoveMember(r) => {
                let mut m = self.active_member(&r.member)?;
                m.active = false;
                self.put(&keys::member(&r.member), &m)?;
            }
            GovAction::UpdatePolicy(p) => self.put(&keys::policy(), &p.policy)?,
        }
        Ok(())
    }

    fn register_user(&mut self, signer: Signer, p: &RegisterUser) -> Result<Receipt, TxError> {
        let Signer::Member(m) = signer else {
            return Err(TxError::WrongSigner {
                kind: "register_user",
                need: "a member institution's key",
                have: signer.describe(),
            });
        };
        if !p.key.is_valid() {
            return Err(invalid("key", "not a valid ed25519 public key"));
        }
        if p.role == Role::Patient {
            return Err(invalid(
                "role",
                "patients register themselves with register_patient",
            ));
        }
        if self.user(&p.user)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "user",
                id: p.user.to_string(),
            });
        }
        if self.key_record(&p.key)?.is_some() {
            return Err(invalid("key", "already registered to another principal"));
        }
        let rec = UserRecord {
            id: p.user.clone(),
            member: m.member.id.clone(),
            role: p.role,
            key: p.key.clone(),
        };
        self.put(&keys::user(&p.user), &rec)?;
        self.put(
            &keys::principal(&p.key),
            &KeyRecord {
                principal: Principal::User(p.user.clone()),
                retired: false,
                nonce: 0,
            },
        )?;
        Ok(Receipt::new("register_user"))
    }

    fn rotate_key(
        &mut self,
        signer: Signer,
        old: &PublicKey,
        nonce: u64,
        p: &RotateKey,
    ) -> Result<Receipt, TxError> {
        let chain = self.chain_id()?;
        if !p.new_key.verify(
            ROTATE_NAMESPACE,
            &rotation_message(&chain, old, nonce),
            &p.proof,
        ) {
            return Err(invalid(
                "proof",
                "the new key's signature over the rotation does not verify",
            ));
        }
        if self.key_record(&p.new_key)?.is_some() {
            return Err(invalid("new_key", "already registered to a principal"));
        }
        let principal = match signer {
            Signer::Member(mut m) => {
                m.member.key = p.new_key.clone();
                self.put(&keys::member(&m.member.id), &m)?;
                Principal::Member(m.member.id)
            }
            Signer::User(mut u) => {
                u.key = p.new_key.clone();
                self.put(&keys::user(&u.id), &u)?;
                Principal::User(u.id)
            }
            Signer::Patient(id) => {
                let mut rec = self.patient(&id)?.ok_or_else(|| not_found("patient", id))?;
                rec.key = p.new_key.clone();
                self.put(&keys::patient(&id), &rec)?;
                Principal::Patient(id)
            }
            Signer::Unknown => return Err(TxError::UnknownSigner { key: old.to_hex() }),
        };
        self.put(
            &keys::principal(old),
            &KeyRecord {
                principal: principal.clone(),
                retired: true,
                nonce: nonce + 1,
            },
        )?;
        self.put(
            &keys::principal(&p.new_key),
            &KeyRecord {
                principal,
                retired: false,
                nonce: 0,
            },
        )?;
        Ok(Receipt::new("rotate_key"))
    }

    // ---- patients ----

    fn register_patient(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        ctx: &BlockContext,
    ) -> Result<Receipt, TxError> {
        if !matches!(signer, Signer::Unknown) {
            return Err(invalid("key", "already registered to a principal"));
        }
        let id = PatientId::from_key(key);
        if self.patient(&id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "patient",
                id: id.to_string(),
            });
        }
        self.put(
            &keys::patient(&id),
            &PatientRecord {
                key: key.clone(),
                registered_height: ctx.height,
                log_len: 0,
            },
        )?;
        self.put(
            &keys::principal(key),
            &KeyRecord {
                principal: Principal::Patient(id),
                retired: false,
                nonce: 1,
            },
        )?;
        Ok(Receipt::created("register_patient", Created::Patient(id)))
    }

    fn patient_signer(signer: Signer, kind: &'static str) -> Result<PatientId, TxError> {
        match signer {
            Signer::Patient(id) => Ok(id),
            other => Err(TxError::WrongSigner {
                kind,
                need: "the patient's key",
                have: other.describe(),
            }),
        }
    }

    fn log(
        &mut self,
        patient: &PatientId,
        ctx: &BlockContext,
        event: PatientEvent,
    ) -> Result<(), TxError> {
        let mut rec = self
            .patient(patient)?
            .ok_or_else(|| not_found("patient", patient))?;
        self.put(
            &keys::patient_log(patient, rec.log_len),
            &LogEntry {
                height: ctx.height,
                time_ms: ctx.time_ms,
                event,
            },
        )?;
        rec.log_len += 1;
        self.put(&keys::patient(patient), &rec)
    }

    fn set_consent(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        purpose: Purpose,
        study: Option<&StudyId>,
        state: ConsentState,
        l4: bool,
    ) -> Result<Receipt, TxError> {
        let kind = if state == ConsentState::Revoked {
            "revoke_consent"
        } else {
            "set_consent"
        };
        let patient = Self::patient_signer(signer, kind)?;
        let key = keys::consent(&patient, purpose, study);
        let mut rec: ConsentRecord = self.get(&key)?.unwrap_or(ConsentRecord {
            history: List::default(),
            trimmed: false,
        });
        if state == ConsentState::Revoked
            && rec
                .current()
                .is_none_or(|c| c.state == ConsentState::Revoked)
        {
            return Err(not_found(
                "consent",
                format!(
                    "purpose={purpose} study={}",
                    study.map_or("-", |s| s.as_str())
                ),
            ));
        }
        let l4_opt_in = l4 && state == ConsentState::Allow;
        // Several changes in one block: the last one wins for that height.
        if rec.current().is_some_and(|c| c.height == ctx.height) {
            if let Some(c) = rec.history.as_mut_slice().last_mut() {
                c.state = state;
                c.l4_opt_in = l4_opt_in;
            }
        } else {
            if rec.history.len() >= CONSENT_HISTORY {
                rec.history.keep_last(CONSENT_HISTORY - 1);
                rec.trimmed = true;
            }
            rec.history
                .push(ConsentChange {
                    height: ctx.height,
                    state,
                    l4_opt_in,
                })
                .map_err(|e| invalid("consent", e.to_string()))?;
        }
        self.put(&key, &rec)?;
        self.log(
            &patient,
            ctx,
            PatientEvent::Consent(ConsentEvent {
                purpose,
                study: study.cloned(),
                state,
            }),
        )?;
        Ok(Receipt::new(kind))
    }

    fn revoke_consent(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &RevokeConsent,
    ) -> Result<Receipt, TxError> {
        self.set_consent(
            signer,
            ctx,
            p.purpose,
            p.study.as_ref(),
            ConsentState::Revoked,
            false,
        )
    }

    /// Whether `patient`'s consent allows a use of `purpose` (in `study`) at `level`, as of
    /// block `height`.
    pub fn consent_allows(
        &self,
        patient: &PatientId,
        purpose: Purpose,
        study: Option<&StudyId>,
        level: Level,
        height: u64,
    ) -> Result<bool, TxError> {
        let broad: Option<ConsentRecord> = self.get(&keys::consent(patient, purpose, None))?;
        let specific: Option<ConsentRecord> = match study {
            Some(s) => self.get(&keys::consent(patient, purpose, Some(s)))?,
            None => None,
        };
        let policy = self.policy()?;
        Ok(consent_allows(
            &policy,
            purpose,
            level,
            ConsentView {
                study: specific.as_ref(),
                broad: broad.as_ref(),
            },
            height,
        ))
    }

    fn issue_grant(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &IssueGrant,
    ) -> Result<Receipt, TxError> {
        let patient = Self::patient_signer(signer, "issue_grant")?;
        self.active_member(&p.grantee)?;
        self.active_member(&p.holder)?;
        if p.grantee == p.holder {
            return Err(invalid("grantee", "the holder already has the records"));
        }
        if p.expiry_ms <= ctx.time_ms {
            return Err(TxError::Expired {
                what: "grant",
                id: "new".into(),
                expiry_ms: p.expiry_ms,
                now_ms: ctx.time_ms,
            });
        }
        if p.period_from_ms > p.period_to_ms {
            return Err(invalid(
                "period",
                format!("from={} is after to={}", p.period_from_ms, p.period_to_ms),
            ));
        }
        if p.resource_types.is_empty() {
            return Err(invalid(
                "resource_types",
                "a grant must name at least one resource type",
            ));
        }
        for t in &p.resource_types {
            let ok = t.as_str().len() <= 48
                && t.as_str()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                && t.as_str().chars().all(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(invalid(
                    "resource_types",
                    format!("`{t}` is not a FHIR resource type name"),
                ));
            }
        }
        let id = GrantId(derive_id(b"grant", key, nonce));
        if self.grant(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "grant",
                id: id.to_string(),
            });
        }
        let rec = GrantRecord {
            id,
            patient,
            terms: p.clone(),
            issued_height: ctx.height,
            uses: 0,
            revoked: false,
        };
        self.put(&keys::grant(id), &rec)?;
        self.log(&patient, ctx, PatientEvent::GrantIssued(id))?;
        Ok(Receipt::created("issue_grant", Created::Grant(id)))
    }

    fn revoke_grant(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &RevokeGrant,
    ) -> Result<Receipt, TxError> {
        let patient = Self::patient_signer(signer, "revoke_grant")?;
        let mut rec = self
            .grant(p.grant)?
            .ok_or_else(|| not_found("grant", p.grant))?;
        if rec.patient != patient {
            return Err(forbidden(format!(
                "grant {} belongs to another patient",
                p.grant
            )));
        }
        if rec.revoked {
            return Err(forbidden(format!("grant {} is already revoked", p.grant)));
        }
        rec.revoked = true;
        self.put(&keys::grant(p.grant), &rec)?;
        self.log(&patient, ctx, PatientEvent::GrantRevoked(p.grant))?;
        Ok(Receipt::new("revoke_grant"))
    }

    // ---- catalog ----

    /// The member a signer acts for, if it is the member itself or one of its stewards.
    fn steward_member(signer: &Signer, kind: &'static str) -> Result<MemberId, TxError> {
        match signer {
            Signer::Member(m) => Ok(m.member.id.clone()),
            Signer::User(u) if u.role == Role::Steward => Ok(u.member.clone()),
            Signer::User(u) => Err(TxError::WrongRole {
                kind,
                have: u.role,
                need: "steward".into(),
            }),
            other => Err(TxError::WrongSigner {
                kind,
                need: "a member or its steward",
                have: other.describe(),
            }),
        }
    }

    fn publish_dataset(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &PublishDataset,
    ) -> Result<Receipt, TxError> {
        let owner = Self::steward_member(&signer, "publish_dataset")?;
        let d = &p.dataset;
        if d.tables.is_empty() {
            return Err(invalid(
                "tables",
                "a dataset must describe at least one table",
            ));
        }
        for t in &d.tables {
            if t.fields.is_empty() {
                return Err(invalid(
                    "fields",
                    format!("table `{}` has no fields", t.name),
                ));
            }
            for f in &t.fields {
                if f.missing_ppm > 1_000_000 || f.invalid_ppm > 1_000_000 {
                    return Err(invalid(
                        "quality",
                        format!("`{}.{}` has a share above 1,000,000 ppm", t.name, f.name),
                    ));
                }
            }
        }
        if let Some(existing) = self.dataset(&d.id)? {
            if existing.owner != owner {
                return Err(forbidden(format!(
                    "dataset `{}` belongs to `{}`",
                    d.id, existing.owner
                )));
            }
            if d.version <= existing.description.version {
                return Err(invalid(
                    "version",
                    format!(
                        "{} is not above the published {}",
                        d.version, existing.description.version
                    ),
                ));
            }
        }
        self.put(
            &keys::dataset(&d.id),
            &DatasetRecord {
                owner,
                description: d.clone(),
                published_height: ctx.height,
            },
        )?;
        Ok(Receipt::new("publish_dataset"))
    }

    // ---- contracts ----

    fn user_signer(signer: Signer, kind: &'static str) -> Result<UserRecord, TxError> {
        match signer {
            Signer::User(u) => Ok(u),
            other => Err(TxError::WrongSigner {
                kind,
                need: "a registered user",
                have: other.describe(),
            }),
        }
    }

    fn submit_request(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &SubmitRequest,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "submit_request")?;
        let allowed = requester_roles(p.purpose);
        if !allowed.contains(&user.role) {
            let need = allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join("|");
            return Err(TxError::WrongRole {
                kind: "submit_request",
                have: user.role,
                need: if need.is_empty() { "none".into() } else { need },
            });
        }
        let policy = self.policy()?;
        if p.expiry_ms <= ctx.time_ms {
            return Err(TxError::Expired {
                what: "request",
                id: "new".into(),
                expiry_ms: p.expiry_ms,
                now_ms: ctx.time_ms,
            });
        }
        if p.expiry_ms - ctx.time_ms > policy.max_contract_ms {
            return Err(invalid(
                "expiry_ms",
                format!(
                    "lifetime {} ms exceeds the policy's {} ms",
                    p.expiry_ms - ctx.time_ms,
                    policy.max_contract_ms
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
            level = level.max(l);
            if !owners.contains(&ds.owner) {
                owners.push(ds.owner.clone());
            }
        }
        owners.sort();
        let balance = self.balance(&user.member)?;
        if balance < p.fee {
            return Err(TxError::InsufficientBalance {
                member: user.member.to_string(),
                balance,
                needed: p.fee,
            });
        }
        self.put(&keys::balance(&user.member), &(balance - p.fee))?;
        let id = ContractId(derive_id(b"contract", key, nonce));
        if self.contract(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "contract",
                id: id.to_string(),
            });
        }
        let approvals = required_approvals(&policy, level, &owners);
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
            level,
            owners: List::new(owners).map_err(to_list)?,
            approvals: List::new(approvals).map_err(to_list)?,
            status,
            expiry_ms: p.expiry_ms,
            epsilon_budget: p.epsilon_budget,
            epsilon_spent: 0,
            epsilon_reserved: 0,
            escrow: p.fee,
            contributions: List::default(),
            settled: false,
            submitted_height: ctx.height,
            closing_reason: Text::default(),
        };
        self.put(&keys::contract(id), &rec)?;
        let mut receipt = Receipt::created("submit_request", Created::Contract(id));
        if status == ContractStatus::Active {
            receipt.events.push(Event::ContractActivated(id));
        }
        Ok(receipt)
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
        Ok(c.approvals
            .iter()
            .position(|a| crate::policy::may_fill(a, user.role, &user.member, kind)))
    }

    fn approve(
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

    fn reject(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Reject,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "reject")?;
        let mut c = self.reviewable(p.contract, ctx)?;
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

    fn refund(&mut self, c: &mut ContractRecord) -> Result<(), TxError> {
        let bal = self.balance(&c.requester_member)?;
        self.put(
            &keys::balance(&c.requester_member),
            &bal.saturating_add(c.escrow),
        )?;
        c.escrow = 0;
        c.settled = true;
        Ok(())
    }

    fn terminate(&mut self, signer: Signer, p: &Terminate) -> Result<Receipt, TxError> {
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
        c.closing_reason = p.reason.clone();
        c.epsilon_reserved = 0;
        self.put(&keys::contract(c.id), &c)?;
        Ok(Receipt::new("terminate"))
    }

    // ---- execution and audit ----

    fn submit_job(
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

    fn post_result(
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
        let mut seen: Vec<&MemberId> = Vec::new();
        for contribution in &p.contributions {
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
        c.epsilon_spent += p.epsilon_spent;
        c.epsilon_reserved = c.epsilon_reserved.saturating_sub(job.epsilon_reserved);
        for contribution in &p.contributions {
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

    fn record_access(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &RecordAccess,
    ) -> Result<Receipt, TxError> {
        let Signer::Member(holder) = signer else {
            return Err(TxError::WrongSigner {
                kind: "record_access",
                need: "the holding member's node key",
                have: signer.describe(),
            });
        };
        let holder = holder.member.id;
        self.active_member(&p.recipient)?;
        if self.patient(&p.patient)?.is_none() {
            return Err(not_found("patient", p.patient));
        }
        match &p.basis {
            AccessBasis::Grant(gid) => {
                let mut g = self.grant(*gid)?.ok_or_else(|| not_found("grant", gid))?;
                let t = &g.terms;
                if g.patient != p.patient {
                    return Err(TxError::OutOfScope {
                        reason: format!("grant {gid} is another patient's"),
                    });
                }
                if t.holder != holder {
                    return Err(TxError::OutOfScope {
                        reason: format!("grant {gid} is for records held by `{}`", t.holder),
                    });
                }
                if t.grantee != p.recipient {
                    return Err(TxError::OutOfScope {
                        reason: format!(
                            "grant {gid} is for `{}`, not `{}`",
                            t.grantee, p.recipient
                        ),
                    });
                }
                if g.revoked {
                    return Err(forbidden(format!("grant {gid} was revoked")));
                }
                if ctx.time_ms >= t.expiry_ms {
                    return Err(TxError::Expired {
                        what: "grant",
                        id: gid.to_string(),
                        expiry_ms: t.expiry_ms,
                        now_ms: ctx.time_ms,
                    });
                }
                if t.max_uses > 0 && g.uses >= t.max_uses {
                    return Err(forbidden(format!(
                        "grant {gid} is used up ({} of {})",
                        g.uses, t.max_uses
                    )));
                }
                for rt in &p.resource_types {
                    if !t.resource_types.iter().any(|x| x == rt) {
                        return Err(TxError::OutOfScope {
                            reason: format!("resource type `{rt}` is not granted by {gid}"),
                        });
                    }
                }
                g.uses += 1;
                self.put(&keys::grant(*gid), &g)?;
            }
            AccessBasis::Contract(cid) => {
                let c = self
                    .contract(*cid)?
                    .ok_or_else(|| not_found("contract", cid))?;
                if !c.is_active(ctx.time_ms) {
                    return Err(TxError::ContractState {
                        id: cid.to_string(),
                        status: c.status_at(ctx.time_ms),
                        need: "active",
                    });
                }
                if c.mode != Mode::RecordSharing {
                    return Err(TxError::OutOfScope {
                        reason: format!("contract {cid} is for {}, not record sharing", c.mode),
                    });
                }
                if c.requester_member != p.recipient {
                    return Err(TxError::OutOfScope {
                        reason: format!("contract {cid} is held by `{}`", c.requester_member),
                    });
                }
                if !c.owners.iter().any(|o| *o == holder) {
                    return Err(TxError::OutOfScope {
                        reason: format!("member `{holder}` holds no data of contract {cid}"),
                    });
                }
                if !self.consent_allows(
                    &p.patient,
                    c.purpose,
                    c.study.as_ref(),
                    c.level,
                    ctx.height,
                )? {
                    return Err(TxError::NoConsent {
                        patient: p.patient.to_string(),
                        purpose: c.purpose.to_string(),
                        level: c.level,
                    });
                }
            }
        }
        let id = AccessId(derive_id(b"access", key, nonce));
        if self.access(id)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "access",
                id: id.to_string(),
            });
        }
        let rec = AccessRecord {
            id,
            patient: p.patient,
            holder,
            recipient: p.recipient.clone(),
            basis: p.basis.clone(),
            resource_types: p.resource_types.clone(),
            resource_count: p.resource_count,
            content_hash: p.content_hash,
            height: ctx.height,
            time_ms: ctx.time_ms,
            destroyed_height: None,
        };
        self.put(&keys::access(id), &rec)?;
        self.log(&p.patient, ctx, PatientEvent::Accessed(id))?;
        Ok(Receipt::created("record_access", Created::Access(id)))
    }

    fn attest_destruction(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &AttestDestruction,
    ) -> Result<Receipt, TxError> {
        let member = match &signer {
            Signer::Member(m) => m.member.id.clone(),
            Signer::User(u) => u.member.clone(),
            other => {
                return Err(TxError::WrongSigner {
                    kind: "attest_destruction",
                    need: "the recipient institution",
                    have: other.describe(),
                });
            }
        };
        let mut a = self
            .access(p.access)?
            .ok_or_else(|| not_found("access", p.access))?;
        if a.recipient != member {
            return Err(forbidden(format!(
                "access {} was delivered to `{}`",
                a.id, a.recipient
            )));
        }
        if a.destroyed_height.is_some() {
            return Err(forbidden(format!(
                "destruction of {} already attested",
                a.id
            )));
        }
        a.destroyed_height = Some(ctx.height);
        self.put(&keys::access(a.id), &a)?;
        self.log(&a.patient, ctx, PatientEvent::Destroyed(a.id))?;
        Ok(Receipt::new("attest_destruction"))
    }

    // ---- value ----

    fn settle(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Settle,
    ) -> Result<Receipt, TxError> {
        let mut c = self
            .contract(p.contract)?
            .ok_or_else(|| not_found("contract", p.contract))?;
        let may = match &signer {
            Signer::User(u) => {
                u.id == c.requester
                    || (u.role == Role::Steward && c.owners.iter().any(|o| *o == u.member))
            }
            Signer::Member(m) => {
                c.owners.iter().any(|o| *o == m.member.id) || m.member.id == c.requester_member
            }
            _ => false,
        };
        if !may {
            return Err(TxError::WrongSigner {
                kind: "settle",
                need: "the requester or a data owner",
                have: signer.describe(),
            });
        }
        if c.settled {
            return Err(forbidden(format!("contract {} is already settled", c.id)));
        }
        if c.is_active(ctx.time_ms) && !matches!(&signer, Signer::User(u) if u.id == c.requester) {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: "active",
                need: "ended (or settled by its requester)",
            });
        }
        if c.epsilon_reserved > 0 && c.is_active(ctx.time_ms) {
            return Err(forbidden(format!(
                "contract {} has jobs without results",
                c.id
            )));
        }
        // Settling ends the contract: nothing more can run under a contract whose fee is paid
        // out (or refunded).
        if matches!(c.status, ContractStatus::Pending | ContractStatus::Active) {
            c.status = ContractStatus::Terminated;
            c.epsilon_reserved = 0;
            c.closing_reason =
                Text::new("settled").map_err(|e| invalid("reason", e.to_string()))?;
        }
        let payouts = split_fee(c.escrow, c.contributions.as_slice());
        if payouts.is_empty() {
            self.refund(&mut c)?;
        } else {
            for (m, amount) in &payouts {
                let bal = self.balance(m)?;
                self.put(&keys::balance(m), &bal.saturating_add(*amount))?;
            }
            c.escrow = 0;
            c.settled = true;
        }
        self.put(&keys::contract(c.id), &c)?;
        let mut receipt = Receipt::new("settle");
        receipt.events.push(Event::Settled {
            contract: c.id,
            payouts,
        });
        Ok(receipt)
    }
}

/// Splits `fee` in proportion to records contributed, exactly: each gets the floor of its
/// share and the remainder goes one credit at a time to the largest fractional parts (ties to
/// the smaller member id). Returns nothing when nobody contributed.
pub fn split_fee(fee: u64, contributions: &[Contribution]) -> Vec<(MemberId, u64)> {
    let total: u128 = contributions.iter().map(|c| u128::from(c.records)).sum();
    if total == 0 || fee == 0 {
        return Vec::new();
    }
    let mut parts: Vec<(MemberId, u64, u128)> = contributions
        .iter()
        .map(|c| {
            let num = u128::from(fee) * u128::from(c.records);
            // INVARIANT: num / total <= fee, which fits u64.
            (
                c.member.clone(),
                u64::try_from(num / total).unwrap_or(0),
                num % total,
            )
        })
        .collect();
    let given: u64 = parts.iter().map(|p| p.1).sum();
    let mut rest = fee - given;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&parts[a], &parts[b]);
        pb.2.cmp(&pa.2).then_with(|| pa.0.cmp(&pb.0))
    });
    for i in order {
        if rest == 0 {
            break;
        }
        if let Some(p) = parts.get_mut(i) {
            p.1 += 1;
            rest -= 1;
        }
    }
    let mut out: Vec<(MemberId, u64)> = parts.into_iter().map(|(m, a, _)| (m, a)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Decompressed signer keys, memoized: decompressing a point (a field square root) costs about
/// as much as the rest of a signature check, and the same institutions, users and patients sign
/// transaction after transaction. A pure function's memo: it cannot change any outcome.
fn verifier_of(key: &PublicKey) -> Option<ed25519::PublicKey> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const MAX: usize = 1 << 16;
    static CACHE: OnceLock<Mutex<HashMap<PublicKey, ed25519::PublicKey>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock()
        && let Some(k) = map.get(key)
    {
        return Some(k.clone());
    }
    let k = key.verifier()?;
    if let Ok(mut map) = cache.lock() {
        if map.len() >= MAX {
            map.clear();
        }
        map.insert(key.clone(), k.clone());
    }
    Some(k)
}

/// Below this many signatures a batch costs more than checking them one by one.
const BATCH_FROM: usize = 3;

/// Checks every signature of a block, in one batch when all are good.
pub fn verify_signatures(txs: &[SignedTx]) -> Vec<bool> {
    if txs.len() < BATCH_FROM {
        return txs
            .iter()
            .map(|t| {
                verifier_of(&t.body.signer).is_some_and(|k| {
                    commonware_cryptography::Verifier::verify(
                        &k,
                        TX_NAMESPACE,
                        &commonware_codec::Encode::encode(&t.body),
                        &t.signature.0,
                    )
                })
            })
            .collect();
    }
    let bodies: Vec<bytes::Bytes> = txs
        .iter()
        .map(|t| commonware_codec::Encode::encode(&t.body))
        .collect();
    // The batch's random coefficients must be unpredictable to whoever chose the signatures:
    // derive them from a hash of the whole batch (bodies and signatures), which keeps the state
    // machine free of ambient randomness and every node's outcome identical.
    let mut seed = commonware_cryptography::Sha256::default();
    {
        use commonware_cryptography::Hasher as _;
        seed.update(b"medspace/batch/v1");
        for (body, tx) in bodies.iter().zip(txs) {
            seed.update(body);
            seed.update(tx.signature.0.as_ref());
        }
    }
    let (_, seed) = commonware_cryptography::Hasher::finalize(seed);
    let mut rng = ChaCha20Rng::from_seed(seed.0);
    let signers: Vec<Option<ed25519::PublicKey>> =
        txs.iter().map(|t| verifier_of(&t.body.signer)).collect();
    if signers.iter().any(Option::is_none) {
        return txs.iter().map(SignedTx::verify_signature).collect();
    }
    let items: Vec<(usize, &ed25519::PublicKey, &SignedTx)> = txs
        .iter()
        .zip(signers.iter())
        .enumerate()
        .filter_map(|(i, (tx, k))| k.as_ref().map(|k| (i, k, tx)))
        .collect();
    let ok = ed25519::PublicKey::verify_batch(
        &mut rng,
        &items,
        |_, (i, key, tx)| BatchEntry {
            namespace: TX_NAMESPACE,
            message: bodies.get(*i).map_or(&[][..], |b| &b[..]),
            public_key: key,
            signature: &tx.signature.0,
        },
        &Sequential,
    );
    if ok {
        vec![true; txs.len()]
    } else {
        txs.iter().map(SignedTx::verify_signature).collect()
    }
}
