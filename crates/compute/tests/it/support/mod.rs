//! The three hospitals' vaults, their pooled copy and a ledger state for the data plane's
//! integration tests: every patient registered, linked and consenting to research; each
//! hospital's CDM published; a secure aggregation over the sites' vectors.

#![allow(dead_code)]
use medspace_compute::Links;
use medspace_privacy::secagg;
use medspace_state::{BlockContext, State};
use medspace_types::*;
use medspace_vault::{IngestOptions, OnError, Vault};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::path::{Path, PathBuf};

pub const SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex","age_band"]}"#;
pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
pub const PER_HOSPITAL: u64 = 120;

pub struct World {
    pub state: State,
    pub height: u64,
    pub chain: Name,
    pub dirs: Vec<PathBuf>,
    pub pooled: PathBuf,
    pub researcher: Keypair,
    pub patients: Vec<Vec<Keypair>>,
}

pub fn opts() -> IngestOptions {
    IngestOptions {
        on_error: OnError::Refuse,
        progress: false,
        vocabulary: None,
        ..IngestOptions::default()
    }
}

impl World {
    pub fn apply(
        &mut self,
        key: &Keypair,
        payload: Payload,
    ) -> Result<medspace_state::Receipt, medspace_state::TxError> {
        self.height += 1;
        let nonce = self.state.next_nonce(&key.public()).unwrap();
        let tx = SignedTx::new(&self.chain, key, nonce, payload);
        self.state.apply(
            &tx,
            &BlockContext {
                height: self.height,
                time_ms: 1_000_000 + self.height,
            },
        )
    }

    pub fn new(root: &Path) -> World {
        Self::build(root, false)
    }

    /// [`World::new`] where each hospital also holds a copy of the records of the previous
    /// hospital's referred patients (`medspace_synth::shared_resources`: one in ten), linked to
    /// the same pseudonym: patients held by two hospitals. The pooled vault holds each once.
    pub fn with_referrals(root: &Path) -> World {
        Self::build(root, true)
    }

