//! What the state stores, and under which keys.
//!
//! Every record is stored in the authenticated trie under `table tag | key parts`, encoded with
//! the canonical codec, so any record can be proven against the state root. Keys are
//! prefix-free: parts are fixed-size or length-prefixed.

use commonware_codec::{Encode, EncodeSize, Write};
use medspace_types::{
    AccessBasis, AccessId, Blob, ContractId, Contribution, DatasetDescription, DatasetId, Decision,
    FieldRef, GrantId, Hash, IssueGrant, JobId, Level, List, MAX_COMPUTATION, Member, MemberId,
    Mode, PatientId, ProposalId, PublicKey, Purpose, ReleaseFigures, Role, StudyId, Text, UserId,
    codec_enum, codec_struct, unit_enum,
};
use serde::{Deserialize, Serialize};

/// Table tags: the first byte of every key.
pub mod tag {
    /// Chain-wide values (chain id, policy).
    pub const META: u8 = 0x01;
    /// Public key → principal and next nonce.
    pub const KEY: u8 = 0x02;
    /// Member records.
    pub const MEMBER: u8 = 0x04;
    /// Member credit balances.
    pub const BALANCE: u8 = 0x05;
    /// Users.
    pub const USER: u8 = 0x06;
    /// Patients (by pseudonym).
    pub const PATIENT: u8 = 0x07;
    /// Consents: patient | purpose | study.
    pub const CONSENT: u8 = 0x08;
    /// Grants.
    pub const GRANT: u8 = 0x09;
    /// Catalog.
    pub const DATASET: u8 = 0x0a;
    /// Data-use contracts.
    pub const CONTRACT: u8 = 0x0b;
    /// Jobs.
    pub const JOB: u8 = 0x0c;
    /// Record-level accesses.
    pub const ACCESS: u8 = 0x0d;
    /// Governance proposals.
    pub const PROPOSAL: u8 = 0x0e;
    /// A patient's log: patient | sequence.
    pub const PATIENT_LOG: u8 = 0x0f;
    /// Studies, by id: which institution's contracts may name them.
    pub const STUDY: u8 = 0x10;
    /// Each dataset's lifetime epsilon account.
    pub const DATASET_EPSILON: u8 = 0x11;
    /// Pending key re-bindings, by the new key.
    pub const REBIND: u8 = 0x12;
    /// Deliveries of open-pool releases: recipient | access id.
    pub const DELIVERY: u8 = 0x13;
    /// Surveillance alerts: contract | window | syndrome | region | method.
    pub const ALERT: u8 = 0x14;
}

fn key_of(tag: u8, part: &(impl Write + EncodeSize)) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + part.encode_size());
    k.push(tag);
    part.write(&mut k);
    k
}

/// Keys of every table.
pub mod keys {
    use super::*;

