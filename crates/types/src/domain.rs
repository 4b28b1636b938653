//! The vocabulary of the consortium: roles, privacy levels, purposes, sharing modes, members,
//! the policy, and the catalog's dataset descriptions.

use crate::codec::{List, Text};
use crate::ids::{ContractId, DatasetId, GrantId, Hash, MemberId};
use crate::{PublicKey, codec_enum, codec_struct, unit_enum};
use serde::{Deserialize, Serialize};

unit_enum!(
    /// What a user may do for their institution.
    Role {
        1 => Steward = "steward",
        2 => DataCommittee = "data_committee",
        3 => EthicsCommittee = "ethics_committee",
        4 => Researcher = "researcher",
        5 => Clinician = "clinician",
        6 => ClaimsOfficer = "claims_officer",
        7 => Auditor = "auditor",
        8 => Patient = "patient",
    }
);

unit_enum!(
    /// Privacy level of a field or resource type (DESIGN §3); a request's level is the highest
    /// level it touches.
    Level {
        /// De-identified, k-anonymous, or aggregate only.
        1 => L1 = "L1",
        /// Pseudonymized record-level.
        2 => L2 = "L2",
        /// Identifiable clinical record.
        3 => L3 = "L3",
        /// Genomic, mental health, HIV/STI, reproductive, substance use.
        4 => L4 = "L4",
    }
);

unit_enum!(
    /// Why data is used.
    Purpose {
        1 => Treatment = "treatment",
        2 => PatientAccess = "patient_access",
        3 => Research = "research",
        4 => Teaching = "teaching",
        5 => InsuranceClaim = "insurance_claim",
        6 => PublicHealth = "public_health",
        7 => DrugSafety = "drug_safety",
        8 => QualityManagement = "quality_management",
    }
);

unit_enum!(
    /// How data is shared (DESIGN §3).
    Mode {
        /// A de-identified extract published with its hash.
        1 => OpenPool = "open_pool",
        /// Record-level FHIR delivered node to node.
        2 => RecordSharing = "record_sharing",
        /// Compute-to-data: only results leave.
        3 => Compute = "compute",
    }
);

unit_enum!(
    /// What kind of institution a member is.
    MemberKind {
        1 => Hospital = "hospital",
        2 => Insurer = "insurer",
        3 => Pharma = "pharma",
        4 => ResearchInstitute = "research_institute",
        5 => PublicHealthAgency = "public_health_agency",
        6 => Regulator = "regulator",
    }
);

unit_enum!(
    /// Who must give an approval: one per data-owning institution, or one for the consortium.
    ApprovalScope {
        1 => PerOwner = "per_owner",
        2 => Consortium = "consortium",
    }
);

/// A member institution as registered on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its identifier.
    pub id: MemberId,
    /// Display name.
    pub name: Text<128>,
    /// Kind of institution.
    pub kind: MemberKind,
    /// The institution's own signing key, its **member key**: governance (proposals, votes),
    /// its users, its catalog, its contracts' business, replacing its node key. Kept out of the
    /// node process (the CLI holds it).
    pub key: PublicKey,
    /// Its **node key**: the key its network-facing node signs with (a job's round and result,
    /// a delivery's access record, the node's signed reads and worker messages). It cannot
    /// propose, vote, register users or rotate keys; the member key replaces it
    /// (`RotateNodeKey`).
    pub node_key: PublicKey,
    /// Its X25519 key-agreement public key, for secure aggregation between sites.
    pub agreement_key: Hash,
}
codec_struct!(Member {
    id: MemberId,
    name: Text<128>,
    kind: MemberKind,
    key: PublicKey,
    node_key: PublicKey,
    agreement_key: Hash,
});

/// One approval a contract of some level needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The level this requirement applies to (and every higher level inherits it).
    pub level: Level,
    /// The role that must approve.
    pub role: Role,
    /// One approval per data owner, or one for the consortium.
    pub scope: ApprovalScope,
}
codec_struct!(Requirement {
    level: Level,
    role: Role,
    scope: ApprovalScope,
});