    fn build(root: &Path, referrals: bool) -> World {
        let chain = Name::new("test").unwrap();
        let nodes: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(100 + i)).collect();
        let stewards: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(200 + i)).collect();
        let researcher = Keypair::from_seed(300);
        let policy = Policy {
            requirements: List::new(vec![Requirement {
                level: Level::L2,
                role: Role::Steward,
                scope: ApprovalScope::PerOwner,
            }])
            .unwrap(),
            ..Policy::default()
        };
        let mut g = medspace_consortium::GenesisBuilder::new("test")
            .unwrap()
            .time(1_000_000)
            .policy(policy);
        for ((h, node), steward) in HOSPITALS.iter().zip(&nodes).zip(&stewards) {
            g = g
                .member(h, MemberKind::Hospital, node)
                .unwrap()
                .user(&format!("{h}.steward"), h, Role::Steward, steward)
                .unwrap();
        }
        let genesis = g
            .member_with(
                "research-1",
                MemberKind::ResearchInstitute,
                &Keypair::from_seed(301),
                100,
                Hash::default(),
            )
            .unwrap()
            .user(
                "research-1.researcher",
                "research-1",
                Role::Researcher,
                &researcher,
            )
            .unwrap()
            .build();
        let state = State::genesis(&genesis).unwrap();
        let mut w = World {
            state,
            height: 0,
            chain,
            dirs: Vec::new(),
            pooled: root.join("pooled"),
            researcher,
            patients: Vec::new(),
        };
        let mut pooled = Vault::open(&w.pooled, &vkey(&w.pooled)).unwrap();
        let mut known: std::collections::BTreeMap<String, Keypair> = Default::default();
        for (h, member) in HOSPITALS.iter().enumerate() {
            let dir = root.join(member);
            let mut vault = Vault::open(&dir, &vkey(&dir)).unwrap();
            let referred = if referrals {
                medspace_synth::shared_resources(7, h as u32, 3, PER_HOSPITAL)
            } else {
                Vec::new()
            };
            let resources: Vec<serde_json::Value> = medspace_synth::hospital_resources(7, h as u32)
                .into_iter()
                .chain(
                    (0..PER_HOSPITAL)
                        .flat_map(|i| medspace_synth::patient_resources(7, h as u32, i)),
                )
                .chain(referred)
                .collect();
            vault
                .ingest_values("synth", resources.clone(), &opts())
                .unwrap();
            pooled.ingest_values("synth", resources, &opts()).unwrap();
            // Every patient registers, links and consents to research.
            let mut links = Links::default();
            let mut keys = Vec::new();
            for (i, (person, fhir_id, _)) in vault.persons().into_iter().enumerate() {
                // A referred patient is the same person, with the key they already have.
                if let Some(key) = known.get(&fhir_id) {
                    links
                        .link(person, PatientId::from_key(&key.public()))
                        .unwrap();
                    continue;
                }
                let key = Keypair::from_seed(10_000 + (h as u64) * 1000 + i as u64);
                known.insert(fhir_id, key.clone());
                let id = PatientId::from_key(&key.public());
                links.link(person, id).unwrap();
                let reg = RegisterPatient::attested(
                    &w.chain,
                    &key.public(),
                    MemberId::new(member).unwrap(),
                    &nodes[h],
                );
                w.apply(&key, Payload::RegisterPatient(reg)).unwrap();
                w.apply(
                    &key,
                    Payload::SetConsent(SetConsent {
                        purpose: Purpose::Research,
                        study: None,
                        decision: Decision::Allow,
                        l4_opt_in: false,
                    }),
                )
                .unwrap();
                keys.push(key);
            }
            links.save(&dir, &vkey(&dir)).unwrap();
            w.patients.push(keys);
            let desc = cdm_dataset(member, &PUBLISHED, PER_HOSPITAL);
            w.apply(
                &stewards[h],
                Payload::PublishDataset(PublishDataset { dataset: desc }),
            )
            .unwrap();
            w.dirs.push(dir);
        }
        w
    }

    /// Every person of the pooled vault (each once).
    pub fn pooled_persons(&self) -> std::collections::BTreeSet<i64> {
        Vault::open_read_only(&self.pooled, &vkey(&self.pooled))
            .unwrap()
            .persons()
            .into_iter()
            .map(|(p, _, _)| p)
            .collect()
    }

    pub fn contract(&mut self, fields: &[(&str, &str)]) -> ContractId {
        self.contract_for(fields, SPEC)
    }

    pub fn contract_for(&mut self, fields: &[(&str, &str)], spec: &str) -> ContractId {
        let mut refs = Vec::new();
        for h in HOSPITALS {
            for (t, f) in fields {
                refs.push(FieldRef {
                    dataset: DatasetId::new(&format!("{h}.cdm")).unwrap(),
                    table: Text::new(*t).unwrap(),
                    field: Text::new(*f).unwrap(),
                });
            }
        }
        let r = self
            .apply(
                &self.researcher.clone(),
                Payload::SubmitRequest(SubmitRequest {
                    purpose: Purpose::Research,
                    mode: Mode::Compute,
                    study: None,
                    fields: List::new(refs).unwrap(),
                    computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
                    expiry_ms: 1_000_000 + 1_000_000,
                    epsilon_budget: 1_000_000,
                    fee: 0,
                }),
            )
            .unwrap();
        let Some(medspace_state::Created::Contract(id)) = r.created else {
            panic!("no contract")
        };
        for h in 0..3 {
            self.apply(
                &Keypair::from_seed(200 + h),
                Payload::Approve(Approve { contract: id }),
            )
            .unwrap();
        }
        id
    }

    pub fn job(&mut self, contract: ContractId) -> JobId {
        self.job_with(contract, SPEC, 100_000)
    }

    pub fn job_with(&mut self, contract: ContractId, spec: &str, epsilon: u64) -> JobId {
        let r = self
            .apply(
                &self.researcher.clone(),
                Payload::SubmitJob(SubmitJob {
                    contract,
                    computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
                    epsilon,
                }),
            )
            .unwrap();
        let Some(medspace_state::Created::Job(id)) = r.created else {
            panic!("no job")
        };
        id
    }
}

