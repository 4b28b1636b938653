//! Transactions: the payload kinds of DESIGN §4 and the signed envelope.
//!
//! A transaction's body is `version (1) | chain id | signer | nonce | payload`; the signature
//! covers exactly the encoded body in the namespace [`TX_NAMESPACE`]. The transaction id is the
//! SHA-256 of the whole encoded transaction (body and signature).

use crate::codec::{Blob, List, Text};
use crate::domain::{
    AccessBasis, Contribution, DatasetDescription, Decision, FieldRef, Member, Mode, Policy,
    Purpose, ReleaseFigures, Role,
};
use crate::ids::{
    AccessId, ContractId, DatasetId, GrantId, Hash, JobId, MemberId, Name, PatientId, ProposalId,
    StudyId, UserId,
};
use crate::keys::{Keypair, PublicKey, Signature};
use crate::{TypeError, codec_enum, codec_struct};
use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, DecodeExt, Encode, EncodeSize, Error, Read, ReadExt, Write};
use serde::{Deserialize, Serialize};

/// Signing namespace of transactions (domain separation from every other signature).
pub const TX_NAMESPACE: &[u8] = b"medspace/tx/v1";
/// Signing namespace of the proof of possession in a key rotation.
pub const ROTATE_NAMESPACE: &[u8] = b"medspace/rotate/v1";
/// Signing namespace of the proof of possession when a member replaces its node key.
pub const ROTATE_NODE_NAMESPACE: &[u8] = b"medspace/rotate-node/v1";
/// The only envelope version this build reads and writes.
pub const TX_VERSION: u8 = 1;
/// Largest encoded transaction accepted anywhere.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Largest computation (query specification) carried by a contract or a job.
pub const MAX_COMPUTATION: usize = 16 * 1024;

/// Proposes admitting a member (a governance vote follows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    /// The member to admit.
    pub member: Member,
    /// Credits it starts with.
    pub initial_balance: u64,
}
codec_struct!(AddMember {
    member: Member,
    initial_balance: u64
});

/// Proposes removing a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMember {
    /// The member to remove.
    pub member: MemberId,
}
codec_struct!(RemoveMember { member: MemberId });

/// Proposes a new policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// The policy that replaces the current one.
    pub policy: Policy,
}
codec_struct!(UpdatePolicy { policy: Policy });

/// A member's vote on a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The proposal.
    pub proposal: ProposalId,
    /// Yes or no.
    pub approve: bool,
}
codec_struct!(Vote {
    proposal: ProposalId,
    approve: bool
});

/// A member registers one of its own institutional users (steward, researcher, clinician,
/// claims officer; a regulator also its auditors). Consortium roles are appointed by a vote
/// ([`AppointUser`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterUser {
    /// The user's identifier.
    pub user: UserId,
    /// The user's role.
    pub role: Role,
    /// The user's signing key.
    pub key: PublicKey,
}
codec_struct!(RegisterUser {
    user: UserId,
    role: Role,
    key: PublicKey
});

/// Proposes appointing a user to a consortium role (data committee, ethics committee, or a
/// regulator's auditor) at `member`: a governance vote follows, and the user exists only once
/// it passes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointUser {
    /// The user's identifier.
    pub user: UserId,
    /// The institution the user belongs to.
    pub member: MemberId,
    /// The consortium role.
    pub role: Role,
    /// The user's signing key.
    pub key: PublicKey,
}
codec_struct!(AppointUser {
    user: UserId,
    member: MemberId,
    role: Role,
    key: PublicKey
});

/// Proposes dismissing a user: once the vote passes, the user's key can never sign again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DismissUser {
    /// The user.
    pub user: UserId,
}
codec_struct!(DismissUser { user: UserId });

/// A principal replaces its signing key. `proof` is the new key's signature over
/// `chain id | old key | nonce` in [`ROTATE_NAMESPACE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKey {
    /// The new key.
    pub new_key: PublicKey,
    /// Proof of possession of the new key.
    pub proof: Signature,
}
codec_struct!(RotateKey {
    new_key: PublicKey,
    proof: Signature
});

