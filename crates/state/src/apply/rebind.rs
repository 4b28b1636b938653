//! Re-binding a patient who lost their key: the hospital that registered them verifies the
//! person again and asks, the patient's current key may veto during the policy's delay, and the
//! new key then takes over the same pseudonym (its whole history kept, the old key retired).
//!
//! Why three steps rather than one: a hospital's steward alone must not be able to take over a
//! patient (and with it their grants and their record exports). The delay gives a patient who
//! still holds their key — the key was stolen, not lost, or the hospital acts without them —
//! the time to refuse; the new key's own signature at the end shows its holder is there.

use super::{Receipt, Signer, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    /// Whether `key` is spoken for: registered to a principal, or waiting to take over a patient.
    pub(super) fn key_taken(&self, key: &PublicKey) -> Result<bool, TxError> {
        Ok(self.key_record(key)?.is_some() || self.rebind_of(key)?.is_some())
    }

    /// The pending re-binding to `new_key`, if any.
    pub fn rebind_of(&self, new_key: &PublicKey) -> Result<Option<RebindRecord>, TxError> {
        self.get(&keys::rebind(new_key))
    }

    pub(super) fn rebind_patient(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &RebindPatient,
    ) -> Result<Receipt, TxError> {
        let steward = match signer {
            Signer::User(u) if u.role == Role::Steward => u,
            other => {
                return Err(TxError::WrongSigner {
                    kind: "rebind_patient",
                    need: "a steward of the hospital that registered the patient",
                    have: other.describe(),
                });
            }
        };
        let mut rec = self
            .patient(&p.patient)?
            .ok_or_else(|| not_found("patient", p.patient))?;
        if steward.member != rec.hospital {
            return Err(forbidden(format!(
                "only `{}`, the hospital that registered this patient, may re-bind their key",
                rec.hospital
            )));
        }
        if rec.rebinding.is_some() {
            return Err(forbidden(
                "a re-binding of this patient is already pending: cancel it first",
            ));
        }
        if self.key_taken(&p.new_key)? {
            return Err(invalid(
                "new_key",
                "already registered, or waiting to take over a patient",
            ));
        }
        let chain = self.chain_id()?;
        if !p.new_key.verify(
            REBIND_NAMESPACE,
            &rebind_message(&chain, &rec.hospital, &p.new_key),
            &p.proof,
        ) {
            return Err(invalid(
                "proof",
                format!(
                    "not the new key's claim for a re-binding through `{}` on this chain",
                    rec.hospital
                ),
            ));
        }
        let effective_ms = ctx.time_ms.saturating_add(self.policy()?.rebind_delay_ms);
        self.put(
            &keys::rebind(&p.new_key),
            &RebindRecord {
                patient: p.patient,
                hospital: rec.hospital.clone(),
                steward: steward.id.clone(),
                requested_ms: ctx.time_ms,
                effective_ms,
            },
        )?;
        rec.rebinding = Some(p.new_key.clone());
        let event = RebindEvent {
            hospital: rec.hospital.clone(),
            new_key: p.new_key.clone(),
            effective_ms,
        };
        self.put(&keys::patient(&p.patient), &rec)?;
        self.log(&p.patient, ctx, PatientEvent::RebindAsked(event))?;
        Ok(Receipt::new("rebind_patient"))
    }

    /// The patient's pending re-binding: its record and the new key.
    fn pending_rebind(
        &self,
        patient: &PatientId,
    ) -> Result<(PatientRecord, PublicKey, RebindRecord), TxError> {
        let rec = self
            .patient(patient)?
            .ok_or_else(|| not_found("patient", patient))?;
        let new_key = rec
            .rebinding
            .clone()
            .ok_or_else(|| not_found("pending re-binding", patient))?;
        let pending = self
            .rebind_of(&new_key)?
            .ok_or(TxError::Corrupt { table: tag::REBIND })?;
        Ok((rec, new_key, pending))
    }

    pub(super) fn cancel_rebind(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &CancelRebind,
    ) -> Result<Receipt, TxError> {
        let (mut rec, new_key, pending) = self.pending_rebind(&p.patient)?;
        let allowed = match &signer {
            Signer::Patient(id) => *id == p.patient,
            Signer::User(u) => u.role == Role::Steward && u.member == pending.hospital,
            _ => false,
        };
        if !allowed {
            return Err(TxError::WrongSigner {
                kind: "cancel_rebind",
                need: "the patient's current key, or a steward of the hospital that asked",
                have: signer.describe(),
            });
        }
        self.delete(&keys::rebind(&new_key))?;
        rec.rebinding = None;
        self.put(&keys::patient(&p.patient), &rec)?;
        self.log(
            &p.patient,
            ctx,
            PatientEvent::RebindCancelled(RebindEvent {
                hospital: pending.hospital,
                new_key,
                effective_ms: pending.effective_ms,
            }),
        )?;
        Ok(Receipt::new("cancel_rebind"))
    }

    pub(super) fn complete_rebind(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        ctx: &BlockContext,
        p: &CompleteRebind,
    ) -> Result<Receipt, TxError> {
        let (mut rec, new_key, pending) = self.pending_rebind(&p.patient)?;
        if !matches!(signer, Signer::Unknown) || *key != new_key {
            return Err(TxError::WrongSigner {
                kind: "complete_rebind",
                need: "the new key of the patient's pending re-binding",
                have: signer.describe(),
            });
        }
        if ctx.time_ms < pending.effective_ms {
            return Err(forbidden(format!(
                "the re-binding may complete from block time {} ms (the patient's current key may veto it until then); now {} ms",
                pending.effective_ms, ctx.time_ms
            )));
        }
        let old_key = rec.key.clone();
        let old = self
            .key_record(&old_key)?
            .ok_or(TxError::Corrupt { table: tag::KEY })?;
        self.put(
            &keys::principal(&old_key),
            &KeyRecord {
                retired: true,
                ..old
            },
        )?;
        self.put(
            &keys::principal(&new_key),
            &KeyRecord {
                principal: Principal::Patient(p.patient),
                retired: false,
                // The completion itself used nonce 0.
                nonce: 1,
            },
        )?;
        self.delete(&keys::rebind(&new_key))?;
        rec.key = new_key.clone();
        rec.rebinding = None;
        self.put(&keys::patient(&p.patient), &rec)?;
        self.log(
            &p.patient,
            ctx,
            PatientEvent::Rebound(RebindEvent {
                hospital: pending.hospital,
                new_key,
                effective_ms: pending.effective_ms,
            }),
        )?;
        Ok(Receipt::new("complete_rebind"))
    }
}