/// `member`'s CDM catalog entry listing `tables` (each with `rows` rows), every field at the
/// level the default classification gives it.
pub fn cdm_dataset(member: &str, tables: &[(&str, &[&str])], rows: u64) -> DatasetDescription {
    DatasetDescription {
        id: DatasetId::new(&format!("{member}.cdm")).unwrap(),
        title: Text::new("cdm").unwrap(),
        version: 1,
        tables: List::new(
            tables
                .iter()
                .map(|(table, fields)| TableDesc {
                    name: Text::new(*table).unwrap(),
                    rows,
                    duplicate_ppm: 0,
                    implausible_ppm: 0,
                    fields: List::new(
                        fields
                            .iter()
                            .map(|f| FieldDesc {
                                name: Text::new(*f).unwrap(),
                                level: level_of(table, f),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            })
                            .collect(),
                    )
                    .unwrap(),
                })
                .collect(),
        )
        .unwrap(),
        content_hash: Hash::default(),
    }
}

/// The level the consortium's default classification gives a field.
pub fn level_of(table: &str, column: &str) -> Level {
    medspace_types::classification::Classification::default().field_level(table, column)
}

/// The tables and fields each hospital publishes.
pub const PUBLISHED: [(&str, &[&str]); 5] = [
    (
        "person",
        &["person_id", "gender_source_value", "year_of_birth"],
    ),
    (
        "condition_occurrence",
        &[
            "person_id",
            "condition_source_value",
            "condition_start_date",
        ],
    ),
    (
        "measurement",
        &[
            "person_id",
            "measurement_source_value",
            "measurement_date",
            "value_as_number",
        ],
    ),
    ("death", &["person_id", "death_date"]),
    ("visit_occurrence", &["person_id", "visit_start_date"]),
];

pub const ALL_FIELDS: [(&str, &str); 5] = [
    ("person", "person_id"),
    ("person", "gender_source_value"),
    ("person", "year_of_birth"),
    ("condition_occurrence", "condition_source_value"),
    ("condition_occurrence", "condition_start_date"),
];

pub fn secrets() -> (
    Vec<x25519_dalek::StaticSecret>,
    Vec<x25519_dalek::PublicKey>,
) {
    let s: Vec<x25519_dalek::StaticSecret> = (0..3u8)
        .map(|i| x25519_dalek::StaticSecret::from([i + 1; 32]))
        .collect();
    let p = s.iter().map(x25519_dalek::PublicKey::from).collect();
    (s, p)
}

/// A secure aggregation round over the sites' vectors; a `None` site never dealt (dropped).
pub fn secure_total(job: JobId, vectors: &[Option<Vec<i64>>]) -> Vec<i64> {
    let (x, peers) = secrets();
    let round = secagg::Round::new(Hash::of(&[&job.0.to_be_bytes()]).0, 3).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let keys = |i: usize| secagg::Keys {
        me: i,
        secret: &x[i],
        peers: &peers,
    };
    let u1: Vec<usize> = (0..3).filter(|i| vectors[*i].is_some()).collect();
    let secrets: Vec<secagg::SiteSecrets> = (0..3)
        .map(|_| secagg::SiteSecrets::random(&mut rng))
        .collect();
    let dealings: Vec<(usize, secagg::Dealing)> = u1
        .iter()
        .map(|&i| (i, secagg::deal(&round, &keys(i), &secrets[i]).unwrap()))
        .collect();
    let mut masked = Vec::new();
    let mut reveals = Vec::new();
    for &i in &u1 {
        let v: Vec<u64> = vectors[i]
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| secagg::encode_i64(*v))
            .collect();
        masked.push((
            i,
            secagg::mask(&round, &keys(i), &u1, &secrets[i], &v).unwrap(),
        ));
        let held: Vec<(usize, secagg::HeldShare)> = dealings
            .iter()
            .map(|(d, dl)| (*d, secagg::open_share(&round, &keys(i), *d, dl).unwrap()))
            .collect();
        reveals.push(secagg::reveal(&round, i, &u1, &u1, &held).unwrap());
    }
    let (sum, cheaters) = secagg::unmask(&round, &u1, &u1, &dealings, &masked, &reveals).unwrap();
    assert!(cheaters.is_empty());
    sum.into_iter().map(secagg::decode_i64).collect()
}

/// The test vault's keys: a fixed passphrase and the cheapest argon2id parameters, the vault's
/// keys created on first use.
pub fn vkey(node: &std::path::Path) -> medspace_vault::VaultKey {
    medspace_vault::VaultKey::unlock_or_create(
        node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
}