/// A member replaces its node key (a compromised or lost node), signed by its member key; the
/// old node key is retired and can never sign again. `proof` is the new key's signature over
/// `chain id | member key | nonce` in [`ROTATE_NODE_NAMESPACE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateNodeKey {
    /// The new node key.
    pub new_key: PublicKey,
    /// Proof of possession of the new key.
    pub proof: Signature,
}
codec_struct!(RotateNodeKey {
    new_key: PublicKey,
    proof: Signature
});

impl RotateNodeKey {
    /// The replacement of the node key of the member whose key is `member_key`, by `new_key`,
    /// in the member key's transaction of `nonce` on `chain_id`.
    pub fn new(chain_id: &Name, member_key: &PublicKey, nonce: u64, new_key: &Keypair) -> Self {
        Self {
            new_key: new_key.public(),
            proof: new_key.sign(
                ROTATE_NODE_NAMESPACE,
                &rotation_message(chain_id, member_key, nonce),
            ),
        }
    }
}

/// Signing namespace of a hospital's attestation that it verified the person holding a
/// patient key.
pub const PATIENT_ATTESTATION_NAMESPACE: &[u8] = b"medspace/patient-attestation/v1";

/// What a hospital's member key signs to attest a patient key: `chain id | patient key`.
pub fn patient_attestation_message(chain_id: &Name, patient: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(80);
    chain_id.write(&mut m);
    patient.write(&mut m);
    m
}

/// A patient registers their key; the ledger knows them only by the derived pseudonym. The
/// registration carries a hospital's attestation that it verified the person (so keys cannot
/// be registered in bulk by anyone): the hospital member's key signs
/// [`patient_attestation_message`] in [`PATIENT_ATTESTATION_NAMESPACE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPatient {
    /// The hospital that verified the person.
    pub hospital: MemberId,
    /// The hospital member key's signature over the chain id and the patient's key.
    pub attestation: Signature,
}
codec_struct!(RegisterPatient {
    hospital: MemberId,
    attestation: Signature
});

impl RegisterPatient {
    /// The registration of `patient` on chain `chain_id`, attested by `hospital` with its
    /// member key `hospital_key`.
    pub fn attested(
        chain_id: &Name,
        patient: &PublicKey,
        hospital: MemberId,
        hospital_key: &Keypair,
    ) -> Self {
        Self {
            hospital,
            attestation: hospital_key.sign(
                PATIENT_ATTESTATION_NAMESPACE,
                &patient_attestation_message(chain_id, patient),
            ),
        }
    }

    /// Whether `hospital_key` attested `patient` on chain `chain_id`.
    pub fn verify(&self, chain_id: &Name, patient: &PublicKey, hospital_key: &PublicKey) -> bool {
        hospital_key.verify(
            PATIENT_ATTESTATION_NAMESPACE,
            &patient_attestation_message(chain_id, patient),
            &self.attestation,
        )
    }
}

/// Signing namespace of a new key's claim to take over a patient's pseudonym through a
/// hospital ([`RebindPatient`]).
pub const REBIND_NAMESPACE: &[u8] = b"medspace/rebind/v1";

/// What a patient's new key signs to ask `hospital` to re-bind their pseudonym to it:
/// `chain id | hospital | new key`. The claim names the hospital, so one hospital cannot replay
/// a claim made for another.
pub fn rebind_message(chain_id: &Name, hospital: &MemberId, new_key: &PublicKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    chain_id.write(&mut m);
    hospital.write(&mut m);
    new_key.write(&mut m);
    m
}

/// A hospital re-binds a patient who lost their key to a new one, after verifying the person
/// in person: signed by a steward of the hospital that registered the patient. The change waits
/// out the policy's veto delay, during which the patient's current key (if it was not lost but
/// stolen, or the hospital acts without the patient) can cancel it ([`CancelRebind`]); then the
/// new key completes it ([`CompleteRebind`]). The pseudonym, and so the patient's whole history,
/// stays; only the key changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindPatient {
    /// The patient's pseudonym.
    pub patient: PatientId,
    /// The key that is to sign for them.
    pub new_key: PublicKey,
    /// The new key's signature over [`rebind_message`] in [`REBIND_NAMESPACE`].
    pub proof: Signature,
}
codec_struct!(RebindPatient {
    patient: PatientId,
    new_key: PublicKey,
    proof: Signature
});