/// The consortium's policy, changed only by a 2/3 member vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Votes needed to pass a proposal: `yes * den >= members * num`.
    pub vote_num: u32,
    /// See `vote_num`.
    pub vote_den: u32,
    /// Approvals by level; a requirement of level `l` applies to every request of level `>= l`.
    pub requirements: List<Requirement, 32>,
    /// Small-cell suppression threshold for released aggregates.
    pub min_cell_k: u32,
    /// Longest lifetime of a data-use contract, in milliseconds.
    pub max_contract_ms: u64,
    /// Largest epsilon budget of one contract, in micro-epsilon.
    pub max_epsilon_micro: u64,
    /// Purposes that need no explicit patient consent (below L4). Who may request a purpose is
    /// decided by `medspace_state::policy::may_request` (by role and kind of institution).
    pub implied_consent: List<Purpose, 8>,
    /// How long a governance proposal stays open, in milliseconds.
    pub proposal_ttl_ms: u64,
    /// Largest epsilon one job may reserve, in micro-epsilon.
    #[serde(default = "default_max_job_epsilon_micro")]
    pub max_job_epsilon_micro: u64,
    /// Lifetime epsilon budget of one dataset over every contract and job that touches it, in
    /// micro-epsilon. A job reserves its epsilon on every dataset its contract names.
    ///
    /// This bounds what the consortium releases about one hospital's dataset, not what it
    /// releases about one person: a patient treated at several hospitals is in several
    /// datasets, each with its own budget, so their privacy loss can add up to this budget
    /// times the number of datasets holding them (and a member republishing its data under a
    /// new dataset id starts a new budget). The ledger cannot link a person across sites, so it
    /// cannot do better; private set intersection would be the place to.
    #[serde(default = "default_dataset_epsilon_micro")]
    pub dataset_epsilon_micro: u64,
    /// The privacy level of every field and the codes that make data highly sensitive
    /// (the default classification when a genesis file leaves it out).
    #[serde(default)]
    pub classification: crate::classification::Classification,
    /// How long a hospital's re-binding of a patient's key waits before the new key may take
    /// over, in milliseconds: the patient's current key may veto it meanwhile.
    #[serde(default = "default_rebind_delay_ms")]
    pub rebind_delay_ms: u64,
    /// What the open pool demands of a de-identified release, and of its recipients.
    #[serde(default)]
    pub open_pool: OpenPoolPolicy,
    /// The data quality a request's fields must have (by purpose and level): a request over
    /// data below a floor is flagged with its failing checks for every reviewer, and always
    /// needs the data owners' stewards.
    #[serde(default = "default_quality_floors")]
    pub quality_floors: List<QualityFloor, 16>,
}
codec_struct!(Policy {
    vote_num: u32,
    vote_den: u32,
    requirements: List<Requirement, 32>,
    min_cell_k: u32,
    max_contract_ms: u64,
    max_epsilon_micro: u64,
    implied_consent: List<Purpose, 8>,
    proposal_ttl_ms: u64,
    max_job_epsilon_micro: u64,
    dataset_epsilon_micro: u64,
    classification: crate::classification::Classification,
    rebind_delay_ms: u64,
    open_pool: OpenPoolPolicy,
    quality_floors: List<QualityFloor, 16>,
});

/// A minimum data quality for requests of a purpose (or every purpose) at a level and above,
/// as the largest share (ppm) of each failing check the consortium accepts in a requested
/// field (missing values, invalid or unmapped codes) or its table (duplicate rows, implausible
/// values), as the catalog entry states them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityFloor {
    /// The purpose it applies to (`None`: every purpose).
    pub purpose: Option<Purpose>,
    /// It applies to requests of this level and above.
    pub level: Level,
    /// Largest share of missing values in a requested field.
    pub max_missing_ppm: u32,
    /// Largest share of invalid or unmapped codes in a requested field.
    pub max_invalid_ppm: u32,
    /// Largest share of duplicate rows in a requested field's table.
    pub max_duplicate_ppm: u32,
    /// Largest share of implausible values in a requested field's table.
    pub max_implausible_ppm: u32,
}
codec_struct!(QualityFloor {
    purpose: Option<Purpose>,
    level: Level,
    max_missing_ppm: u32,
    max_invalid_ppm: u32,
    max_duplicate_ppm: u32,
    max_implausible_ppm: u32,
});