    /// The chain id.
    pub fn chain_id() -> Vec<u8> {
        vec![tag::META, 1]
    }
    /// The policy.
    pub fn policy() -> Vec<u8> {
        vec![tag::META, 2]
    }
    /// A public key's principal.
    pub fn principal(key: &PublicKey) -> Vec<u8> {
        key_of(tag::KEY, key)
    }
    /// A member.
    pub fn member(id: &MemberId) -> Vec<u8> {
        key_of(tag::MEMBER, id)
    }
    /// A member's balance.
    pub fn balance(id: &MemberId) -> Vec<u8> {
        key_of(tag::BALANCE, id)
    }
    /// A user.
    pub fn user(id: &UserId) -> Vec<u8> {
        key_of(tag::USER, id)
    }
    /// A patient.
    pub fn patient(id: &PatientId) -> Vec<u8> {
        key_of(tag::PATIENT, id)
    }
    /// A patient's consent for a purpose, broad (`None`) or for one study.
    pub fn consent(patient: &PatientId, purpose: Purpose, study: Option<&StudyId>) -> Vec<u8> {
        // Written as `Option<StudyId>` writes itself, without cloning the study for each of a
        // plan's million keys, into one allocation.
        let mut k = Vec::with_capacity(
            1 + patient.encode_size()
                + purpose.encode_size()
                + 1
                + study.map_or(0, EncodeSize::encode_size),
        );
        k.push(tag::CONSENT);
        patient.write(&mut k);
        purpose.write(&mut k);
        study.is_some().write(&mut k);
        if let Some(study) = study {
            study.write(&mut k);
        }
        k
    }
    /// Prefix of every consent of a patient.
    pub fn consents_of(patient: &PatientId) -> Vec<u8> {
        key_of(tag::CONSENT, patient)
    }
    /// A grant.
    pub fn grant(id: GrantId) -> Vec<u8> {
        key_of(tag::GRANT, &id)
    }
    /// A dataset.
    pub fn dataset(id: &DatasetId) -> Vec<u8> {
        key_of(tag::DATASET, id)
    }
    /// A contract.
    pub fn contract(id: ContractId) -> Vec<u8> {
        key_of(tag::CONTRACT, &id)
    }
    /// A job.
    pub fn job(id: JobId) -> Vec<u8> {
        key_of(tag::JOB, &id)
    }
    /// An access.
    pub fn access(id: AccessId) -> Vec<u8> {
        key_of(tag::ACCESS, &id)
    }
    /// A proposal.
    pub fn proposal(id: ProposalId) -> Vec<u8> {
        key_of(tag::PROPOSAL, &id)
    }
    /// Entry `seq` of a patient's log.
    pub fn patient_log(patient: &PatientId, seq: u64) -> Vec<u8> {
        let mut k = key_of(tag::PATIENT_LOG, patient);
        seq.write(&mut k);
        k
    }
    /// Prefix of a patient's log.
    pub fn patient_log_of(patient: &PatientId) -> Vec<u8> {
        key_of(tag::PATIENT_LOG, patient)
    }
    /// A study.
    pub fn study(id: &StudyId) -> Vec<u8> {
        key_of(tag::STUDY, id)
    }
    /// A dataset's epsilon account.
    pub fn dataset_epsilon(id: &DatasetId) -> Vec<u8> {
        key_of(tag::DATASET_EPSILON, id)
    }
    /// The pending re-binding of a patient to `new_key` (found by the new key's holder, who
    /// may not know the pseudonym).
    pub fn rebind(new_key: &PublicKey) -> Vec<u8> {
        key_of(tag::REBIND, new_key)
    }
    /// A delivery of a release to `recipient`.
    pub fn delivery(recipient: &MemberId, id: AccessId) -> Vec<u8> {
        let mut k = key_of(tag::DELIVERY, recipient);
        id.write(&mut k);
        k
    }
    /// Prefix of the deliveries to `recipient`.
    pub fn deliveries_to(recipient: &MemberId) -> Vec<u8> {
        key_of(tag::DELIVERY, recipient)
    }
    /// An alert of a surveillance contract.
    pub fn alert(a: &AlertRecord) -> Vec<u8> {
        let mut k = key_of(tag::ALERT, &a.contract);
        a.window.write(&mut k);
        a.syndrome.write(&mut k);
        a.region.write(&mut k);
        a.method.write(&mut k);
        k
    }
    /// Prefix of a contract's alerts.
    pub fn alerts_of(contract: ContractId) -> Vec<u8> {
        key_of(tag::ALERT, &contract)
    }
}

/// A surveillance alert as the ledger keeps it ([`medspace_types::RecordAlert`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The surveillance contract.
    pub contract: ContractId,
    /// The window's job.
    pub job: JobId,
    /// The window.
    pub window: u32,
    /// The syndrome.
    pub syndrome: Text<32>,
    /// The region.
    pub region: Text<8>,
    /// The detector.
    pub method: Text<16>,
    /// The released count.
    pub observed: i64,
    /// Expected, thousandths.
    pub expected_milli: i64,
    /// Score, thousandths.
    pub score_milli: i64,
    /// Who stated it (the contract's holder).
    pub by: UserId,
    /// When.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
}
codec_struct!(AlertRecord {
    contract: ContractId,
    job: JobId,
    window: u32,
    syndrome: Text<32>,
    region: Text<8>,
    method: Text<16>,
    observed: i64,
    expected_milli: i64,
    score_milli: i64,
    by: UserId,
    height: u64,
    time_ms: u64,
});

/// Who a key belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// A member institution itself, by its member key (governance, its users, its catalog).
    Member(MemberId),
    /// A user of a member.
    User(UserId),
    /// A patient.
    Patient(PatientId),
    /// A member's node, by its node key (a round and its result, access records, reads).
    Node(MemberId),
}
codec_enum!(Principal {
    1 => Member(MemberId),
    2 => User(UserId),
    3 => Patient(PatientId),
    4 => Node(MemberId),
});

