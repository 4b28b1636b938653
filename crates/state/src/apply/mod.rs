//! The rules of every transaction kind: `apply(state, tx, block) -> Result<Receipt, TxError>`.
//!
//! Each transaction executes on an O(1) snapshot of the state and replaces it only on success,
//! so a refused transaction changes nothing — not a nonce, not the root.
//!
//! This module holds what every transaction goes through — the genesis state, the envelope
//! (chain id, signature, nonce, signer), the dispatch to a rule and the [`Receipt`] — and each
//! domain's rules live in their own file, as one `impl State` block:
//!
//! - `governance`: proposals and votes (members, policy, consortium roles), user registration,
//!   key rotation;
//! - `patients`: patient registration, the patient's log, consent;
//! - `rebind`: a lost patient key re-bound through the registering hospital (asked, vetoable,
//!   completed by the new key);
//! - `grants`: a patient's grants, issued and revoked;
//! - `catalog`: dataset descriptions;
//! - `contracts`: data-use requests, approvals, rejection, termination, refunds;
//! - `jobs`: compute jobs and their posted results;
//! - `access`: record-level deliveries and destruction attestations;
//! - `value`: settlement and [`split_fee`];
//! - `signatures`: batch signature checks ([`verify_signatures`], [`verify_signatures_with`])
//!   and the [`KeyCache`] of decompressed signer keys.

mod access;
mod alerts;
mod catalog;
mod contracts;
mod governance;
mod grants;
mod jobs;
mod patients;
mod rebind;
mod release;
mod signatures;
mod value;

pub use jobs::person_epsilon;
pub use patients::CONSENT_BATCH;
pub use signatures::{KeyCache, verify_signatures, verify_signatures_with};
pub use value::split_fee;

use crate::error::{GenesisError, TxError};
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;
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

/// The resolved signer of a transaction. Exhaustive on purpose: every rule decides for each
/// kind of key, in particular whether a member's node key (the key its network-facing node
/// holds) may do what the member key may.
enum Signer {
    /// A member's own key (its member key).
    Member(MemberRecord),
    /// A member's node key: operational work only (a job's round and result, access records,
    /// destruction attestations).
    Node(MemberRecord),
    User(UserRecord),
    Patient(PatientId),
    Unknown,
}

impl Signer {
    fn describe(&self) -> String {
        match self {
            Signer::Member(m) => format!("member `{}`", m.member.id),
            Signer::Node(m) => format!("the node key of member `{}`", m.member.id),
            Signer::User(u) => format!("user `{}` ({})", u.id, u.role),
            Signer::Patient(_) => "a patient".into(),
            Signer::Unknown => "an unregistered key".into(),
        }
    }
}

/// Ids of created records: derived from the creating transaction, so a client knows them
/// before the block is final. A collision is refused, never overwritten.
fn derive_id(kind: &[u8], signer: &PublicKey, nonce: u64) -> u64 {
    derive_unguessable_id(kind, signer, nonce, &[])
}

