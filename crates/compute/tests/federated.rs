//! A federated job over three hospitals' vaults against the same query on the pooled data,
//! refusals of the plan, and the aggregator's view.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_compute::Links;
use medspace_compute::federated::{SiteVault, contributed_records, run_site};
use medspace_privacy::query::parse;
use medspace_privacy::release::{Protection, group_label, release_totals};
use medspace_privacy::secagg;
use medspace_state::{BlockContext, State};
use medspace_types::*;
use medspace_vault::{IngestOptions, OnError, Vault};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SPEC_BY_SEX: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
const SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex","age_band"]}"#;
const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
const PER_HOSPITAL: u64 = 120;

struct World {
    state: State,
    height: u64,
    chain: Name,
    dirs: Vec<PathBuf>,
    pooled: PathBuf,
    researcher: Keypair,
    patients: Vec<Vec<Keypair>>,
}

fn opts() -> IngestOptions {
    IngestOptions {
        on_error: OnError::Refuse,
        progress: false,
        vocabulary: None,
        fail_after: None,
    }
}

impl World {
    fn apply(
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

    fn new(root: &Path) -> World {
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
        for (h, member) in HOSPITALS.iter().enumerate() {
            let dir = root.join(member);
            let mut vault = Vault::open(&dir, &vkey(&dir)).unwrap();
            let resources: Vec<serde_json::Value> = medspace_synth::hospital_resources(7, h as u32)
                .into_iter()
                .chain(
                    (0..PER_HOSPITAL)
                        .flat_map(|i| medspace_synth::patient_resources(7, h as u32, i)),
                )
                .collect();
            vault
                .ingest_values("synth", resources.clone(), &opts())
                .unwrap();
            pooled.ingest_values("synth", resources, &opts()).unwrap();
            // Every patient registers, links and consents to research.
            let mut links = Links::default();
            let mut keys = Vec::new();
            for (i, (person, _, _)) in vault.persons().into_iter().enumerate() {
                let key = Keypair::from_seed(10_000 + (h as u64) * 1000 + i as u64);
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
            let desc = DatasetDescription {
                id: DatasetId::new(&format!("{member}.cdm")).unwrap(),
                title: Text::new("cdm").unwrap(),
                version: 1,
                tables: List::new(vec![
                    TableDesc {
                        name: Text::new("person").unwrap(),
                        rows: PER_HOSPITAL,
                        duplicate_ppm: 0,
                        implausible_ppm: 0,
                        fields: List::new(vec![
                            FieldDesc {
                                name: Text::new("person_id").unwrap(),
                                level: level_of("person_id"),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            },
                            FieldDesc {
                                name: Text::new("gender_source_value").unwrap(),
                                level: level_of("gender_source_value"),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            },
                            FieldDesc {
                                name: Text::new("year_of_birth").unwrap(),
                                level: level_of("year_of_birth"),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            },
                        ])
                        .unwrap(),
                    },
                    TableDesc {
                        name: Text::new("condition_occurrence").unwrap(),
                        rows: 1,
                        duplicate_ppm: 0,
                        implausible_ppm: 0,
                        fields: List::new(vec![
                            FieldDesc {
                                name: Text::new("condition_source_value").unwrap(),
                                level: level_of("condition_source_value"),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            },
                            FieldDesc {
                                name: Text::new("condition_start_date").unwrap(),
                                level: level_of("condition_start_date"),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            },
                        ])
                        .unwrap(),
                    },
                ])
                .unwrap(),
                content_hash: Hash::default(),
            };
            w.apply(
                &stewards[h],
                Payload::PublishDataset(PublishDataset { dataset: desc }),
            )
            .unwrap();
            w.dirs.push(dir);
        }
        w
    }

    fn contract(&mut self, fields: &[(&str, &str)]) -> ContractId {
        self.contract_for(fields, SPEC)
    }

    fn contract_for(&mut self, fields: &[(&str, &str)], spec: &str) -> ContractId {
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

    fn job(&mut self, contract: ContractId) -> JobId {
        self.job_with(contract, SPEC, 100_000)
    }

    fn job_with(&mut self, contract: ContractId, spec: &str, epsilon: u64) -> JobId {
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

/// The level the consortium's default classification gives a field (the tables here have
/// distinct column names).
fn level_of(column: &str) -> Level {
    let c = medspace_types::classification::Classification::default();
    ["person", "condition_occurrence"]
        .iter()
        .map(|t| c.field_level(t, column))
        .min()
        .unwrap()
}

const ALL_FIELDS: [(&str, &str); 5] = [
    ("person", "person_id"),
    ("person", "gender_source_value"),
    ("person", "year_of_birth"),
    ("condition_occurrence", "condition_source_value"),
    ("condition_occurrence", "condition_start_date"),
];

fn secrets() -> (
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
fn secure_total(job: JobId, vectors: &[Option<Vec<i64>>]) -> Vec<i64> {
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

fn run_all(
    w: &World,
    job: JobId,
    protection: Protection,
    drop: Option<usize>,
) -> Vec<(String, Option<i64>)> {
    let json = std::str::from_utf8(w.state.job(job).unwrap().unwrap().computation.as_bytes())
        .unwrap()
        .to_string();
    let spec = parse(&json).unwrap().0;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut vectors = Vec::new();
    for (i, member) in HOSPITALS.iter().enumerate() {
        if Some(i) == drop {
            vectors.push(None);
            continue;
        }
        let links = Links::load(&w.dirs[i], &vkey(&w.dirs[i])).unwrap();
        let (vector, _) = run_site(
            &w.state,
            job,
            &MemberId::new(member).unwrap(),
            SiteVault {
                dir: &w.dirs[i],
                key: &vkey(&w.dirs[i]),
            },
            &links,
            protection,
            &mut rng,
        )
        .unwrap();
        vectors.push(Some(vector));
    }
    release_totals(&spec, &secure_total(job, &vectors), protection)
        .unwrap()
        .into_iter()
        .map(|c| (group_label(&c.group), c.n))
        .collect()
}

fn pooled(w: &World, exclude: &[&Path]) -> Vec<(String, Option<i64>)> {
    pooled_for(w, SPEC, exclude)
}

fn pooled_for(w: &World, spec: &str, exclude: &[&Path]) -> Vec<(String, Option<i64>)> {
    // The same compiled query on the pooled vault, every pooled patient consenting.
    let spec = parse(spec).unwrap().0;
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let vault = Vault::open_read_only(&w.pooled, &vkey(&w.pooled)).unwrap();
    let excluded: BTreeSet<String> = exclude
        .iter()
        .flat_map(|d| {
            Vault::open_read_only(d, &vkey(d))
                .unwrap()
                .persons()
                .into_iter()
                .map(|(_, id, _)| id)
        })
        .collect();
    let cohort: BTreeSet<i64> = vault
        .persons()
        .into_iter()
        .filter(|(_, id, _)| !excluded.contains(id))
        .map(|(p, _, _)| p)
        .collect();
    let rows = medspace_compute::local::run(&w.pooled, &vkey(&w.pooled), &cohort, &sql).unwrap();
    let layout = medspace_privacy::query::groups(&spec);
    let mut out: Vec<(String, Option<i64>)> =
        layout.iter().map(|g| (group_label(g), Some(0))).collect();
    for r in rows {
        let i = medspace_privacy::query::group_index(
            &layout,
            r.key.first().map(String::as_str),
            r.key.get(1).map(String::as_str),
        );
        if let Some(i) = i {
            out[i].1 = Some(r.values[0]);
        }
    }
    out
}

#[test]
fn federated_equals_pooled_without_protection_and_handles_a_dropout() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    let fed = run_all(&w, job, Protection::TestNone, None);
    let pool = pooled(&w, &[]);
    assert_eq!(fed, pool);
    assert!(
        pool.iter().map(|(_, n)| n.unwrap()).sum::<i64>() > 0,
        "the cohort is not empty"
    );
    // Hospital c drops out before dealing: the survivors' sum is exact.
    let fed = run_all(&w, job, Protection::TestNone, Some(2));
    assert_eq!(fed, pooled(&w, &[&w.dirs[2]]));
    // With protection (by sex, ε=0.3 per site, 0.9 charged for three sites: each site's
    // discrete Laplace noise has scale 3.3), a cell is released noisy but close when well
    // above k, suppressed when well below.
    let by_sex = w.contract_for(&ALL_FIELDS, SPEC_BY_SEX);
    let job = w.job_with(by_sex, SPEC_BY_SEX, 300_000);
    let protected = run_all(&w, job, Protection::Full { k: 10 }, None);
    let exact = pooled_for(&w, SPEC_BY_SEX, &[]);
    let mut released = 0;
    for ((g, p), (_, exact)) in protected.iter().zip(&exact) {
        let exact = exact.unwrap();
        match p {
            None => assert!(exact < 10 + 20, "{g}: a cell of {exact} was suppressed"),
            Some(v) => {
                assert!((v - exact).abs() < 20, "{g}: {v} vs {exact}");
                released += 1;
            }
        }
        if exact >= 30 {
            assert!(p.is_some(), "{g}: a cell of {exact} must be released");
        }
    }
    assert!(
        released > 0,
        "some cells are above k and released: {exact:?}"
    );
}

#[test]
fn a_site_posts_what_its_released_vector_counts_never_its_exact_cohort() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract_for(&ALL_FIELDS, SPEC_BY_SEX);
    let job = w.job_with(contract, SPEC_BY_SEX, 300_000);
    let spec = parse(SPEC_BY_SEX).unwrap().0;
    let member = MemberId::new("hospital-a").unwrap();
    let key = vkey(&w.dirs[0]);
    let links = Links::load(&w.dirs[0], &key).unwrap();
    let vault = SiteVault {
        dir: &w.dirs[0],
        key: &key,
    };
    let site = |protection, seed| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        run_site(&w.state, job, &member, vault, &links, protection, &mut rng).unwrap()
    };
    // Unprotected, it is exactly the patients the query counted there (not the consenting
    // cohort, which is larger).
    let (exact_vector, exact) = site(Protection::TestNone, 0);
    let counted: i64 = exact_vector.iter().sum();
    assert_eq!(exact, u64::try_from(counted).unwrap());
    assert!(exact > 0);
    // Protected, it is the total of the noised vector the site releases, and that total moves
    // with the noise: the exact number is never what the ledger gets.
    let mut seen = BTreeSet::new();
    for seed in 0..12 {
        let (vector, records) = site(Protection::Full { k: 10 }, seed);
        assert_eq!(records, contributed_records(&spec, &vector), "seed {seed}");
        seen.insert(records);
    }
    assert!(seen.len() > 3, "the posted count is noised: {seen:?}");
}

#[test]
fn revoked_consent_leaves_the_next_jobs_cohort() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    let links = Links::load(&w.dirs[0], &vkey(&w.dirs[0])).unwrap();
    let member = MemberId::new("hospital-a").unwrap();
    let reads: Vec<(String, String)> = ALL_FIELDS
        .iter()
        .skip(1)
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    let before = medspace_compute::plan_job(&w.state, job, &member, &links, &reads)
        .unwrap()
        .cohort
        .len();
    let leaver = w.patients[0][0].clone();
    w.apply(
        &leaver,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    )
    .unwrap();
    // The job submitted before the revocation is judged at its own height.
    assert_eq!(
        medspace_compute::plan_job(&w.state, job, &member, &links, &reads)
            .unwrap()
            .cohort
            .len(),
        before
    );
    let job2 = w.job(contract);
    assert_eq!(
        medspace_compute::plan_job(&w.state, job2, &member, &links, &reads)
            .unwrap()
            .cohort
            .len(),
        before - 1
    );
}

#[test]
fn out_of_scope_fields_and_ended_contracts_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    // A contract that does not cover condition dates.
    let contract = w.contract(&ALL_FIELDS[..4]);
    let job = w.job(contract);
    let links = Links::load(&w.dirs[0], &vkey(&w.dirs[0])).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let err = run_site(
        &w.state,
        job,
        &MemberId::new("hospital-a").unwrap(),
        SiteVault {
            dir: &w.dirs[0],
            key: &vkey(&w.dirs[0]),
        },
        &links,
        Protection::TestNone,
        &mut rng,
    )
    .unwrap_err();
    assert!(err.to_string().contains("out of scope"), "{err}");
    // A terminated contract: nothing runs.
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    w.apply(
        &w.researcher.clone(),
        Payload::Terminate(Terminate {
            contract,
            reason: Text::new("done").unwrap(),
        }),
    )
    .unwrap();
    let err = run_site(
        &w.state,
        job,
        &MemberId::new("hospital-a").unwrap(),
        SiteVault {
            dir: &w.dirs[0],
            key: &vkey(&w.dirs[0]),
        },
        &links,
        Protection::TestNone,
        &mut rng,
    )
    .unwrap_err();
    assert!(err.to_string().contains("terminated"), "{err}");
    // A member that owns no data in scope.
    let err = medspace_compute::plan_job(
        &w.state,
        job,
        &MemberId::new("research-1").unwrap(),
        &links,
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("terminated") || err.to_string().contains("holds no data"),
        "{err}"
    );
}

/// The test vault's keys: a fixed passphrase and the cheapest argon2id parameters, the vault's
/// keys created on first use.
#[allow(dead_code)]
fn vkey(node: &std::path::Path) -> medspace_vault::VaultKey {
    medspace_vault::VaultKey::unlock_or_create(
        node,
        &medspace_vault::seal::Passphrase::new("test passphrase").unwrap(),
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
}
