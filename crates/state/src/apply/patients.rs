//! Patients: registration under a pseudonym (attested by a hospital that verified the person),
//! the patient's log, and consent (broad or per study, with the L4 opt-in and a bounded
//! history).

use super::{Created, Receipt, Signer, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::policy::{ConsentView, consent_allows};
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

/// Patients whose consents a plan reads in one walk ([`State::consents_allow`]): large enough
/// that the walk's upper nodes are read once per batch, not once per patient; small enough
/// that a batch's keys and records take a few MiB.
pub const CONSENT_BATCH: usize = 1 << 16;

impl State {
    pub(super) fn register_patient(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        ctx: &BlockContext,
        p: &RegisterPatient,
    ) -> Result<Receipt, TxError> {
        if !matches!(signer, Signer::Unknown) || self.key_taken(key)? {
            return Err(invalid(
                "key",
                "already registered, or waiting to take over a patient",
            ));
        }
        self.check_patient_attestation(key, p)?;
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
                hospital: p.hospital.clone(),
                rebinding: None,
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

    /// A registration's attestation: by an active hospital member's key, over this chain and
    /// the registering key. A fresh key alone proves nothing; a hospital that verified the
    /// person attests it, so registrations cannot be minted in bulk by whoever holds keys.
    pub(crate) fn check_patient_attestation(
        &self,
        key: &PublicKey,
        p: &RegisterPatient,
    ) -> Result<(), TxError> {
        let hospital = self.active_member(&p.hospital)?;
        if hospital.member.kind != MemberKind::Hospital {
            return Err(forbidden(format!(
                "`{}` is a {}, not a hospital: only a hospital attests a patient",
                p.hospital, hospital.member.kind
            )));
        }
        let chain = self.chain_id()?;
        let message = patient_attestation_message(&chain, key);
        let attested = self
            .key_cache
            .verifier(&hospital.member.key)
            .is_some_and(|k| {
                commonware_cryptography::Verifier::verify(
                    &k,
                    PATIENT_ATTESTATION_NAMESPACE,
                    &message,
                    &p.attestation.0,
                )
            });
        if !attested {
            return Err(invalid(
                "attestation",
                format!(
                    "not `{}`'s member key's signature over this chain and patient key",
                    p.hospital
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn patient_signer(signer: Signer, kind: &'static str) -> Result<PatientId, TxError> {
        match signer {
            Signer::Patient(id) => Ok(id),
            other => Err(TxError::WrongSigner {
                kind,
                need: "the patient's key",
                have: other.describe(),
            }),
        }
    }

    pub(super) fn log(
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
        // INVARIANT: one entry per applied transaction; no log reaches 2^64 entries.
        rec.log_len += 1;
        self.put(&keys::patient(patient), &rec)
    }

    pub(super) fn set_consent(
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

    pub(super) fn revoke_consent(
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
        let policy = self.policy()?;
        self.consent_allows_under(&policy, patient, purpose, study, level, height)
    }

    /// [`State::consent_allows`] for many patients at once, in the order given: the policy is
    /// read once, and each batch of patients' consents is read in one walk of the trie
    /// ([`crate::trie::Trie::visit_many`]) rather than one walk from the root per consent (what
    /// a worker's plan over a million linked patients needs). Patients given in pseudonym
    /// order make each batch one stretch of the consent table. `batch` patients are read per
    /// walk (at least one; [`CONSENT_BATCH`] is what a plan uses).
    pub fn consents_allow<'a>(
        &self,
        patients: impl IntoIterator<Item = &'a PatientId>,
        purpose: Purpose,
        study: Option<&StudyId>,
        level: Level,
        height: u64,
        batch: usize,
    ) -> Result<Vec<bool>, TxError> {
        let policy = self.policy()?;
        let mut patients = patients.into_iter().peekable();
        let mut allowed = Vec::with_capacity(patients.size_hint().0);
        // Each patient's broad consent, then (for a study) the study's, read together a batch
        // at a time (so memory stays that of one batch however many patients).
        let per = if study.is_some() { 2 } else { 1 };
        while patients.peek().is_some() {
            let keys: Vec<Vec<u8>> = patients
                .by_ref()
                .take(batch.max(1))
                .flat_map(|p| {
                    let study = study.map(|s| keys::consent(p, purpose, Some(s)));
                    std::iter::once(keys::consent(p, purpose, None)).chain(study)
                })
                .collect();
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let mut records: Vec<Option<ConsentRecord>> = keys.iter().map(|_| None).collect();
            self.visit_many(&refs, |i, record| {
                if let Some(slot) = records.get_mut(i) {
                    *slot = Some(record);
                }
            })?;
            allowed.extend(records.chunks(per).map(|pair| {
                let view = ConsentView {
                    broad: pair.first().and_then(Option::as_ref),
                    study: pair.get(1).and_then(Option::as_ref),
                };
                consent_allows(&policy, purpose, level, view, height)
            }));
        }
        Ok(allowed)
    }

    fn consent_allows_under(
        &self,
        policy: &Policy,
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
        Ok(consent_allows(
            policy,
            purpose,
            level,
            ConsentView {
                study: specific.as_ref(),
                broad: broad.as_ref(),
            },
            height,
        ))
    }
}