/// An id that also depends on `secret`, a value of the transaction only its parties know (a
/// code's salted hash, a delivery's content hash): nobody else can list such records by
/// trying a signer's nonces.
fn derive_unguessable_id(kind: &[u8], signer: &PublicKey, nonce: u64, secret: &[u8]) -> u64 {
    let Hash([b0, b1, b2, b3, b4, b5, b6, b7, ..]) = Hash::of(&[
        b"medspace/id/v1",
        kind,
        signer.as_ref(),
        &nonce.to_be_bytes(),
        secret,
    ]);
    // The first 8 bytes of the hash, big-endian.
    u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
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

fn genesis_invalid(reason: String) -> GenesisError {
    GenesisError::Invalid(reason)
}

/// A state error while building genesis (a record that does not encode or a key conflict).
fn genesis_corrupt(e: TxError) -> GenesisError {
    GenesisError::Invalid(e.to_string())
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
        let mut s = State::default();
        if g.members.is_empty() {
            return Err(genesis_invalid("no members".into()));
        }
        if g.policy.vote_den == 0 || g.policy.vote_num == 0 || g.policy.vote_num > g.policy.vote_den
        {
            return Err(genesis_invalid(format!(
                "vote threshold {}/{} is not a fraction in (0, 1]",
                g.policy.vote_num, g.policy.vote_den
            )));
        }
        if g.policy.max_job_epsilon_micro == 0 || g.policy.dataset_epsilon_micro == 0 {
            return Err(genesis_invalid(
                "the epsilon caps must allow some epsilon (0 would stop every job)".into(),
            ));
        }
        s.put(&keys::chain_id(), &g.chain_id)
            .map_err(genesis_corrupt)?;
        s.chain_id = Some(std::sync::Arc::new(g.chain_id.clone()));
        s.put(&keys::policy(), &g.policy).map_err(genesis_corrupt)?;
        for gm in &g.members {
            s.genesis_member(gm)?;
        }
        for u in &g.users {
            s.genesis_user(u)?;
        }
        Ok(s)
    }

    /// Registers a founding member, its balance and its key.
    fn genesis_member(&mut self, gm: &GenesisMember) -> Result<(), GenesisError> {
        let m = &gm.member;
        if self.member(&m.id).map_err(genesis_corrupt)?.is_some() {
            return Err(genesis_invalid(format!("duplicate member `{}`", m.id)));
        }
        for (what, key) in [("key", &m.key), ("node key", &m.node_key)] {
            if !key.is_valid() {
                return Err(genesis_invalid(format!(
                    "{what} of member `{}` is not a valid ed25519 key",
                    m.id
                )));
            }
        }
        if m.key == m.node_key {
            return Err(genesis_invalid(format!(
                "member `{}`: the node key must differ from the member key",
                m.id
            )));
        }
        for key in [&m.key, &m.node_key] {
            if self.key_record(key).map_err(genesis_corrupt)?.is_some() {
                return Err(genesis_invalid(format!(
                    "key of member `{}` used twice",
                    m.id
                )));
            }
        }
        self.put(
            &keys::member(&m.id),
            &MemberRecord {
                member: m.clone(),
                active: true,
                joined_height: 0,
            },
        )
        .map_err(genesis_corrupt)?;
        self.put(&keys::balance(&m.id), &gm.balance)
            .map_err(genesis_corrupt)?;
        self.put(
            &keys::principal(&m.key),
            &KeyRecord {
                principal: Principal::Member(m.id.clone()),
                retired: false,
                nonce: 0,
            },
        )
        .map_err(genesis_corrupt)?;
        self.put(
            &keys::principal(&m.node_key),
            &KeyRecord {
                principal: Principal::Node(m.id.clone()),
                retired: false,
                nonce: 0,
            },
        )
        .map_err(genesis_corrupt)?;
        Ok(())
    }

    /// Registers a user of a founding member and its key.
    fn genesis_user(&mut self, u: &GenesisUser) -> Result<(), GenesisError> {
        if self.member(&u.member).map_err(genesis_corrupt)?.is_none() {
            return Err(genesis_invalid(format!(
                "user `{}` of unknown member `{}`",
                u.id, u.member
            )));
        }
        if u.role == Role::Patient {
            return Err(genesis_invalid(format!(
                "user `{}`: patients register themselves",
                u.id
            )));
        }
        if self.user(&u.id).map_err(genesis_corrupt)?.is_some() {
            return Err(genesis_invalid(format!("duplicate user `{}`", u.id)));
        }
        if !u.key.is_valid() {
            return Err(genesis_invalid(format!(
                "key of user `{}` is not a valid ed25519 key",
                u.id
            )));
        }
        if self.key_record(&u.key).map_err(genesis_corrupt)?.is_some() {
            return Err(genesis_invalid(format!(
                "key of user `{}` used twice",
                u.id
            )));
        }
        self.put(
            &keys::user(&u.id),
            &UserRecord {
                id: u.id.clone(),
                member: u.member.clone(),
                role: u.role,
                key: u.key.clone(),
            },
        )
        .map_err(genesis_corrupt)?;
        self.put(
            &keys::principal(&u.key),
            &KeyRecord {
                principal: Principal::User(u.id.clone()),
                retired: false,
                nonce: 0,
            },
        )
        .map_err(genesis_corrupt)?;
        Ok(())
    }

    /// Admission check for a mempool: decodes nothing, writes nothing. Checks the chain id, the
    /// signature, that the signer is known (or registering as a patient with a hospital's
    /// attestation) and that the nonce is not already used.
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
            None => match &tx.body.payload {
                // A registration is admitted only with a valid hospital attestation, so the
                // mempool cannot be flooded with free registrations either.
                Payload::RegisterPatient(p) => self.check_patient_attestation(&tx.body.signer, p),
                // Likewise a re-bound key's completion: only the key a hospital asked for.
                Payload::CompleteRebind(p)
                    if self
                        .rebind_of(&tx.body.signer)?
                        .is_some_and(|r| r.patient == p.patient) =>
                {
                    Ok(())
                }
                _ => Err(TxError::UnknownSigner {
                    key: tx.body.signer.to_hex(),
                }),
            },
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
    /// back to one by one if the batch fails, to find the bad ones), signer keys decompressed
    /// through the state's [`KeyCache`]. Returns one outcome per transaction; refused ones
    /// change nothing.
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
        let mut checked = verify_signatures_with(&self.key_cache, &unknown).into_iter();
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

    /// Runs one transaction on `self` (a snapshot the caller drops on error): the envelope, the
    /// nonce, then the transaction's rule.
    fn execute(&mut self, tx: &SignedTx, ctx: &BlockContext) -> Result<Receipt, TxError> {
        let signer = self.take_nonce(tx)?;
        self.dispatch(
            signer,
            &tx.body.signer,
            tx.body.nonce,
            ctx,
            &tx.body.payload,
        )
    }

    /// Checks the envelope and the nonce, resolves the signer and consumes its nonce.
    fn take_nonce(&mut self, tx: &SignedTx) -> Result<Signer, TxError> {
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
            && !matches!(
                tx.body.payload,
                Payload::RegisterPatient(_) | Payload::CompleteRebind(_)
            )
        {
            return Err(TxError::UnknownSigner { key: key.to_hex() });
        }
        if let Some(mut r) = record {
            // An unknown key (a patient registering, or a re-bound key taking over) gets its
            // record, with nonce 1, from the handler.
            // INVARIANT: nonces start at 0 (1 for a patient) and grow by one per applied
            // transaction of the key; no key can sign 2^64 transactions.
            r.nonce = expected + 1;
            self.put(&keys::principal(key), &r)?;
        }
        Ok(signer)
    }

    /// The rule of the transaction's kind. `key` and `nonce` are the signer's, for the ids of
    /// created records.
    fn dispatch(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        payload: &Payload,
    ) -> Result<Receipt, TxError> {
        match payload {
            Payload::AddMember(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::AddMember(p.clone()))
            }
            Payload::RemoveMember(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::RemoveMember(p.clone()))
            }
            Payload::UpdatePolicy(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::UpdatePolicy(p.clone()))
            }
            Payload::AppointUser(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::AppointUser(p.clone()))
            }
            Payload::DismissUser(p) => {
                self.propose(signer, key, nonce, ctx, GovAction::DismissUser(p.clone()))
            }
            Payload::Vote(p) => self.vote(signer, ctx, p),
            Payload::RegisterUser(p) => self.register_user(signer, p),
            Payload::RotateKey(p) => self.rotate_key(signer, key, nonce, p),
            Payload::RotateNodeKey(p) => self.rotate_node_key(signer, key, nonce, p),
            Payload::RegisterPatient(p) => self.register_patient(signer, key, ctx, p),
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
            Payload::Terminate(p) => self.terminate(signer, ctx, p),
            Payload::SubmitJob(p) => self.submit_job(signer, key, nonce, ctx, p),
            Payload::PostResult(p) => self.post_result(signer, ctx, p),
            Payload::RecordAccess(p) => self.record_access(signer, key, nonce, ctx, p),
            Payload::AttestDestruction(p) => self.attest_destruction(signer, ctx, p),
            Payload::Settle(p) => self.settle(signer, ctx, p),
            Payload::CloseRound(p) => self.close_round(signer, ctx, p),
            Payload::RebindPatient(p) => self.rebind_patient(signer, ctx, p),
            Payload::CancelRebind(p) => self.cancel_rebind(signer, ctx, p),
            Payload::CompleteRebind(p) => self.complete_rebind(signer, key, ctx, p),
            Payload::PublishRelease(p) => self.publish_release(signer, ctx, p),
            Payload::DeliverRelease(p) => self.deliver_release(signer, key, nonce, ctx, p),
            Payload::RecordAlert(p) => self.record_alert(signer, ctx, p),
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
            Principal::Node(id) => {
                let m = self.active_member(&id)?;
                // A replaced node key is retired; this holds also for a record written before
                // the check existed.
                if m.member.node_key != *key {
                    return Err(TxError::RetiredKey { key: key.to_hex() });
                }
                Ok(Signer::Node(m))
            }
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
}