/// A delivery of an open-pool release's extract to a member, under its contract: what left
/// (the bytes' hash equals the published extract's), and whether the recipient attested its
/// destruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The delivery (attested destroyed by this id, like a record access).
    pub id: AccessId,
    /// The release.
    pub dataset: DatasetId,
    /// Its version when delivered.
    pub version: u32,
    /// Who delivered.
    pub holder: MemberId,
    /// Who received.
    pub recipient: MemberId,
    /// The open-pool contract.
    pub contract: ContractId,
    /// SHA-256 of the bytes.
    pub content_hash: Hash,
    /// How many bytes.
    pub bytes: u64,
    /// When.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// When the recipient attested destruction.
    pub destroyed_height: Option<u64>,
}
codec_struct!(DeliveryRecord {
    id: AccessId,
    dataset: DatasetId,
    version: u32,
    holder: MemberId,
    recipient: MemberId,
    contract: ContractId,
    content_hash: Hash,
    bytes: u64,
    height: u64,
    time_ms: u64,
    destroyed_height: Option<u64>,
});

impl ContractRecord {
    /// When the contract's use of data ends: its termination, or else its expiry.
    pub fn end_ms(&self) -> u64 {
        if self.ended_ms > 0 {
            self.ended_ms.min(self.expiry_ms)
        } else {
            self.expiry_ms
        }
    }
}

/// A key's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Whose key.
    pub principal: Principal,
    /// Replaced by a rotation: it can never sign again.
    pub retired: bool,
    /// The next nonce this key must use (replay protection).
    pub nonce: u64,
}
codec_struct!(KeyRecord {
    principal: Principal,
    retired: bool,
    nonce: u64
});

/// A member's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member.
    pub member: Member,
    /// False once removed by vote.
    pub active: bool,
    /// When it joined.
    pub joined_height: u64,
}
codec_struct!(MemberRecord {
    member: Member,
    active: bool,
    joined_height: u64
});

/// A user's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user.
    pub id: UserId,
    /// Their institution.
    pub member: MemberId,
    /// Their role.
    pub role: Role,
    /// Their current key.
    pub key: PublicKey,
}
codec_struct!(UserRecord {
    id: UserId,
    member: MemberId,
    role: Role,
    key: PublicKey
});

/// A patient's record: a pseudonym and a key, and the hospital that verified them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRecord {
    /// The patient's current key.
    pub key: PublicKey,
    /// When they registered.
    pub registered_height: u64,
    /// Entries in their log.
    pub log_len: u64,
    /// The hospital that attested the registration: the one that may re-bind a lost key.
    pub hospital: MemberId,
    /// The new key of a pending re-binding ([`RebindRecord`]), if any.
    pub rebinding: Option<PublicKey>,
}
codec_struct!(PatientRecord {
    key: PublicKey,
    registered_height: u64,
    log_len: u64,
    hospital: MemberId,
    rebinding: Option<PublicKey>,
});

/// A pending re-binding of a patient's pseudonym to a new key, asked by a hospital's steward
/// who verified the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindRecord {
    /// The patient.
    pub patient: PatientId,
    /// The hospital that verified them.
    pub hospital: MemberId,
    /// Its steward who asked.
    pub steward: UserId,
    /// When it was asked (block time, ms).
    pub requested_ms: u64,
    /// From when the new key may complete it (block time, ms).
    pub effective_ms: u64,
}
codec_struct!(RebindRecord {
    patient: PatientId,
    hospital: MemberId,
    steward: UserId,
    requested_ms: u64,
    effective_ms: u64,
});

unit_enum!(
    /// The state of a consent after a change.
    ConsentState {
        1 => Allow = "allow",
        2 => Deny = "deny",
        3 => Revoked = "revoked",
    }
);

impl From<Decision> for ConsentState {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Allow => ConsentState::Allow,
            Decision::Deny => ConsentState::Deny,
        }
    }
}

/// One change of a consent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// Block that carried it; effective from that block on.
    pub height: u64,
    /// The new state.
    pub state: ConsentState,
    /// Explicit L4 opt-in.
    pub l4_opt_in: bool,
}
codec_struct!(ConsentChange {
    height: u64,
    state: ConsentState,
    l4_opt_in: bool
});

/// How many past changes a consent keeps (queries older than these are answered "deny").
pub const CONSENT_HISTORY: usize = 32;

