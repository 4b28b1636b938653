//! Read-only queries the later layers need, each answered from one state.

use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{State, decode};
use crate::trie::Proof;
use medspace_types::{ContractId, GrantId, MemberId, PatientId, UserId};
use serde::Serialize;

/// A record with the proof that it is in the state whose root is `root`.
#[derive(Clone, Debug, Serialize)]
pub struct Proven<T> {
    /// The record.
    pub record: T,
    /// Its key in the trie (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// Its canonical encoding (what the proof covers).
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    /// The inclusion proof.
    pub proof: Proof,
}

/// A proven open-pool delivery and when its destruction is due (`None` once attested).
pub type DueDelivery = (Proven<DeliveryRecord>, Option<u64>);

impl<T> Proven<T> {
    /// Checks the proof against a trusted root.
    pub fn verify(&self, root: &medspace_types::Hash) -> Result<(), crate::trie::ProofError> {
        self.proof.verify(root, &self.key, &self.value)
    }
}

/// A job that may have counted a patient, with its contract, both proven, and the hospital
/// through which (one of the contract's data holders that holds the patient's record).
#[derive(Clone, Debug, Serialize)]
pub struct CountedJob {
    /// The job.
    pub job: Proven<JobRecord>,
    /// Its contract.
    pub contract: Proven<ContractRecord>,
    /// The holder of the patient's record among the contract's data holders.
    pub at: MemberId,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
}

impl State {
    fn proven<T: commonware_codec::Decode<Cfg = ()>>(
        &self,
        key: Vec<u8>,
    ) -> Result<Option<Proven<T>>, TxError> {
        let Some((value, proof)) = self.prove(&key)? else {
            return Ok(None);
        };
        let record = decode(&value, key.first().copied().unwrap_or(0))?;
        Ok(Some(Proven {
            record,
            key,
            value,
            proof,
        }))
    }

    /// Contracts whose status at block time `now_ms` is `status` (`pending`, `active`,
    /// `expired`, `rejected`, `terminated`), or all when `None`.
    pub fn contracts_by_status(
        &self,
        status: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<ContractRecord>, TxError> {
        Ok(self
            .contracts()?
            .into_iter()
            .filter(|c| status.is_none_or(|s| c.status_at(now_ms) == s))
            .collect())
    }

    /// Pending, unexpired contracts that still wait for an approval `user` can give (never a
    /// request of the user's own institution for a consortium slot).
    pub fn approvals_waiting_for(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Vec<ContractRecord>, TxError> {
        let Some(u) = self.user(user)? else {
            return Ok(Vec::new());
        };
        let Some(member) = self.member(&u.member)? else {
            return Ok(Vec::new());
        };
        let kind = member.member.kind;
        Ok(self
            .contracts()?
            .into_iter()
            .filter(|c| {
                c.status == ContractStatus::Pending && now_ms < c.expiry_ms && c.requester != u.id
            })
            .filter(|c| !c.approvals.iter().any(|a| a.by.as_ref() == Some(&u.id)))
            .filter(|c| {
                c.approvals.iter().any(|a| {
                    crate::policy::may_fill(a, u.role, &u.member, kind, &c.requester_member)
                })
            })
            .collect())
    }

    /// A patient's consents, each with its proof.
    pub fn consents_of(&self, patient: &PatientId) -> Result<Vec<Proven<ConsentRecord>>, TxError> {
        let keys: Vec<Vec<u8>> = self
            .scan_raw(&keys::consents_of(patient))?
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.proven(k).transpose())
            .collect()
    }

    /// A patient's log (consent changes, grants, accesses, destructions), each entry with its
    /// proof.
    pub fn patient_log(&self, patient: &PatientId) -> Result<Vec<Proven<LogEntry>>, TxError> {
        let keys: Vec<Vec<u8>> = self
            .scan_raw(&keys::patient_log_of(patient))?
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.proven(k).transpose())
            .collect()
    }