impl RebindPatient {
    /// The new key's claim (its proof of possession) for a re-binding through `hospital`.
    pub fn claim(chain_id: &Name, hospital: &MemberId, new_key: &Keypair) -> Signature {
        new_key.sign(
            REBIND_NAMESPACE,
            &rebind_message(chain_id, hospital, &new_key.public()),
        )
    }
}

/// Cancels a pending re-binding: the patient's current key vetoes it, or the hospital that
/// asked withdraws it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRebind {
    /// The patient's pseudonym.
    pub patient: PatientId,
}
codec_struct!(CancelRebind { patient: PatientId });

/// The new key of a pending re-binding takes over, once the veto delay has passed: the old key
/// is retired, the pseudonym and its history stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRebind {
    /// The patient's pseudonym.
    pub patient: PatientId,
}
codec_struct!(CompleteRebind { patient: PatientId });

/// A member publishes (or republishes) a dataset description in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishDataset {
    /// The description.
    pub dataset: DatasetDescription,
}
codec_struct!(PublishDataset {
    dataset: DatasetDescription
});

/// A patient's consent for a purpose, broadly or for one study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetConsent {
    /// The purpose.
    pub purpose: Purpose,
    /// One study (dynamic secondary consent), or every study of the purpose.
    pub study: Option<StudyId>,
    /// Allow or deny.
    pub decision: Decision,
    /// Explicit opt-in for highly sensitive (L4) data.
    pub l4_opt_in: bool,
}
codec_struct!(SetConsent {
    purpose: Purpose,
    study: Option<StudyId>,
    decision: Decision,
    l4_opt_in: bool,
});

/// A patient withdraws an earlier consent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeConsent {
    /// The purpose.
    pub purpose: Purpose,
    /// The study, if the consent was study-specific.
    pub study: Option<StudyId>,
}
codec_struct!(RevokeConsent { purpose: Purpose, study: Option<StudyId> });

/// A patient authorizes an institution to fetch some of their records from another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueGrant {
    /// Who may fetch.
    pub grantee: MemberId,
    /// Which institution holds the records.
    pub holder: MemberId,
    /// Why.
    pub purpose: Purpose,
    /// FHIR resource types covered (e.g. `Encounter`).
    pub resource_types: List<Text<48>, 32>,
    /// Records dated from (ms since the epoch).
    pub period_from_ms: u64,
    /// Records dated until (ms since the epoch).
    pub period_to_ms: u64,
    /// The grant ends at this block time.
    pub expiry_ms: u64,
    /// Redemptions allowed (0 = unlimited until expiry).
    pub max_uses: u32,
    /// SHA-256 of the authorization code; the code itself never reaches the ledger.
    pub code_hash: Hash,
}
codec_struct!(IssueGrant {
    grantee: MemberId,
    holder: MemberId,
    purpose: Purpose,
    resource_types: List<Text<48>, 32>,
    period_from_ms: u64,
    period_to_ms: u64,
    expiry_ms: u64,
    max_uses: u32,
    code_hash: Hash,
});

/// A patient revokes a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeGrant {
    /// The grant.
    pub grant: GrantId,
}
codec_struct!(RevokeGrant { grant: GrantId });