/// A patient's consent for a purpose (broad or for one study), with its recent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The changes, oldest first; the last one is in force.
    pub history: List<ConsentChange, CONSENT_HISTORY>,
    /// Whether older changes were dropped (answers before the first kept change are unknown).
    pub trimmed: bool,
}
codec_struct!(ConsentRecord {
    history: List<ConsentChange, CONSENT_HISTORY>,
    trimmed: bool,
});

/// A consent's answer at some height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentAt<'a> {
    /// The patient had not answered yet.
    Never,
    /// The change in force then.
    Change(&'a ConsentChange),
    /// The history no longer reaches back that far: treat as no consent.
    Forgotten,
}

impl ConsentRecord {
    /// The answer in force at `height`.
    pub fn at(&self, height: u64) -> ConsentAt<'_> {
        let Some(first) = self.history.as_slice().first() else {
            return ConsentAt::Never;
        };
        if height < first.height {
            return if self.trimmed {
                ConsentAt::Forgotten
            } else {
                ConsentAt::Never
            };
        }
        match self.history.iter().rev().find(|c| c.height <= height) {
            Some(c) => ConsentAt::Change(c),
            None => ConsentAt::Never,
        }
    }

    /// The change in force now.
    pub fn current(&self) -> Option<&ConsentChange> {
        self.history.as_slice().last()
    }
}

/// A grant's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant.
    pub id: GrantId,
    /// The patient who issued it.
    pub patient: PatientId,
    /// Its terms.
    pub terms: IssueGrant,
    /// When it was issued.
    pub issued_height: u64,
    /// Redemptions so far.
    pub uses: u32,
    /// Revoked by the patient.
    pub revoked: bool,
}
codec_struct!(GrantRecord {
    id: GrantId,
    patient: PatientId,
    terms: IssueGrant,
    issued_height: u64,
    uses: u32,
    revoked: bool,
});

/// A study, registered by the first contract that names it: only contracts of the same
/// requesting institution may name it afterwards (so nobody can borrow another study's
/// study-specific consents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// The study.
    pub id: StudyId,
    /// The institution whose contracts run it.
    pub owner: MemberId,
    /// The contract that registered it.
    pub first_contract: ContractId,
    /// When it was registered.
    pub height: u64,
}
codec_struct!(StudyRecord {
    id: StudyId,
    owner: MemberId,
    first_contract: ContractId,
    height: u64,
});

/// A dataset's lifetime differential-privacy account over every contract (micro-epsilon),
/// against the policy's `dataset_epsilon_micro`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpsilonAccount {
    /// Charged by results of jobs whose round was closed (or cut off after it closed).
    pub spent: u64,
    /// Reserved by jobs without a result yet.
    pub reserved: u64,
}
codec_struct!(EpsilonAccount {
    spent: u64,
    reserved: u64
});

/// A catalog entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// The owning member.
    pub owner: MemberId,
    /// The description.
    pub description: DatasetDescription,
    /// When it was (last) published.
    pub published_height: u64,
    /// For a de-identified release in the open pool, what it proves of itself.
    pub release: Option<ReleaseFigures>,
}
codec_struct!(DatasetRecord {
    owner: MemberId,
    description: DatasetDescription,
    published_height: u64,
    release: Option<ReleaseFigures>,
});

unit_enum!(
    /// A contract's lifecycle state (expiry is derived from block time, see
    /// [`ContractRecord::is_active`]).
    ContractStatus {
        1 => Pending = "pending",
        2 => Active = "active",
        3 => Rejected = "rejected",
        4 => Terminated = "terminated",
    }
);

unit_enum!(
    /// A data-quality check a requested field (or its table) failed.
    QualityCheck {
        1 => Missing = "missing",
        2 => Invalid = "invalid",
        3 => Duplicate = "duplicate",
        4 => Implausible = "implausible",
    }
);

/// A failing quality check of a request's data against the consortium's floor: shown to every
/// reviewer, with the figure and the floor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityFlag {
    /// The dataset.
    pub dataset: DatasetId,
    /// The table.
    pub table: Text<64>,
    /// The field (empty for a table's check: duplicates, implausible values).
    pub field: Text<64>,
    /// The check.
    pub check: QualityCheck,
    /// The dataset's share, ppm (its catalog entry's).
    pub value_ppm: u32,
    /// The largest share the floor accepts, ppm.
    pub max_ppm: u32,
}
codec_struct!(QualityFlag {
    dataset: DatasetId,
    table: Text<64>,
    field: Text<64>,
    check: QualityCheck,
    value_ppm: u32,
    max_ppm: u32,
});