    /// A patient's grants (found through their log), each with its proof.
    pub fn grants_of(&self, patient: &PatientId) -> Result<Vec<Proven<GrantRecord>>, TxError> {
        let mut out = Vec::new();
        for entry in self.patient_log(patient)? {
            if let PatientEvent::GrantIssued(id) = entry.record.event
                && let Some(g) = self.proven::<GrantRecord>(keys::grant(id))?
            {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// Every audit record touching a patient: their record-level accesses, with proofs.
    pub fn accesses_of(&self, patient: &PatientId) -> Result<Vec<Proven<AccessRecord>>, TxError> {
        let mut out = Vec::new();
        for entry in self.patient_log(patient)? {
            if let PatientEvent::Accessed(id) = entry.record.event
                && let Some(a) = self.proven::<AccessRecord>(keys::access(id))?
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Epsilon left on a contract (micro-epsilon), neither spent nor reserved.
    pub fn budget_left(&self, id: ContractId) -> Result<Option<u64>, TxError> {
        Ok(self.contract(id)?.map(|c| c.epsilon_left()))
    }

    /// A contract with its proof.
    pub fn proven_contract(
        &self,
        id: ContractId,
    ) -> Result<Option<Proven<ContractRecord>>, TxError> {
        self.proven(keys::contract(id))
    }

    /// Every record delivery from `holder` (record-level accesses it served), with its proof.
    pub fn proven_deliveries_of(
        &self,
        holder: &MemberId,
    ) -> Result<Vec<Proven<AccessRecord>>, TxError> {
        let mut out = Vec::new();
        for a in self
            .scan::<AccessRecord>(&[tag::ACCESS])?
            .into_iter()
            .filter(|a| &a.holder == holder)
        {
            if let Some(p) = self.proven(keys::access(a.id))? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Every open-pool delivery `member` made or received, with its proof and when its
    /// destruction is due (`None` once attested).
    pub fn proven_release_deliveries(
        &self,
        member: &MemberId,
    ) -> Result<Vec<DueDelivery>, TxError> {
        let mut out = Vec::new();
        for d in self
            .deliveries()?
            .into_iter()
            .filter(|d| &d.holder == member || &d.recipient == member)
        {
            let due = self.destruction_due_ms(&d)?;
            if let Some(p) = self.proven(keys::delivery(&d.recipient, d.id))? {
                out.push((p, due));
            }
        }
        Ok(out)
    }

    /// Every job under `contract`, with its proof, oldest first.
    pub fn proven_jobs_of(&self, contract: ContractId) -> Result<Vec<Proven<JobRecord>>, TxError> {
        let mut out = Vec::new();
        for j in self.jobs()?.into_iter().filter(|j| j.contract == contract) {
            if let Some(p) = self.proven(keys::job(j.id))? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The aggregate jobs that may have counted `patient`: jobs under contracts whose data
    /// holders include one of `holders` (the hospitals holding the patient's records), run while
    /// the patient's consent allowed the contract's purpose, study and level (at the job's
    /// height). The ledger never learns who was in a cohort; this is the most it can say.
    pub fn jobs_that_may_have_counted(
        &self,
        patient: &PatientId,
        holders: &[MemberId],
    ) -> Result<Vec<CountedJob>, TxError> {
        let mut out = Vec::new();
        for job in self.jobs()? {
            let Some(c) = self.contract(job.contract)? else {
                continue;
            };
            let Some(at) = c.owners.iter().find(|o| holders.contains(o)) else {
                continue;
            };
            if !self.consent_allows(
                patient,
                c.purpose,
                c.study.as_ref(),
                c.level,
                job.submitted_height,
            )? {
                continue;
            }
            if let (Some(job), Some(contract)) =
                (self.proven(keys::job(job.id))?, self.proven_contract(c.id)?)
            {
                out.push(CountedJob {
                    job,
                    contract,
                    at: at.clone(),
                });
            }
        }
        Ok(out)
    }

    /// A grant with its proof.
    pub fn proven_grant(&self, id: GrantId) -> Result<Option<Proven<GrantRecord>>, TxError> {
        self.proven(keys::grant(id))
    }

    /// Sum of all balances and escrows: constant over every transaction.
    pub fn total_credits(&self) -> Result<u128, TxError> {
        let balances: Vec<u64> = self.scan(&[tag::BALANCE])?;
        let escrow: u128 = self.contracts()?.iter().map(|c| u128::from(c.escrow)).sum();
        // INVARIANT: sums of u64 values in u128 cannot overflow (that would take 2^64 records).
        Ok(balances.iter().map(|b| u128::from(*b)).sum::<u128>() + escrow)
    }
}
