//! A vertical study over real vaults: a hospital's generated patients and the insurer's claims
//! feed for the same persons (`medspace_synth::claims`), each side planned from the ledger and
//! read with its own SQL (`medspace_compute::vertical`), joined by the private intersection-sum
//! (`medspace_privacy::join`), released without noise — and compared with the same figures
//! computed straight from the generated FHIR, without the vaults, SQL or the protocol.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::support;

use medspace_compute::Links;
use medspace_compute::federated::SiteVault;
use medspace_compute::vertical::run_join_site;
use medspace_privacy::query::claims::release_cells;
use medspace_privacy::query::{Aggregate, parse};
use medspace_state::{BlockContext, State};
use medspace_types::*;
use medspace_vault::Vault;
use medspace_worker::compute::JoinInput;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;
use std::collections::BTreeMap;
use support::{cdm_dataset, opts, vkey};

const SEED: u64 = 7;
const PATIENTS: u64 = 160;
const SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"group_by":["sex"],"aggregate":{"claims":{"days":366,"max_claims":200,"max_paid":200000,"compare":{"name":"diabetes","codes":["44054006"]},"dp":false}}}"#;

struct Chain {
    state: State,
    height: u64,
    chain: Name,
}

impl Chain {
    fn apply(&mut self, key: &Keypair, payload: Payload) -> medspace_state::Receipt {
        self.height += 1;
        let nonce = self.state.next_nonce(&key.public()).unwrap();
        let tx = SignedTx::new(&self.chain, key, nonce, payload);
        let kind = tx.body.payload.kind();
        self.state
            .apply(
                &tx,
                &BlockContext {
                    height: self.height,
                    time_ms: 1_000_000 + self.height,
                },
            )
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
    }
}

const CLINICAL: [(&str, &[&str]); 2] = [
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
];
const CLAIMS: [(&str, &[&str]); 3] = [
    ("person", &["person_id"]),
    (
        "visit_occurrence",
        &["person_id", "visit_occurrence_id", "visit_start_date"],
    ),
    ("cost", &["cost_id", "cost_event_id", "total_paid"]),
];

fn text(v: &Value, path: &str) -> Option<String> {
    v.pointer(path).and_then(Value::as_str).map(String::from)
}

/// Per cell (female/male × with/without diabetes), `[n, Σclaims, Σclaims², Σpaid, Σpaid²]`
/// over the covered patients, straight from the generated resources.
fn from_fhir() -> Vec<[i64; 5]> {
    let mut out = vec![[0i64; 5]; 4];
    for i in 0..PATIENTS {
        if !medspace_synth::claims::covered(SEED, 0, i) {
            continue;
        }
        let record = medspace_synth::patient_resources(SEED, 0, i);
        let patient = record
            .iter()
            .find(|r| text(r, "/resourceType").as_deref() == Some("Patient"))
            .unwrap();
        let birth = text(patient, "/birthDate").unwrap();
        if birth.as_str() >= "2025" {
            continue;
        }
        let sex = match text(patient, "/gender").as_deref() {
            Some("female") => 0,
            Some("male") => 1,
            _ => continue,
        };
        let diabetic = record.iter().any(|r| {
            text(r, "/resourceType").as_deref() == Some("Condition")
                && text(r, "/code/coding/0/code").as_deref() == Some("44054006")
                && text(r, "/onsetDateTime").is_some_and(|d| d.get(..10) <= Some("2024-01-01"))
        });
        let (mut claims, mut paid) = (0i64, 0i64);
        for eob in medspace_synth::claims::insurer_resources(SEED, 0, i).unwrap() {
            if text(&eob, "/resourceType").as_deref() != Some("ExplanationOfBenefit") {
                continue;
            }
            let start = text(&eob, "/billablePeriod/start").unwrap();
            let day = start.get(..10).unwrap();
            if ("2024-01-01".."2025-01-01").contains(&day) {
                claims += 1;
                paid += eob
                    .pointer("/payment/amount/value")
                    .and_then(Value::as_f64)
                    .unwrap()
                    .round() as i64;
            }
        }
        let cell = &mut out[sex * 2 + usize::from(!diabetic)];
        cell[0] += 1;
        cell[1] += claims;
        cell[2] += claims * claims;
        cell[3] += paid;
        cell[4] += paid * paid;
    }
    out
}