/// One approval a contract needs, and who gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredApproval {
    /// The role.
    pub role: Role,
    /// The institution whose user must approve (`None`: any member's).
    pub member: Option<MemberId>,
    /// Who approved, once approved.
    pub by: Option<UserId>,
}
codec_struct!(RequiredApproval { role: Role, member: Option<MemberId>, by: Option<UserId> });

/// A data-use contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// The contract.
    pub id: ContractId,
    /// The requesting user.
    pub requester: UserId,
    /// Their institution.
    pub requester_member: MemberId,
    /// Why.
    pub purpose: Purpose,
    /// How.
    pub mode: Mode,
    /// The study, if any.
    pub study: Option<StudyId>,
    /// Fields in scope.
    pub fields: List<FieldRef, 256>,
    /// The approved computation.
    pub computation: Blob<MAX_COMPUTATION>,
    /// SHA-256 of the approved computation: a job runs only a computation of this hash.
    pub computation_hash: Hash,
    /// Highest privacy level touched: of its fields and, for a query, of the codes it filters
    /// on.
    pub level: Level,
    /// Institutions whose data is in scope.
    pub owners: List<MemberId, 64>,
    /// Approvals needed, and given.
    pub approvals: List<RequiredApproval, 128>,
    /// Lifecycle state.
    pub status: ContractStatus,
    /// End (block time, ms).
    pub expiry_ms: u64,
    /// Budget, micro-epsilon.
    pub epsilon_budget: u64,
    /// Spent by posted results.
    pub epsilon_spent: u64,
    /// Reserved by jobs without a result yet.
    pub epsilon_reserved: u64,
    /// The part of `epsilon_reserved` held by jobs whose round is closed (their sites have
    /// revealed, so a result may have been released): charged to the datasets if the contract
    /// ends before those jobs post their results.
    pub epsilon_closed: u64,
    /// Fee held in escrow until settlement.
    pub escrow: u64,
    /// Records contributed per institution over all results.
    pub contributions: List<Contribution, 64>,
    /// Whether the fee was settled.
    pub settled: bool,
    /// When it was submitted.
    pub submitted_height: u64,
    /// Why it was rejected or terminated.
    pub closing_reason: Text<256>,
    /// Block time it was terminated before its expiry (0: it runs to `expiry_ms`).
    pub ended_ms: u64,
    /// The quality checks its data failed against the consortium's floor, for its reviewers.
    pub quality: List<QualityFlag, 64>,
    /// For a standing surveillance definition: how many of its windows have had their job
    /// (the next job runs window `windows_run`).
    pub windows_run: u32,
}
codec_struct!(ContractRecord {
    id: ContractId,
    requester: UserId,
    requester_member: MemberId,
    purpose: Purpose,
    mode: Mode,
    study: Option<StudyId>,
    fields: List<FieldRef, 256>,
    computation: Blob<MAX_COMPUTATION>,
    computation_hash: Hash,
    level: Level,
    owners: List<MemberId, 64>,
    approvals: List<RequiredApproval, 128>,
    status: ContractStatus,
    expiry_ms: u64,
    epsilon_budget: u64,
    epsilon_spent: u64,
    epsilon_reserved: u64,
    epsilon_closed: u64,
    escrow: u64,
    contributions: List<Contribution, 64>,
    settled: bool,
    submitted_height: u64,
    closing_reason: Text<256>,
    ended_ms: u64,
    quality: List<QualityFlag, 64>,
    windows_run: u32,
});

impl ContractRecord {
    /// Active and not expired at block time `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.status == ContractStatus::Active && now_ms < self.expiry_ms
    }

    /// Budget not yet spent or reserved.
    pub fn epsilon_left(&self) -> u64 {
        self.epsilon_budget
            .saturating_sub(self.epsilon_spent)
            .saturating_sub(self.epsilon_reserved)
    }

    /// The datasets the contract names, each once, in order of first mention.
    pub fn datasets(&self) -> Vec<DatasetId> {
        let mut out: Vec<DatasetId> = Vec::new();
        for f in &self.fields {
            if !out.contains(&f.dataset) {
                out.push(f.dataset.clone());
            }
        }
        out
    }

    /// Approvals still missing.
    pub fn missing_approvals(&self) -> impl Iterator<Item = &RequiredApproval> {
        self.approvals.iter().filter(|a| a.by.is_none())
    }

    /// The status as a reader sees it at `now_ms` (`expired` is derived from block time).
    pub fn status_at(&self, now_ms: u64) -> &'static str {
        match self.status {
            ContractStatus::Active | ContractStatus::Pending if now_ms >= self.expiry_ms => {
                "expired"
            }
            s => s.as_str(),
        }
    }
}