/// A user asks for a data-use contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Why.
    pub purpose: Purpose,
    /// How.
    pub mode: Mode,
    /// The study (needed for study-specific consent).
    pub study: Option<StudyId>,
    /// Datasets and fields touched.
    pub fields: List<FieldRef, 256>,
    /// The computation (a federated query specification, or a family of them).
    pub computation: Blob<MAX_COMPUTATION>,
    /// End of the contract (block time, ms).
    pub expiry_ms: u64,
    /// Differential-privacy budget, micro-epsilon.
    pub epsilon_budget: u64,
    /// Credits paid by the requester's institution, split among contributors at settlement.
    pub fee: u64,
}
codec_struct!(SubmitRequest {
    purpose: Purpose,
    mode: Mode,
    study: Option<StudyId>,
    fields: List<FieldRef, 256>,
    computation: Blob<MAX_COMPUTATION>,
    expiry_ms: u64,
    epsilon_budget: u64,
    fee: u64,
});

/// A reviewer approves a contract (their role is their registered one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approve {
    /// The contract.
    pub contract: ContractId,
}
codec_struct!(Approve {
    contract: ContractId
});

/// A reviewer rejects a contract: only a reviewer whose approval is still missing, and always
/// with a reason (recorded on the contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The contract.
    pub contract: ContractId,
    /// Why.
    pub reason: Text<256>,
}
codec_struct!(Reject { contract: ContractId, reason: Text<256> });

/// The requester, a data owner's steward or the regulator ends a contract early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminate {
    /// The contract.
    pub contract: ContractId,
    /// Why.
    pub reason: Text<256>,
}
codec_struct!(Terminate { contract: ContractId, reason: Text<256> });

/// The hash that binds a computation to a contract: the SHA-256 of its bytes (so anyone can
/// check it with any SHA-256 tool).
pub fn computation_hash(computation: &[u8]) -> Hash {
    Hash::of(&[computation])
}

/// The contract holder runs a computation under an active contract: the very computation the
/// contract approved (same [`computation_hash`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJob {
    /// The contract.
    pub contract: ContractId,
    /// The computation to run (within the contract's).
    pub computation: Blob<MAX_COMPUTATION>,
    /// Epsilon reserved for this job, micro-epsilon.
    pub epsilon: u64,
}
codec_struct!(SubmitJob {
    contract: ContractId,
    computation: Blob<MAX_COMPUTATION>,
    epsilon: u64,
});

/// The job's aggregator fixes the sets of a secure aggregation round: the data holders whose
/// dealings it received (`sharers`, U1) and those whose masked vectors it received
/// (`survivors`, U2). The first close of a job is the only one: every site reveals for these
/// sets and no others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRound {
    /// The job.
    pub job: JobId,
    /// The sites that dealt, in the contract's owner order.
    pub sharers: List<MemberId, 64>,
    /// The sites whose masked vectors are in the sum, in the contract's owner order.
    pub survivors: List<MemberId, 64>,
}
codec_struct!(CloseRound {
    job: JobId,
    sharers: List<MemberId, 64>,
    survivors: List<MemberId, 64>,
});

/// Signing namespace of a site's attestation of its contribution to a job.
pub const CONTRIBUTION_NAMESPACE: &[u8] = b"medspace/contribution/v1";

/// What a site signs to attest how many records it contributed to a job.
pub fn contribution_message(job: JobId, member: &MemberId, records: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + 1 + member.as_str().len() + 8);
    m.extend_from_slice(&job.0.to_be_bytes());
    m.extend_from_slice(member.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(&records.to_be_bytes());
    m
}

/// A site's contribution to a job's result, signed by the site's node key (so the
/// aggregator cannot invent or inflate another site's contribution).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedContribution {
    /// The institution.
    pub member: MemberId,
    /// Records (patients) it contributed, as its released counts say: the total of the
    /// site's noised count cells, never its exact cohort size.
    pub records: u64,
    /// Its node key's signature over [`contribution_message`].
    pub signature: Signature,
}
codec_struct!(SignedContribution {
    member: MemberId,
    records: u64,
    signature: Signature,
});

impl SignedContribution {
    /// `member`'s attestation of `records` for `job`, signed with its node key.
    pub fn sign(key: &Keypair, job: JobId, member: MemberId, records: u64) -> Self {
        let signature = key.sign(
            CONTRIBUTION_NAMESPACE,
            &contribution_message(job, &member, records),
        );
        Self {
            member,
            records,
            signature,
        }
    }

