//! Patient grants: a patient authorizes an institution to fetch some of their records from
//! another, and may revoke it.

use super::{Created, Receipt, Signer, derive_unguessable_id, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    pub(super) fn issue_grant(
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
        check_resource_types(&p.resource_types)?;
        let id = GrantId(derive_unguessable_id(b"grant", key, nonce, &p.code_hash.0));
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

    pub(super) fn revoke_grant(
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
}

/// Every resource type is a FHIR resource type name: up to 48 ASCII letters and digits,
/// starting with a capital.
fn check_resource_types(types: &List<Text<48>, 32>) -> Result<(), TxError> {
    for t in types {
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
    Ok(())
}