unit_enum!(
    /// A job's state.
    JobStatus {
        1 => Submitted = "submitted",
        2 => Done = "done",
    }
);

/// A posted result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// Hash of the released result.
    pub result_hash: Hash,
    /// Epsilon charged, micro-epsilon: the sites' epsilon times the job's sites (what a
    /// patient treated at every site can lose), 0 when nothing was released.
    pub epsilon_spent: u64,
    /// Contributing institutions and counts.
    pub contributions: List<Contribution, 64>,
    /// Who posted it.
    pub posted_by: MemberId,
    /// When.
    pub height: u64,
}
codec_struct!(JobResult {
    result_hash: Hash,
    epsilon_spent: u64,
    contributions: List<Contribution, 64>,
    posted_by: MemberId,
    height: u64,
});

/// The sets of a job's secure aggregation round, fixed by its aggregator (`CloseRound`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The sites that dealt (U1), in the contract's owner order.
    pub sharers: List<MemberId, 64>,
    /// The sites whose masked vectors are in the sum (U2), in owner order.
    pub survivors: List<MemberId, 64>,
    /// The block that closed the round.
    pub height: u64,
}
codec_struct!(RoundRecord {
    sharers: List<MemberId, 64>,
    survivors: List<MemberId, 64>,
    height: u64,
});

/// A job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job.
    pub id: JobId,
    /// Its contract.
    pub contract: ContractId,
    /// Who submitted it.
    pub submitter: UserId,
    /// What to compute.
    pub computation: Blob<MAX_COMPUTATION>,
    /// Epsilon reserved.
    pub epsilon_reserved: u64,
    /// State.
    pub status: JobStatus,
    /// Block it was submitted in: consent is evaluated at this height.
    pub submitted_height: u64,
    /// Block time of submission.
    pub submitted_ms: u64,
    /// The result, once posted.
    pub result: Option<JobResult>,
    /// The aggregation round's sets, once closed.
    pub round: Option<RoundRecord>,
    /// For a surveillance definition: the window this job computes, fixed by the ledger's
    /// schedule when it was submitted.
    pub window: Option<u32>,
}
codec_struct!(JobRecord {
    id: JobId,
    contract: ContractId,
    submitter: UserId,
    computation: Blob<MAX_COMPUTATION>,
    epsilon_reserved: u64,
    status: JobStatus,
    submitted_height: u64,
    submitted_ms: u64,
    result: Option<JobResult>,
    round: Option<RoundRecord>,
    window: Option<u32>,
});

/// A record-level delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// The access.
    pub id: AccessId,
    /// Whose records.
    pub patient: PatientId,
    /// Who delivered.
    pub holder: MemberId,
    /// Who received.
    pub recipient: MemberId,
    /// Authority.
    pub basis: AccessBasis,
    /// Resource types delivered.
    pub resource_types: List<Text<48>, 32>,
    /// How many resources.
    pub resource_count: u32,
    /// Hash of what left.
    pub content_hash: Hash,
    /// When.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// When the recipient attested destruction.
    pub destroyed_height: Option<u64>,
}
codec_struct!(AccessRecord {
    id: AccessId,
    patient: PatientId,
    holder: MemberId,
    recipient: MemberId,
    basis: AccessBasis,
    resource_types: List<Text<48>, 32>,
    resource_count: u32,
    content_hash: Hash,
    height: u64,
    time_ms: u64,
    destroyed_height: Option<u64>,
});