    /// Whether `key` signed this contribution for `job`.
    pub fn verify(&self, job: JobId, key: &PublicKey) -> bool {
        key.verify(
            CONTRIBUTION_NAMESPACE,
            &contribution_message(job, &self.member, self.records),
            &self.signature,
        )
    }

    /// The contribution without its signature.
    pub fn unsigned(&self) -> Contribution {
        Contribution {
            member: self.member.clone(),
            records: self.records,
        }
    }
}

/// The job's aggregator posts its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostResult {
    /// The job.
    pub job: JobId,
    /// Hash of the released result.
    pub result_hash: Hash,
    /// The epsilon each site released under, micro-epsilon: the job's once its round is
    /// closed, 0 before (anything else is refused). The ledger charges it times the job's
    /// sites.
    pub epsilon_spent: u64,
    /// The survivors' contributions, each signed by its site.
    pub contributions: List<SignedContribution, 64>,
}
codec_struct!(PostResult {
    job: JobId,
    result_hash: Hash,
    epsilon_spent: u64,
    contributions: List<SignedContribution, 64>,
});

/// A data holder records a record-level delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAccess {
    /// Whose records.
    pub patient: PatientId,
    /// Who received them.
    pub recipient: MemberId,
    /// Under which grant or contract.
    pub basis: AccessBasis,
    /// Resource types delivered.
    pub resource_types: List<Text<48>, 32>,
    /// How many resources.
    pub resource_count: u32,
    /// SHA-256 of exactly what left.
    pub content_hash: Hash,
}
codec_struct!(RecordAccess {
    patient: PatientId,
    recipient: MemberId,
    basis: AccessBasis,
    resource_types: List<Text<48>, 32>,
    resource_count: u32,
    content_hash: Hash,
});

/// The recipient attests that a delivered copy was destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestDestruction {
    /// The access whose copy was destroyed.
    pub access: AccessId,
}
codec_struct!(AttestDestruction { access: AccessId });

/// A member publishes a de-identified release of one of its datasets in the open pool: an L1
/// catalog entry (every field L1, whatever the consortium's classification of the source
/// columns) with the figures that justify it, which must meet the policy's open-pool standard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRelease {
    /// The release's catalog entry (its own dataset id; `content_hash` is the extract's).
    pub dataset: DatasetDescription,
    /// What the release proves of itself.
    pub release: ReleaseFigures,
}
codec_struct!(PublishRelease {
    dataset: DatasetDescription,
    release: ReleaseFigures,
});

/// The owner's node records that it delivered a release's extract under an open-pool contract;
/// `content_hash` must be the published extract's (the recipient checks the bytes against it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverRelease {
    /// The open-pool contract.
    pub contract: ContractId,
    /// The release delivered.
    pub dataset: DatasetId,
    /// SHA-256 of the bytes delivered.
    pub content_hash: Hash,
    /// How many bytes.
    pub bytes: u64,
}
codec_struct!(DeliverRelease {
    contract: ContractId,
    dataset: DatasetId,
    content_hash: Hash,
    bytes: u64,
});

/// A public-health agency's signed statement that a surveillance window's released counts
/// raised an alert: which syndrome and region, by which detector, the observed count, the
/// expected one and the score (both in thousandths, so the ledger holds no float). The data
/// holders see what their data triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAlert {
    /// The surveillance window's job (its contract and window follow from it).
    pub job: JobId,
    /// The syndrome's name in the definition.
    pub syndrome: Text<32>,
    /// The region (a postal prefix in the definition).
    pub region: Text<8>,
    /// The detector (`c1`, `c2`, `c3`, `seasonal`, `combined`).
    pub method: Text<16>,
    /// The released (noised) count that alerted.
    pub observed: i64,
    /// The count expected, in thousandths.
    pub expected_milli: i64,
    /// The detector's score, in thousandths.
    pub score_milli: i64,
}
codec_struct!(RecordAlert {
    job: JobId,
    syndrome: Text<32>,
    region: Text<8>,
    method: Text<16>,
    observed: i64,
    expected_milli: i64,
    score_milli: i64,
});

