//! A patient's side of a running consortium — authorization codes, the proven log, the complete
//! record — and a grantee's redemption of a code at the holding hospital's node.

use crate::remote::Remote;
use crate::{ClientError, Result};
use medspace_state::records::{AccessRecord, LogEntry, PatientEvent};
use medspace_state::{Proven, State};
use medspace_types::*;
use serde_json::Value;

/// What a patient grants; the authorization code is made by [`GrantTerms::with_new_code`].
pub struct GrantTerms {
    /// Who may fetch.
    pub grantee: MemberId,
    /// The hospital holding the records.
    pub holder: MemberId,
    /// Why.
    pub purpose: Purpose,
    /// FHIR resource types covered.
    pub types: Vec<String>,
    /// Records dated within (ms since the epoch, inclusive).
    pub period_ms: (u64, u64),
    /// The grant ends at this block time.
    pub expiry_ms: u64,
    /// Redemptions allowed (0 = unlimited until expiry).
    pub max_uses: u32,
}

impl GrantTerms {
    /// The grant with a fresh authorization code: the payload `patient` signs, carrying only
    /// the code's hash (all the ledger ever sees of it), and the code to hand over.
    pub fn with_new_code(
        self,
        patient: &PatientId,
    ) -> Result<(Payload, medspace_patient::AuthCode)> {
        let code = medspace_patient::AuthCode::generate();
        let types = self
            .types
            .iter()
            .map(|t| Text::new(t.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let payload = Payload::IssueGrant(IssueGrant {
            grantee: self.grantee,
            holder: self.holder,
            purpose: self.purpose,
            resource_types: List::new(types)?,
            period_from_ms: self.period_ms.0,
            period_to_ms: self.period_ms.1,
            expiry_ms: self.expiry_ms,
            max_uses: self.max_uses,
            code_hash: code.hash(patient),
        });
        Ok((payload, code))
    }
}

/// Redeems `code` for `grant` at the holding hospital's node, signed by the grantee's `key` for
/// that node only, with the height this client has seen (so the holder catches up to a grant
/// just issued before judging): the node's status and body (the Bundle, or why it refused).
pub fn redeem_request(
    ledger: &Remote,
    holder: &MemberId,
    key: &Keypair,
    grant: GrantId,
    code: &str,
) -> Result<(u16, Vec<u8>)> {
    let body = serde_json::to_vec(
        &serde_json::json!({ "grant": grant, "code": code, "after_height": ledger.height() }),
    )
    .map_err(|e| ClientError::Missing(e.to_string()))?;
    ledger.post_signed(holder, "/v1/records/redeem", &body, key)
}

pub use crate::error_reason;

/// The access record on the ledger for `delivered` bytes of `patient`'s record (after
/// catching up): a delivery without one is refused.
pub fn access_for(
    ledger: &mut Remote,
    patient: &PatientId,
    delivered: &[u8],
) -> Result<AccessRecord> {
    let hash = medspace_worker::records::delivery_hash(delivered);
    ledger.catch_up()?;
    ledger
        .state()
        .accesses_of(patient)?
        .into_iter()
        .find(|a| a.record.content_hash == hash)
        .map(|a| a.record)
        .ok_or_else(|| {
            ClientError::Verification(
                "no access record on the ledger matches what was delivered".into(),
            )
        })
}

/// Redeems a grant and checks the delivery against its access record: the Bundle's bytes and
/// the record.
pub fn redeem(
    ledger: &mut Remote,
    key: &Keypair,
    grant: GrantId,
    code: &str,
) -> Result<(Vec<u8>, AccessRecord)> {
    let rec = ledger
        .state()
        .grant(grant)?
        .ok_or_else(|| ClientError::Missing(format!("grant {grant} is not on the ledger")))?;
    let (status, bytes) = redeem_request(ledger, &rec.terms.holder, key, grant, code)?;
    if status != 200 {
        return Err(ClientError::Refused {
            what: format!("the redemption at {}", rec.terms.holder),
            status,
            reason: error_reason(&bytes),
        });
    }
    let access = access_for(ledger, &rec.patient, &bytes)?;
    Ok((bytes, access))
}

/// One entry of a patient's log, its proof checked against the state root.
pub struct LogLine {
    /// The block that recorded it.
    pub height: u64,
    /// What happened, in words.
    pub what: String,
    /// Steps of its inclusion proof.
    pub proof_steps: usize,
}

/// `patient`'s log from the verified `state`, each entry's proof checked against its root.
pub fn log(state: &State, patient: &PatientId) -> Result<Vec<LogLine>> {
    log_lines(
        &state.root(),
        &state.patient_log(patient)?,
        &state.accesses_of(patient)?,
    )
}

fn proof_failed(what: &str) -> impl Fn(medspace_state::trie::ProofError) -> ClientError + '_ {
    move |e| ClientError::Verification(format!("{what} failed its proof: {e}"))
}

/// The first 12 hex digits of a key: enough to recognize it.
fn short_key(k: &medspace_types::PublicKey) -> String {
    k.to_hex().chars().take(12).collect()
}

/// A patient's log entries and the record accesses they name, each proof checked against
/// `root`, in words.
pub fn log_lines(
    root: &Hash,
    entries: &[Proven<LogEntry>],
    accesses: &[Proven<AccessRecord>],
) -> Result<Vec<LogLine>> {
    for a in accesses {
        a.verify(root).map_err(proof_failed("an access record"))?;
    }
    let mut out = Vec::new();
    for entry in entries {
        entry.verify(root).map_err(proof_failed("a log entry"))?;
        let what = match &entry.record.event {
            PatientEvent::Consent(c) => format!(
                "consent {} {} {}",
                c.purpose,
                c.study
                    .as_ref()
                    .map_or("(all studies)".into(), |s| s.to_string()),
                c.state
            ),
            PatientEvent::GrantIssued(g) => format!("grant {g} issued"),
            PatientEvent::GrantRevoked(g) => format!("grant {g} revoked"),
            PatientEvent::Accessed(a) => {
                let rec = accesses
                    .iter()
                    .find(|p| &p.record.id == a)
                    .map(|p| &p.record)
                    .ok_or_else(|| ClientError::Missing(format!("access {a} missing")))?;
                format!(
                    "records delivered by {} to {} under {:?} ({} resources, hash {})",
                    rec.holder, rec.recipient, rec.basis, rec.resource_count, rec.content_hash
                )
            }
            PatientEvent::Destroyed(a) => format!("copy of {a} destroyed"),
            PatientEvent::RebindAsked(r) => format!(
                "{} asked to re-bind this pseudonym to key {}…; the current key may veto until block time {} ms",
                r.hospital,
                short_key(&r.new_key),
                r.effective_ms
            ),
            PatientEvent::RebindCancelled(r) => format!(
                "re-binding to key {}… through {} cancelled",
                short_key(&r.new_key),
                r.hospital
            ),
            PatientEvent::Rebound(r) => format!(
                "key re-bound through {} to {}…; the old key is retired",
                r.hospital,
                short_key(&r.new_key)
            ),
        };
        out.push(LogLine {
            height: entry.record.height,
            what,
            proof_steps: entry.proof.path.len(),
        });
    }
    Ok(out)
}

/// The aggregate jobs that may have counted `patient`: jobs under contracts covering one of
/// `holders` (the hospitals holding the patient's records) whose purpose, study and level the
/// patient's consent allowed at the job's height (the ledger never learns who was in a cohort;
/// only aggregates left the hospitals). Each job record is proven against the root.
pub fn jobs_that_may_have_counted(
    state: &State,
    patient: &PatientId,
    holders: &[MemberId],
) -> Result<Vec<LogLine>> {
    job_lines(
        &state.root(),
        &state.jobs_that_may_have_counted(patient, holders)?,
    )
}

/// Jobs that may have counted a patient, each job and contract proof checked against `root`,
/// in words.
pub fn job_lines(root: &Hash, jobs: &[medspace_state::CountedJob]) -> Result<Vec<LogLine>> {
    let mut out = Vec::new();
    for counted in jobs {
        counted
            .job
            .verify(root)
            .map_err(proof_failed("a job record"))?;
        counted
            .contract
            .verify(root)
            .map_err(proof_failed("a contract record"))?;
        let (job, c) = (&counted.job.record, &counted.contract.record);
        if job.contract != c.id || !c.owners.iter().any(|o| *o == counted.at) {
            return Err(ClientError::Verification(format!(
                "job {} is listed with a contract that is not its own",
                job.id
            )));
        }
        let outcome = match &job.result {
            Some(r) => format!(
                "aggregate result {} posted by {}, {} institutions contributed",
                r.result_hash,
                r.posted_by,
                r.contributions.len()
            ),
            None => "running".to_string(),
        };
        out.push(LogLine {
            height: job.submitted_height,
            what: format!(
                "job {} under {} ({} {}) may have counted you at {}: your consent allowed it; {outcome}",
                job.id,
                c.id,
                c.purpose,
                c.study
                    .as_ref()
                    .map_or("(no study)".into(), |s| s.to_string()),
                counted.at,
            ),
            proof_steps: counted.job.proof.path.len(),
        });
    }
    Ok(out)
}

/// A signed `GET` of a path at a member's node: the answer's status and body.
pub type SignedGet<'a> = dyn Fn(&MemberId, &str) -> Result<(u16, Vec<u8>)> + 'a;

/// A patient's complete record, merged from every hospital holding one.
pub struct ExportedRecord {
    /// One FHIR R4 Bundle (`collection`).
    pub bundle: Value,
    /// The hospitals that answered with a record, and how many resources each added.
    pub from: Vec<(String, usize)>,
    /// Nodes that could not be reached (any record held there is missing).
    pub unreachable: Vec<String>,
}

/// The active hospital members of the consortium: where a patient's records may be held when
/// their wallet names no hospital.
pub fn hospitals(state: &medspace_state::State) -> Result<Vec<MemberId>> {
    Ok(state
        .members()?
        .into_iter()
        .filter(|m| m.active && m.member.kind == MemberKind::Hospital)
        .map(|m| m.member.id)
        .collect())
}

/// Downloads the patient's record from each of `holders` (the hospitals that hold it) with
/// `get` (a `GET` at a member's node, signed by the patient's own key for that node only), and
/// merges the Bundles, each resource once. Nothing is asked of any other node.
pub fn export_record(get: &SignedGet<'_>, holders: &[MemberId]) -> Result<ExportedRecord> {
    let mut entries: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut from = Vec::new();
    let mut unreachable = Vec::new();
    for holder in holders {
        let (status, bytes) = match get(holder, "/v1/records/export") {
            Ok(answer) => answer,
            Err(e) => {
                unreachable.push(format!("{holder}: {e}"));
                continue;
            }
        };
        if status != 200 {
            continue; // no record there (or no record service)
        }
        let bundle: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Verification(format!("{holder} sent a malformed Bundle: {e}"))
        })?;
        let mut n = 0;
        for e in bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let url = e
                .get("fullUrl")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if url.is_empty() || seen.insert(url) {
                entries.push(e.clone());
                n += 1;
            }
        }
        from.push((holder.to_string(), n));
    }
    if from.is_empty() {
        return Err(ClientError::Missing(
            "no hospital holds a record of this patient".into(),
        ));
    }
    Ok(ExportedRecord {
        bundle: serde_json::json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": entries,
        }),
        from,
        unreachable,
    })
}
