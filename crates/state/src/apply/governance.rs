//! Governance: proposals and 2/3 member votes (admit or remove a member, replace the policy,
//! appoint a user to a consortium role or dismiss a user), user registration and key rotation.
//!
//! Who registers whom: a member registers its own institutional users (steward, researcher,
//! clinician, claims officer) by its own key, and a regulator also its own auditors. The
//! consortium's roles — data committee, ethics committee, and auditors anywhere else — are
//! appointed only by a passed `AppointUser` proposal, so no institution can mint the reviewers
//! of its own requests.

use super::{Created, Event, Receipt, Signer, derive_id, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    pub(super) fn propose(
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
            GovAction::AppointUser(_) => "appoint_user",
            GovAction::DismissUser(_) => "dismiss_user",
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
                if !a.member.node_key.is_valid() {
                    return Err(invalid("node_key", "not a valid ed25519 public key"));
                }
                if a.member.node_key == a.member.key {
                    return Err(invalid(
                        "node_key",
                        "the node key must differ from the member key",
                    ));
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
                if self.key_record(&a.member.node_key)?.is_some() {
                    return Err(invalid(
                        "node_key",
                        "already registered to another principal",
                    ));
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
                if p.max_job_epsilon_micro == 0 || p.dataset_epsilon_micro == 0 {
                    return Err(invalid(
                        "policy",
                        "the epsilon caps must allow some epsilon (0 would stop every job)",
                    ));
                }
            }
            GovAction::AppointUser(a) => {
                let member = self.active_member(&a.member)?;
                if !crate::policy::is_consortium_role(a.role) {
                    return Err(invalid(
                        "role",
                        format!(
                            "{} is an institutional role: the member registers it (register_user)",
                            a.role
                        ),
                    ));
                }
                if a.role == Role::Auditor && member.member.kind != MemberKind::Regulator {
                    return Err(invalid("role", "auditors belong to a regulator member"));
                }
                self.check_new_user(&a.user, &a.key)?;
            }
            GovAction::DismissUser(d) => {
                let user = self
                    .user(&d.user)?
                    .ok_or_else(|| not_found("user", &d.user))?;
                if self.key_record(&user.key)?.is_some_and(|k| k.retired) {
                    return Err(forbidden(format!("user `{}` is already dismissed", d.user)));
                }
            }
        }
        Ok(())
    }

    /// A new user's id is free and its key valid and unused.
    fn check_new_user(&self, user: &UserId, key: &PublicKey) -> Result<(), TxError> {
        if !key.is_valid() {
            return Err(invalid("key", "not a valid ed25519 public key"));
        }
        if self.user(user)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "user",
                id: user.to_string(),
            });
        }
        if self.key_record(key)?.is_some() {
            return Err(invalid("key", "already registered to another principal"));
        }
        Ok(())
    }

    /// Writes a user and its key's record.
    fn put_user(&mut self, rec: &UserRecord) -> Result<(), TxError> {
        self.put(&keys::user(&rec.id), rec)?;
        self.put(
            &keys::principal(&rec.key),
            &KeyRecord {
                principal: Principal::User(rec.id.clone()),
                retired: false,
                nonce: 0,
            },
        )
    }

    pub(super) fn vote(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        v: &Vote,
    ) -> Result<Receipt, TxError> {
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
        // INVARIANT: no product overflows u64: num and den are u32, the vote lists hold at most
        // 256 members, and the member count n stays far below 2^32 (each member was admitted
        // by its own vote).
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
                self.put(
                    &keys::principal(&m.node_key),
                    &KeyRecord {
                        principal: Principal::Node(m.id.clone()),
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
            GovAction::AppointUser(a) => self.put_user(&UserRecord {
                id: a.user.clone(),
                member: a.member.clone(),
                role: a.role,
                key: a.key.clone(),
            })?,
            GovAction::DismissUser(d) => {
                let user = self
                    .user(&d.user)?
                    .ok_or_else(|| not_found("user", &d.user))?;
                let mut rec = self
                    .key_record(&user.key)?
                    .ok_or_else(|| not_found("key", &user.key))?;
                rec.retired = true;
                self.put(&keys::principal(&user.key), &rec)?;
            }
        }
        Ok(())
    }

    pub(super) fn register_user(
        &mut self,
        signer: Signer,
        p: &RegisterUser,
    ) -> Result<Receipt, TxError> {
        let Signer::Member(m) = signer else {
            return Err(TxError::WrongSigner {
                kind: "register_user",
                need: "a member institution's key",
                have: signer.describe(),
            });
        };
        match p.role {
            Role::Patient => {
                return Err(invalid(
                    "role",
                    "patients register themselves with register_patient",
                ));
            }
            Role::Auditor if m.member.kind == MemberKind::Regulator => {}
            role if crate::policy::is_consortium_role(role) => {
                return Err(forbidden(format!(
                    "{role} is a consortium role: it is appointed by a governance vote (appoint_user), not registered by `{}`",
                    m.member.id
                )));
            }
            _ => {}
        }
        self.check_new_user(&p.user, &p.key)?;
        self.put_user(&UserRecord {
            id: p.user.clone(),
            member: m.member.id.clone(),
            role: p.role,
            key: p.key.clone(),
        })?;
        Ok(Receipt::new("register_user"))
    }

    pub(super) fn rotate_key(
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
        if self.key_taken(&p.new_key)? {
            return Err(invalid(
                "new_key",
                "already registered, or waiting to take over a patient",
            ));
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
            // A node key does not rotate itself: its member replaces it (`RotateNodeKey`), so
            // a compromised node cannot keep its key away from the member.
            Signer::Node(m) => {
                return Err(TxError::WrongSigner {
                    kind: "rotate_key",
                    need: "the key's owner (a node key is replaced by its member's key: rotate_node_key)",
                    have: Signer::Node(m).describe(),
                });
            }
            Signer::Unknown => return Err(TxError::UnknownSigner { key: old.to_hex() }),
        };
        self.put(
            &keys::principal(old),
            &KeyRecord {
                principal: principal.clone(),
                retired: true,
                // INVARIANT: `nonce` is the key's current nonce, which `take_nonce` already
                // incremented without overflow.
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

    /// A member replaces its node key: signed by the member key, with the new key's proof of
    /// possession; the old node key is retired and never signs again.
    pub(super) fn rotate_node_key(
        &mut self,
        signer: Signer,
        member_key: &PublicKey,
        nonce: u64,
        p: &RotateNodeKey,
    ) -> Result<Receipt, TxError> {
        let Signer::Member(mut m) = signer else {
            return Err(TxError::WrongSigner {
                kind: "rotate_node_key",
                need: "the member's own key (its member key)",
                have: signer.describe(),
            });
        };
        let chain = self.chain_id()?;
        if !p.new_key.verify(
            ROTATE_NODE_NAMESPACE,
            &rotation_message(&chain, member_key, nonce),
            &p.proof,
        ) {
            return Err(invalid(
                "proof",
                "the new node key's signature over the rotation does not verify",
            ));
        }
        if self.key_record(&p.new_key)?.is_some() {
            return Err(invalid("new_key", "already registered to a principal"));
        }
        let old = m.member.node_key.clone();
        let mut old_rec = self
            .key_record(&old)?
            .ok_or_else(|| not_found("key", &old))?;
        old_rec.retired = true;
        self.put(&keys::principal(&old), &old_rec)?;
        m.member.node_key = p.new_key.clone();
        self.put(&keys::member(&m.member.id), &m)?;
        self.put(
            &keys::principal(&p.new_key),
            &KeyRecord {
                principal: Principal::Node(m.member.id),
                retired: false,
                nonce: 0,
            },
        )?;
        Ok(Receipt::new("rotate_node_key"))
    }
}