/// Splits a finished contract's fee among its contributors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settle {
    /// The contract.
    pub contract: ContractId,
}
codec_struct!(Settle {
    contract: ContractId
});

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Payload {
    AddMember(AddMember),
    RemoveMember(RemoveMember),
    UpdatePolicy(UpdatePolicy),
    Vote(Vote),
    RegisterUser(RegisterUser),
    RotateKey(RotateKey),
    RegisterPatient(RegisterPatient),
    PublishDataset(PublishDataset),
    SetConsent(SetConsent),
    RevokeConsent(RevokeConsent),
    IssueGrant(IssueGrant),
    RevokeGrant(RevokeGrant),
    SubmitRequest(SubmitRequest),
    Approve(Approve),
    Reject(Reject),
    Terminate(Terminate),
    SubmitJob(SubmitJob),
    PostResult(PostResult),
    RecordAccess(RecordAccess),
    AttestDestruction(AttestDestruction),
    Settle(Settle),
    CloseRound(CloseRound),
    AppointUser(AppointUser),
    DismissUser(DismissUser),
    RotateNodeKey(RotateNodeKey),
    RebindPatient(RebindPatient),
    CancelRebind(CancelRebind),
    CompleteRebind(CompleteRebind),
    PublishRelease(PublishRelease),
    DeliverRelease(DeliverRelease),
    RecordAlert(RecordAlert),
}
codec_enum!(Payload {
    1 => AddMember(AddMember),
    2 => RemoveMember(RemoveMember),
    3 => UpdatePolicy(UpdatePolicy),
    4 => Vote(Vote),
    5 => RegisterUser(RegisterUser),
    6 => RotateKey(RotateKey),
    7 => RegisterPatient(RegisterPatient),
    8 => PublishDataset(PublishDataset),
    9 => SetConsent(SetConsent),
    10 => RevokeConsent(RevokeConsent),
    11 => IssueGrant(IssueGrant),
    12 => RevokeGrant(RevokeGrant),
    13 => SubmitRequest(SubmitRequest),
    14 => Approve(Approve),
    15 => Reject(Reject),
    16 => Terminate(Terminate),
    17 => SubmitJob(SubmitJob),
    18 => PostResult(PostResult),
    19 => RecordAccess(RecordAccess),
    20 => AttestDestruction(AttestDestruction),
    21 => Settle(Settle),
    22 => CloseRound(CloseRound),
    23 => AppointUser(AppointUser),
    24 => DismissUser(DismissUser),
    25 => RotateNodeKey(RotateNodeKey),
    26 => RebindPatient(RebindPatient),
    27 => CancelRebind(CancelRebind),
    28 => CompleteRebind(CompleteRebind),
    29 => PublishRelease(PublishRelease),
    30 => DeliverRelease(DeliverRelease),
    31 => RecordAlert(RecordAlert),
});

impl Payload {
    /// The kind's name, as used in logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::AddMember(_) => "add_member",
            Payload::RemoveMember(_) => "remove_member",
            Payload::UpdatePolicy(_) => "update_policy",
            Payload::Vote(_) => "vote",
            Payload::RegisterUser(_) => "register_user",
            Payload::RotateKey(_) => "rotate_key",
            Payload::RegisterPatient(_) => "register_patient",
            Payload::PublishDataset(_) => "publish_dataset",
            Payload::SetConsent(_) => "set_consent",
            Payload::RevokeConsent(_) => "revoke_consent",
            Payload::IssueGrant(_) => "issue_grant",
            Payload::RevokeGrant(_) => "revoke_grant",
            Payload::SubmitRequest(_) => "submit_request",
            Payload::Approve(_) => "approve",
            Payload::Reject(_) => "reject",
            Payload::Terminate(_) => "terminate",
            Payload::SubmitJob(_) => "submit_job",
            Payload::PostResult(_) => "post_result",
            Payload::RecordAccess(_) => "record_access",
            Payload::AttestDestruction(_) => "attest_destruction",
            Payload::Settle(_) => "settle",
            Payload::CloseRound(_) => "close_round",
            Payload::AppointUser(_) => "appoint_user",
            Payload::DismissUser(_) => "dismiss_user",
            Payload::RotateNodeKey(_) => "rotate_node_key",
            Payload::RebindPatient(_) => "rebind_patient",
            Payload::CancelRebind(_) => "cancel_rebind",
            Payload::CompleteRebind(_) => "complete_rebind",
            Payload::PublishRelease(_) => "publish_release",
            Payload::DeliverRelease(_) => "deliver_release",
            Payload::RecordAlert(_) => "record_alert",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    /// The consortium chain this transaction is for.
    pub chain_id: Name,
    /// Who signs.
    pub signer: PublicKey,
    /// The signer's next nonce (replay protection).
    pub nonce: u64,
    /// What it does.
    pub payload: Payload,
}