/// What a governance proposal would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GovAction {
    /// Admit a member.
    AddMember(medspace_types::AddMember),
    /// Remove a member.
    RemoveMember(medspace_types::RemoveMember),
    /// Replace the policy.
    UpdatePolicy(medspace_types::UpdatePolicy),
    /// Appoint a user to a consortium role.
    AppointUser(medspace_types::AppointUser),
    /// Dismiss a user.
    DismissUser(medspace_types::DismissUser),
}
codec_enum!(GovAction {
    1 => AddMember(medspace_types::AddMember),
    2 => RemoveMember(medspace_types::RemoveMember),
    3 => UpdatePolicy(medspace_types::UpdatePolicy),
    4 => AppointUser(medspace_types::AppointUser),
    5 => DismissUser(medspace_types::DismissUser),
});

unit_enum!(
    /// A proposal's state.
    ProposalStatus {
        1 => Open = "open",
        2 => Passed = "passed",
        3 => Failed = "failed",
    }
);

/// A governance proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// The proposal.
    pub id: ProposalId,
    /// What it does.
    pub action: GovAction,
    /// Who proposed.
    pub proposer: MemberId,
    /// Members in favour.
    pub yes: List<MemberId, 256>,
    /// Members against.
    pub no: List<MemberId, 256>,
    /// State.
    pub status: ProposalStatus,
    /// Block time it was opened.
    pub created_ms: u64,
}
codec_struct!(ProposalRecord {
    id: ProposalId,
    action: GovAction,
    proposer: MemberId,
    yes: List<MemberId, 256>,
    no: List<MemberId, 256>,
    status: ProposalStatus,
    created_ms: u64,
});

/// Something that happened to a patient's data or consent, in their log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientEvent {
    /// Consent set or revoked (purpose, study, new state).
    Consent(ConsentEvent),
    /// A grant issued.
    GrantIssued(GrantId),
    /// A grant revoked.
    GrantRevoked(GrantId),
    /// Records delivered.
    Accessed(AccessId),
    /// A delivered copy destroyed.
    Destroyed(AccessId),
    /// A hospital asked to re-bind the pseudonym to a new key.
    RebindAsked(RebindEvent),
    /// A pending re-binding cancelled (vetoed by the patient or withdrawn by the hospital).
    RebindCancelled(RebindEvent),
    /// The new key took over; the old one is retired.
    Rebound(RebindEvent),
}
codec_enum!(PatientEvent {
    1 => Consent(ConsentEvent),
    2 => GrantIssued(GrantId),
    3 => GrantRevoked(GrantId),
    4 => Accessed(AccessId),
    5 => Destroyed(AccessId),
    6 => RebindAsked(RebindEvent),
    7 => RebindCancelled(RebindEvent),
    8 => Rebound(RebindEvent),
});

/// A re-binding in a patient's log: through which hospital, to which key, effective when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindEvent {
    /// The hospital.
    pub hospital: MemberId,
    /// The new key.
    pub new_key: PublicKey,
    /// From when the new key may take over (block time, ms).
    pub effective_ms: u64,
}
codec_struct!(RebindEvent {
    hospital: MemberId,
    new_key: PublicKey,
    effective_ms: u64
});

/// A consent change in a patient's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// The purpose.
    pub purpose: Purpose,
    /// The study.
    pub study: Option<StudyId>,
    /// The new state.
    pub state: ConsentState,
}
codec_struct!(ConsentEvent { purpose: Purpose, study: Option<StudyId>, state: ConsentState });

/// One entry of a patient's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Block height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// What happened.
    pub event: PatientEvent,
}
codec_struct!(LogEntry {
    height: u64,
    time_ms: u64,
    event: PatientEvent
});

/// The canonical bytes of a record (what the trie stores and proofs cover).
pub fn encode_record(r: &impl Encode) -> Vec<u8> {
    r.encode().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consent key is the table tag, then the patient, purpose and `Option<StudyId>` as the
    /// codec writes them (the layout every stored consent already has).
    #[test]
    fn a_consent_key_is_its_parts_as_the_codec_writes_them() {
        let patient = PatientId::from_key(&medspace_types::Keypair::from_seed(7).public());
        for study in [None, Some(StudyId::new("t2d-outcomes-2026").unwrap())] {
            let mut expected = vec![tag::CONSENT];
            expected.extend_from_slice(&patient.encode());
            expected.extend_from_slice(&Purpose::Research.encode());
            expected.extend_from_slice(&study.encode());
            let key = keys::consent(&patient, Purpose::Research, study.as_ref());
            assert_eq!(key, expected);
            assert_eq!(key.capacity(), key.len());
            assert!(key.starts_with(&keys::consents_of(&patient)));
        }
    }
}
