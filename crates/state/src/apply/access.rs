//! Record-level access audit: a data holder records each delivery (under a patient's grant or a
//! record-sharing contract) and the recipient attests the copy's destruction.

use super::{Created, Receipt, Signer, derive_unguessable_id, forbidden, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    pub(super) fn record_access(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &RecordAccess,
    ) -> Result<Receipt, TxError> {
        // The node that delivers records it: by the holder's node key only.
        let Signer::Node(holder) = signer else {
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
            AccessBasis::Grant(gid) => self.redeem_grant(*gid, &holder, ctx, p)?,
            AccessBasis::Contract(cid) => self.check_sharing_contract(*cid, &holder, ctx, p)?,
        }
        let id = AccessId(derive_unguessable_id(
            b"access",
            key,
            nonce,
            &p.content_hash.0,
        ));
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

    /// A delivery under a patient's grant: the grant must be this patient's, for records of
    /// `holder` going to the recipient, unrevoked, unexpired, not used up, and cover every
    /// resource type delivered. Counts one use.
    fn redeem_grant(
        &mut self,
        gid: GrantId,
        holder: &MemberId,
        ctx: &BlockContext,
        p: &RecordAccess,
    ) -> Result<(), TxError> {
        let mut g = self.grant(gid)?.ok_or_else(|| not_found("grant", gid))?;
        let t = &g.terms;
        if g.patient != p.patient {
            return Err(TxError::OutOfScope {
                reason: format!("grant {gid} is another patient's"),
            });
        }
        if t.holder != *holder {
            return Err(TxError::OutOfScope {
                reason: format!("grant {gid} is for records held by `{}`", t.holder),
            });
        }
        if t.grantee != p.recipient {
            return Err(TxError::OutOfScope {
                reason: format!("grant {gid} is for `{}`, not `{}`", t.grantee, p.recipient),
            });
        }
        match crate::policy::grant_live(&g, ctx.time_ms) {
            Ok(()) => {}
            Err(crate::policy::GrantRefusal::Expired { expiry_ms, .. }) => {
                return Err(TxError::Expired {
                    what: "grant",
                    id: gid.to_string(),
                    expiry_ms,
                    now_ms: ctx.time_ms,
                });
            }
            Err(other) => return Err(forbidden(other.to_string())),
        }
        for rt in &p.resource_types {
            if !t.resource_types.iter().any(|x| x == rt) {
                return Err(TxError::OutOfScope {
                    reason: format!("resource type `{rt}` is not granted by {gid}"),
                });
            }
        }
        // FIXME(overflow): with max_uses = 0 (unlimited) this u32 overflows after 2^32
        // deliveries (a panic in debug builds, a wrap in release); bounded when max_uses > 0
        // (uses < max_uses, checked above). Saturating would change the root at that point, so
        // it is a decision of its own, not a refactor's.
        g.uses += 1;
        self.put(&keys::grant(gid), &g)
    }

    /// A delivery under a data-use contract: active, in record-sharing mode, held by the
    /// recipient, with `holder` among its data owners, and allowed by the patient's consent.
    fn check_sharing_contract(
        &self,
        cid: ContractId,
        holder: &MemberId,
        ctx: &BlockContext,
        p: &RecordAccess,
    ) -> Result<(), TxError> {
        let c = self
            .contract(cid)?
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
        if !c.owners.iter().any(|o| o == holder) {
            return Err(TxError::OutOfScope {
                reason: format!("member `{holder}` holds no data of contract {cid}"),
            });
        }
        if !self.consent_allows(&p.patient, c.purpose, c.study.as_ref(), c.level, ctx.height)? {
            return Err(TxError::NoConsent {
                patient: p.patient.to_string(),
                purpose: c.purpose.to_string(),
                level: c.level,
            });
        }
        Ok(())
    }

    pub(super) fn attest_destruction(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &AttestDestruction,
    ) -> Result<Receipt, TxError> {
        // The recipient institution attests: its member key, its node, or one of its users.
        let member = match &signer {
            Signer::Member(m) | Signer::Node(m) => m.member.id.clone(),
            Signer::User(u) => u.member.clone(),
            other => {
                return Err(TxError::WrongSigner {
                    kind: "attest_destruction",
                    need: "the recipient institution",
                    have: other.describe(),
                });
            }
        };
        let Some(mut a) = self.access(p.access)? else {
            // Not a record copy: a delivered release of the open pool, or nothing.
            return self
                .attest_delivery_destroyed(&member, p.access, ctx)?
                .ok_or_else(|| not_found("access", p.access));
        };
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
}