impl Write for TxBody {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(TX_VERSION);
        self.chain_id.write(buf);
        self.signer.write(buf);
        self.nonce.write(buf);
        self.payload.write(buf);
    }
}

impl EncodeSize for TxBody {
    fn encode_size(&self) -> usize {
        1 + self.chain_id.encode_size()
            + self.signer.encode_size()
            + self.nonce.encode_size()
            + self.payload.encode_size()
    }
}

impl Read for TxBody {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        let version = u8::read(buf)?;
        if version != TX_VERSION {
            return Err(Error::Invalid("transaction", "unsupported version"));
        }
        Ok(Self {
            chain_id: Name::read(buf)?,
            signer: PublicKey::read(buf)?,
            nonce: u64::read(buf)?,
            payload: Payload::read(buf)?,
        })
    }
}

impl TxBody {
    /// Signs the body with `key` (which must be the body's signer to verify).
    pub fn sign(self, key: &Keypair) -> SignedTx {
        let signature = key.sign(TX_NAMESPACE, &self.encode());
        SignedTx {
            body: self,
            signature,
        }
    }
}

/// A transaction with its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// What is signed.
    pub body: TxBody,
    /// The signer's signature over the encoded body.
    pub signature: Signature,
}
codec_struct!(SignedTx {
    body: TxBody,
    signature: Signature
});

impl SignedTx {
    /// Builds and signs a transaction.
    pub fn new(chain_id: &Name, key: &Keypair, nonce: u64, payload: Payload) -> Self {
        TxBody {
            chain_id: chain_id.clone(),
            signer: key.public(),
            nonce,
            payload,
        }
        .sign(key)
    }

    /// Decodes a transaction, refusing oversized input, unknown versions and trailing bytes.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self, TypeError> {
        let bytes: Bytes = bytes.into();
        if bytes.len() > MAX_TX_BYTES {
            return Err(TypeError::TooLong {
                what: "transaction",
                len: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        Self::decode(bytes).map_err(|e| TypeError::Decode {
            what: "transaction",
            reason: e.to_string(),
        })
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Bytes {
        self.encode()
    }

    /// The transaction id: SHA-256 of the canonical encoding.
    pub fn id(&self) -> Hash {
        Hash::of(&[&self.encode()])
    }

    /// Whether the signature is the signer's over the body.
    pub fn verify_signature(&self) -> bool {
        self.body
            .signer
            .verify(TX_NAMESPACE, &self.body.encode(), &self.signature)
    }
}

/// The message the new key signs in a key rotation.
pub fn rotation_message(chain_id: &Name, old_key: &PublicKey, nonce: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(80);
    chain_id.write(&mut m);
    old_key.write(&mut m);
    nonce.write(&mut m);
    m
}

/// The hash of a patient's authorization code as it is stored on the ledger. Codes carry at
/// least 80 bits of entropy, so the hash cannot be inverted by search; the patient's pseudonym
/// salts it so that equal codes of two patients do not collide.
pub fn code_hash(patient: &PatientId, code: &str) -> Hash {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Hash::of(&[b"medspace/grant-code/v1", &patient.0, normalized.as_bytes()])
}