#[test]
fn a_vertical_study_over_the_vaults_equals_the_join_of_the_generated_records() {
    let root = std::env::temp_dir().join(format!("medspace-vertical-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (hospital_node, insurer_node) = (Keypair::from_seed(100), Keypair::from_seed(101));
    let stewards = [Keypair::from_seed(200), Keypair::from_seed(201)];
    let researcher = Keypair::from_seed(300);
    let genesis = medspace_consortium::GenesisBuilder::new("test")
        .unwrap()
        .time(1_000_000)
        .policy(Policy {
            requirements: List::new(vec![Requirement {
                level: Level::L2,
                role: Role::Steward,
                scope: ApprovalScope::PerOwner,
            }])
            .unwrap(),
            ..Policy::default()
        })
        .member("hospital-a", MemberKind::Hospital, &hospital_node)
        .unwrap()
        .user(
            "hospital-a.steward",
            "hospital-a",
            Role::Steward,
            &stewards[0],
        )
        .unwrap()
        .member("insurer-1", MemberKind::Insurer, &insurer_node)
        .unwrap()
        .user(
            "insurer-1.steward",
            "insurer-1",
            Role::Steward,
            &stewards[1],
        )
        .unwrap()
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
    let mut chain = Chain {
        state: State::genesis(&genesis).unwrap(),
        height: 0,
        chain: Name::new("test").unwrap(),
    };

    // The hospital's vault, its patients registered, linked and consenting.
    let hdir = root.join("hospital-a");
    let mut vault = Vault::open(&hdir, &vkey(&hdir)).unwrap();
    let resources: Vec<Value> = medspace_synth::hospital_resources(SEED, 0)
        .into_iter()
        .chain((0..PATIENTS).flat_map(|i| medspace_synth::patient_resources(SEED, 0, i)))
        .collect();
    vault.ingest_values("synth", resources, &opts()).unwrap();
    let mut key_of: BTreeMap<String, Keypair> = BTreeMap::new();
    let mut links = Links::default();
    for (n, (person, fhir_id, _)) in vault.persons().into_iter().enumerate() {
        let key = Keypair::from_seed(10_000 + n as u64);
        links
            .link(person, PatientId::from_key(&key.public()))
            .unwrap();
        let reg = RegisterPatient::attested(
            &chain.chain,
            &key.public(),
            MemberId::new("hospital-a").unwrap(),
            &hospital_node,
        );
        chain.apply(&key, Payload::RegisterPatient(reg));
        chain.apply(
            &key,
            Payload::SetConsent(SetConsent {
                purpose: Purpose::Research,
                study: None,
                decision: Decision::Allow,
                l4_opt_in: false,
            }),
        );
        key_of.insert(fhir_id, key);
    }
    links.save(&hdir, &vkey(&hdir)).unwrap();
    drop(vault);

    // The insurer's vault: its covered patients' claims and members nobody here treats,
    // linked to the same pseudonyms by the hospital's Patient id behind each member id.
    let idir = root.join("insurer-1");
    let mut claims = Vault::open(&idir, &vkey(&idir)).unwrap();
    let mut patient_of = BTreeMap::new();
    let mut feed = Vec::new();
    for i in 0..PATIENTS {
        if let Some(r) = medspace_synth::claims::insurer_resources(SEED, 0, i) {
            patient_of.insert(
                medspace_synth::claims::member_id(SEED, 0, i),
                medspace_synth::patient_id(SEED, 0, i),
            );
            feed.extend(r);
        }
    }
    feed.extend(
        medspace_synth::claims::insurer_only_members(SEED, 40)
            .into_iter()
            .flatten(),
    );
    claims.ingest_values("claims", feed, &opts()).unwrap();
    let mut ilinks = Links::default();
    for (person, member, _) in claims.persons() {
        if let Some(key) = patient_of.get(&member).and_then(|p| key_of.get(p)) {
            ilinks
                .link(person, PatientId::from_key(&key.public()))
                .unwrap();
        }
    }
    ilinks.save(&idir, &vkey(&idir)).unwrap();
    drop(claims);

    // Catalog, the researcher's contract over both (hospital first on the ledger), the job.
    chain.apply(
        &stewards[0],
        Payload::PublishDataset(PublishDataset {
            dataset: cdm_dataset("hospital-a", &CLINICAL, PATIENTS),
        }),
    );
    chain.apply(
        &stewards[1],
        Payload::PublishDataset(PublishDataset {
            dataset: cdm_dataset("insurer-1", &CLAIMS, PATIENTS),
        }),
    );
    let mut fields = Vec::new();
    for (member, tables) in [("hospital-a", &CLINICAL[..]), ("insurer-1", &CLAIMS[..])] {
        for (t, fs) in tables {
            for f in *fs {
                fields.push(FieldRef {
                    dataset: DatasetId::new(&format!("{member}.cdm")).unwrap(),
                    table: Text::new(*t).unwrap(),
                    field: Text::new(*f).unwrap(),
                });
            }
        }
    }
    let r = chain.apply(
        &researcher,
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: None,
            fields: List::new(fields).unwrap(),
            computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
            expiry_ms: 2_000_000,
            epsilon_budget: 1_000_000,
            fee: 0,
        }),
    );
    let Some(medspace_state::Created::Contract(contract)) = r.created else {
        panic!("no contract")
    };
    for s in &stewards {
        chain.apply(s, Payload::Approve(Approve { contract }));
    }
    let r = chain.apply(
        &researcher,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
            epsilon: 100_000,
        }),
    );
    let Some(medspace_state::Created::Job(job)) = r.created else {
        panic!("no job")
    };

    // Each side's rows, planned from the ledger.
    let side = |member: &str, dir: &std::path::Path, links: &Links| {
        run_join_site(
            &chain.state,
            job,
            &MemberId::new(member).unwrap(),
            SiteVault::embedded(dir, &vkey(dir)),
            links,
        )
        .unwrap()
    };
    let JoinInput::Clinical { patients, cells } = side("hospital-a", &hdir, &links) else {
        panic!("the hospital is the clinical side")
    };
    let JoinInput::Claims {
        patients: members,
        values,
    } = side("insurer-1", &idir, &ilinks)
    else {
        panic!("the insurer is the claims side")
    };
    assert_eq!(
        members.len(),
        patient_of.len(),
        "every covered patient, no one else"
    );

    // The join, every message through its bytes.
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ids = |p: &[PatientId]| medspace_worker::compute::vertical::identifiers(job, p);
    let (receiver, request) = medspace_privacy::psi::Receiver::new(
        &mut rng,
        &ids(&patients),
        medspace_privacy::psi::Mode::Linked,
        2,
    )
    .unwrap();
    let holder =
        medspace_privacy::join::Holder::new(&mut rng, &ids(&members), &values.concat(), 5, 2)
            .unwrap();
    let request = medspace_privacy::psi::Request::from_bytes(&request.to_bytes().unwrap()).unwrap();
    let offer = holder.respond(&request, &mut rng).unwrap();
    let offer = medspace_privacy::join::Offer::from_bytes(&offer.to_bytes().unwrap()).unwrap();
    let groups: Vec<Option<u32>> = cells.iter().copied().map(Some).collect();
    let (counts, sums) =
        medspace_privacy::join::sum_groups(&receiver, &offer, &groups, 4, &[], &mut rng).unwrap();
    let sums = medspace_privacy::join::Sums::from_bytes(&sums.to_bytes().unwrap()).unwrap();
    let opened = holder.open(&sums, 0).unwrap();

    let want = from_fhir();
    for (cell, w) in want.iter().enumerate() {
        assert_eq!(counts[cell] as i64, w[0], "cell {cell}: persons");
        assert_eq!(&opened[cell * 5..cell * 5 + 5], &w[..], "cell {cell}: sums");
    }
    // The release: means and standard deviations of the exact sums.
    let (spec, _) = parse(SPEC).unwrap();
    let Aggregate::Claims(c) = &spec.aggregate else {
        unreachable!()
    };
    let released = release_cells(c, &opened, 10);
    for (cell, (r, w)) in released.iter().zip(&want).enumerate() {
        if w[0] >= 10 {
            let mean = w[3] as f64 / w[0] as f64;
            assert_eq!(r.paid_mean, Some(mean), "cell {cell}");
        } else {
            assert_eq!(r.n, None, "cell {cell}: below k");
        }
    }
    let mean = |w: &[i64; 5]| w[3] as f64 / w[0].max(1) as f64;
    println!(
        "paid per person in 2024: female with diabetes {:.0} (n={}), without {:.0} (n={}); male with {:.0} (n={}), without {:.0} (n={})",
        mean(&want[0]),
        want[0][0],
        mean(&want[1]),
        want[1][0],
        mean(&want[2]),
        want[2][0],
        mean(&want[3]),
        want[3][0]
    );
    let _ = std::fs::remove_dir_all(&root);
}