/// The default quality floor: for research at L2 and above (record-level, pseudonymized), at
/// most half of a requested field missing, a tenth of its codes invalid or unmapped, and a
/// hundredth of its table's rows duplicate or implausible.
pub fn default_quality_floors() -> List<QualityFloor, 16> {
    List::new(vec![QualityFloor {
        purpose: Some(Purpose::Research),
        level: Level::L2,
        max_missing_ppm: 500_000,
        max_invalid_ppm: 100_000,
        max_duplicate_ppm: 10_000,
        max_implausible_ppm: 10_000,
    }])
    .unwrap_or_default()
}

/// The consortium's standard for the open pool: what a release must prove to be published
/// (its figures, as [`ReleaseFigures`] carries them) and how long a recipient has, once its
/// contract ends, to attest the destruction of what it received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenPoolPolicy {
    /// Smallest equivalence class a release may have (k-anonymity).
    pub min_k: u32,
    /// Fewest distinct sensitive values in every class (distinct l-diversity); 0: not required.
    pub min_l: u32,
    /// Highest prosecutor re-identification risk of any record, parts per million.
    pub max_risk_ppm: u32,
    /// Milliseconds after a contract's end by which each delivered copy must be attested
    /// destroyed; a recipient with an overdue attestation may not request more data.
    pub destruction_ms: u64,
}
codec_struct!(OpenPoolPolicy {
    min_k: u32,
    min_l: u32,
    max_risk_ppm: u32,
    destruction_ms: u64,
});

impl Default for OpenPoolPolicy {
    /// k = 5, l = 2, a record's risk at most 1/5, thirty days to attest destruction.
    fn default() -> Self {
        Self {
            min_k: 5,
            min_l: 2,
            max_risk_ppm: 200_000,
            destruction_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// What a de-identified release proves of itself, as its owner's vault measured it on the
/// extract (risks and shares in parts per million). The ledger checks these against the
/// [`OpenPoolPolicy`]; the extract's hash in the catalog entry binds them to the bytes a
/// recipient receives, where anyone holding them can recompute every figure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFigures {
    /// The owner's dataset the release was derived from.
    pub source: DatasetId,
    /// The purposes the released persons consented to (at `consent_height`): an open-pool
    /// request for any other purpose is refused.
    pub purposes: List<Purpose, 8>,
    /// The ledger height whose consents selected the persons.
    pub consent_height: u64,
    /// SHA-256 of the release specification (the contract-approved de-identification).
    pub spec_hash: Hash,
    /// Smallest equivalence class over the quasi-identifiers.
    pub k: u32,
    /// Fewest distinct sensitive values in a class (0 when none is declared).
    pub l: u32,
    /// Persons in the extract.
    pub persons: u64,
    /// Persons suppressed to reach the targets.
    pub suppressed: u64,
    /// Highest prosecutor risk of a record.
    pub prosecutor_max_ppm: u32,
    /// Average prosecutor risk.
    pub prosecutor_avg_ppm: u32,
    /// Highest journalist risk (against the source population).
    pub journalist_max_ppm: u32,
    /// Marketer risk: the expected share of records re-identified.
    pub marketer_ppm: u32,
    /// Share of records whose risk is above the report's threshold.
    pub at_risk_ppm: u32,
}
codec_struct!(ReleaseFigures {
    source: DatasetId,
    purposes: List<Purpose, 8>,
    consent_height: u64,
    spec_hash: Hash,
    k: u32,
    l: u32,
    persons: u64,
    suppressed: u64,
    prosecutor_max_ppm: u32,
    prosecutor_avg_ppm: u32,
    journalist_max_ppm: u32,
    marketer_ppm: u32,
    at_risk_ppm: u32,
});

/// The default veto delay of a patient key re-binding: three days.
pub fn default_rebind_delay_ms() -> u64 {
    3 * 24 * 3600 * 1000
}

/// The default per-job epsilon cap: 1 (in micro-epsilon).
pub fn default_max_job_epsilon_micro() -> u64 {
    1_000_000
}

/// The default lifetime epsilon budget of a dataset: 50 (in micro-epsilon).
pub fn default_dataset_epsilon_micro() -> u64 {
    50_000_000
}

impl Default for Policy {
    /// The defaults of DESIGN §3: L2 needs the owner's steward; L3 adds the data and ethics
    /// committees; L4 adds the regulator.
    fn default() -> Self {
        let req = |level, role, scope| Requirement { level, role, scope };
        Self {
            vote_num: 2,
            vote_den: 3,
            requirements: List::new(vec![
                req(Level::L2, Role::Steward, ApprovalScope::PerOwner),
                req(Level::L3, Role::DataCommittee, ApprovalScope::Consortium),
                req(Level::L3, Role::EthicsCommittee, ApprovalScope::Consortium),
                req(Level::L4, Role::Auditor, ApprovalScope::Consortium),
            ])
            .unwrap_or_default(),
            min_cell_k: 10,
            max_contract_ms: 2 * 365 * 24 * 3600 * 1000,
            max_epsilon_micro: 10_000_000,
            implied_consent: List::new(vec![
                Purpose::Treatment,
                Purpose::PatientAccess,
                Purpose::PublicHealth,
                Purpose::QualityManagement,
            ])
            .unwrap_or_default(),
            proposal_ttl_ms: 7 * 24 * 3600 * 1000,
            max_job_epsilon_micro: default_max_job_epsilon_micro(),
            dataset_epsilon_micro: default_dataset_epsilon_micro(),
            classification: crate::classification::Classification::default(),
            rebind_delay_ms: default_rebind_delay_ms(),
            open_pool: OpenPoolPolicy::default(),
            quality_floors: default_quality_floors(),
        }
    }
}

/// One field of a catalog table, with its privacy level and quality figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDesc {
    /// Column name.
    pub name: Text<64>,
    /// Privacy level.
    pub level: Level,
    /// Share of missing values, parts per million.
    pub missing_ppm: u32,
    /// Share of invalid or unknown codes, parts per million.
    pub invalid_ppm: u32,
}
codec_struct!(FieldDesc {
    name: Text<64>,
    level: Level,
    missing_ppm: u32,
    invalid_ppm: u32,
});

/// One table of a dataset: counts and quality, never data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDesc {
    /// Table name (e.g. `condition_occurrence`).
    pub name: Text<64>,
    /// Row count.
    pub rows: u64,
    /// Share of duplicate rows, parts per million.
    pub duplicate_ppm: u32,
    /// Share of implausible rows, parts per million.
    pub implausible_ppm: u32,
    /// Its fields.
    pub fields: List<FieldDesc, 128>,
}
codec_struct!(TableDesc {
    name: Text<64>,
    rows: u64,
    duplicate_ppm: u32,
    implausible_ppm: u32,
    fields: List<FieldDesc, 128>,
});

/// A catalog entry: what a dataset holds, described without any of its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetDescription {
    /// The dataset's identifier.
    pub id: DatasetId,
    /// A title.
    pub title: Text<256>,
    /// Version, increasing with each publication.
    pub version: u32,
    /// Its tables.
    pub tables: List<TableDesc, 32>,
    /// Hash of the dataset's content at publication.
    pub content_hash: Hash,
}
codec_struct!(DatasetDescription {
    id: DatasetId,
    title: Text<256>,
    version: u32,
    tables: List<TableDesc, 32>,
    content_hash: Hash,
});

impl DatasetDescription {
    /// The level of `table.field`, if the dataset has it.
    pub fn field_level(&self, table: &str, field: &str) -> Option<Level> {
        self.tables
            .iter()
            .find(|t| t.name.as_str() == table)?
            .fields
            .iter()
            .find(|f| f.name.as_str() == field)
            .map(|f| f.level)
    }
}

/// A field a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldRef {
    /// The dataset.
    pub dataset: DatasetId,
    /// The table.
    pub table: Text<64>,
    /// The field.
    pub field: Text<64>,
}
codec_struct!(FieldRef {
    dataset: DatasetId,
    table: Text<64>,
    field: Text<64>,
});

/// A contributing institution and how many records it contributed to a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// The institution.
    pub member: MemberId,
    /// Records (patients) it contributed.
    pub records: u64,
}
codec_struct!(Contribution {
    member: MemberId,
    records: u64,
});

/// On what authority records were delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessBasis {
    /// A patient's authorization grant.
    Grant(GrantId),
    /// An approved data-use contract in record-sharing mode.
    Contract(ContractId),
}
codec_enum!(AccessBasis {
    1 => Grant(GrantId),
    2 => Contract(ContractId),
});

unit_enum!(
    /// A patient's answer for a purpose (or one study).
    Decision {
        1 => Allow = "allow",
        2 => Deny = "deny",
    }
);
